package limits

import (
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/relay"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// fakeSession records what its filter tells it.
type fakeSession struct {
	mu        sync.Mutex
	refused   []policy.Limit
	throttled time.Duration
	silent    chan time.Duration
	pings     int
	closed    bool
}

func (s *fakeSession) Refused(l policy.Limit, _ string) {
	s.mu.Lock()
	s.refused = append(s.refused, l)
	s.mu.Unlock()
}
func (s *fakeSession) Throttled(_ policy.Limit, d time.Duration) {
	s.mu.Lock()
	s.throttled += d
	s.mu.Unlock()
}
func (s *fakeSession) Silent(d time.Duration) {
	if s.silent != nil {
		s.silent <- d
	}
}
func (s *fakeSession) WriteBroker([]byte) error {
	s.mu.Lock()
	s.pings++
	s.mu.Unlock()
	return nil
}
func (s *fakeSession) ClientClosed() bool { return s.closed }
func (s *fakeSession) Done() bool         { return false }

// allLimits sets every limit but max_keepalive.
func allLimits() *policy.Limits {
	var ls policy.Limits
	for l, v := range map[policy.Limit]int64{policy.PubRate: 1000000, policy.PubBytes: 1 << 40, policy.MaxPayload: 64,
		policy.MaxQoS: 1, policy.Retain: 0, policy.MaxSubs: 3, policy.MaxSessions: 2} {
		ls.Set(l, v, "user")
	}
	return &ls
}

func newFilter(t testing.TB, level packets.Level, ls *policy.Limits, sess Session) *Filter {
	f := New(ls, Options{Session: sess, Level: level, AskedKeepAlive: 60, KeepAlive: time.Minute})
	t.Cleanup(f.Stop)
	return f
}

// FuzzLimitsFilter: whatever packets a device (Up) or a broker (Down, a
// SUBACK) sends, the limits filter neither panics nor lets a PUBLISH past
// a quota through: one above max_qos or max_payload, or retained, never
// reaches the broker, and no SUBSCRIBE it forwards asks for more than
// max_qos. The seed corpus is testdata/fuzz/FuzzLimitsFilter.
func FuzzLimitsFilter(f *testing.F) {
	for _, seed := range [][]byte{
		append([]byte{5}, publish(packets.V5, 1, false, "t", 10)...),
		append([]byte{4}, publish(packets.V311, 2, false, "t", 10)...),
		append([]byte{4}, publish(packets.V311, 1, true, "t", 100)...),
		{5, 0x82, 10, 0, 1, 0, 0, 3, 'a', '/', 'b', 2, 0x90, 4, 0, 1, 0, 2},
		{4, 0x82, 6, 0, 1, 0, 1, 'a', 2, 0x90, 3, 0, 1, 1, 0x62, 2, 0, 1},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		level := packets.V311
		if data[0]&1 == 1 {
			level = packets.V5
		}
		lf := newFilter(t, level, allLimits(), &fakeSession{})
		for rest := data[1:]; len(rest) > 0; {
			h, err := packets.ParseHeader(rest)
			if err != nil || h.Size() > len(rest) {
				return
			}
			pkt := append([]byte(nil), rest[:h.Size()]...)
			rest = rest[h.Size():]
			if h.Type == packets.SUBACK {
				lf.Down(pkt)
				continue
			}
			checkVerdict(t, level, pkt, lf.Up(pkt))
		}
	})
}

// checkVerdict fails when v lets through what the limits of allLimits
// refuse.
func checkVerdict(t *testing.T, level packets.Level, pkt []byte, v relay.Verdict) {
	if v.Broker == nil {
		return
	}
	switch packets.Type(v.Broker[0] >> 4) {
	case packets.PUBLISH:
		p, err := packets.DecodePublish(v.Broker, level)
		if err == nil && (p.QoS > 1 || p.Retain || len(p.Payload) > 64) {
			t.Fatalf("PUBLISH % x went to the broker past a quota", pkt)
		}
	case packets.SUBSCRIBE:
		s, err := packets.DecodeSubscribe(v.Broker, level)
		for _, sf := range s.Filters {
			if err == nil && sf.Options.QoS() > 1 {
				t.Fatalf("SUBSCRIBE % x went to the broker asking QoS %d", pkt, sf.Options.QoS())
			}
		}
	}
}

