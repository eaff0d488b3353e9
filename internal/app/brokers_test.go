package app

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/operator"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/passwords"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/mqtttest"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// brokerTestConfig is a configuration on a plain loopback listener in
// front of the brokers at addrs, probed every 200 ms.
func brokerTestConfig(redis *testenv.Server, addrs ...string) Config {
	c := Defaults()
	c.Listen, c.MetricsListen, c.PlainListen = "off", "127.0.0.1:0", "127.0.0.1:0"
	c.RedisURL, c.BackendAddr, c.ShutdownGrace = testenv.RedisURL(redis), strings.Join(addrs, " "), time.Second
	c.BackendHealthInterval = 200 * time.Millisecond
	return c
}

// startBrokerApp starts an App, stopped at the end of the test (its log
// printed if the test failed).
func startBrokerApp(t *testing.T, c Config) *App {
	t.Helper()
	logs := &testenv.SyncBuffer{}
	a := startApp(t, c, logs)
	t.Cleanup(func() {
		a.Stop()
		if t.Failed() {
			t.Logf("proxy log:\n%s", logs.String())
		}
	})
	return a
}

// connectDevice connects a device through the App's plain listener.
func connectDevice(t *testing.T, a *App, level packets.Level, clientID, user, pass string) (*mqtttest.Client, packets.Connack) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", a.Addrs().Plain.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c, ack, err := mqtttest.Connect(conn, mqtttest.Creds(level, clientID, user, pass))
	if err != nil {
		conn.Close()
		t.Fatalf("%s: %v", clientID, err)
	}
	t.Cleanup(func() { conn.Close() })
	return c, ack
}

// connectedTimes counts, per broker, the CONNECTs of each client id its
// log shows ("New client connected from ... as <id> (").
func connectedTimes(brokers []*testenv.Server, ids []string) []map[string]int {
	out := make([]map[string]int, len(brokers))
	for i, b := range brokers {
		log := b.Output()
		out[i] = map[string]int{}
		for _, id := range ids {
			out[i][id] = strings.Count(log, " as "+id+" (")
		}
	}
	return out
}

// reconnect connects every id once (each connection closed after its
// CONNACK) and returns, for each accepted id, the index of the broker
// whose log gained its CONNECT, and how many were refused.
func reconnect(t *testing.T, a *App, brokers []*testenv.Server, user string, ids []string) (where map[string]int, refused int) {
	t.Helper()
	before := connectedTimes(brokers, ids)
	var accepted []string
	for _, id := range ids {
		c, ack := connectDevice(t, a, packets.V311, id, user, devicePW)
		if ack.Code != 0 {
			refused++
		} else {
			accepted = append(accepted, id)
		}
		c.Disconnect()
	}
	where = map[string]int{}
	testenv.WaitFor(t, 10*time.Second, "the brokers to log every CONNECT", func() bool {
		after := connectedTimes(brokers, accepted)
		for _, id := range accepted {
			where[id] = -1
			for i := range brokers {
				if after[i][id] > before[i][id] {
					where[id] = i
				}
			}
			if where[id] < 0 {
				return false
			}
		}
		return true
	})
	return where, refused
}

// devicePW is the test devices' password, stored as a generated secret's
// cheap hash.
const devicePW = "test-device-secret-0123456789"

func fleetIDs(user string, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s:dev-%02d", user, i)
	}
	return ids
}

func setUser(t *testing.T, a *App, name string, u operator.Update) {
	t.Helper()
	if u.Password == nil {
		h := passwords.HashGenerated(devicePW) // verified at once: no hash queue in the way
		u.PasswordHash = &h
	}
	if err := a.Store().SetUser(context.Background(), name, u); err != nil {
		t.Fatal(err)
	}
}

