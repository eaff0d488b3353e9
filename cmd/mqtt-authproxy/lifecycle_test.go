package main

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/passwords"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/mqtttest"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/pki"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// lifecycleProxy runs the binary with real Redis and Mosquitto and
// returns its environment (for the CLI too), its device listener, the
// devices' TLS configuration, the Redis, and the CA its certificates
// (the device listener's, and the admin listener's with adminTLS) come
// from.
func lifecycleProxy(t *testing.T, extra map[string]string, adminTLS bool) (map[string]string, string, *tls.Config, *testenv.Server, *pki.CA) {
	t.Helper()
	rs := testenv.Redis(t)
	broker := testenv.Mosquitto(t, testenv.MosquittoOptions{})
	f, ca, _ := certs(t)
	listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	metrics := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	env := map[string]string{
		"AUTHPROXY_TLS_CERT_FILE": f.ServerCert, "AUTHPROXY_TLS_KEY_FILE": f.ServerKey, "AUTHPROXY_LISTEN": listen,
		"AUTHPROXY_BACKEND_ADDR": broker.Addr(), "AUTHPROXY_REDIS_URL": testenv.RedisURL(rs), "AUTHPROXY_METRICS_LISTEN": metrics,
		"AUTHPROXY_LOG_FORMAT": "json",
	}
	scheme := "http"
	if adminTLS {
		env["AUTHPROXY_ADMIN_TLS_CERT_FILE"], env["AUTHPROXY_ADMIN_TLS_KEY_FILE"] = f.ServerCert, f.ServerKey
		scheme = "https"
	}
	for k, v := range extra {
		env[k] = v
	}
	startBin(t, env, "serve")
	waitReady(t, scheme+"://"+metrics+"/healthz", ca)
	return env, listen, &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}, rs, ca
}

// alive reports whether a device's session still relays: a QoS 1 PUBLISH
// is acknowledged.
func alive(c *mqtttest.Client, topic string) bool {
	return c.Publish(topic, []byte("x"), 1, false) == nil
}