// publish is a PUBLISH of n payload bytes.
func publish(level packets.Level, qos byte, retain bool, topic string, n int) []byte {
	p := packets.Publish{QoS: qos, Retain: retain, Topic: []byte(topic), Payload: make([]byte, n)}
	if qos > 0 {
		p.PacketID = 1
	}
	out, _ := packets.AppendPublish(nil, level, &p)
	return out
}

// TestRates: a PUBLISH goes at once while the buckets hold its tokens
// (pub_rate N: a burst of N), the next waits 1/N s; a PUBLISH larger than
// the pub_bytes bucket goes when the bucket is full and leaves it in
// debt; the time waited is counted; a device slowed for a while gets a
// PINGRESP, unless it has shut its side.
func TestRates(t *testing.T) {
	var ls policy.Limits
	ls.Set(policy.PubRate, 10, "user")
	sess := &fakeSession{}
	f := New(&ls, Options{Session: sess, Level: packets.V311, AskedKeepAlive: 2, KeepAlive: 2 * time.Second})
	defer f.Stop()
	msg := publish(packets.V311, 0, false, "t", 5)
	for i := range 10 {
		if v := f.Up(msg); v.Wait != 0 || v.Broker == nil {
			t.Fatalf("PUBLISH %d of the burst of 10: %+v", i, v)
		}
	}
	v := f.Up(msg)
	if v.Wait < 90*time.Millisecond || v.Wait > 110*time.Millisecond {
		t.Fatalf("the 11th PUBLISH waits %v, want about 100 ms", v.Wait)
	}
	if !f.Slowed() || sess.throttled != v.Wait {
		t.Fatalf("slowed %v, throttled %v", f.Slowed(), sess.throttled)
	}

	var lb policy.Limits
	lb.Set(policy.PubBytes, 100, "user")
	g := New(&lb, Options{Session: &fakeSession{}, Level: packets.V311})
	defer g.Stop()
	big := publish(packets.V311, 0, false, "t", 300)
	if v := g.Up(big); v.Wait != 0 {
		t.Fatalf("a PUBLISH larger than a full bucket waits %v, want none", v.Wait)
	}
	if v := g.Up(publish(packets.V311, 0, false, "t", 1)); v.Wait < 2*time.Second {
		t.Fatalf("after 300 bytes under 100 a second (burst 100), the next waits %v, want about 2 s", v.Wait)
	}
}

// TestPingrespToASlowedDevice: a device held back for half its keep
// alive gets a PINGRESP with the verdict that holds it, at most every
// half keep alive; none once it has shut its side.
func TestPingrespToASlowedDevice(t *testing.T) {
	var ls policy.Limits
	ls.Set(policy.PubRate, 1, "user")
	for _, closed := range []bool{false, true} {
		sess := &fakeSession{closed: closed}
		f := New(&ls, Options{Session: sess, Level: packets.V311, AskedKeepAlive: 1, KeepAlive: 100 * time.Millisecond})
		msg := publish(packets.V311, 0, false, "t", 1)
		f.Up(msg) // the burst of 1
		pongs := 0
		deadline := time.Now().Add(300 * time.Millisecond)
		for time.Now().Before(deadline) {
			if v := f.Up(msg); len(v.Client) == 2 && v.Client[0] == byte(packets.PINGRESP)<<4 {
				pongs++
			}
			time.Sleep(10 * time.Millisecond)
		}
		f.Stop()
		if closed && pongs != 0 || !closed && (pongs < 2 || pongs > 7) {
			t.Errorf("client closed %v: %d PINGRESPs in 300 ms slowed with a keep alive of 100 ms", closed, pongs)
		}
	}
}

