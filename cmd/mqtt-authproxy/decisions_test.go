package main

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/decisionlog"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/redisconn"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// decisionLog is a decision log writing to the CLI's Redis (env), as a
// replica does.
func decisionLog(t *testing.T, env map[string]string) *decisionlog.Writer {
	t.Helper()
	rdb, err := redisconn.NewClient(env["AUTHPROXY_REDIS_URL"])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	l := decisionlog.NewWriter(rdb, decisionlog.Options{})
	t.Cleanup(l.Close)
	return l
}

func awaitLogged(t *testing.T, l *decisionlog.Writer, n uint64) {
	t.Helper()
	testenv.WaitFor(t, 10*time.Second, fmt.Sprintf("%d decisions written", n), func() bool { return l.Written() >= n })
}

// jsonRecords parses --json output: one policy.Record per line.
func jsonRecords(t *testing.T, out string) []policy.Record {
	t.Helper()
	var recs []policy.Record
	for line := range strings.Lines(out) {
		var r policy.Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("--json line %q: %v", line, err)
		}
		recs = append(recs, r)
	}
	return recs
}

// TestDecisionsCommand: decisions prints the log's newest entries oldest
// first, as a table (one row per decision, the header first, device
// strings escaped) or as JSON lines that parse back into the records
// written; --user, --client-id, --outcome, --since and --limit select the
// right ones; bad usage exits 2, Redis down exits 1 with a message naming
// it and nothing else on stderr.
func TestDecisionsCommand(t *testing.T) {
	env, _ := cliRedis(t)
	l := decisionLog(t, env)
	now := time.Now().UTC().Truncate(time.Millisecond)
	old := now.Add(-3 * time.Hour)
	written := []policy.Record{
		{Time: old, Replica: "replica-a", Kind: "connect", Remote: "10.0.0.7:50001", Username: "sensor-1", ClientID: "sensor-1-a",
			Protocol: 4, TLS: "TLS 1.3", Outcome: "bad_credentials", Reason: "password does not match", Duration: 31 * time.Millisecond},
		{Time: old.Add(time.Minute), Replica: "replica-b", Kind: "connect", Remote: "10.0.0.7:50002", Username: "sensor-1", ClientID: "sensor-1-a",
			Protocol: 5, TLS: "TLS 1.3", Resumed: true, CertSHA256: strings.Repeat("ab", 32), Outcome: "accepted", Reason: "allowed", Duration: 2 * time.Millisecond},
		{Time: now.Add(-10 * time.Minute), Replica: "replica-a", Kind: "connect", Remote: "10.0.0.9:41000", Username: "sensor-2", ClientID: "sensor-9",
			Protocol: 4, TLS: "TLS 1.2", Outcome: "clientid_not_allowed", Reason: "client id sensor-9 does not match sensor-2 sensor-2-*"},
		{Time: now.Add(-5 * time.Minute), Replica: "replica-b", Kind: "revalidate", Remote: "10.0.0.7:50002", Username: "sensor-1", ClientID: "sensor-1-a",
			Protocol: 5, TLS: "TLS 1.3", Resumed: true, Outcome: "disabled", Reason: "disabled"},
		{Time: now.Add(-time.Minute), Replica: "replica-a", Kind: "connect", Remote: "10.0.0.66:1234", Username: "evil\x1b[31m name", ClientID: "x",
			Protocol: 4, TLS: "none", Outcome: "bad_credentials", Reason: "unknown user\x1b[2J"},
	}
	for _, r := range written {
		l.Record(r)
	}
	awaitLogged(t, l, uint64(len(written)))

	// --json: every field back, oldest first.
	r := runBin(t, env, "", "decisions", "--json")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("decisions --json: %+v", r)
	}
	got := jsonRecords(t, r.stdout)
	if len(got) != len(written) {
		t.Fatalf("--json printed %d records, want %d:\n%s", len(got), len(written), r.stdout)
	}
	for i := range got {
		if w := written[i]; !got[i].Time.Equal(w.Time) || got[i].Replica != w.Replica || got[i].Username != w.Username ||
			got[i].ClientID != w.ClientID || got[i].Resumed != w.Resumed || got[i].Reason != w.Reason || got[i].Duration != w.Duration ||
			got[i].Protocol != w.Protocol || got[i].CertSHA256 != w.CertSHA256 || got[i].Kind != w.Kind || got[i].Outcome != w.Outcome {
			t.Errorf("record %d:\n got %+v\nwant %+v", i, got[i], w)
		}
	}
	if !strings.Contains(r.stdout, `"duration_ns":31000000`) || !strings.Contains(r.stdout, `"client_id":"sensor-1-a"`) {
		t.Errorf("--json field names: %s", r.stdout)
	}

	// The table: a header, then one row per decision, newest last.
	r = runBin(t, env, "", "decisions")
	if r.code != 0 {
		t.Fatalf("decisions: %+v", r)
	}
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) != len(written)+1 || !regexp.MustCompile(`^TIME\s+REPLICA\s+KIND\s+USER\s+CLIENT ID\s+REMOTE\s+TLS\s+OUTCOME\s+REASON$`).MatchString(lines[0]) {
		t.Fatalf("table:\n%s", r.stdout)
	}
	for i, w := range written[:4] {
		row := lines[i+1]
		for _, want := range []string{w.Time.Format("2006-01-02T15:04:05.000Z"), w.Replica, w.Kind, w.Username, w.ClientID, w.Remote, w.Outcome, w.Reason} {
			if !strings.Contains(row, want) {
				t.Errorf("row %d lacks %q: %s", i, want, row)
			}
		}
		if resumed := strings.Contains(row, "TLS 1.3 resumed"); resumed != w.Resumed {
			t.Errorf("row %d: resumed shown %v, want %v: %s", i, resumed, w.Resumed, row)
		}
	}
	// Columns line up: the outcome starts at the same place in every row.
	col := strings.Index(lines[0], "OUTCOME")
	for _, row := range lines[1:5] {
		if !regexp.MustCompile(`^[a-z_]+ `).MatchString(row[col:]) {
			t.Errorf("OUTCOME column not aligned at %d: %s", col, row)
		}
	}
	if strings.Contains(r.stdout, "\x1b") || !strings.Contains(lines[5], `"evil\x1b[31m name"`) || !strings.Contains(lines[5], `unknown user\x1b[2J`) {
		t.Errorf("a device's escape sequence reached the terminal, or is not shown escaped: %q", lines[5])
	}

	// Filters.
	users := func(args ...string) []string {
		t.Helper()
		r := runBin(t, env, "", append([]string{"decisions", "--json"}, args...)...)
		if r.code != 0 {
			t.Fatalf("decisions %v: %+v", args, r)
		}
		var out []string
		for _, rec := range jsonRecords(t, r.stdout) {
			out = append(out, rec.Username+"/"+rec.Outcome)
		}
		return out
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--user", "sensor-1"}, "sensor-1/bad_credentials sensor-1/accepted sensor-1/disabled"},
		{[]string{"--user", "sensor-1", "--outcome", "accepted"}, "sensor-1/accepted"},
		{[]string{"--client-id", "sensor-9"}, "sensor-2/clientid_not_allowed"},
		{[]string{"--outcome", "bad_credentials"}, "sensor-1/bad_credentials evil\x1b[31m name/bad_credentials"},
		{[]string{"--since", "1h"}, "sensor-2/clientid_not_allowed sensor-1/disabled evil\x1b[31m name/bad_credentials"},
		{[]string{"--since", "7m", "--user", "sensor-1"}, "sensor-1/disabled"},
		{[]string{"--since", old.Add(30 * time.Second).Format(time.RFC3339Nano)}, "sensor-1/accepted sensor-2/clientid_not_allowed sensor-1/disabled evil\x1b[31m name/bad_credentials"},
		{[]string{"--since", "1d", "--limit", "2"}, "sensor-1/disabled evil\x1b[31m name/bad_credentials"},
		{[]string{"--user", "nobody"}, ""},
	} {
		if got := strings.Join(users(c.args...), " "); got != c.want {
			t.Errorf("decisions %v: %q, want %q", c.args, got, c.want)
		}
	}
	r = runBin(t, env, "", "decisions", "--user", "nobody")
	if r.code != 0 || r.stdout != "" || !strings.Contains(r.stderr, "no decision in mqtt:decisions matches") {
		t.Errorf("no match: %+v", r)
	}

	r = runBin(t, env, "", "decisions", "--help")
	for _, want := range []string{"mqtt-authproxy decisions [flags]", "--user", "--client-id", "--outcome", "--since", "--follow", "--json", "--limit"} {
		if r.code != 0 || !strings.Contains(r.stderr, want) {
			t.Errorf("decisions --help: exit %d, lacks %s", r.code, want)
		}
	}

	// Bad usage: exit 2.
	for _, args := range [][]string{{"--since", "soon"}, {"--since", "-5m"}, {"--limit", "-1"}, {"--limit", "0"}, {"sensor-1"}, {"--bogus"}} {
		if r := runBin(t, env, "", append([]string{"decisions"}, args...)...); r.code != 2 || r.stdout != "" {
			t.Errorf("decisions %v: %+v, want exit 2", args, r)
		}
	}

	// Redis unreachable: exit 1, one clear line.
	down := map[string]string{"AUTHPROXY_REDIS_URL": fmt.Sprintf("redis://:secret@127.0.0.1:%d/0", testenv.FreePort(t))}
	for _, args := range [][]string{{"decisions"}, {"decisions", "--follow"}} {
		r = runBin(t, down, "", args...)
		if r.code != 1 || !strings.HasPrefix(r.stderr, "mqtt-authproxy: decisions: Redis at redis://:xxxxx@127.0.0.1:") ||
			!strings.Contains(r.stderr, "connection refused") || strings.Count(r.stderr, "\n") != 1 || strings.Contains(r.stderr, "secret") {
			t.Errorf("%v with Redis down: %+v", args, r)
		}
	}
}

