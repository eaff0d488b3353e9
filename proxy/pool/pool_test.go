package pool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
	"github.com/mqtt-authproxy/mqtt-authproxy/proxy"
)

// fakeBroker answers every CONNECT with a CONNACK of code and records the
// client ids and when each CONNECT came (code is an MQTT 5 reason code,
// sent in the CONNECT's version); it can be stopped and started
// again on its port.
type fakeBroker struct {
	t    *testing.T
	addr string
	code byte

	mu       sync.Mutex
	l        net.Listener
	conns    []net.Conn
	clients  []string
	connects []time.Time
}

func newFakeBroker(t *testing.T) *fakeBroker {
	b := &fakeBroker{t: t, addr: fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))}
	b.start()
	t.Cleanup(b.stop)
	return b
}

func (b *fakeBroker) start() {
	l, err := net.Listen("tcp", b.addr)
	if err != nil {
		b.t.Fatal(err)
	}
	b.mu.Lock()
	b.l = l
	b.mu.Unlock()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go b.serve(c)
		}
	}()
}

func (b *fakeBroker) serve(c net.Conn) {
	_, pkt, err := packets.ReadPacket(c, 1<<16)
	if err != nil {
		c.Close()
		return
	}
	cn, err := packets.DecodeConnect(pkt)
	if err != nil {
		c.Close()
		return
	}
	b.mu.Lock()
	b.conns = append(b.conns, c)
	b.clients = append(b.clients, cn.ClientID)
	b.connects = append(b.connects, time.Now())
	code := b.code
	b.mu.Unlock()
	ack, _ := packets.AppendConnack(nil, cn.ProtocolLevel, false, packets.ReasonCode(code), packets.Properties{})
	_, _ = c.Write(ack)
}

// answer sets the code of the CONNACKs from now on.
func (b *fakeBroker) answer(code packets.ReasonCode) {
	b.mu.Lock()
	b.code = byte(code)
	b.mu.Unlock()
}

// stop closes the listener and every connection.
func (b *fakeBroker) stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.l != nil {
		b.l.Close()
		b.l = nil
	}
	for _, c := range b.conns {
		c.Close()
	}
	b.conns = nil
}

// deviceConnects are the CONNECTs of devices (not of probes).
func (b *fakeBroker) deviceConnects() (ids []string, at []time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, id := range b.clients {
		if len(id) < 5 || id[:5] != "mqtt-" {
			ids, at = append(ids, id), append(at, b.connects[i])
		}
	}
	return ids, at
}

func admitted(clientID string) proxy.Admitted {
	return proxy.Admitted{Request: policy.Request{ClientID: clientID},
		Connect: &packets.Connect{ProtocolName: "MQTT", ProtocolLevel: packets.V311, CleanStart: true, ClientID: clientID}}
}

func newSet(t *testing.T, o Options, addrs ...string) *Set {
	t.Helper()
	o.Default = addrs
	o.Backend = func(a string) proxy.Backend { return proxy.Backend{Addr: a, DialTimeout: time.Second} }
	o.Logger = slog.New(slog.DiscardHandler)
	if o.HealthInterval == 0 {
		o.HealthInterval = 100 * time.Millisecond
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

// connectAll connects each client id and returns the address each got.
func connectAll(t *testing.T, s *Set, ids []string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, id := range ids {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		bc, err := s.Connect(ctx, admitted(id))
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		out[id] = bc.Addr
		bc.Release()
		bc.Conn.Close()
	}
	return out
}

func clientIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("device-%04d", i)
	}
	return ids
}

// TestHashKeepsEachDeviceOnItsBroker: rendezvous hashing spreads devices
// over the addresses, gives each the same broker after a restart of the
// proxy (a new Set), moves only the devices of a broker that fails (each
// to another), skips the failed one from its first failure on, and takes
// the devices back once a probe finds it up.
func TestHashKeepsEachDeviceOnItsBroker(t *testing.T) {
	bs := []*fakeBroker{newFakeBroker(t), newFakeBroker(t), newFakeBroker(t)}
	addrs := []string{bs[0].addr, bs[1].addr, bs[2].addr}
	ids := clientIDs(300)
	first := connectAll(t, newSet(t, Options{}, addrs...), ids)
	per := map[string]int{}
	for _, a := range first {
		per[a]++
	}
	for _, a := range addrs {
		if per[a] < 60 {
			t.Fatalf("hash spreads badly: %v", per)
		}
	}
	s := newSet(t, Options{}, addrs...) // a restarted proxy
	if again := connectAll(t, s, ids); !mapsEqual(again, first) {
		t.Fatal("a restarted proxy sends devices to other brokers")
	}
	bs[1].stop()
	moved := connectAll(t, s, ids)
	for _, id := range ids {
		switch {
		case first[id] != addrs[1] && moved[id] != first[id]:
			t.Fatalf("%s moved from %s to %s, though its broker is healthy", id, first[id], moved[id])
		case first[id] == addrs[1] && moved[id] == addrs[1]:
			t.Fatalf("%s stayed on the dead broker", id)
		}
	}
	// One failed CONNECT (or a probe before it) marks the address down;
	// the others skip it.
	if st := s.Status(); st.Addresses[1].State != "down" || st.Addresses[1].Failures > 1 {
		t.Fatalf("the dead address: %+v", st.Addresses[1])
	}
	bs[1].start()
	testenv.WaitFor(t, 5*time.Second, "a probe finds the broker up", func() bool { return s.Status().Addresses[1].State == "up" })
	if back := connectAll(t, s, ids); !mapsEqual(back, first) {
		t.Fatal("devices did not go back to their broker once it was up")
	}
}

