package operator

import (
	"bufio"
	"context"
	"fmt"
	"io"

	"github.com/redis/go-redis/v9"
)

// ExportSummary counts what an export wrote.
type ExportSummary struct {
	Users int `json:"users"`
	Roles int `json:"roles"`
}

// Export writes every role, then every user, one JSON record a line
// (NDJSON), as Import reads them back; found with SCAN (never KEYS),
// read in pipelines. Password hashes (password_hash, password_old_hash,
// password_old_until) are written only withHashes: without them an
// import of the file keeps the stored passwords. A user or role deleted
// while the export runs is left out.
func (e *Editor) Export(ctx context.Context, w io.Writer, withHashes bool) (ExportSummary, error) {
	bw := bufio.NewWriterSize(w, 64*1024)
	var sum ExportSummary
	for _, role := range []bool{true, false} {
		list, prefix := e.ListUsers, e.keys.UserKey("")
		if role {
			list, prefix = e.ListRoles, e.keys.RoleKey("")
		}
		names, err := list(ctx)
		if err != nil {
			return sum, err
		}
		n, err := e.exportHashes(ctx, bw, prefix, names, role, withHashes)
		if role {
			sum.Roles = n
		} else {
			sum.Users = n
		}
		if err != nil {
			return sum, err
		}
	}
	return sum, bw.Flush()
}

// exportHashes writes the records of the hashes prefix+name, read in
// pipelines of a thousand.
func (e *Editor) exportHashes(ctx context.Context, w *bufio.Writer, prefix string, names []string, role, withHashes bool) (int, error) {
	n := 0
	for start := 0; start < len(names); start += 1000 {
		batch := names[start:min(start+1000, len(names))]
		cmds := make([]*redis.MapStringStringCmd, len(batch))
		_, err := e.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, name := range batch {
				cmds[i] = p.HGetAll(ctx, prefix+name)
			}
			return nil
		})
		if err != nil {
			return n, fmt.Errorf("reading %d %ss from Redis: %w", len(batch), kindName(role), err)
		}
		for i, name := range batch {
			h := cmds[i].Val()
			if len(h) == 0 {
				continue
			}
			line, _ := recordFromHash(name, role, h, withHashes).MarshalJSON()
			w.Write(line)
			if err := w.WriteByte('\n'); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}
