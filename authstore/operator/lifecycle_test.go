package operator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/internal/storetest"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/passwords"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/rules"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
)

// TestParseRecordRefusesBadInput: every way a line can be wrong is an
// ErrInvalid whose message names the problem.
func TestParseRecordRefusesBadInput(t *testing.T) {
	for line, want := range map[string]string{
		`{"name": "a", "publsh": "x"}`:            `unknown field "publsh"`,
		`{"name": "a", "publish": ["x"]}`:         `"publish" must be a string`,
		`{"name": "a"`:                            "not a JSON object",
		`[1]`:                                     "not a JSON object",
		`null`:                                    "null",
		`{"name": "a"} {"name": "b"}`:             "more than one JSON value",
		`{"publish": "x"}`:                        `no "name"`,
		`{"name": "a", "role": "b"}`:              `both "name" and "role"`,
		`{"name": "a b"}`:                         "white space",
		`{"name": "a\nb"}`:                        "white space",
		`{"name": "a\u0000b"}`:                    "control character",
		`{"name": ""}`:                            "empty user name",
		`{"name": "a", "publish": "a/#/b"}`:       `field "publish"`,
		`{"name": "a", "enabled": "yes"}`:         `field "enabled"`,
		`{"name": "a", "not_after": "2020"}`:      `field "not_after"`,
		`{"name": "a", "cidrs": "300.1.1.1"}`:     `field "cidrs"`,
		`{"name": "a", "password_hash": "md5$x"}`: `"password_hash"`,
		`{"name": "a", "password": "x", "password_hash": "$2b$04$.MyMYYEjToFnNHnw3bpEqeesH5ElAsqBHvBxHoVFgBFxhAGLw8lwy"}`: "give one",
		`{"name": "a", "password": ""}`:             `"password" is empty`,
		`{"name": "a", "password_old_hash": "x"}`:   "go together",
		`{"name": "a", "other": {"publish": "#"}}`:  "is not an other field",
		`{"name": "a", "other": {"password": "x"}}`: "is not an other field",
		`{"name": "a", "other": "x"}`:               "must be an object of strings",
		`{"role": "r", "password_hash": "x"}`:       `unknown field "password_hash"`,
		`{"role": "r", "roles": "x"}`:               `unknown field "roles"`,
	} {
		_, err := ParseRecord([]byte(line))
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an ErrInvalid naming %q", line, err, want)
		}
	}
	r, err := ParseRecord([]byte(`{"name": "dev-1", "password": "pw", "publish": "d/%u/#", "other": {"note": "rack 4"}}`))
	if err != nil || r.Name != "dev-1" || r.Role || *r.Plain != "pw" || r.Fields["publish"] != "d/%u/#" || r.Fields["note"] != "rack 4" || r.KeepPassword {
		t.Fatalf("good line: %+v %v", r, err)
	}
}

// TestRecordRoundTrip: what MarshalJSON writes, ParseRecord reads back
// to the same hash; unknown fields travel under "other".
func TestRecordRoundTrip(t *testing.T) {
	h := map[string]string{"password": passwords.HashGenerated(strings.Repeat("k", 26)), "password_old": "$2b$04$.MyMYYEjToFnNHnw3bpEqeesH5ElAsqBHvBxHoVFgBFxhAGLw8lwy",
		"password_old_until": "2030-01-01T00:00:00Z", "enabled": "false", "publish": "a/b c/#", "note": "x\"y"}
	line, _ := recordFromHash("u:1", false, h, true).MarshalJSON()
	r, err := ParseRecord(line)
	if err != nil || !maps.Equal(r.Fields, h) || r.Name != "u:1" {
		t.Fatalf("%s -> %+v %v", line, r, err)
	}
	line, _ = recordFromHash("u:1", false, h, false).MarshalJSON()
	if strings.Contains(string(line), "password") {
		t.Fatalf("without hashes: %s", line)
	}
	if r, err = ParseRecord(line); err != nil || !r.KeepPassword {
		t.Fatalf("without hashes, read back: %+v %v", r, err)
	}
}