func mapsEqual(a, b map[string]string) bool {
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

// TestFirstAndLeast: first takes the addresses in order, the next on
// failure; least the one with the fewest sessions of this replica, a
// session counted until its release.
func TestFirstAndLeast(t *testing.T) {
	a, b := newFakeBroker(t), newFakeBroker(t)
	s := newSet(t, Options{Policy: First}, a.addr, b.addr)
	if got := connectAll(t, s, clientIDs(5)); got["device-0003"] != a.addr {
		t.Fatalf("first: %v", got)
	}
	a.stop()
	if got := connectAll(t, s, clientIDs(5)); got["device-0003"] != b.addr {
		t.Fatalf("first, the first down: %v", got)
	}
	a.start()
	l := newSet(t, Options{Policy: Least}, a.addr, b.addr)
	testenv.WaitFor(t, 5*time.Second, "both up", func() bool { return l.Ready(context.Background()) == nil })
	var held []*proxy.BrokerConn
	per := map[string]int{}
	for _, id := range clientIDs(10) {
		bc, err := l.Connect(context.Background(), admitted(id))
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, bc)
		per[bc.Addr]++
	}
	if per[a.addr] != 5 || per[b.addr] != 5 {
		t.Fatalf("least: %v", per)
	}
	for _, bc := range held[:5] {
		if bc.Addr == a.addr {
			bc.Release()
			bc.Release() // a second release counts nothing
		}
	}
	if st := l.Status(); st.Addresses[0].Sessions+st.Addresses[1].Sessions != 10-countAddr(held[:5], a.addr) {
		t.Fatalf("sessions after releases: %+v", st.Addresses)
	}
}

func countAddr(bcs []*proxy.BrokerConn, addr string) int64 {
	var n int64
	for _, bc := range bcs {
		if bc.Addr == addr {
			n++
		}
	}
	return n
}

// TestBrokerAnsweringUnavailableIsSkipped: a broker that answers "server
// unavailable" counts as failed and the CONNECT goes to the next; another
// refusal (not authorized) is the session's answer.
func TestBrokerAnsweringUnavailableIsSkipped(t *testing.T) {
	a, b := newFakeBroker(t), newFakeBroker(t)
	a.answer(packets.ServerUnavailable) // 3.1.1: 0x03
	s := newSet(t, Options{Policy: First}, a.addr, b.addr)
	if got := connectAll(t, s, clientIDs(1)); got["device-0000"] != b.addr {
		t.Fatalf("%v", got)
	}
	b.answer(packets.NotAuthorized) // 3.1.1: 0x05
	bc, err := s.Connect(context.Background(), admitted("x"))
	if err != nil || bc.Connack.Code != 0x05 || bc.Addr != b.addr {
		t.Fatalf("a broker's refusal is the session's answer: %+v %v", bc, err)
	}
}

// TestUnknownPool: a decision naming a pool that does not exist is
// refused with proxy.ErrUnknownPool, naming it, and the status lists it;
// a named pool gets its own addresses.
func TestUnknownPool(t *testing.T) {
	def, tenant := newFakeBroker(t), newFakeBroker(t)
	s := newSet(t, Options{Pools: map[string][]string{"acme": {tenant.addr}}}, def.addr)
	a := admitted("d")
	a.Decision.Backend = "acme"
	bc, err := s.Connect(context.Background(), a)
	if err != nil || bc.Addr != tenant.addr {
		t.Fatalf("tenant pool: %+v %v", bc, err)
	}
	a.Decision.Backend = "nope"
	_, err = s.Connect(context.Background(), a)
	if !errors.Is(err, proxy.ErrUnknownPool) || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("unknown pool: %v", err)
	}
	if st := s.Status(); len(st.UnknownPools) != 1 || st.UnknownPools[0].Name != "nope" || st.UnknownPools[0].Count != 1 {
		t.Fatalf("status: %+v", st.UnknownPools)
	}
	if _, err := New(Options{Default: []string{def.addr}, Pools: map[string][]string{"default": {def.addr}}, Backend: func(string) proxy.Backend { return proxy.Backend{} }}); err == nil {
		t.Fatal(`a pool named "default"`)
	}
}

