package proxy

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/operator"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
)

// pythonPaho is Debian's python3 with python3-paho-mqtt (the python3 on
// PATH may be another installation without it).
func pythonPaho(t *testing.T) string {
	t.Helper()
	const py = "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import paho.mqtt.client").Run(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s with paho.mqtt: %v (.ci/run installs python3-paho-mqtt)", py, err)
		}
		t.Skipf("%s with paho.mqtt not installed: %v", py, err)
	}
	return py
}

// pahoSubscribe subscribes with Debian's python3-paho-mqtt (1.6) over TLS
// and prints the SUBACK's codes, space-separated.
const pahoSubscribe = `
import ssl, sys, paho.mqtt.client as mqtt
host, port, ca, user, pw, cid, proto = sys.argv[1:8]
filters = sys.argv[8:]
v5 = proto == "5"
c = mqtt.Client(client_id=cid, protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311)
c.username_pw_set(user, pw)
c.tls_set(ca_certs=ca)
out = []
def on_connect(client, userdata, flags, rc, properties=None):
    client.subscribe([(f, 1) for f in filters])
def on_subscribe(client, userdata, mid, granted, properties=None):
    out.extend((g.value if hasattr(g, "value") else g) for g in granted)
    client.disconnect()
c.on_connect, c.on_subscribe = on_connect, on_subscribe
c.connect(host, int(port), 30)
c.loop_forever(timeout=5)
print(" ".join(str(x) for x in out))
`

// TestMixedSubscribeRealClients: a SUBSCRIBE of a granted, a refused and a
// granted filter gets its codes in order, as mosquitto_sub, Debian's
// python3-paho-mqtt and paho.golang read them, in MQTT 3.1.1 and 5.
func TestMixedSubscribeRealClients(t *testing.T) {
	h := newHarness(t, harnessOptions{strictTopics: true})
	h.setUser("mix", operator.Update{Password: ptr("pw"), Subscribe: &[]string{"devices/%u/#"}})
	_, port, _ := net.SplitHostPort(h.addr)
	ca := certFile(h.certDir, "ca.pem")
	filters := []string{"devices/mix/a", "devices/other/#", "devices/mix/b/+"}
	want := map[string]string{"3.1.1": "1 128 1", "5": "1 135 1"}

	t.Run("mosquitto_sub", func(t *testing.T) {
		bin := testenv.LookPath(t, "mosquitto_sub")
		for proto, v := range map[string]string{"3.1.1": "mqttv311", "5": "mqttv5"} {
			args := []string{"-h", "localhost", "-p", port, "--cafile", ca, "-u", "mix", "-P", "pw", "-i", "mix:sub", "-V", v,
				"-q", "1", "-d", "-C", "1", "-W", "2"}
			for _, f := range filters {
				args = append(args, "-t", f)
			}
			out, _ := exec.Command(bin, args...).CombinedOutput() // -W ends it with a timeout status
			m := regexp.MustCompile(`Subscribed \(mid: \d+\): ([0-9, ]+)`).FindSubmatch(out)
			if m == nil {
				t.Fatalf("MQTT %s: no SUBACK line in:\n%s", proto, out)
			}
			if got := strings.ReplaceAll(string(m[1]), ",", ""); got != want[proto] {
				t.Errorf("MQTT %s: mosquitto_sub read %q, want %q", proto, got, want[proto])
			}
		}
	})
	t.Run("python3-paho-mqtt", func(t *testing.T) {
		py := pythonPaho(t)
		for proto := range want {
			pv := map[string]string{"3.1.1": "4", "5": "5"}[proto]
			args := append([]string{"-c", pahoSubscribe, "localhost", port, ca, "mix", "pw", "mix:py", pv}, filters...)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			out, err := exec.CommandContext(ctx, py, args...).CombinedOutput()
			cancel()
			if err != nil {
				t.Fatalf("MQTT %s: %v\n%s", proto, err, out)
			}
			if got := strings.TrimSpace(string(out)); got != want[proto] {
				t.Errorf("MQTT %s: paho (Python) read %q, want %q", proto, got, want[proto])
			}
		}
	})
	t.Run("paho.golang", func(t *testing.T) {
		c, ack, _, err := h.connectPaho(h.clientTLS(tls.VersionTLS13), "mix:go", "mix", "pw", nil)
		if err != nil || ack.ReasonCode != 0 {
			t.Fatalf("connect: %v %+v", err, ack)
		}
		var subs []paho.SubscribeOptions
		for _, f := range filters {
			subs = append(subs, paho.SubscribeOptions{Topic: f, QoS: 1})
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: subs})
		// paho.golang reports a refused filter as an error, with the SUBACK.
		if sa == nil {
			t.Fatalf("no SUBACK: %v", err)
		}
		var got []string
		for _, r := range sa.Reasons {
			got = append(got, strconv.Itoa(int(r)))
		}
		if strings.Join(got, " ") != want["5"] {
			t.Errorf("paho.golang read %v, want %q (err %v)", got, want["5"], err)
		}
	})
}
