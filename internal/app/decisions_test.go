package app

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/decisionlog"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/redisconn"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/mqtttest"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// TestDecisionLogSettings: DECISION_LOG, DECISION_LOG_MAXLEN and
// REPLICA_ID are validated into Settings; a bad value is a ConfigError
// naming its variable.
func TestDecisionLogSettings(t *testing.T) {
	f := testFiles(t)
	s, err := validConfig(f).Validate()
	if err != nil {
		t.Fatal(err)
	}
	if s.DecisionLog != (DecisionLogSettings{On: true, MaxLen: 100000}) {
		t.Errorf("defaults: %+v", s.DecisionLog)
	}
	c := validConfig(f)
	c.DecisionLog, c.DecisionLogMaxLen, c.ReplicaID = "off", 500, "edge-7"
	if s, err = c.Validate(); err != nil || s.DecisionLog != (DecisionLogSettings{On: false, MaxLen: 500, ReplicaID: "edge-7"}) {
		t.Errorf("off, 500, edge-7: %+v %v", s.DecisionLog, err)
	}
	for _, bad := range []struct {
		change  func(*Config)
		wantVar string
	}{
		{func(c *Config) { c.DecisionLog = "stream" }, "AUTHPROXY_DECISION_LOG"},
		{func(c *Config) { c.DecisionLogMaxLen = 0 }, "AUTHPROXY_DECISION_LOG_MAXLEN"},
		{func(c *Config) { c.ReplicaID = "two words" }, "AUTHPROXY_REPLICA_ID"},
		{func(c *Config) { c.ReplicaID = "bell\a" }, "AUTHPROXY_REPLICA_ID"},
		{func(c *Config) { c.ReplicaID = strings.Repeat("r", 129) }, "AUTHPROXY_REPLICA_ID"},
	} {
		c := validConfig(f)
		bad.change(&c)
		_, err := c.Validate()
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Var != bad.wantVar {
			t.Errorf("got %v; want a ConfigError naming %s", err, bad.wantVar)
		}
	}
	if _, err := Load([]string{"AUTHPROXY_DECISION_LOG_MAXLEN=lots"}); err == nil || !strings.Contains(err.Error(), "AUTHPROXY_DECISION_LOG_MAXLEN") {
		t.Errorf("a MAXLEN that is no number: %v", err)
	}
}

// TestReplicaIDs: without REPLICA_ID each start makes another id, the
// host name plus a random suffix; with it, it is taken as is.
func TestReplicaIDs(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Skip(err)
	}
	a, b := replicaID(""), replicaID("")
	if a == b || !strings.HasPrefix(a, host+"-") || !strings.HasPrefix(b, host+"-") || len(a) != len(host)+7 {
		t.Errorf("two made ids: %q, %q (host %q)", a, b, host)
	}
	if got := replicaID("edge-7"); got != "edge-7" {
		t.Errorf("REPLICA_ID=edge-7 gives %q", got)
	}
}

// TestStartWritesTheDecisionLog: a started App records its proxy's
// decisions in the Redis stream under its replica id, exports the drop
// counter, and Stop leaves nothing unwritten; with DECISION_LOG=off
// nothing is written, the counter is still exported, and REPLICA_ID names
// the replica.
func TestStartWritesTheDecisionLog(t *testing.T) {
	rs := testenv.Redis(t)
	ctx := testenv.Context(t)
	rdb, err := redisconn.NewClient(testenv.RedisURL(rs))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	reader := authstore.New(rdb, authstore.Options{}) // the Apps' stores close with them
	start := func(change func(*Config)) *App {
		t.Helper()
		c := Defaults()
		c.Listen, c.PlainListen, c.MetricsListen = "off", "127.0.0.1:0", "127.0.0.1:0"
		c.BackendAddr, c.RedisURL, c.ShutdownGrace = fakeBroker(t), testenv.RedisURL(rs), time.Second
		change(&c)
		s, err := c.Validate()
		if err != nil {
			t.Fatal(err)
		}
		a, err := Start(context.Background(), s, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(a.Stop)
		return a
	}
	connect := func(a *App, user string) {
		t.Helper()
		conn, err := net.Dial("tcp", a.Addrs().Plain.String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, ack, err := mqtttest.Connect(conn, mqtttest.Creds(packets.V311, user, user, "pw")); err != nil || ack.Code != 0x04 {
			t.Fatalf("CONNECT of an unknown user: %+v %v", ack, err)
		}
	}
	metric := func(a *App) string {
		t.Helper()
		_, body := get(t, "http://"+a.Addrs().Admin.String()+"/metrics")
		return body
	}

	a := start(func(*Config) {})
	host, _ := os.Hostname()
	if a.DecisionLog() == nil || !strings.HasPrefix(a.ReplicaID(), host+"-") {
		t.Fatalf("decision log %v, replica id %q", a.DecisionLog(), a.ReplicaID())
	}
	connect(a, "ghost")
	testenv.WaitFor(t, 10*time.Second, "the CONNECT in the decision log", func() bool {
		recs, err := reader.ReadDecisions(ctx, decisionlog.Filter{User: "ghost"})
		return err == nil && len(recs) == 1
	})
	recs, _ := reader.ReadDecisions(ctx, decisionlog.Filter{User: "ghost"})
	if r := recs[0]; r.Replica != a.ReplicaID() || r.Kind != "connect" || r.Outcome != "bad_credentials" || r.ClientID != "ghost" || r.Reason == "" {
		t.Errorf("entry: %+v", r)
	}
	if body := metric(a); !strings.Contains(body, "\nauthproxy_decision_log_dropped_total 0\n") {
		t.Errorf("/metrics lacks authproxy_decision_log_dropped_total 0")
	}
	a.Stop()

	b := start(func(c *Config) { c.DecisionLog, c.ReplicaID = "off", "edge-7" })
	if b.DecisionLog() != nil || b.ReplicaID() != "edge-7" {
		t.Fatalf("off: decision log %v, replica id %q", b.DecisionLog(), b.ReplicaID())
	}
	connect(b, "phantom")
	if body := metric(b); !strings.Contains(body, "\nauthproxy_decision_log_dropped_total 0\n") {
		t.Errorf("/metrics lacks authproxy_decision_log_dropped_total with the log off")
	}
	b.Stop() // every connection is done: a log would have written its entry
	if recs, err := reader.ReadDecisions(ctx, decisionlog.Filter{User: "phantom"}); err != nil || len(recs) != 0 {
		t.Errorf("with DECISION_LOG=off: %+v %v", recs, err)
	}
}
