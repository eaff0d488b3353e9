package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/passwords"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/explain"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/mqtttest"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// TestExplainAgreesWithConnect: for every outcome of the CONNACK table
// (docs/connack-codes.md) that a rule decides, the same fixture is tried by
// a real CONNECT through a running proxy and by `explain`: the CONNACK code
// the device reads is the one explain says, and explain's exit code says
// allowed or refused.
func TestExplainAgreesWithConnect(t *testing.T) {
	rs := testenv.Redis(t)
	broker := testenv.Mosquitto(t, testenv.MosquittoOptions{})
	f, ca, _ := certs(t)
	listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	metrics := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	env := map[string]string{
		"AUTHPROXY_TLS_CERT_FILE": f.ServerCert, "AUTHPROXY_TLS_KEY_FILE": f.ServerKey, "AUTHPROXY_LISTEN": listen,
		"AUTHPROXY_BACKEND_ADDR": broker.Addr(), "AUTHPROXY_REDIS_URL": testenv.RedisURL(rs), "AUTHPROXY_METRICS_LISTEN": metrics,
		"AUTHPROXY_AUTH_FAIL_LIMIT_USER": "3/5m",
	}
	startBin(t, env, "serve")
	waitHTTP(t, "http://"+metrics+"/healthz", 200)
	admin := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	defer admin.Close()
	ctx := context.Background()
	hash := passwords.HashPassword("pw")
	hset := func(user string, kv ...string) {
		admin.Del(ctx, "mqtt:user:"+user)
		if err := admin.HSet(ctx, "mqtt:user:"+user, append([]string{"password", hash, "publish", "t/%u/#"}, kv...)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	tlsCfg := &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}
	for _, c := range []struct {
		name   string
		setup  func()
		user   string
		pass   string
		client string
		will   string
		want   byte // the v3.1.1 CONNACK code
		want5  byte
	}{
		{"accepted", func() { hset("ok") }, "ok", "pw", "ok", "", 0, 0},
		{"wrong password", func() { hset("wp") }, "wp", "nope", "wp", "", 0x04, 0x86},
		{"unknown user", func() {}, "ghost", "pw", "ghost", "", 0x04, 0x86},
		{"disabled", func() { hset("dis", "enabled", "false") }, "dis", "pw", "dis", "", 0x05, 0x87},
		{"expired", func() { hset("exp", "not_after", "2020-01-01T00:00:00Z") }, "exp", "pw", "exp", "", 0x05, 0x87},
		{"address not allowed", func() { hset("cid", "cidrs", "10.0.0.0/8") }, "cid", "pw", "cid", "", 0x05, 0x87},
		{"client id not allowed", func() { hset("cli") }, "cli", "pw", "other-id", "", 0x02, 0x85},
		{"will topic not allowed", func() { hset("wil") }, "wil", "pw", "wil", "elsewhere/lwt", 0x05, 0x87},
		{"will topic allowed", func() { hset("wok") }, "wok", "pw", "wok", "t/wok/lwt", 0, 0},
		{"banned", func() { hset("ban"); admin.HSet(ctx, "mqtt:ban:user", "ban", `{"reason":"test"}`) }, "ban", "pw", "ban", "", 0x05, 0x87},
		{"malformed rule", func() { hset("mal", "enabled", "maybe") }, "mal", "pw", "mal", "", 0x03, 0x88},
		{"too many failures", func() {
			hset("tmf")
			admin.Set(ctx, "mqtt:fail:user:tmf", 5, time.Minute)
		}, "tmf", "pw", "tmf", "", 0x05, 0x9F},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.setup()
			for _, lv := range []packets.Level{packets.V311, packets.V5} {
				want := map[packets.Level]byte{packets.V311: c.want, packets.V5: c.want5}[lv]
				conn := mqtttest.Creds(lv, c.client, c.user, c.pass)
				if c.will != "" {
					conn.WillFlag, conn.WillTopic, conn.WillPayload = true, c.will, "gone"
				}
				_, ack := dialMQTT(t, listen, tlsCfg, conn)
				if ack.Code != want {
					t.Fatalf("MQTT %v CONNECT: 0x%02X, want 0x%02X", lv, ack.Code, want)
				}
				args := []string{"explain", c.user, "--client-id", c.client, "--protocol", fmt.Sprint(int(lv)), "--password-stdin",
					"--ip", "127.0.0.1", "--json"}
				if c.will != "" {
					args = append(args, "--will", c.will)
				}
				r := runBin(t, env, c.pass+"\n", args...)
				var x explain.Explanation
				if err := json.Unmarshal([]byte(r.stdout), &x); err != nil {
					t.Fatalf("explain --json: %v: %+v", err, r)
				}
				if (r.code == 0) != (want == 0) || x.Allowed != (want == 0) {
					t.Fatalf("MQTT %v: explain exit %d allowed %v, the CONNECT got 0x%02X", lv, r.code, x.Allowed, want)
				}
				if want != 0 {
					got := byte(x.Code)
					if lv != packets.V5 {
						got, _ = x.Code.V3()
					}
					if got != want {
						t.Fatalf("MQTT %v: explain says 0x%02X (%s: %s), the CONNECT got 0x%02X", lv, got, x.Outcome, x.Reason, want)
					}
				}
			}
		})
	}
}

