package app

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/operator"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/mqtttest"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// ended is how a device's session ended: when its connection closed, and
// the DISCONNECT it got first, if any.
type ended struct {
	at         time.Time
	disconnect *packets.Disconnect
}

// holdSessions connects n devices of user (every other one MQTT 5) and
// reads each until its connection closes; the results come on the channel
// returned.
func holdSessions(t *testing.T, a *App, user string, n int) <-chan ended {
	t.Helper()
	out := make(chan ended, n)
	for i := range n {
		level := packets.V311
		if i%2 == 1 {
			level = packets.V5
		}
		c, ack := connectDevice(t, a, level, fmt.Sprintf("%s:%02d", user, i), user, devicePW)
		if ack.Code != 0 {
			t.Fatalf("device %d: 0x%02X", i, ack.Code)
		}
		go func() {
			var e ended
			for {
				_ = c.Conn.SetReadDeadline(time.Now().Add(60 * time.Second))
				h, pkt, err := packets.ReadPacket(c.Conn, 1<<16)
				if err != nil {
					break
				}
				if h.Type == packets.DISCONNECT {
					d, _ := packets.DecodeDisconnect(pkt, level)
					e.disconnect = &d
				}
			}
			e.at = time.Now()
			out <- e
		}()
	}
	return out
}

func collect(t *testing.T, ch <-chan ended, n int) []ended {
	t.Helper()
	var es []ended
	for range n {
		select {
		case e := <-ch:
			es = append(es, e)
		case <-time.After(30 * time.Second):
			t.Fatalf("%d of %d sessions ended", len(es), n)
		}
	}
	slices.SortFunc(es, func(a, b ended) int { return a.at.Compare(b.at) })
	return es
}

// TestDrainPacesShutdown: on shutdown (what SIGTERM does) the sessions end
// one at a time at DRAIN_RATE, the pace the devices see within 10 %; MQTT 5
// devices get DISCONNECT 0x9C with DRAIN_SERVER_REFERENCE, 3.1.1 ones are
// closed. Without DRAIN_RATE the sessions spread over SHUTDOWN_GRACE; and
// SHUTDOWN_GRACE wins over a slow rate: what is left at its end is closed
// then, MQTT 5 with 0x8B without a reference.
func TestDrainPacesShutdown(t *testing.T) {
	redis := testenv.Redis(t)
	broker := testenv.Mosquitto(t, testenv.MosquittoOptions{})
	c := brokerTestConfig(redis, broker.Addr())
	c.DrainRate, c.DrainServerReference, c.ShutdownGrace = "20/s", "other.example:8883", 10*time.Second
	a := startBrokerApp(t, c)
	setUser(t, a, "fleet", operator.Update{})
	const n = 30
	ch := holdSessions(t, a, "fleet", n)
	a.Stop()
	es := collect(t, ch, n)
	pace := float64(n-1) / es[n-1].at.Sub(es[0].at).Seconds()
	t.Logf("%d sessions drained at %.2f/s (DRAIN_RATE 20/s)", n, pace)
	if pace < 18 || pace > 22 {
		t.Fatalf("drained at %.1f sessions/s, DRAIN_RATE 20/s", pace)
	}
	v5 := 0
	for _, e := range es {
		if d := e.disconnect; d != nil {
			v5++
			if ref, ok := d.Properties.Get(packets.PropServerReference); d.Code != packets.UseAnotherServer || !ok || ref.Str != "other.example:8883" {
				t.Fatalf("MQTT 5 drain DISCONNECT: 0x%02X %+v", byte(d.Code), ref)
			}
		}
	}
	if v5 != n/2 {
		t.Fatalf("%d MQTT 5 devices got the DISCONNECT, want %d", v5, n/2)
	}

	c.DrainRate, c.DrainServerReference, c.ShutdownGrace = "0", "", 2*time.Second
	a = startBrokerApp(t, c)
	ch = holdSessions(t, a, "fleet", 20)
	start := time.Now()
	a.Stop()
	es = collect(t, ch, 20)
	if span := es[19].at.Sub(es[0].at); span < 1500*time.Millisecond || es[19].at.Sub(start) > 5*time.Second {
		t.Fatalf("20 sessions over SHUTDOWN_GRACE=2s: ended over %v, the last %v after the start", span, es[19].at.Sub(start))
	}

	c.DrainRate, c.ShutdownGrace = "2/s", time.Second
	a = startBrokerApp(t, c)
	ch = holdSessions(t, a, "fleet", 10)
	start = time.Now()
	a.Stop()
	es = collect(t, ch, 10)
	if last := es[9].at.Sub(start); last > 4*time.Second {
		t.Fatalf("SHUTDOWN_GRACE=1s with DRAIN_RATE=2/s: the last session ended after %v", last)
	}
	for _, e := range es {
		if e.disconnect != nil && e.disconnect.Code != packets.ServerShuttingDown {
			t.Fatalf("without DRAIN_SERVER_REFERENCE: 0x%02X", byte(e.disconnect.Code))
		}
	}
}

