package app

import (
	"bytes"
	"context"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/decisionlog"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/operator"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/mqtttest"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// client is a real client process (mosquitto_sub, python3 with paho)
// whose output is read once it has exited.
type client struct {
	cmd *exec.Cmd
	out *testenv.SyncBuffer
	err chan error
}

// runClient starts a client process, killed at the end of the test.
func runClient(t *testing.T, name string, args ...string) *client {
	t.Helper()
	c := &client{cmd: exec.Command(name, args...), out: &testenv.SyncBuffer{}, err: make(chan error, 1)}
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	go func() { c.err <- c.cmd.Wait() }()
	t.Cleanup(func() { _ = c.cmd.Process.Kill() })
	return c
}

// wait returns the client's output once it has exited (within 20 s).
func (c *client) wait(t *testing.T) string {
	t.Helper()
	select {
	case err := <-c.err:
		if err != nil {
			t.Fatalf("%v: %v\n%s", c.cmd.Args, err, c.out.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("%v did not end:\n%s", c.cmd.Args, c.out.String())
	}
	return c.out.String()
}

// proxySub is mosquitto_sub through the proxy's plain listener: count
// messages of filter, printed "topic payload".
func proxySub(t *testing.T, a *App, version, id, user, filter string, count int) *client {
	t.Helper()
	host, port := hostPort(t, a.Addrs().Plain.String())
	return runClient(t, testenv.LookPath(t, "mosquitto_sub"), "-h", host, "-p", port, "-V", version, "-i", id, "-u", user, "-P", devicePW,
		"-t", filter, "-v", "-C", strconv.Itoa(count), "-W", "15", "-q", "1")
}

// brokerSub is mosquitto_sub on a broker itself, behind the proxy's back:
// what the broker really holds.
func brokerSub(t *testing.T, b *testenv.Server, id, filter string, count int) *client {
	t.Helper()
	host, port := hostPort(t, b.Addr())
	c := runClient(t, testenv.LookPath(t, "mosquitto_sub"), "-h", host, "-p", port, "-i", id, "-t", filter, "-v", "-C", strconv.Itoa(count), "-W", "15")
	b.WaitOutput("Received SUBSCRIBE from "+id, 10*time.Second)
	return c
}

// brokerPub publishes on a broker itself.
func brokerPub(t *testing.T, b *testenv.Server, topic, msg string) {
	t.Helper()
	host, port := hostPort(t, b.Addr())
	if out, err := exec.Command(testenv.LookPath(t, "mosquitto_pub"), "-h", host, "-p", port, "-t", topic, "-m", msg, "-q", "1").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub %s: %v %s", topic, err, out)
	}
}

func hostPort(t *testing.T, addr string) (string, string) {
	t.Helper()
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		t.Fatalf("%q", addr)
	}
	return addr[:i], addr[i+1:]
}

// pahoAliases publishes with Debian's python3-paho-mqtt in MQTT 5: a
// PUBLISH that sets topic alias 1 for its topic, then two with the alias
// alone (QoS 1, each acknowledged).
const pahoAliases = `
import sys, time, paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes
host, port, user, pw, cid, topic = sys.argv[1:7]
c = mqtt.Client(client_id=cid, protocol=mqtt.MQTTv5)
c.username_pw_set(user, pw)
c.connect(host, int(port), 30)
c.loop_start()
p = Properties(PacketTypes.PUBLISH)
p.TopicAlias = 1
for i, t in enumerate([topic, "", ""]):
    c.publish(t, "alias-%d" % i, qos=1, properties=p).wait_for_publish(10)
c.disconnect()
c.loop_stop()
print("sent")
`

// TestTenantsAndMountpoints: two real Mosquitto processes, one the
// default pool and one the pool "acme" (BACKEND_POOLS). A user whose
// backend field names acme lands there, with its mountpoint acme/: real
// clients in MQTT 3.1.1 and 5 (mosquitto_sub, mosquitto_pub, python3's
// paho) see their own view (in/x) while the broker holds acme/in/x; a
// message published on the broker outside the mountpoint never reaches
// them; a $share subscription keeps its group in front
// ($share/g/acme/#); a v5 topic alias set and then used alone reaches the
// broker under the mountpoint; the will too. Topic rules judge the
// device's view. A %u mountpoint puts another user under its own name; a
// name holding '/' gets none and is refused (0x05 / 0x87). A backend naming
// a pool that does not exist: 0x03 / 0x88, named in the decision log and
// on the status page.
func TestTenantsAndMountpoints(t *testing.T) {
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import paho.mqtt.client").Run(); err != nil {
		t.Skipf("%s with paho.mqtt: %v", py, err)
	}
	redis := testenv.Redis(t)
	def, acme := testenv.Mosquitto(t, testenv.MosquittoOptions{}), testenv.Mosquitto(t, testenv.MosquittoOptions{})
	c := brokerTestConfig(redis, def.Addr())
	c.BackendPools, c.Status = "acme="+acme.Addr(), true
	a := startBrokerApp(t, c)
	str := func(s string) *string { return &s }
	list := func(s ...string) *[]string { return &s }
	setUser(t, a, "alice", operator.Update{Backend: str("acme"), Mountpoint: str("acme/"), Publish: list("in/#", "t/#"), Subscribe: list("#")})
	setUser(t, a, "bob", operator.Update{Mountpoint: str("%u/"), Publish: list("#"), Subscribe: list("#")})
	setUser(t, a, "x/y", operator.Update{Mountpoint: str("%u/"), Publish: list("#"), ClientIDs: list("*")})
	setUser(t, a, "dave", operator.Update{Backend: str("nope"), Publish: list("#")})

	// The tenant lands on its pool.
	dev, ack := connectDevice(t, a, packets.V311, "alice:dev", "alice", devicePW)
	acme.WaitOutput(" as alice:dev (", 10*time.Second)
	if ack.Code != 0 || strings.Contains(def.Output(), "alice:dev") {
		t.Fatalf("alice's CONNECT: 0x%02X; on the default pool's broker: %v", ack.Code, strings.Contains(def.Output(), "alice:dev"))
	}

	// Deliveries: only what is under the mountpoint, without it.
	host, port := hostPort(t, a.Addrs().Plain.String())
	sub3 := proxySub(t, a, "mqttv311", "alice:sub3", "alice", "#", 2)
	sub5 := proxySub(t, a, "mqttv5", "alice:sub5", "alice", "$share/g/#", 1)
	acme.WaitOutput("alice:sub3 1 acme/#", 10*time.Second)
	acme.WaitOutput("alice:sub5 1 $share/g/acme/#", 10*time.Second)
	brokerPub(t, acme, "outside/secret", "must not arrive")
	brokerPub(t, acme, "acme/in/x", "inside")
	brokerPub(t, acme, "acme/in/y", "inside too")
	out3, out5 := sub3.wait(t), sub5.wait(t)
	if out3 != "in/x inside\nin/y inside too\n" || !strings.HasPrefix(out5, "in/x inside\n") {
		t.Fatalf("3.1.1 subscriber got %q, 5 with $share %q", out3, out5)
	}

	// Publishes: the broker gets them under the mountpoint, aliases
	// included; the topic rules judged the device's view (in/#, t/#).
	watch := brokerSub(t, acme, "watcher", "#", 4)
	if out, err := exec.Command(testenv.LookPath(t, "mosquitto_pub"), "-h", host, "-p", port, "-V", "mqttv311", "-i", "alice:pub", "-u", "alice", "-P", devicePW,
		"-t", "in/from-device", "-m", "hi", "-q", "1").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub through the proxy: %v %s", err, out)
	}
	if out, err := exec.Command(py, "-c", pahoAliases, host, port, "alice", devicePW, "alice:py", "t/alias").CombinedOutput(); err != nil || !bytes.Contains(out, []byte("sent")) {
		t.Fatalf("python3 paho with topic aliases: %v %s", err, out)
	}
	got := watch.wait(t)
	want := "acme/in/from-device hi\nacme/t/alias alias-0\nacme/t/alias alias-1\nacme/t/alias alias-2\n"
	if got != want {
		t.Fatalf("the broker holds %q, want %q", got, want)
	}

	// The will, under the mountpoint.
	willWatch := brokerSub(t, acme, "will-watcher", "acme/in/will", 1)
	wc := packets.Connect{ProtocolLevel: packets.V311, CleanStart: true, ClientID: "alice:will", UsernameFlag: true, Username: "alice",
		PasswordFlag: true, Password: devicePW, WillFlag: true, WillTopic: "in/will", WillPayload: "gone", KeepAlive: 30}
	willDev := rawDevice(t, a, wc)
	acme.WaitOutput(" as alice:will (", 10*time.Second)
	willDev.Close()
	if got := willWatch.wait(t); got != "acme/in/will gone\n" {
		t.Fatalf("the will reached the broker as %q", got)
	}
	dev.Disconnect()

	// %u: bob's topics are under bob/, on the default pool.
	bobWatch := brokerSub(t, def, "bob-watcher", "#", 1)
	if out, err := exec.Command(testenv.LookPath(t, "mosquitto_pub"), "-h", host, "-p", port, "-V", "mqttv5", "-i", "bob:1", "-u", "bob", "-P", devicePW,
		"-t", "status", "-m", "ok", "-q", "1").CombinedOutput(); err != nil {
		t.Fatalf("bob: %v %s", err, out)
	}
	if got := bobWatch.wait(t); got != "bob/status ok\n" {
		t.Fatalf("bob's publish reached the broker as %q", got)
	}

	checkRefusedRoutes(t, a)
}