// TestReady: the default pool is ready once a probe finds an address up,
// and not once every address is down; /readyz never dials.
func TestReady(t *testing.T) {
	b := newFakeBroker(t)
	s := newSet(t, Options{}, b.addr)
	testenv.WaitFor(t, 5*time.Second, "ready", func() bool { return s.Ready(context.Background()) == nil })
	b.stop()
	testenv.WaitFor(t, 5*time.Second, "not ready", func() bool { return s.Ready(context.Background()) != nil })
}

// TestConnectRate: CONNECTs to an address are paced to the rate, none
// refused while their deadline allows the wait; known devices go first;
// past its deadline a CONNECT gets proxy.ErrBrokersBusy.
func TestConnectRate(t *testing.T) {
	b := newFakeBroker(t)
	const rate, n = 20, 30
	s := newSet(t, Options{Rate: rate}, b.addr)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			a := admitted(fmt.Sprintf("r-%02d", i))
			a.Decision.Known = i%3 == 0
			bc, err := s.Connect(ctx, a)
			if err == nil {
				bc.Conn.Close()
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	_, at := b.deviceConnects()
	if len(at) != n {
		t.Fatalf("%d CONNECTs reached the broker, want %d", len(at), n)
	}
	slices.SortFunc(at, func(x, y time.Time) int { return x.Compare(y) })
	if span, least := at[n-1].Sub(at[0]), time.Duration(float64(n-1)/rate*0.9*float64(time.Second)); span < least {
		t.Fatalf("%d CONNECTs in %v: faster than %d/s", n, span, rate)
	}
	slow := newSet(t, Options{Rate: 2}, b.addr)
	var busy atomic.Int64
	for i := range 4 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
			defer cancel()
			if _, err := slow.Connect(ctx, admitted(fmt.Sprintf("b-%d", i))); errors.Is(err, proxy.ErrBrokersBusy) {
				busy.Add(1)
			}
		})
	}
	wg.Wait()
	if busy.Load() == 0 || slow.Status().Addresses[0].Busy != busy.Load() {
		t.Fatalf("4 CONNECTs at once, 2/s, deadline 0.7 s: %d refused busy (status %d)", busy.Load(), slow.Status().Addresses[0].Busy)
	}
}

// TestKnownDevicesFirst: while CONNECTs wait for the rate, a known device
// that comes last is served before the unknown ones waiting.
func TestKnownDevicesFirst(t *testing.T) {
	b := newFakeBroker(t)
	s := newSet(t, Options{Rate: 5}, b.addr)
	var wg sync.WaitGroup
	start := func(id string, known bool) {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			a := admitted(id)
			a.Decision.Known = known
			if bc, err := s.Connect(ctx, a); err == nil {
				bc.Conn.Close()
			}
		})
	}
	for i := range 6 {
		start(fmt.Sprintf("unknown-%d", i), false)
	}
	testenv.WaitFor(t, 5*time.Second, "the first CONNECT served", func() bool { ids, _ := b.deviceConnects(); return len(ids) >= 1 })
	start("known", true)
	wg.Wait()
	ids, _ := b.deviceConnects()
	if i := slices.Index(ids, "known"); i < 0 || i > 2 {
		t.Fatalf("the known device was served %dth: %v", i+1, ids)
	}
}

// BenchmarkChoose: what a pool adds to a CONNECT beside the broker's own
// dial: ordering the addresses (one address; three with hash) and
// counting the session on its broker and back.
func BenchmarkChoose(b *testing.B) {
	for _, n := range []int{1, 3} {
		b.Run(fmt.Sprintf("%d-addresses", n), func(b *testing.B) {
			var addrs []string
			for i := range n {
				addrs = append(addrs, fmt.Sprintf("10.0.0.%d:1883", i+1))
			}
			s, err := New(Options{Default: addrs, Backend: func(a string) proxy.Backend { return proxy.Backend{Addr: a} }})
			if err != nil {
				b.Fatal(err)
			}
			ids := clientIDs(1024)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				m := s.def.order(ids[i%len(ids)])[0]
				bc := &proxy.BrokerConn{}
				m.took(bc)
				bc.Release()
				i++
			}
		})
	}
}
