package proxy

import (
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// arrivals records the PUBLISHes a subscriber receives through the proxy,
// with when each came.
type arrivals struct {
	mu    sync.Mutex
	got   map[string]int // payload -> times received
	times []time.Time
}

// subscribeArrivals subscribes an unlimited user to filter at QoS 1 and
// records what arrives until the test ends.
func (h *harness) subscribeArrivals(filter string) *arrivals {
	h.t.Helper()
	h.limitUser("watcher", nil)
	sub, _ := h.connectLevel("watcher", "watcher", packets.V311, 60)
	if err := sub.Subscribe(filter, 1); err != nil {
		h.t.Fatal(err)
	}
	a := &arrivals{got: map[string]int{}}
	go func() {
		for {
			m, err := sub.ReadPublish(time.Minute)
			if err != nil {
				return
			}
			a.mu.Lock()
			a.got[string(m.Payload)]++
			a.times = append(a.times, time.Now())
			a.mu.Unlock()
		}
	}()
	return a
}

// check waits for the n payloads want(i) and checks that none was lost or
// doubled, and that by each arrival at most burst + rate x elapsed (plus
// margin) had arrived since start: the rate was held.
func (a *arrivals) check(t *testing.T, start time.Time, n int, want func(int) string, rate, burst float64) {
	t.Helper()
	testenv.WaitFor(t, time.Duration((float64(n)/rate*3+10)*float64(time.Second)), fmt.Sprintf("%d messages", n), func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return len(a.times) >= n
	})
	time.Sleep(100 * time.Millisecond) // a message too many would show now
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := range n {
		if c := a.got[want(i)]; c != 1 {
			t.Errorf("message %q received %d times", want(i), c)
		}
	}
	if len(a.times) != n {
		t.Errorf("%d messages received, %d sent", len(a.times), n)
	}
	const margin = 3 // messages
	for i, at := range a.times {
		allowed := burst + rate*at.Sub(start).Seconds() + margin
		if float64(i+1) > allowed {
			t.Fatalf("%d messages delivered %v after the start: more than the burst %v plus %v a second (+%d)", i+1, at.Sub(start), burst, rate, margin)
		}
	}
}

// TestPubRateFloodRealClients: a device flooding QoS 0 and QoS 1
// PUBLISHes at pub_rate 20 (mosquitto_pub -l, in front of Mosquitto; and
// Debian's python3-paho-mqtt, in front of HiveMQ CE) is slowed, not cut:
// every message arrives once, and never more than the burst plus 20 a
// second (a margin of 3). pub_bytes holds bytes the same way.
func TestPubRateFloodRealClients(t *testing.T) {
	pub := testenv.LookPath(t, "mosquitto_pub")
	h := newHarness(t, harnessOptions{})
	_, port, _ := net.SplitHostPort(h.addr)
	ca := certFile(h.certDir, "ca.pem")
	h.limitUser("flood", map[string]string{"pub_rate": "20"})
	a := h.subscribeArrivals("flood/#")
	for _, qos := range []string{"0", "1"} {
		t.Run("mosquitto_pub qos "+qos, func(t *testing.T) {
			const n = 100
			want := func(i int) string { return fmt.Sprintf("q%s-%03d", qos, i) }
			var lines strings.Builder
			for i := range n {
				lines.WriteString(want(i) + "\n")
			}
			a.reset()
			cmd := exec.Command(pub, "-h", "localhost", "-p", port, "--cafile", ca, "-u", "flood", "-P", "pw", "-i", "flood",
				"-V", "mqttv311", "-q", qos, "-t", "flood/"+qos, "-l")
			cmd.Stdin = strings.NewReader(lines.String())
			start := time.Now()
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("mosquitto_pub: %v\n%s", err, out)
			}
			a.check(t, start, n, want, 20, 20)
		})
	}
	t.Run("pub_bytes", func(t *testing.T) {
		h.limitUser("bytes", map[string]string{"pub_bytes": "10000"})
		payload := strings.Repeat("b", 995)
		const n = 40 // 40,000 bytes at 10,000 a second: 3 s past the burst
		want := func(i int) string { return fmt.Sprintf("%s%05d", payload, i) }
		var lines strings.Builder
		for i := range n {
			lines.WriteString(want(i) + "\n")
		}
		a.reset()
		cmd := exec.Command(pub, "-h", "localhost", "-p", port, "--cafile", ca, "-u", "bytes", "-P", "pw", "-i", "bytes",
			"-q", "1", "-t", "flood/bytes", "-l")
		cmd.Stdin = strings.NewReader(lines.String())
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_pub: %v\n%s", err, out)
		}
		a.check(t, start, n, want, 10, 10) // 1,000-byte messages: 10 a second, burst 10
	})
}

