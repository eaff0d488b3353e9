package main

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/mqtttest"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// TestWhyWasMyDeviceRefused is issue 17's story, with two replicas on one
// Redis sharing their ticket keys: a device refused on replica A for a
// wrong password, then accepted on a resumed TLS session on replica B,
// then revoked: `decisions --user` prints the three in order, with the
// replica ids, resumed on the second, and the reason on each.
func TestWhyWasMyDeviceRefused(t *testing.T) {
	rs := testenv.Redis(t, "--notify-keyspace-events", "Kghx")
	broker := testenv.Mosquitto(t, testenv.MosquittoOptions{})
	f, ca, _ := certs(t)
	common := map[string]string{
		"AUTHPROXY_TLS_CERT_FILE": f.ServerCert, "AUTHPROXY_TLS_KEY_FILE": f.ServerKey, "AUTHPROXY_BACKEND_ADDR": broker.Addr(),
		"AUTHPROXY_REDIS_URL": testenv.RedisURL(rs), "AUTHPROXY_TLS_TICKET_SECRET": strings.Repeat("s3cr3t-", 6),
	}
	addrs := map[string]string{}
	for _, replica := range []string{"replica-a", "replica-b"} {
		env := map[string]string{}
		for k, v := range common {
			env[k] = v
		}
		addrs[replica] = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
		metrics := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
		env["AUTHPROXY_LISTEN"], env["AUTHPROXY_METRICS_LISTEN"], env["AUTHPROXY_REPLICA_ID"] = addrs[replica], metrics, replica
		startBin(t, env, "serve")
		waitHTTP(t, "http://"+metrics+"/healthz", 200)
	}
	cli := map[string]string{"AUTHPROXY_REDIS_URL": testenv.RedisURL(rs)}
	if r := runBin(t, cli, "right\n", "user", "set", "sensor-1"); r.code != 0 {
		t.Fatal(r)
	}
	cfg := &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost", MaxVersion: tls.VersionTLS12, ClientSessionCache: tls.NewLRUClientSessionCache(4)}

	// 1. Replica A: wrong password.
	if _, ack := dialMQTT(t, addrs["replica-a"], cfg, mqtttest.Creds(packets.V311, "sensor-1", "sensor-1", "wrong")); ack.Code != 0x04 {
		t.Fatalf("wrong password: 0x%02X", ack.Code)
	}
	// 2. Replica B, resuming A's TLS session (the ticket keys are shared
	// once both replicas have read the hour's salt: await it).
	var live *mqtttest.Client
	testenv.WaitFor(t, 20*time.Second, "a resumed session on replica B", func() bool {
		conn, err := tls.Dial("tcp", addrs["replica-b"], cfg)
		if err != nil {
			return false
		}
		c, ack, err := mqtttest.Connect(conn, mqtttest.Creds(packets.V311, "sensor-1", "sensor-1", "right"))
		if err != nil || ack.Code != 0 || !conn.ConnectionState().DidResume {
			conn.Close()
			return false
		}
		live = c
		return true
	})
	defer live.Conn.Close()
	// 3. Revoked.
	if r := runBin(t, cli, "", "user", "disable", "sensor-1"); r.code != 0 {
		t.Fatal(r)
	}
	if _, _, err := live.ReadPacket(5 * time.Second); err == nil {
		t.Fatal("the revoked session got a packet instead of being closed")
	}

	var recs []policy.Record
	testenv.WaitFor(t, 10*time.Second, "the three decisions in the log", func() bool {
		r := runBin(t, cli, "", "decisions", "--user", "sensor-1", "--json")
		recs = recs[:0]
		for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
			var x policy.Record
			if json.Unmarshal([]byte(line), &x) == nil {
				recs = append(recs, x)
			}
		}
		return len(recs) > 0 && recs[len(recs)-1].Kind == "revalidate"
	})
	// The attempts before the resumed one that did not resume on B are
	// accepted on B too: keep the first refusal, the resumed acceptance,
	// and the revocation.
	var refusal, resumed, revoked *policy.Record
	for i := range recs {
		r := &recs[i]
		switch {
		case r.Outcome == "bad_credentials" && refusal == nil:
			refusal = r
		case r.Outcome == "accepted" && r.Resumed:
			resumed = r
		case r.Kind == "revalidate":
			revoked = r
		}
	}
	if refusal == nil || resumed == nil || revoked == nil {
		t.Fatalf("decisions: %+v", recs)
	}
	if refusal.Replica != "replica-a" || refusal.Reason != "password does not match" {
		t.Errorf("the refusal: %+v", refusal)
	}
	if resumed.Replica != "replica-b" || !strings.Contains(resumed.Reason, "resumed TLS session, decided afresh") {
		t.Errorf("the resumed acceptance: %+v", resumed)
	}
	if revoked.Replica != "replica-b" || revoked.Outcome != "disabled" || !strings.Contains(revoked.Reason, "disabled") {
		t.Errorf("the revocation: %+v", revoked)
	}
	if !(refusal.Time.Before(resumed.Time) && !resumed.Time.After(revoked.Time)) {
		t.Errorf("out of order: %v %v %v", refusal.Time, resumed.Time, revoked.Time)
	}
	// The table a person reads says the same, newest last.
	r := runBin(t, cli, "", "decisions", "--user", "sensor-1")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if last := lines[len(lines)-1]; !strings.Contains(last, "replica-b") || !strings.Contains(last, "disabled") {
		t.Errorf("table's last line: %q", last)
	}
	if !strings.Contains(r.stdout, "password does not match") || !strings.Contains(r.stdout, "resumed") {
		t.Errorf("table:\n%s", r.stdout)
	}
}
