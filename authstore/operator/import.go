package operator

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/passwords"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/rules"
)

// ImportOptions tune an import.
type ImportOptions struct {
	// DryRun checks and compares everything, and writes nothing.
	DryRun bool
	// Progress, when set, is called after each batch read, hashed or
	// written, from the import's goroutine.
	Progress func(ImportProgress)
	// BatchSize is the records per pipeline, default 500.
	BatchSize int
}

// ImportProgress is where an import is.
type ImportProgress struct {
	Phase       string // "reading", "hashing", "writing"
	Done, Total int
}

// Counts count what an import did, or would do (dry run), to users or
// roles.
type Counts struct {
	Created   int `json:"created"`
	Changed   int `json:"changed"`
	Unchanged int `json:"unchanged"`
}

// ImportSummary is what an import did.
type ImportSummary struct {
	Users  Counts `json:"users"`
	Roles  Counts `json:"roles"`
	DryRun bool   `json:"dry_run"`
}

// LineError is one bad line of an import.
type LineError struct {
	Line int
	Err  error
}

func (e LineError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }

// LinesError is an import refused for its bad lines: nothing was written.
type LinesError struct {
	Lines []LineError // the first maxLineErrors
	More  int         // bad lines beyond them
}

// maxLineErrors bounds the bad lines an import names.
const maxLineErrors = 20

func (e *LinesError) Error() string {
	var b strings.Builder
	for i, l := range e.Lines {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(l.Error())
	}
	if e.More > 0 {
		fmt.Fprintf(&b, "; and %d more bad lines", e.More)
	}
	return b.String() + " (nothing was written)"
}

// Is makes a LinesError an ErrInvalid.
func (e *LinesError) Is(target error) bool { return target == ErrInvalid }

func (e *LinesError) add(line int, err error) {
	if len(e.Lines) < maxLineErrors {
		e.Lines = append(e.Lines, LineError{line, err})
		return
	}
	e.More++
}

// PartialError is an import whose writes stopped part of the way (Redis
// failed, a Cluster node went away): Written are the lines that were
// written; the others were not. Importing the same file again writes the
// rest (what was written is then unchanged).
type PartialError struct {
	Written []Written
	Total   int // records to write
	Err     error
}

// Written is one record an import wrote.
type Written struct {
	Line int
	Name string
	Role bool
}

func (e *PartialError) Error() string {
	return fmt.Sprintf("the import stopped after writing %d of %d changed records (%s): %v; run it again to write the rest",
		len(e.Written), e.Total, WrittenLines(e.Written), e.Err)
}

func (e *PartialError) Unwrap() error { return e.Err }

// WrittenLines names written records' lines as ranges: "lines 1-480, 502".
func WrittenLines(ws []Written) string {
	if len(ws) == 0 {
		return "none written"
	}
	var parts []string
	for i := 0; i < len(ws); {
		j := i
		for j+1 < len(ws) && ws[j+1].Line == ws[j].Line+1 {
			j++
		}
		if i == j {
			parts = append(parts, strconv.Itoa(ws[i].Line))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", ws[i].Line, ws[j].Line))
		}
		i = j + 1
	}
	return "lines " + strings.Join(parts, ", ")
}

// lineRecord is a record and its line.
type lineRecord struct {
	Record
	line    int
	current map[string]string // the stored hash before the import
	change  change
}

type change int

const (
	unchanged change = iota
	created
	changed
)

// Import reads NDJSON records (users and roles) from r and writes them:
// every line is checked (syntax, fields, the roles users name exist or
// are in the file, no name twice) before anything is written, and a bad
// line names its number with nothing written (*LinesError). Each record
// replaces its hash whole, as Replace does, in pipelines of BatchSize;
// records equal to what is stored are not written (an import is
// idempotent), plain passwords are hashed (or, when they match the stored
// hash, left as they are). Roles are written before users. A write that
// fails part of the way returns a *PartialError naming what was written.
func (e *Editor) Import(ctx context.Context, r io.Reader, o ImportOptions) (ImportSummary, error) {
	if o.BatchSize <= 0 {
		o.BatchSize = 500
	}
	recs, err := readRecords(r)
	if err != nil {
		return ImportSummary{}, err
	}
	if err := e.checkImport(ctx, recs, o); err != nil {
		return ImportSummary{}, err
	}
	sum := ImportSummary{DryRun: o.DryRun}
	var todo []*lineRecord
	for _, rec := range recs {
		c := &sum.Users
		if rec.Role {
			c = &sum.Roles
		}
		switch rec.change {
		case created:
			c.Created++
		case changed:
			c.Changed++
		default:
			c.Unchanged++
			continue
		}
		todo = append(todo, rec)
	}
	if o.DryRun || len(todo) == 0 {
		return sum, nil
	}
	return sum, e.writeImport(ctx, todo, o)
}