// checkRefusedRoutes: a %u mountpoint for a name holding '/' is refused;
// a backend naming no pool is refused "server unavailable", named in the
// decision log and on the status page.
func checkRefusedRoutes(t *testing.T, a *App) {
	t.Helper()
	for _, c := range []struct {
		level    packets.Level
		user, id string
		want     byte
	}{
		{packets.V311, "x/y", "x-y-1", 0x05}, {packets.V5, "x/y", "x-y-2", byte(packets.NotAuthorized)},
		{packets.V311, "dave", "dave:1", 0x03}, {packets.V5, "dave", "dave:2", byte(packets.ServerUnavailable)},
	} {
		if _, ack := connectDevice(t, a, c.level, c.id, c.user, devicePW); ack.Code != c.want {
			t.Fatalf("%s v%d: CONNACK 0x%02X, want 0x%02X", c.user, c.level, ack.Code, c.want)
		}
	}
	testenv.WaitFor(t, 10*time.Second, "the decision log to name the pool", func() bool {
		recs, err := a.Store().ReadDecisions(context.Background(), decisionFilter("dave"))
		return err == nil && len(recs) >= 2 && strings.Contains(recs[len(recs)-1].Reason, "nope") && recs[len(recs)-1].Outcome == "backend_pool_unknown"
	})
	if _, body := get(t, "http://"+a.Addrs().Admin.String()+"/status.json"); !strings.Contains(body, `"unknown_pools":[{"name":"nope","count":2`) {
		t.Fatalf("status.json does not list the unknown pool: %s", body)
	}
}

// rawDevice connects c through the App's plain listener and returns the
// connection once the CONNACK accepted it.
func rawDevice(t *testing.T, a *App, c packets.Connect) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", a.Addrs().Plain.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_, ack, err := mqtttest.Connect(conn, c)
	if err != nil || ack.Code != 0 {
		t.Fatalf("%s: 0x%02X %v", c.ClientID, ack.Code, err)
	}
	return conn
}

// decisionFilter selects a user's decisions of the last minute.
func decisionFilter(user string) decisionlog.Filter {
	return decisionlog.Filter{User: user, Since: time.Now().Add(-time.Minute), Limit: 100}
}