func (a *arrivals) reset() {
	a.mu.Lock()
	a.got, a.times = map[string]int{}, nil
	a.mu.Unlock()
}

// pahoFlood publishes n QoS qos messages "p<i>" as fast as
// python3-paho-mqtt queues them, with keep alive ka, over TLS, then
// waits until every one is written (QoS 1: acknowledged) and linger
// seconds more, connected, and disconnects; it prints "done" on success,
// else how the connection was lost.
const pahoFlood = `
import ssl, sys, time, paho.mqtt.client as mqtt
host, port, ca, user, pw, cid, proto, qos, n, ka, topic, linger = sys.argv[1:13]
qos, n, ka, linger = int(qos), int(n), int(ka), float(linger)
c = mqtt.Client(client_id=cid, protocol=mqtt.MQTTv5 if proto == "5" else mqtt.MQTTv311)
c.username_pw_set(user, pw)
c.tls_set(ca_certs=ca)
# paho 1.6 does not honour a v5 broker's Receive Maximum (HiveMQ CE's is
# 10): past it HiveMQ disconnects with 0x93, proxy or not.
c.max_inflight_messages_set(10)
lost = []
def on_disconnect(client, userdata, rc, properties=None):
    lost.append(str(rc))
c.on_disconnect = on_disconnect
c.connect(host, int(port), ka)
c.loop_start()
infos = [c.publish(topic, "p%03d" % i, qos) for i in range(n)]
deadline = time.time() + 120
for i in infos:
    while not i.is_published() and not lost and time.time() < deadline:
        time.sleep(0.01)
end = time.time() + linger
while not lost and time.time() < end:
    time.sleep(0.05)
if lost:
    print("lost", lost)
    sys.exit(1)
c.disconnect()
c.loop_stop()
print("done")
`

// TestPubRateFloodPahoKeepAlive: python3-paho-mqtt floods QoS 0 and
// QoS 1 at pub_rate 20 with a keep alive of 2 s, in front of HiveMQ CE,
// and stays connected until its messages have gone: the device is held
// back for several keep alives while its PINGREQ sits behind the
// PUBLISHes the proxy does not read yet (QoS 0 brings it nothing else);
// the PINGRESPs the proxy answers a slowed device keep paho from timing
// out, every message arrives once, and the rate holds.
func TestPubRateFloodPahoKeepAlive(t *testing.T) {
	py := pythonPaho(t)
	h := newHarness(t, harnessOptions{backend: "hivemq"})
	_, port, _ := net.SplitHostPort(h.addr)
	ca := certFile(h.certDir, "ca.pem")
	h.limitUser("pflood", map[string]string{"pub_rate": "20"})
	a := h.subscribeArrivals("pflood/#")
	for _, c := range []struct{ proto, qos string }{{"3.1.1", "0"}, {"5", "1"}} {
		t.Run(c.proto+" qos "+c.qos, func(t *testing.T) {
			const n = 120 // 5 s past the burst: 2.5 keep alives
			a.reset()
			start := time.Now()
			out, err := exec.Command(py, "-c", pahoFlood, "localhost", port, ca, "pflood", "pw", "pflood", c.proto, c.qos,
				fmt.Sprint(n), "2", "pflood/"+c.qos, "6").CombinedOutput()
			if err != nil || !strings.Contains(string(out), "done") {
				t.Fatalf("paho: %v\n%s", err, out)
			}
			a.check(t, start, n, func(i int) string { return fmt.Sprintf("p%03d", i) }, 20, 20)
		})
	}
}
