package main

import (
	"crypto/tls"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/mqtttest"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// TestLimitFlags: user set and role set take a flag per limit (the field
// names with underscores too), refuse a value a limit cannot hold naming
// the flag, with nothing written; show prints the limits, and explain
// says which apply and where each comes from.
func TestLimitFlags(t *testing.T) {
	rs := testenv.Redis(t)
	env := map[string]string{"AUTHPROXY_REDIS_URL": testenv.RedisURL(rs), "AUTHPROXY_BACKEND_ADDR": "127.0.0.1:1883"}
	if r := runBin(t, env, "pw\n", "user", "set", "lim", "--pub-rate", "20", "--max_qos", "1", "--roles", "fleet"); r.code != 0 {
		t.Fatalf("user set with limits: %+v", r)
	}
	if r := runBin(t, env, "", "role", "set", "fleet", "--max-qos", "0", "--max-sessions", "3", "--retain", "false"); r.code != 0 {
		t.Fatalf("role set with limits only: %+v", r)
	}
	for _, c := range []struct {
		args []string
		flag string
	}{
		{[]string{"user", "set", "lim", "--max-qos", "3"}, "--max-qos"},
		{[]string{"user", "set", "lim", "--pub_rate", "fast"}, "--pub-rate"},
		{[]string{"user", "set", "lim", "--max-keepalive", "0"}, "--max-keepalive"},
		{[]string{"role", "set", "fleet", "--retain", "maybe"}, "--retain"},
	} {
		r := runBin(t, env, "", c.args...)
		if r.code != 2 || !strings.Contains(r.stderr, c.flag) {
			t.Errorf("%v: exit %d, stderr %q: want 2 naming %s", c.args, r.code, r.stderr, c.flag)
		}
	}
	r := runBin(t, env, "", "user", "show", "lim")
	if !strings.Contains(r.stdout, "limits:    pub_rate=20 max_qos=1") {
		t.Errorf("user show: %s", r.stdout)
	}
	if r := runBin(t, env, "", "role", "show", "fleet"); !strings.Contains(r.stdout, "max_qos=0 retain=false max_sessions=3") {
		t.Errorf("role show: %s", r.stdout)
	}
	r = runBin(t, env, "", "explain", "lim")
	for _, want := range []string{"pub_rate=20 (user)", "max_qos=1 (user)", "retain=false (role fleet)", "max_sessions=3 (role fleet)", "0 live sessions, max_sessions 3"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("explain does not say %q:\n%s", want, r.stdout)
		}
	}
	if r := runBin(t, env, "", "user", "set", "lim", "--pub-rate", ""); r.code != 0 {
		t.Fatalf("removing pub_rate: %+v", r)
	}
	if r := runBin(t, env, "", "user", "show", "lim"); strings.Contains(r.stdout, "pub_rate") {
		t.Errorf("pub_rate left after --pub-rate '': %s", r.stdout)
	}
}

// TestMaxSessionsReplicaKilled: two replicas share a user's max_sessions
// of 1. While the session lives on replica a, replica b refuses a second
// one (0x05); a is killed (SIGKILL: no goodbye, its count left in Redis),
// and b admits the user again once a's lease has run out: within 30 s of
// the kill (35 with a margin), not at once.
func TestMaxSessionsReplicaKilled(t *testing.T) {
	rs := testenv.Redis(t)
	broker := testenv.Mosquitto(t, testenv.MosquittoOptions{})
	f, ca, _ := certs(t)
	replica := func(id string) (*proc, string) {
		listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
		metrics := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
		p := startBin(t, map[string]string{
			"AUTHPROXY_TLS_CERT_FILE": f.ServerCert, "AUTHPROXY_TLS_KEY_FILE": f.ServerKey, "AUTHPROXY_LISTEN": listen,
			"AUTHPROXY_BACKEND_ADDR": broker.Addr(), "AUTHPROXY_REDIS_URL": testenv.RedisURL(rs), "AUTHPROXY_METRICS_LISTEN": metrics,
			"AUTHPROXY_REPLICA_ID": id,
		}, "serve")
		waitHTTP(t, "http://"+metrics+"/readyz", 200)
		return p, listen
	}
	a, addrA := replica("a")
	_, addrB := replica("b")
	env := map[string]string{"AUTHPROXY_REDIS_URL": testenv.RedisURL(rs), "AUTHPROXY_BACKEND_ADDR": broker.Addr()}
	if r := runBin(t, env, "pw\n", "user", "set", "one", "--max-sessions", "1"); r.code != 0 {
		t.Fatalf("user set: %+v", r)
	}
	tlsCfg := &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}
	if _, ack := dialMQTT(t, addrA, tlsCfg, mqtttest.Creds(packets.V311, "one", "one", "pw")); ack.Code != 0 {
		t.Fatalf("the first session, through a: 0x%02X", ack.Code)
	}
	if _, ack := dialMQTT(t, addrB, tlsCfg, mqtttest.Creds(packets.V311, "one:b", "one", "pw")); ack.Code != 0x05 {
		t.Fatalf("a second session, through b: 0x%02X, want 0x05", ack.Code)
	}
	if err := a.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-a.done
	killed := time.Now()
	if _, ack := dialMQTT(t, addrB, tlsCfg, mqtttest.Creds(packets.V311, "one:b", "one", "pw")); ack.Code != 0x05 {
		t.Fatalf("right after a was killed: 0x%02X, want 0x05 (a's lease holds)", ack.Code)
	}
	testenv.WaitFor(t, 35*time.Second, "a's session forgotten", func() bool {
		time.Sleep(500 * time.Millisecond)
		c, ack := dialMQTT(t, addrB, tlsCfg, mqtttest.Creds(packets.V311, "one:b", "one", "pw"))
		c.Conn.Close()
		return ack.Code == 0
	})
	t.Logf("a's session was forgotten %v after a was killed", time.Since(killed).Round(time.Second))
}