// readRecords parses every line, blank ones skipped.
func readRecords(r io.Reader) ([]*lineRecord, error) {
	br := bufio.NewReaderSize(r, 64*1024)
	bad := &LinesError{}
	seen := map[string]int{}
	var recs []*lineRecord
	for n := 1; ; n++ {
		line, err := readLine(br)
		if err == io.EOF {
			break
		}
		if err != nil && !errors.Is(err, errLongLine) {
			return nil, err
		}
		if err != nil {
			bad.add(n, err)
			continue
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		rec, perr := parseRecord(line)
		if perr != nil {
			bad.add(n, perr)
			continue
		}
		id := kindName(rec.Role) + " " + rec.Name
		if first, dup := seen[id]; dup {
			bad.add(n, fmt.Errorf("%s %q again (first on line %d)", kindName(rec.Role), rec.Name, first))
			continue
		}
		seen[id] = n
		recs = append(recs, &lineRecord{Record: rec, line: n})
	}
	if len(bad.Lines) > 0 {
		return nil, bad
	}
	return recs, nil
}

var errLongLine = fmt.Errorf("longer than %d bytes", MaxRecordBytes)

// readLine reads one line without its end; a line past MaxRecordBytes is
// skipped whole and reported.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(line)+len(chunk) <= MaxRecordBytes+1 {
			line = append(line, chunk...)
		} else {
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			if err == nil || err == io.EOF {
				return nil, errLongLine
			}
			return nil, err
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == io.EOF && len(line) > 0:
			return line, nil
		case err != nil:
			return nil, err
		}
		return bytes.TrimRight(line, "\r\n"), nil
	}
}

// checkImport checks what needs Redis before anything is written: the
// roles users name exist or are in the file, each record's current hash
// (new user names with ':' are refused; a record that would leave an
// empty hash is refused), and what each record changes, hashing plain
// passwords that do not match the stored hash.
func (e *Editor) checkImport(ctx context.Context, recs []*lineRecord, o ImportOptions) error {
	defined := map[string]bool{}
	for _, r := range recs {
		if r.Role {
			defined[r.Name] = true
		}
	}
	bad := &LinesError{}
	if err := e.checkImportRoles(ctx, recs, defined, bad); err != nil {
		return err
	}
	if err := e.readCurrent(ctx, recs, o); err != nil {
		return err
	}
	for _, r := range recs {
		if err := r.compare(); err != nil {
			bad.add(r.line, err)
		}
	}
	if len(bad.Lines) > 0 {
		return bad
	}
	e.hashPlain(recs, o)
	return nil
}

// checkImportRoles refuses, by line, users naming roles that neither
// exist nor are defined in the import (one pipeline for every name).
func (e *Editor) checkImportRoles(ctx context.Context, recs []*lineRecord, defined map[string]bool, bad *LinesError) error {
	var names []string
	for _, r := range recs {
		if !r.Role {
			names = append(names, rules.RoleNames(r.Fields[rules.FieldRoles])...)
		}
	}
	missing, err := e.missingRoles(ctx, names, defined)
	if err != nil || len(missing) == 0 {
		return err
	}
	for _, r := range recs {
		if r.Role {
			continue
		}
		for _, n := range rules.RoleNames(r.Fields[rules.FieldRoles]) {
			if missing[n] {
				bad.add(r.line, fmt.Errorf("role %q does not exist and is not in the import", n))
				break
			}
		}
	}
	return nil
}

// readCurrent reads every record's stored hash, in pipelines.
func (e *Editor) readCurrent(ctx context.Context, recs []*lineRecord, o ImportOptions) error {
	for start := 0; start < len(recs); start += 1000 {
		batch := recs[start:min(start+1000, len(recs))]
		cmds := make([]*redis.MapStringStringCmd, len(batch))
		_, err := e.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, r := range batch {
				key := e.keys.UserKey(r.Name)
				if r.Role {
					key = e.keys.RoleKey(r.Name)
				}
				cmds[i] = p.HGetAll(ctx, key)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("reading the stored users and roles: %w", err)
		}
		for i, r := range batch {
			r.current = cmds[i].Val()
		}
		if o.Progress != nil {
			o.Progress(ImportProgress{Phase: "reading", Done: start + len(batch), Total: len(recs)})
		}
	}
	return nil
}