// TestBrokerPoolFailover: three real Mosquitto processes behind one
// BACKEND_ADDR with BACKEND_POLICY=hash. Devices spread over the three; a
// restarted proxy sends each to the same broker (its persistent session
// is there); one broker killed, its devices move to the others while the
// others' stay, and no CONNECT is refused once a probe has found it down
// (those before, on loopback, are not either: the dial fails at once and
// moves on); the status page and /readyz show the address down and the
// pool ready; brought back, it takes its devices again.
func TestBrokerPoolFailover(t *testing.T) {
	redis := testenv.Redis(t)
	brokers := []*testenv.Server{testenv.Mosquitto(t, testenv.MosquittoOptions{}), testenv.Mosquitto(t, testenv.MosquittoOptions{}),
		testenv.Mosquitto(t, testenv.MosquittoOptions{})}
	c := brokerTestConfig(redis, brokers[0].Addr(), brokers[1].Addr(), brokers[2].Addr())
	c.Status = true
	a := startBrokerApp(t, c)
	setUser(t, a, "fleet", operator.Update{})
	ids := fleetIDs("fleet", 30)
	first, refused := reconnect(t, a, brokers, "fleet", ids)
	per := make([]int, 3)
	for _, i := range first {
		per[i]++
	}
	if refused != 0 || per[0] < 3 || per[1] < 3 || per[2] < 3 {
		t.Fatalf("30 devices over three brokers: %v, %d refused", per, refused)
	}

	a.Stop()
	a = startBrokerApp(t, c) // a restarted proxy
	if again, _ := reconnect(t, a, brokers, "fleet", ids); !sameWhere(again, first) {
		t.Fatalf("after a restart of the proxy: %v, before %v", again, first)
	}

	brokers[1].Stop()
	moved, refusedAtOnce := reconnect(t, a, brokers, "fleet", ids)
	checkMoved(t, first, moved, 1)
	testenv.WaitFor(t, 5*time.Second, "a probe to find the broker down", func() bool { return addrState(a, brokers[1].Addr()) == "down" })
	moved, refused = reconnect(t, a, brokers, "fleet", ids)
	checkMoved(t, first, moved, 1)
	if refused != 0 || refusedAtOnce != 0 {
		t.Fatalf("CONNECTs refused with a broker down: %d before its first probe, %d after", refusedAtOnce, refused)
	}
	if code, body := get(t, "http://"+a.Addrs().Admin.String()+"/readyz"); code != 200 {
		t.Fatalf("/readyz with one broker of three down: %d %s", code, body)
	}
	if _, body := get(t, "http://"+a.Addrs().Admin.String()+"/status.json"); !strings.Contains(body, `"address":"`+brokers[1].Addr()+`","pools":["default"],"state":"down"`) {
		t.Fatalf("status.json does not show the address down: %s", body)
	}

	brokers[1].Start()
	testenv.WaitFor(t, 5*time.Second, "a probe to find the broker up", func() bool { return addrState(a, brokers[1].Addr()) == "up" })
	if back, _ := reconnect(t, a, brokers, "fleet", ids); !sameWhere(back, first) {
		t.Fatalf("the broker is back, its devices are not: %v, first %v", back, first)
	}
}

func sameWhere(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// checkMoved: the devices of the dead broker moved, the others did not.
func checkMoved(t *testing.T, first, now map[string]int, dead int) {
	t.Helper()
	for id, i := range first {
		switch {
		case i != dead && now[id] != i:
			t.Fatalf("%s moved from broker %d to %d, though its broker is up", id, i, now[id])
		case i == dead && now[id] == dead:
			t.Fatalf("%s is still on the dead broker", id)
		}
	}
}

// addrState is the pools' view of an address: up, down or unknown.
func addrState(a *App, addr string) string {
	for _, s := range a.proxy.brokers.Status().Addresses {
		if s.Address == addr {
			return s.State
		}
	}
	return ""
}

// TestReadyzFollowsTheDefaultPool: /readyz is ready while an address of
// the default pool is up, as the probes found it, and not once none is.
func TestReadyzFollowsTheDefaultPool(t *testing.T) {
	redis := testenv.Redis(t)
	broker := testenv.Mosquitto(t, testenv.MosquittoOptions{})
	a := startBrokerApp(t, brokerTestConfig(redis, broker.Addr()))
	readyz := "http://" + a.Addrs().Admin.String() + "/readyz"
	testenv.WaitFor(t, 10*time.Second, "ready", func() bool { code, _ := get(t, readyz); return code == 200 })
	broker.Stop()
	testenv.WaitFor(t, 15*time.Second, "not ready", func() bool { code, _ := get(t, readyz); return code == 503 })
	broker.Start()
	testenv.WaitFor(t, 15*time.Second, "ready again", func() bool { code, _ := get(t, readyz); return code == 200 })
}
