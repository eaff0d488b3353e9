package app

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/operator"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/mqtttest"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// hivemqOf is the index of the HiveMQ whose log shows the client id's
// latest CONNECT ("HIVEMQ CONNECT client=<id> "), -1 for none; counts
// are the CONNECTs seen before.
func hivemqOf(brokers []*testenv.Server, id string, before []int) int {
	for i, b := range brokers {
		if len(b.OutputLines("HIVEMQ CONNECT client="+id+" ")) > before[i] {
			return i
		}
	}
	return -1
}

func hivemqCounts(brokers []*testenv.Server, id string) []int {
	out := make([]int, len(brokers))
	for i, b := range brokers {
		out[i] = len(b.OutputLines("HIVEMQ CONNECT client=" + id + " "))
	}
	return out
}

// persistentDevice connects id with a persistent session (3.1.1, clean
// session 0) and reports the broker it reached and whether its session
// was there.
func persistentDevice(t *testing.T, a *App, brokers []*testenv.Server, id string) (*mqtttest.Client, int, bool) {
	t.Helper()
	before := hivemqCounts(brokers, id)
	conn, err := net.DialTimeout("tcp", a.Addrs().Plain.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	cn := mqtttest.Creds(packets.V311, id, "hq", devicePW)
	cn.CleanStart, cn.KeepAlive = false, 60
	c, ack, err := mqtttest.Connect(conn, cn)
	if err != nil || ack.Code != 0 {
		t.Fatalf("%s: 0x%02X %v", id, ack.Code, err)
	}
	where := -1
	testenv.WaitFor(t, 10*time.Second, id+"'s CONNECT in a HiveMQ log", func() bool { where = hivemqOf(brokers, id, before); return where >= 0 })
	return c, where, ack.SessionPresent
}

// TestTwoHiveMQBrokersWithHash is docs/brokers.md's compose topology run
// for real: two independent HiveMQ CE brokers (CE has no cluster) behind
// the proxy with BACKEND_POLICY=hash. Devices spread over both; a device
// with a persistent session finds it, and the message queued for it
// there, after a restart of the proxy (hash sends it to the same broker);
// its broker killed, it moves to the other (a fresh session), none
// refused once the probe found the broker down.
func TestTwoHiveMQBrokersWithHash(t *testing.T) {
	redis := testenv.Redis(t)
	brokers := []*testenv.Server{testenv.HiveMQ(t), testenv.HiveMQ(t)}
	c := brokerTestConfig(redis, brokers[0].Addr(), brokers[1].Addr())
	a := startBrokerApp(t, c)
	topics := []string{"hq/#"}
	setUser(t, a, "hq", operator.Update{Publish: &topics, Subscribe: &topics})

	per := make([]int, 2)
	for i := range 16 {
		id := fmt.Sprintf("hq:spread-%02d", i)
		before := hivemqCounts(brokers, id)
		d, ack := connectDevice(t, a, packets.V311, id, "hq", devicePW)
		if ack.Code != 0 {
			t.Fatalf("%s: 0x%02X", id, ack.Code)
		}
		testenv.WaitFor(t, 10*time.Second, id+" in a log", func() bool { return hivemqOf(brokers, id, before) >= 0 })
		per[hivemqOf(brokers, id, before)]++
		d.Disconnect()
	}
	if per[0] < 2 || per[1] < 2 {
		t.Fatalf("16 devices over two HiveMQ: %v", per)
	}

	dev, home, _ := persistentDevice(t, a, brokers, "hq:keeper")
	if err := dev.Subscribe("hq/queue", 1); err != nil {
		t.Fatal(err)
	}
	dev.Disconnect()
	// A publisher on the same broker (the proxy's hash puts it where it
	// puts it: publish on the keeper's broker directly).
	pub, err := net.DialTimeout("tcp", brokers[home].Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	pc, _, err := mqtttest.Connect(pub, packets.Connect{ProtocolLevel: packets.V311, CleanStart: true, ClientID: "queue-filler"})
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.Publish("hq/queue", []byte("kept for you"), 1, false); err != nil {
		t.Fatal(err)
	}
	pc.Disconnect()

	a.Stop()
	a = startBrokerApp(t, c) // a restarted proxy
	dev, where, present := persistentDevice(t, a, brokers, "hq:keeper")
	if where != home || !present {
		t.Fatalf("after a restart of the proxy the device reached HiveMQ %d (its session is on %d), session present %v", where, home, present)
	}
	if m, err := dev.ReadPublish(10 * time.Second); err != nil || string(m.Payload) != "kept for you" {
		t.Fatalf("the message queued in its session: %+v %v", m, err)
	}
	dev.Disconnect()

	brokers[home].Stop()
	testenv.WaitFor(t, 10*time.Second, "a probe to find the HiveMQ down", func() bool { return addrState(a, brokers[home].Addr()) == "down" })
	_, where, present = persistentDevice(t, a, brokers, "hq:keeper")
	if where != 1-home || present {
		t.Fatalf("its broker down, the device reached HiveMQ %d (session present %v), want %d with a fresh session", where, present, 1-home)
	}
	if strings.Contains(a.proxy.brokers.Status().Addresses[1-home].State, "down") {
		t.Fatal("the other HiveMQ is down")
	}
}