// compare decides what the record changes against the stored hash, and
// refuses what the write would refuse. A plain password is compared
// later (hashPlain).
func (r *lineRecord) compare() error {
	exists := len(r.current) > 0
	if !exists && !r.Role && strings.Contains(r.Name, ":") {
		return fmt.Errorf("user name %q: ':' is not allowed in a new user name (it separates a user name from a client id suffix, as in %%u:*)", r.Name)
	}
	final := r.final()
	if len(final) == 0 && r.Plain == nil {
		return fmt.Errorf("%s %q: %w", kindName(r.Role), r.Name, ErrEmptyRecord)
	}
	switch {
	case !exists:
		r.change = created
	case r.Plain == nil && maps.Equal(final, r.current):
		r.change = unchanged
	default:
		r.change = changed
	}
	return nil
}

// final is the hash the record leaves (its plain password aside).
func (r *lineRecord) final() map[string]string {
	if !r.KeepPassword {
		return r.Fields
	}
	out := maps.Clone(r.Fields)
	for _, f := range passwordFields {
		if v, ok := r.current[f]; ok {
			out[f] = v
		}
	}
	return out
}

// hashPlain sets the stored hash of every record with a plain password:
// the stored one when the password matches it (and then, with the rest
// equal, the record is unchanged), else a new argon2id hash; on every
// core.
func (e *Editor) hashPlain(recs []*lineRecord, o ImportOptions) {
	var plain []*lineRecord
	for _, r := range recs {
		if r.Plain != nil {
			plain = append(plain, r)
		}
	}
	check := passwords.NewChecker(passwords.Options{CacheSize: 1, MaxHashWait: time.Hour})
	var wg sync.WaitGroup
	next := make(chan *lineRecord)
	var mu sync.Mutex
	done := 0
	for range max(runtime.GOMAXPROCS(0), 1) {
		wg.Go(func() {
			for r := range next {
				r.hashPlain(check)
				mu.Lock()
				done++
				if o.Progress != nil && (done%100 == 0 || done == len(plain)) {
					o.Progress(ImportProgress{Phase: "hashing", Done: done, Total: len(plain)})
				}
				mu.Unlock()
			}
		})
	}
	for _, r := range plain {
		next <- r
	}
	close(next)
	wg.Wait()
}

// hashPlain hashes the record's plain password, or keeps the stored hash
// it matches.
func (r *lineRecord) hashPlain(check *passwords.Checker) {
	r.Fields = maps.Clone(r.Fields)
	stored := r.current[rules.FieldPassword]
	if ok, _, err := check.Check(context.Background(), stored, *r.Plain, false); err == nil && ok {
		r.Fields[rules.FieldPassword] = stored
	} else {
		r.Fields[rules.FieldPassword] = passwords.HashPassword(*r.Plain)
	}
	r.Plain = nil
	if r.change == changed && maps.Equal(r.Fields, r.current) {
		r.change = unchanged
	}
}

// writeImport writes the records that change, roles first, in pipelines
// of the script that Replace runs.
func (e *Editor) writeImport(ctx context.Context, todo []*lineRecord, o ImportOptions) error {
	ordered := make([]*lineRecord, 0, len(todo))
	for _, role := range []bool{true, false} {
		for _, r := range todo {
			if r.Role == role {
				ordered = append(ordered, r)
			}
		}
	}
	var written []Written
	for start := 0; start < len(ordered); start += o.BatchSize {
		batch := ordered[start:min(start+o.BatchSize, len(ordered))]
		ok, err := e.writeBatch(ctx, batch)
		written = append(written, ok...)
		if err != nil {
			return &PartialError{Written: sortWritten(written), Total: len(ordered), Err: err}
		}
		if o.Progress != nil {
			o.Progress(ImportProgress{Phase: "writing", Done: start + len(batch), Total: len(ordered)})
		}
	}
	return nil
}

// writeBatch writes one pipeline of replacements and returns those that
// were written, with the first error.
func (e *Editor) writeBatch(ctx context.Context, batch []*lineRecord) ([]Written, error) {
	if err := replaceScript.Load(ctx, e.rdb).Err(); err != nil {
		return nil, err
	}
	cmds := make([]*redis.Cmd, len(batch))
	_, _ = e.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, r := range batch {
			keys, args := e.replaceArgs(r.Record)
			cmds[i] = replaceScript.EvalSha(ctx, p, keys, args...)
		}
		return nil
	})
	var ok []Written
	var first error
	for i, r := range batch {
		if _, err := replacedAnswer(r.Record, cmds[i]); err != nil {
			if first == nil {
				first = fmt.Errorf("line %d (%s %q): %w", r.line, kindName(r.Role), r.Name, err)
			}
			continue
		}
		ok = append(ok, Written{Line: r.line, Name: r.Name, Role: r.Role})
	}
	return ok, first
}

// sortWritten orders written records by line.
func sortWritten(ws []Written) []Written {
	slices.SortFunc(ws, func(a, b Written) int { return a.Line - b.Line })
	return ws
}