// TestKeepAliveWatch: a 3.1.1 device that asked for more than
// max_keepalive and then stays silent is reported silent after 1.5 x S
// (and before 2 x S plus a margin); one that keeps sending is not.
func TestKeepAliveWatch(t *testing.T) {
	var ls policy.Limits
	ls.Set(policy.MaxKeepAlive, 1, "user")
	sess := &fakeSession{silent: make(chan time.Duration, 1)}
	start := time.Now()
	f := New(&ls, Options{Session: sess, Level: packets.V311, AskedKeepAlive: 60, KeepAlive: time.Minute})
	defer f.Stop()
	select {
	case s := <-sess.silent:
		if took := time.Since(start); s != time.Second || took < 1500*time.Millisecond {
			t.Fatalf("silent after %v (S %v), want at least 1.5 s", took, s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a silent device was not reported within 5 s")
	}
	talk := &fakeSession{silent: make(chan time.Duration, 1)}
	g := New(&ls, Options{Session: talk, Level: packets.V311, AskedKeepAlive: 0})
	defer g.Stop()
	for range 30 {
		g.Up([]byte{0xC0, 0})
		time.Sleep(100 * time.Millisecond)
	}
	select {
	case <-talk.silent:
		t.Fatal("a device that sent a PINGREQ every 100 ms was reported silent")
	default:
	}
}

// TestConnack: the CONNACK an MQTT 5 device is told its limits in: each
// property no higher than the limit and than the broker's own; nil when
// nothing changes.
func TestConnack(t *testing.T) {
	var ls policy.Limits
	ls.Set(policy.MaxQoS, 1, "user")
	ls.Set(policy.Retain, 0, "user")
	ls.Set(policy.MaxKeepAlive, 30, "user")
	broker := packets.Connack{Properties: packets.Properties{}.With(packets.Property{ID: packets.PropMaximumQoS, Int: 0}).
		With(packets.Property{ID: packets.PropTopicAliasMaximum, Int: 10})}
	out, props := Connack(broker, &ls, 0)
	ack, err := packets.DecodeConnack(out, packets.V5)
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[packets.PropertyID]uint32{packets.PropMaximumQoS: 0, packets.PropRetainAvailable: 0,
		packets.PropServerKeepAlive: 30, packets.PropTopicAliasMaximum: 10} {
		if p, ok := ack.Properties.Get(id); !ok || p.Int != want {
			t.Errorf("property 0x%02X = %d (%v), want %d", byte(id), p.Int, ok, want)
		}
	}
	if string(props) != string(ack.Properties) {
		t.Error("the properties returned are not the CONNACK's")
	}
	if out, _ := Connack(packets.Connack{}, &ls, 20); out == nil {
		t.Error("max_qos and retain lower a CONNACK without properties")
	}
	var none policy.Limits
	none.Set(policy.MaxKeepAlive, 60, "user")
	if out, _ := Connack(packets.Connack{}, &none, 30); out != nil {
		t.Errorf("a keep alive under max_keepalive changed the CONNACK: % x", out)
	}
}

// BenchmarkIdleLimitsMemory reports what limits add to an idle session:
// the limits filter with every limit set after one PUBLISH (its buckets
// made), max_keepalive's watch and its timer, and the chain that holds it
// beside the topic rules' filter (a session with topic rules alone has
// no chain); with no limits, the filter every framed session carries.
// b.N is ignored.
func BenchmarkIdleLimitsMemory(b *testing.B) {
	const n = 10000
	msg := publish(packets.V311, 0, false, "devices/u/telemetry", 1)
	for _, name := range []string{"limits", "no-limits"} {
		b.Run(name, func(b *testing.B) {
			var ls *policy.Limits
			if name == "limits" {
				ls = allLimits()
				ls.Set(policy.MaxPayload, 1<<20, "user")
				ls.Set(policy.MaxKeepAlive, 30, "user")
			}
			sess := &fakeSession{}
			var other relay.Filter = New(nil, Options{Session: sess}) // stands for the topic rules' filter
			keep := make([]relay.Filter, 0, n)
			filters := make([]*Filter, 0, n)
			h0 := inUse()
			for range n {
				f := New(ls, Options{Session: sess, Level: packets.V311, AskedKeepAlive: 60, KeepAlive: time.Minute})
				f.Up(msg)
				keep, filters = append(keep, relay.NewChain(packets.V311, other, f)), append(filters, f)
			}
			b.ReportMetric(float64(inUse()-h0)/n, "bytes/session")
			runtime.KeepAlive(keep)
			for _, f := range filters {
				f.Stop()
			}
		})
	}
}

// inUse is the heap's live bytes after a collection.
func inUse() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}