// TestRotationWithTwoDevices: a device on the old password and one on
// the new, both connected through the overlap (and the old one accepted
// anew during it); after it, the old one's session is closed and its
// CONNECT refused while the new one's goes on; user show names the old
// password's last use (address, client id), and, during the overlap, the
// live session and client ids still on it; user rotate prints the new
// password alone on its last line.
func TestRotationWithTwoDevices(t *testing.T) {
	env, listen, tlsCfg, _, _ := lifecycleProxy(t, nil, false)
	r := runBin(t, env, "", "user", "set", "dev", "--generate", "--publish", "devices/%u/#", "--json")
	var gen map[string]string
	if err := json.Unmarshal([]byte(r.stdout), &gen); err != nil {
		t.Fatalf("user set --generate: %+v", r)
	}
	oldPW := gen["password"]
	a, ack := dialMQTT(t, listen, tlsCfg, mqtttest.Creds(packets.V5, "dev:a", "dev", oldPW))
	if ack.Code != 0 {
		t.Fatalf("device A with the first password: 0x%02X", ack.Code)
	}
	const overlap = 12 * time.Second
	r = runBin(t, env, "", "user", "rotate", "dev", "--overlap", overlap.String())
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	newPW := lines[len(lines)-1]
	if r.code != 0 || len(newPW) != 26 || strings.ContainsAny(newPW, " :") || !strings.Contains(r.stdout, "the old password works until") {
		t.Fatalf("user rotate: %+v", r)
	}
	rotatedAt := time.Now()
	b, ack := dialMQTT(t, listen, tlsCfg, mqtttest.Creds(packets.V311, "dev:b", "dev", newPW))
	if ack.Code != 0 {
		t.Fatalf("device B with the new password: 0x%02X", ack.Code)
	}
	again, ack := dialMQTT(t, listen, tlsCfg, mqtttest.Creds(packets.V311, "dev:a2", "dev", oldPW))
	if ack.Code != 0 {
		t.Fatalf("the old password during the overlap: 0x%02X", ack.Code)
	}
	again.Disconnect()
	if !alive(a, "devices/dev/a") || !alive(b, "devices/dev/b") {
		t.Fatal("a device's session ended during the overlap")
	}
	var shown shownUser
	testenv.WaitFor(t, 10*time.Second, "user show to count the old password's live session", func() bool {
		r := runBin(t, env, "", "user", "show", "dev", "--json")
		return json.Unmarshal([]byte(r.stdout), &shown) == nil && shown.Uses != nil && shown.Uses.Old != nil && shown.Uses.Old.LiveSessions == 1
	})
	if time.Since(rotatedAt) > overlap-time.Second {
		t.Fatalf("the registry took the whole overlap to list the session")
	}
	if o := shown.Uses.Old; o.ClientIDs24h != 2 || o.Addr != "127.0.0.1" || !o.Active || shown.Uses.Password.ClientID != "dev:b" {
		t.Fatalf("user show --json during the overlap: %+v %+v", shown.Uses.Password, shown.Uses.Old)
	}
	if r := runBin(t, env, "", "user", "show", "dev"); !strings.Contains(r.stdout, "1 live session and 2 client ids seen in the last 24 h still use the old password (accepted until") {
		t.Fatalf("user show during the overlap:\n%s", r.stdout)
	}

	// The overlap ends: A's session is decided again and closed (MQTT 5:
	// DISCONNECT), its next CONNECT refused; B goes on.
	if h, pkt, err := a.ReadPacket(overlap + 10*time.Second); err != nil || h.Type != packets.DISCONNECT {
		t.Fatalf("device A at the end of the overlap: %v %x", err, pkt)
	}
	if _, ack := dialMQTT(t, listen, tlsCfg, mqtttest.Creds(packets.V311, "dev:a", "dev", oldPW)); ack.Code != 0x04 {
		t.Fatalf("the old password after the overlap: 0x%02X, want 0x04", ack.Code)
	}
	if !alive(b, "devices/dev/b") {
		t.Fatal("device B's session ended with the overlap")
	}
	r = runBin(t, env, "", "user", "show", "dev")
	for _, want := range []string{"old used:  ", `from 127.0.0.1 by client id "dev:a2"`, "no longer accepted since"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("user show after the overlap lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, oldPW) || strings.Contains(r.stdout, newPW) {
		t.Fatal("user show printed a password")
	}
	if r := runBin(t, env, "", "user", "set", "nopw", "--no-password", "--certs", "cn:nopw"); r.code != 0 {
		t.Fatal(r)
	}
	if r := runBin(t, env, "", "user", "rotate", "nopw"); r.code != 2 || !strings.Contains(r.stderr, "has no password to rotate") {
		t.Fatalf("rotating a certificate-only user: %+v", r)
	}
}

// importLine is one user of a generated fleet, its secret stored in the
// generated format.
func importLine(i int, secret string) string {
	return fmt.Sprintf(`{"name": "dev-%05d", "password_hash": %q, "roles": "fleet", "publish": "devices/%%u/#"}`, i, passwords.HashGenerated(secret))
}

// TestImportTenThousandUsers: 10,000 pre-hashed users and a few plain
// passwords are imported, then a sample connects through the proxy; the
// same file again changes nothing; its export imports back unchanged; a
// file with a bad line names it and writes nothing.
func TestImportTenThousandUsers(t *testing.T) {
	env, listen, tlsCfg, _, _ := lifecycleProxy(t, nil, false)
	dir := t.TempDir()
	secret := func(i int) string { return fmt.Sprintf("secret-%05d-abcdefghijklmnopqrstuvwxyz", i) }
	var b strings.Builder
	b.WriteString(`{"role": "fleet", "subscribe": "fleet/#"}` + "\n")
	for i := range 10000 {
		b.WriteString(importLine(i, secret(i)) + "\n")
	}
	for i := range 4 {
		fmt.Fprintf(&b, `{"name": "plain-%d", "password": "pw-%d"}`+"\n", i, i)
	}
	file := filepath.Join(dir, "fleet.ndjson")
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r := runBin(t, env, "", "user", "import", file)
	if r.code != 0 || r.stdout != "imported: users 10004 created, 0 changed, 0 unchanged; roles 1 created, 0 changed, 0 unchanged\n" {
		t.Fatalf("import: %+v", r)
	}
	t.Logf("10,004 users imported in %v", time.Since(start))
	for _, i := range []int{0, 1, 4999, 7777, 9999} {
		if _, ack := dialMQTT(t, listen, tlsCfg, mqtttest.Creds(packets.V311, fmt.Sprintf("dev-%05d", i), fmt.Sprintf("dev-%05d", i), secret(i))); ack.Code != 0 {
			t.Fatalf("imported user dev-%05d: 0x%02X", i, ack.Code)
		}
	}
	if _, ack := dialMQTT(t, listen, tlsCfg, mqtttest.Creds(packets.V311, "plain-2", "plain-2", "pw-2")); ack.Code != 0 {
		t.Fatalf("imported plain password: 0x%02X", ack.Code)
	}
	if r := runBin(t, env, "", "user", "import", file, "--json"); r.code != 0 || !strings.Contains(r.stdout, `"users":{"created":0,"changed":0,"unchanged":10004}`) {
		t.Fatalf("the same import again: %+v", r)
	}
	exported := filepath.Join(dir, "export.ndjson")
	if r := runBin(t, env, "", "user", "export", "--with-hashes", "--output", exported); r.code != 0 || r.stderr != "exported 10004 users and 1 roles\n" {
		t.Fatalf("export: %+v", r)
	}
	if r := runBin(t, env, "", "user", "import", exported); r.code != 0 || !strings.Contains(r.stdout, "users 0 created, 0 changed, 10004 unchanged") {
		t.Fatalf("the export imported back: %+v", r)
	}

	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	lines[5000] = strings.Replace(lines[5000], `"publish"`, `"pubilsh"`, 1)
	lines = append(lines, `{"name": "new-one", "password": "x"}`)
	bad := filepath.Join(dir, "bad.ndjson")
	_ = os.WriteFile(bad, []byte(strings.Join(lines, "\n")), 0o600)
	r = runBin(t, env, "", "user", "import", bad)
	if r.code != 2 || !strings.Contains(r.stderr, `line 5001: unknown field "pubilsh"`) || !strings.Contains(r.stderr, "nothing was written") {
		t.Fatalf("a bad line: %+v", r)
	}
	if r := runBin(t, env, "", "user", "show", "new-one"); r.code != 1 {
		t.Fatalf("a refused import wrote new-one: %+v", r)
	}
}

// waitReady waits for the admin listener's /healthz (over TLS with ca).
func waitReady(t *testing.T, url string, ca *pki.CA) {
	t.Helper()
	c := httpClient(ca)
	testenv.WaitFor(t, 10*time.Second, url, func() bool {
		resp, err := c.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}