// TestExplainText: the text a person reads: every check in order with its
// verdict, what could not be checked without a password, and which topic
// rule allows a publish or denies a subscribe.
func TestExplainText(t *testing.T) {
	rs := testenv.Redis(t)
	env := map[string]string{"AUTHPROXY_REDIS_URL": testenv.RedisURL(rs)}
	if r := runBin(t, env, "pw\n", "user", "set", "amy", "--publish", "devices/%u/#", "--cidrs", "192.0.2.0/24"); r.code != 0 {
		t.Fatal(r)
	}
	r := runBin(t, env, "", "explain", "amy", "--publish", "devices/amy/x", "--subscribe", "#")
	for _, want := range []string{
		"not checked  password",
		"pass         enabled",
		"not checked  cidrs",
		"pass         clientids",
		"publish devices/amy/x: allowed by devices/%u/# (user)",
		"subscribe #: refused",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("explain lacks %q:\n%s", want, r.stdout)
		}
	}
	if r.code != 1 {
		t.Errorf("a refused subscribe: exit %d, want 1", r.code)
	}
	if r := runBin(t, env, "", "explain", "amy", "--ip", "198.51.100.1"); r.code != 1 || !strings.Contains(r.stdout, "fail         cidrs") ||
		!strings.Contains(r.stdout, "address_not_allowed") {
		t.Errorf("explain from outside the cidrs: %+v", r)
	}
	if r := runBin(t, env, "", "explain", "amy", "--ip", "nope"); r.code != 2 {
		t.Errorf("bad --ip: %+v", r)
	}
	if r := runBin(t, env, "", "explain", "amy", "--ip", "192.0.2.1"); r.code != 0 {
		t.Errorf("allowed: %+v", r)
	}

}

// TestExplainSaysTheReasonOnce: a refusal whose reason is its outcome
// ("disabled") says it once; another reason follows the outcome.
func TestExplainSaysTheReasonOnce(t *testing.T) {
	for _, c := range []struct{ outcome, reason, want string }{
		{"disabled", "disabled", "decision: refused (disabled)\n"},
		{"bad_credentials", "password does not match", "decision: refused (bad_credentials): password does not match\n"},
	} {
		var out bytes.Buffer
		explain.Explanation{Outcome: c.outcome, Reason: c.reason}.Print(&out)
		if !strings.Contains(out.String(), c.want) {
			t.Errorf("explain says:\n%s\nwant the line %q", out.String(), c.want)
		}
	}
}