// TestDecisionsFollow: decisions --follow prints the newest matching
// decisions, then each matching one logged after it started (and no
// other), as JSON lines or table rows under one header; SIGINT ends it
// with exit 0.
func TestDecisionsFollow(t *testing.T) {
	env, _ := cliRedis(t)
	l := decisionLog(t, env)
	l.Record(policy.Record{Kind: "connect", Replica: "r1", Username: "alice", ClientID: "alice-1", Outcome: "bad_credentials", Reason: "password does not match"})
	l.Record(policy.Record{Kind: "connect", Replica: "r1", Username: "bob", ClientID: "bob", Outcome: "accepted", Reason: "allowed"})
	awaitLogged(t, l, 2)

	jsonFollow := startBin(t, env, "decisions", "--follow", "--json", "--user", "alice")
	table := startBin(t, env, "decisions", "--follow", "--outcome", "accepted")
	testenv.WaitFor(t, 10*time.Second, "the history", func() bool {
		return strings.Contains(jsonFollow.stdout.String(), `"outcome":"bad_credentials"`) && strings.Contains(table.stdout.String(), " bob ")
	})
	// Both are following now: their history is printed.
	l.Record(policy.Record{Kind: "connect", Replica: "r2", Username: "bob", ClientID: "bob", Outcome: "disabled", Reason: "disabled"})
	l.Record(policy.Record{Kind: "connect", Replica: "r2", Username: "alice", ClientID: "alice-1", Outcome: "accepted", Resumed: true, TLS: "TLS 1.2", Reason: "allowed"})
	testenv.WaitFor(t, 10*time.Second, "the new decision", func() bool {
		return strings.Count(jsonFollow.stdout.String(), "\n") >= 2 && strings.Count(table.stdout.String(), "\n") >= 3
	})
	got := jsonRecords(t, jsonFollow.stdout.String())
	if len(got) != 2 || got[0].Outcome != "bad_credentials" || got[1].Outcome != "accepted" || !got[1].Resumed || got[1].Replica != "r2" || got[1].Username != "alice" {
		t.Fatalf("--follow --json printed %+v", got)
	}
	lines := strings.Split(strings.TrimSuffix(table.stdout.String(), "\n"), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "TIME ") || !strings.Contains(lines[1], " bob ") ||
		!strings.Contains(lines[2], " alice ") || !strings.Contains(lines[2], "TLS 1.2 resumed") {
		t.Fatalf("--follow table:\n%s", table.stdout.String())
	}

	for _, p := range []*proc{jsonFollow, table} {
		if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
			t.Fatal(err)
		}
		<-p.done
		if code := p.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("--follow after SIGINT: exit %d, stderr %q", code, p.stderr.String())
		}
	}
	// Nothing more was printed: the disabled bob matched neither.
	for line := range strings.Lines(jsonFollow.stdout.String() + table.stdout.String()) {
		if strings.Contains(line, "disabled") {
			t.Errorf("a decision outside the filter was printed: %s", line)
		}
	}
}