// TestConnectRateHoldsAStorm: two replicas share BACKEND_CONNECT_RATE
// through Redis: 40 devices connecting at once, 20 on each, all get in,
// and the broker's log never shows more CONNECTs in a second than the
// rate (one more at a second's edge). Past its deadline a CONNECT is told
// busy: 0x89 in MQTT 5, 0x03 in 3.1.1.
func TestConnectRateHoldsAStorm(t *testing.T) {
	redis := testenv.Redis(t)
	broker := testenv.Mosquitto(t, testenv.MosquittoOptions{})
	c := brokerTestConfig(redis, broker.Addr())
	c.BackendConnectRate = "20/s"
	replicas := []*App{startBrokerApp(t, c), startBrokerApp(t, c)}
	setUser(t, replicas[0], "storm", operator.Update{})
	const n = 40
	var wg sync.WaitGroup
	codes := make(chan byte, n)
	for i := range n {
		wg.Go(func() {
			conn, err := net.DialTimeout("tcp", replicas[i%2].Addrs().Plain.String(), 5*time.Second)
			if err != nil {
				codes <- 0xFF
				return
			}
			defer conn.Close()
			_, ack, err := mqtttest.Connect(conn, mqtttest.Creds(packets.V311, fmt.Sprintf("storm:%02d", i), "storm", devicePW))
			if err != nil {
				codes <- 0xFE
				return
			}
			codes <- ack.Code
		})
	}
	wg.Wait()
	close(codes)
	for code := range codes {
		if code != 0 {
			t.Fatalf("a device of the storm got 0x%02X", code)
		}
	}
	perSecond := map[string]int{}
	total := 0
	for _, line := range broker.OutputLines(" as storm:") {
		sec, _, _ := strings.Cut(line, ":")
		perSecond[sec]++
		total++
	}
	if total != n {
		t.Fatalf("the broker logged %d CONNECTs of the storm, want %d", total, n)
	}
	t.Logf("the broker's CONNECTs of the storm by second: %v", perSecond)
	for sec, k := range perSecond {
		if k > 21 {
			t.Fatalf("%d CONNECTs reached the broker in second %s, BACKEND_CONNECT_RATE 20/s: %v", k, sec, perSecond)
		}
	}
	checkBusy(t, redis, broker)
}

// checkBusy: at 2/s with CONNECT_TIMEOUT 1s, of six CONNECTs at once some
// are answered busy (v5 0x89, 3.1.1 0x03) at their deadline.
func checkBusy(t *testing.T, redis, broker *testenv.Server) {
	t.Helper()
	c := brokerTestConfig(redis, broker.Addr())
	c.BackendConnectRate, c.ConnectTimeout = "2/s", time.Second
	c.RedisKeyPrefix = "busy:" // a rate of its own
	a := startBrokerApp(t, c)
	setUser(t, a, "busy", operator.Update{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := map[string]int{}
	for i := range 6 {
		wg.Go(func() {
			level := []packets.Level{packets.V311, packets.V5}[i%2]
			conn, err := net.DialTimeout("tcp", a.Addrs().Plain.String(), 5*time.Second)
			if err != nil {
				return
			}
			defer conn.Close()
			_, ack, _ := mqtttest.Connect(conn, mqtttest.Creds(level, "busy:"+strconv.Itoa(i), "busy", devicePW))
			mu.Lock()
			got[fmt.Sprintf("v%d 0x%02X", level, ack.Code)]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if got["v4 0x03"] == 0 || got["v5 0x89"] == 0 {
		t.Fatalf("six CONNECTs at once at 2/s within 1 s: %v; want some v5 0x89 and 3.1.1 0x03", got)
	}
}
