package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/operator"
)

func cmdUserImport(io stdio) *cobra.Command {
	c := &cobra.Command{
		Use:   "import FILE [--dry-run]",
		Short: "Create or replace users and roles from an NDJSON file (- : standard input)",
		Long: `Reads users and roles from FILE (- for standard input), one JSON object a
line: {"name": USER, ...} for a user, {"role": ROLE, ...} for a role, the
hash's fields by name with string values ("publish": "devices/%u/#",
"enabled": "false"), the password as "password_hash" (a stored hash in one
of the known formats, checked) or "password" (plain, hashed with argon2id),
other fields under "other" ({"other": {"note": "rack 4"}}). "user export"
writes this format.

Every line is checked before anything is written (the syntax, each field,
no name twice, the roles users name exist or are in the file, no new user
name with ':'); a bad line names its line number and nothing is written
(exit 2). Each record then replaces its user or role whole, roles first; a
user without "password"/"password_hash" keeps its stored password. Records
equal to what is stored are not written, so an import is idempotent: run
it again after a failure to write the rest. With --dry-run nothing is
written, and the summary says what would be. On a terminal a progress line
shows the count, the rate and the time left; the last line is the summary:
created, changed, unchanged. If Redis fails part of the way, the error says
which lines were written (exit 1).`,
		Args: exactArgs(1, "one FILE (- for standard input)"),
	}
	dryRun := c.Flags().Bool("dry-run", false, "check and compare everything, write nothing")
	asJSON := jsonFlag(c.Flags())
	c.RunE = func(_ *cobra.Command, args []string) error { return runUserImport(io, args[0], *dryRun, *asJSON) }
	return c
}

func runUserImport(io stdio, file string, dryRun, asJSON bool) error {
	in := io.in
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return usagef("user import: %v", err)
		}
		defer f.Close()
		in = f
	}
	store, ctx, done, err := storeFromEnvFor("user import", time.Hour)
	if err != nil {
		return err
	}
	defer done()
	p := newProgress(io.err)
	sum, err := store.Import(ctx, in, operator.ImportOptions{DryRun: dryRun, Progress: p.show})
	p.end()
	if errors.Is(err, operator.ErrInvalid) {
		return usagef("user import: %v", err)
	}
	if err != nil {
		return fmt.Errorf("user import: %w", err)
	}
	if asJSON {
		return printJSON(io.out, sum)
	}
	verb := "imported"
	if dryRun {
		verb = "would import (dry run, nothing written)"
	}
	fmt.Fprintf(io.out, "%s: users %d created, %d changed, %d unchanged; roles %d created, %d changed, %d unchanged\n", verb,
		sum.Users.Created, sum.Users.Changed, sum.Users.Unchanged, sum.Roles.Created, sum.Roles.Changed, sum.Roles.Unchanged)
	return nil
}

// progress is the import's progress line on a terminal (nothing
// elsewhere): the phase, the count, the rate and the time left, at most
// ten times a second.
type progress struct {
	w     io.Writer // nil: not a terminal
	phase string
	start time.Time
	last  time.Time
}

func newProgress(w io.Writer) *progress {
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return &progress{w: w}
	}
	return &progress{}
}

func (p *progress) show(ip operator.ImportProgress) {
	if p.w == nil {
		return
	}
	now := time.Now()
	if ip.Phase != p.phase {
		p.phase, p.start = ip.Phase, now
	}
	if now.Sub(p.last) < 100*time.Millisecond && ip.Done < ip.Total {
		return
	}
	p.last = now
	rate := float64(ip.Done) / max(now.Sub(p.start).Seconds(), 0.001)
	left := time.Duration(float64(ip.Total-ip.Done) / max(rate, 0.001) * float64(time.Second)).Round(time.Second)
	fmt.Fprintf(p.w, "\r%s: %d/%d, %.0f/s, %v left   ", ip.Phase, ip.Done, ip.Total, rate, left)
}

func (p *progress) end() {
	if p.w != nil && p.phase != "" {
		fmt.Fprintln(p.w)
	}
}

// storeFromEnvFor is storeFromEnv with a longer bound than a command's 30 s.
func storeFromEnvFor(cmd string, bound time.Duration) (*authstore.Store, context.Context, func(), error) {
	store, _, done, err := storeFromEnv(cmd)
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	return store, ctx, func() { cancel(); done() }, nil
}