// TestRotate: the new secret is stored in the generated format, the
// previous hash moves to password_old until the overlap's end; no
// overlap removes it; a user without a password or none at all is
// refused with nothing written.
func TestRotate(t *testing.T) {
	s, m := miniStore(t)
	ctx := context.Background()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return now }
	if err := s.SetUser(ctx, "dev", Update{Password: ptr("first")}); err != nil {
		t.Fatal(err)
	}
	first := m.HGet("mqtt:user:dev", "password")
	r, err := s.Rotate(ctx, "dev", time.Hour)
	if err != nil || len(r.Password) != 26 || !r.OldUntil.Equal(now.Add(time.Hour)) {
		t.Fatalf("Rotate: %+v %v", r, err)
	}
	stored := m.HGet("mqtt:user:dev", "password")
	if !strings.HasPrefix(stored, passwords.GeneratedPrefix) || m.HGet("mqtt:user:dev", "password_old") != first ||
		m.HGet("mqtt:user:dev", "password_old_until") != "2030-01-01T01:00:00Z" {
		t.Fatalf("stored: %v", m.Keys())
	}
	u, _ := s.GetUser(ctx, "dev")
	if u.PasswordOld == nil || u.PasswordOld.HashFormat != "argon2id" || !u.PasswordOld.Until.Equal(now.Add(time.Hour)) || len(u.Extra) != 0 {
		t.Fatalf("GetUser: %+v", u)
	}
	if _, err := s.Rotate(ctx, "dev", 0); err != nil || m.HGet("mqtt:user:dev", "password_old") != "" {
		t.Fatalf("no overlap: %v, password_old %q", err, m.HGet("mqtt:user:dev", "password_old"))
	}
	if err := s.SetUser(ctx, "cert", Update{Certs: &[]string{"cn:cert"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Rotate(ctx, "cert", time.Hour); !errors.Is(err, ErrNoPassword) || m.HGet("mqtt:user:cert", "password") != "" {
		t.Fatalf("certificate-only user: %v", err)
	}
	if _, err := s.Rotate(ctx, "nobody", time.Hour); !errors.Is(err, ErrNoSuchUser) || m.Exists("mqtt:user:nobody") {
		t.Fatalf("no such user: %v", err)
	}
	if _, err := s.Rotate(ctx, "dev", -time.Second); !errors.Is(err, ErrInvalid) {
		t.Fatalf("negative overlap: %v", err)
	}
	// A password set outright ends the overlap.
	_, _ = s.Rotate(ctx, "dev", time.Hour)
	if err := s.SetUser(ctx, "dev", Update{Password: ptr("chosen")}); err != nil || m.HGet("mqtt:user:dev", "password_old") != "" {
		t.Fatalf("user set after a rotation kept password_old: %v", err)
	}
}

// TestReplaceKeepsThePasswordAndChecksRoles: a record replaces the hash
// whole; without a password the stored one (and its rotation) stays; a
// role that does not exist, a new name with ':' and an empty record are
// refused with nothing written.
func TestReplaceKeepsThePasswordAndChecksRoles(t *testing.T) {
	s, m := miniStore(t)
	ctx := context.Background()
	_ = s.SetUser(ctx, "dev", Update{Password: ptr("pw"), Publish: &[]string{"a/#"}, CIDRs: &[]string{"10.0.0.0/8"}})
	_, _ = s.Rotate(ctx, "dev", time.Hour)
	pw, old := m.HGet("mqtt:user:dev", "password"), m.HGet("mqtt:user:dev", "password_old")
	rec, err := ParseRecord([]byte(`{"name": "dev", "subscribe": "b/#"}`))
	if err != nil {
		t.Fatal(err)
	}
	if created, err := s.Replace(ctx, rec); err != nil || created {
		t.Fatalf("Replace: %v %v", created, err)
	}
	if got, _ := m.HKeys("mqtt:user:dev"); len(got) != 4 || m.HGet("mqtt:user:dev", "password") != pw ||
		m.HGet("mqtt:user:dev", "password_old") != old || m.HGet("mqtt:user:dev", "subscribe") != "b/#" {
		t.Fatalf("after Replace: %v", got)
	}
	for line, want := range map[string]error{
		`{"name": "dev", "roles": "fleet"}`:    ErrNoSuchRoles,
		`{"name": "new:one", "password": "p"}`: ErrInvalid,
		`{"name": "empty"}`:                    ErrEmptyRecord,
	} {
		rec, _ := ParseRecord([]byte(line))
		if _, err := s.Replace(ctx, rec); !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", line, err, want)
		}
	}
	if m.Exists("mqtt:user:new:one") || m.Exists("mqtt:user:empty") || m.HGet("mqtt:user:dev", "roles") != "" {
		t.Fatal("a refused Replace wrote")
	}
	_ = s.SetRole(ctx, "fleet", RoleUpdate{Publish: &[]string{"f/#"}})
	rec, _ = ParseRecord([]byte(`{"name": "dev", "roles": "fleet default"}`))
	if _, err := s.Replace(ctx, rec); err != nil {
		t.Fatalf("existing role: %v", err)
	}
}

// TestImportExport: an export imports back unchanged; an import checks
// every line first and names the bad ones with nothing written; a plain
// password matching the stored hash leaves the user unchanged; --dry-run
// writes nothing; roles are imported too.
func TestImportExport(t *testing.T) {
	s, m := miniStore(t)
	ctx := context.Background()
	gen := passwords.HashGenerated(strings.Repeat("z", 26))
	in := `{"role": "fleet", "publish": "fleet/#"}
{"name": "a", "password_hash": "` + gen + `", "roles": "fleet"}

{"name": "b", "password": "pw-b", "publish": "b/#", "other": {"note": "n"}}
`
	sum, err := s.Import(ctx, strings.NewReader(in), ImportOptions{})
	if err != nil || sum.Users != (Counts{Created: 2}) || sum.Roles != (Counts{Created: 1}) {
		t.Fatalf("first import: %+v %v", sum, err)
	}
	if m.HGet("mqtt:user:a", "password") != gen || m.HGet("mqtt:user:b", "note") != "n" || !strings.HasPrefix(m.HGet("mqtt:user:b", "password"), "$argon2id$") {
		t.Fatal("import stored the wrong hashes")
	}
	sum, err = s.Import(ctx, strings.NewReader(in), ImportOptions{})
	if err != nil || sum.Users != (Counts{Unchanged: 2}) || sum.Roles != (Counts{Unchanged: 1}) {
		t.Fatalf("same import again: %+v %v", sum, err)
	}
	var out bytes.Buffer
	es, err := s.Export(ctx, &out, true)
	if err != nil || es != (ExportSummary{Users: 2, Roles: 1}) || !strings.HasPrefix(out.String(), `{"role":"fleet"`) {
		t.Fatalf("export: %+v %v\n%s", es, err, out.String())
	}
	if sum, err = s.Import(ctx, bytes.NewReader(out.Bytes()), ImportOptions{}); err != nil || sum.Users != (Counts{Unchanged: 2}) {
		t.Fatalf("export imported back: %+v %v", sum, err)
	}
	out.Reset()
	_, _ = s.Export(ctx, &out, false)
	if strings.Contains(out.String(), "password") || strings.Contains(out.String(), "$argon2id$") {
		t.Fatalf("export without hashes: %s", out.String())
	}
	if sum, err = s.Import(ctx, bytes.NewReader(out.Bytes()), ImportOptions{}); err != nil || sum.Users != (Counts{Unchanged: 2}) || m.HGet("mqtt:user:a", "password") != gen {
		t.Fatalf("export without hashes imported back: %+v %v", sum, err)
	}

	bad := `{"name": "c", "password": "x"}
{"name": "d", "password": "x", "roles": "nope"}
{"name": "c", "password": "y"}
{"name": "e:f", "password": "x"}
{"name": "g", "publish": "#/x", "password": "x"}
`
	_, err = s.Import(ctx, strings.NewReader(bad), ImportOptions{})
	var le *LinesError
	if !errors.As(err, &le) || !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad import: %v", err)
	}
	for _, want := range []string{"line 3: user \"c\" again (first on line 1)", "line 5: field \"publish\"", "nothing was written"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("bad import's error %q lacks %q", err, want)
		}
	}
	if m.Exists("mqtt:user:c") {
		t.Fatal("a refused import wrote a user")
	}
	_, err = s.Import(ctx, strings.NewReader(`{"name": "c", "password": "x"}`+"\n"+`{"name": "d", "password": "x", "roles": "nope"}`+"\n"+`{"name": "e:f", "password": "x"}`), ImportOptions{})
	if err == nil || !strings.Contains(err.Error(), `line 2: role "nope" does not exist`) || !strings.Contains(err.Error(), "line 3: user name \"e:f\"") || m.Exists("mqtt:user:c") {
		t.Fatalf("import with a missing role and a new name with ':': %v", err)
	}
	sum, err = s.Import(ctx, strings.NewReader(`{"name": "c", "password": "x"}`), ImportOptions{DryRun: true})
	if err != nil || sum.Users.Created != 1 || !sum.DryRun || m.Exists("mqtt:user:c") {
		t.Fatalf("dry run: %+v %v", sum, err)
	}
}

// TestReplaceLastWriteWinsWhole: two operators replacing the same user
// at once, again and again, against a real Redis, while a reader reads
// the hash: every read is one of the two writes whole, never a mix.
func TestReplaceLastWriteWinsWhole(t *testing.T) {
	rdb, _, _ := storetest.Redis(t)
	e := New(rdb, Options{})
	ctx := context.Background()
	records := [2]Record{}
	for i := range records {
		records[i], _ = ParseRecord([]byte(fmt.Sprintf(`{"name": "shared", "password_hash": %q, "publish": "w%d/#", "subscribe": "w%d/#", "clientids": "c%d", "enabled": "%v"}`,
			passwords.HashGenerated(strings.Repeat(fmt.Sprint(i), 26)), i, i, i, i == 0)))
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range records {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := e.Replace(ctx, records[i]); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	reads := 0
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); reads++ {
		h, err := rdb.HGetAll(ctx, "mqtt:user:shared").Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(h) == 0 {
			continue
		}
		if !maps.Equal(h, records[0].Fields) && !maps.Equal(h, records[1].Fields) {
			t.Fatalf("read a mix of two writes: %v", h)
		}
	}
	close(stop)
	wg.Wait()
	if reads < 100 {
		t.Fatalf("only %d reads", reads)
	}
	_ = rules.FieldPassword
}

// fleet is an import of n users with generated-format hashes, and a role.
func fleet(n int) string {
	var b strings.Builder
	b.WriteString(`{"role": "fleet", "subscribe": "fleet/#"}` + "\n")
	for i := range n {
		fmt.Fprintf(&b, `{"name": "dev-%05d", "password_hash": %q, "roles": "fleet"}`+"\n", i, passwords.HashGenerated(fmt.Sprintf("secret-%05d-abcdefghijklmnop", i)))
	}
	return b.String()
}

// TestImportOnACluster: an import to a Redis Cluster writes every user to
// the node of its slot (the script loaded on every master), and the same
// import again finds them all unchanged; the users list and export find
// them on every master.
func TestImportOnACluster(t *testing.T) {
	nodes := testenv.RedisCluster(t, 3, 0)
	rdb := storetest.Client(t, fmt.Sprintf("redis://%s/0?cluster=true&addr=%s&addr=%s", nodes[0].Addr(), nodes[1].Addr(), nodes[2].Addr()))
	e := New(rdb, Options{})
	ctx := testenv.Context(t)
	in := fleet(2000)
	sum, err := e.Import(ctx, strings.NewReader(in), ImportOptions{})
	if err != nil || sum.Users.Created != 2000 || sum.Roles.Created != 1 {
		t.Fatalf("import: %+v %v", sum, err)
	}
	if sum, err = e.Import(ctx, strings.NewReader(in), ImportOptions{}); err != nil || sum.Users.Unchanged != 2000 {
		t.Fatalf("again: %+v %v", sum, err)
	}
	names, err := e.ListUsers(ctx)
	if err != nil || len(names) != 2000 {
		t.Fatalf("ListUsers: %d %v", len(names), err)
	}
	for _, n := range nodes {
		c := redis.NewClient(&redis.Options{Addr: n.Addr()})
		if k, _ := c.DBSize(ctx).Result(); k < 500 {
			t.Errorf("node %s holds %d keys: the users are not spread over the slots", n.Addr(), k)
		}
		c.Close()
	}
}

// TestImportSaysWhatWasWritten: Redis goes away while an import writes:
// the error is a PartialError naming the lines written (a prefix of the
// file, here the first batch) and those are in Redis; the same import
// again, once Redis is back, writes the rest and leaves those unchanged.
func TestImportSaysWhatWasWritten(t *testing.T) {
	rdb, _, srv := storetest.Redis(t, "--appendonly", "yes", "--appendfsync", "always")
	e := New(rdb, Options{})
	ctx := testenv.Context(t)
	in := fleet(3000)
	batches := 0
	_, err := e.Import(ctx, strings.NewReader(in), ImportOptions{BatchSize: 500, Progress: func(p ImportProgress) {
		if p.Phase == "writing" {
			if batches++; batches == 2 {
				srv.Stop()
			}
		}
	}})
	var pe *PartialError
	if !errors.As(err, &pe) || pe.Total != 3001 || len(pe.Written) != 1000 || !strings.Contains(err.Error(), "(lines 1-1000)") ||
		!strings.Contains(err.Error(), "run it again to write the rest") {
		t.Fatalf("import with Redis gone: %v", err)
	}
	srv.Start()
	testenv.WaitFor(t, 10*time.Second, "Redis back", func() bool { return rdb.Ping(ctx).Err() == nil })
	sum, err := e.Import(ctx, strings.NewReader(in), ImportOptions{})
	if err != nil || sum.Users.Unchanged != 999 || sum.Users.Created != 2001 || sum.Roles.Unchanged != 1 {
		t.Fatalf("the same import again: %+v %v", sum, err)
	}
}
