package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/decisionlog"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/operator"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/mqtttest"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// TestRefusalSummaryWindow: refusals before CONNECT are written as one
// summary per address and outcome per window, with their count; a lone
// refusal in a later window is written too; an empty window writes
// nothing.
func TestRefusalSummaryWindow(t *testing.T) {
	var l refusalLog
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	add := func(at time.Time, addr, outcome, reason string, times int) {
		for range times {
			l.add(at, netip.MustParseAddr(addr), outcome, reason)
		}
	}
	add(t0, "192.0.2.1", string(OutcomeTLSFailed), "EOF", 5)
	add(t0.Add(time.Second), "192.0.2.1", string(OutcomeRateLimited), "address 192.0.2.1 over CONN_RATE_PER_IP", 3)
	add(t0.Add(2*time.Second), "2001:db8::7", string(OutcomeTLSFailed), "remote error: tls: bad certificate", 2)
	add(t0.Add(2*time.Second), "::ffff:192.0.2.1", string(OutcomeTLSFailed), "EOF", 1) // the same address, mapped
	got := l.take(t0.Add(10 * time.Second))
	want := []struct {
		remote, outcome string
		count           int
		reason          string
	}{
		{"192.0.2.1", string(OutcomeTLSFailed), 6, "6 connections from 192.0.2.1 refused before CONNECT: tls_handshake_failed in the last 10s; the first: EOF"},
		{"192.0.2.1", string(OutcomeRateLimited), 3, "3 connections from 192.0.2.1 refused before CONNECT: rate_limited in the last 10s; the first: address 192.0.2.1 over CONN_RATE_PER_IP"},
		{"2001:db8::7", string(OutcomeTLSFailed), 2, "2 connections from 2001:db8::7 refused before CONNECT: tls_handshake_failed in the last 10s; the first: remote error: tls: bad certificate"},
	}
	if len(got) != len(want) {
		t.Fatalf("%d summaries, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		r := got[i]
		if r.Kind != policy.KindSummary || r.Remote != w.remote || r.Outcome != w.outcome || r.Count != w.count || r.Reason != w.reason ||
			!r.Time.Equal(t0.Add(10*time.Second)) {
			t.Errorf("summary %d: %+v\nwant %+v", i, r, w)
		}
	}
	if got := l.take(t0.Add(20 * time.Second)); got != nil {
		t.Fatalf("an empty window wrote %+v", got)
	}
	// A lone refusal, 3 s before its window is written.
	add(t0.Add(time.Minute), "192.0.2.1", string(OutcomeClosed), "", 1)
	got = l.take(t0.Add(time.Minute + 3*time.Second))
	if len(got) != 1 || got[0].Count != 1 || got[0].Reason != "1 connection from 192.0.2.1 refused before CONNECT: closed_before_connect in the last 3s" {
		t.Fatalf("lone refusal: %+v", got)
	}
}

// TestRefusalSummaryCap: 2,000 addresses refused in one window write
// summaryAddrs summaries one by one, the rest in one "other addresses"
// summary per outcome with the connections and the addresses counted.
func TestRefusalSummaryCap(t *testing.T) {
	var l refusalLog
	now := time.Now()
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}) }
	for i := range 2000 {
		l.add(now, addr(i), string(OutcomeTLSFailed), "EOF")
		l.add(now, addr(i), string(OutcomeTLSFailed), "EOF")
	}
	for i := range 10 {
		l.add(now, addr(i), string(OutcomeBannedIP), "address banned") // past the cap too: pairs not seen yet
	}
	got := l.take(now.Add(10 * time.Second))
	if len(got) != summaryAddrs+2 {
		t.Fatalf("%d summaries, want %d", len(got), summaryAddrs+2)
	}
	for i, r := range got[:summaryAddrs] {
		if r.Remote != addr(i).String() || r.Count != 2 || r.Outcome != string(OutcomeTLSFailed) {
			t.Fatalf("summary %d: %+v", i, r)
		}
	}
	other := got[summaryAddrs]
	if other.Remote != "" || other.Outcome != string(OutcomeTLSFailed) || other.Count != 2*(2000-summaryAddrs) ||
		other.Reason != fmt.Sprintf("%d connections from more than %d other addresses refused before CONNECT: tls_handshake_failed in the last 10s (past the %d addresses summarised one by one); the first: EOF",
			2*(2000-summaryAddrs), summaryOtherAddrs, summaryAddrs) {
		t.Fatalf("other addresses: %+v", other)
	}
	banned := got[summaryAddrs+1]
	if banned.Outcome != string(OutcomeBannedIP) || banned.Count != 10 || !strings.HasPrefix(banned.Reason, "10 connections from 10 other addresses refused before CONNECT: banned_ip") {
		t.Fatalf("other addresses, banned: %+v", banned)
	}
}

// TestRefusalSummariesInTheDecisionLog is the regression test of the
// decision log flood: 200 connections from one address closed or reset
// before their CONNECT (TLS handshakes cut short, handshakes completed then
// closed, connections over CONN_RATE_PER_IP) leave a handful of summaries
// in the stream whose counts add up to the connections refused, not 200
// entries; a CONNECT decided during the flood keeps its own entry, as does
// a malformed one (protocol level 9). The
// summaries are written at Shutdown, before the log is closed, the
// connections Shutdown cuts short included.
func TestRefusalSummariesInTheDecisionLog(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.setUser("victim", operator.Update{Password: ptr("right-pw")})
	dl := h.store.DecisionLog(decisionlog.Options{})
	t.Cleanup(dl.Close)
	m := NewMetrics(nil)
	const burst = 150 // connections of 127.0.0.1 that pass CONN_RATE_PER_IP
	saved := h.cfg
	h.cfg.Recorder, h.cfg.ReplicaID, h.cfg.Metrics = dl, "flooded", m
	h.cfg.ConnRatePerIP, h.cfg.ConnBurstPerIP = 0.001, burst
	p := h.startProxy(h.store)
	h.cfg = saved
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.Serve(l, h.tlsOf(p)) }()
	t.Cleanup(func() { p.Shutdown(context.Background()) })
	addr := l.Addr().String()

	reset := func() {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.(*net.TCPConn).SetLinger(0) // RST
		c.Close()
	}
	tlsConf := h.clientTLS(tls.VersionTLS13)
	handshakeThenClose := func() {
		c, err := tls.Dial("tcp", addr, tlsConf)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	// Of the first burst connections, every fifth completes its handshake
	// then closes, the others are reset during it; the next ones are over
	// the rate.
	const limited = 50
	for i := range burst {
		if i%5 == 4 {
			handshakeThenClose()
		} else {
			reset()
		}
		if i == 75 {
			// A guess during the flood, from another address (its own rate).
			d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
			c, err := tls.DialWithDialer(d, "tcp", addr, tlsConf)
			if err != nil {
				t.Fatal(err)
			}
			if _, ack, err := mqtttest.Connect(c, mqtttest.Creds(packets.V311, "guess-1", "victim", "wrong-pw")); err != nil || ack.Code != 0x04 {
				t.Fatalf("the guess: %+v %v", ack, err)
			}
			c.Close()
			// A CONNECT of protocol level 9: malformed, but a CONNECT.
			c, err = tls.DialWithDialer(d, "tcp", addr, tlsConf)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Write([]byte{0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 9, 2, 0, 60, 0, 1, 'x'}); err != nil {
				t.Fatal(err)
			}
			if ack, err := io.ReadAll(c); err != nil || !bytes.Equal(ack, []byte{0x20, 2, 0, 1}) {
				t.Fatalf("CONNECT of level 9: answered % x, %v", ack, err)
			}
			c.Close()
		}
	}
	for range limited {
		reset()
	}

	preConnect := []string{string(OutcomeTLSFailed), string(OutcomeClosed), string(OutcomeMalformed), string(OutcomeTimeout),
		string(OutcomeRateLimited), string(OutcomeEvicted), string(OutcomeShutdown), string(OutcomeBannedIP), string(OutcomeTooLarge)}
	refused := func() (map[string]int, int) {
		by, total := map[string]int{}, 0
		for _, o := range preConnect {
			if n := int(testutil.ToFloat64(m.Connects.WithLabelValues(o))); n > 0 {
				by[o] = n
				total += n
			}
		}
		return by, total
	}
	const flood = burst + limited
	testenv.WaitFor(t, 30*time.Second, "every connection of the flood to be refused", func() bool {
		_, total := refused()
		return total == flood
	})
	if n := int(testutil.ToFloat64(m.Connects.WithLabelValues(string(OutcomeRateLimited)))); n != limited {
		t.Fatalf("%d connections rate limited, want %d", n, limited)
	}

	// Connections still in their handshake when the proxy shuts down, from
	// another address: the last of them to end writes what is left.
	const silent = 5
	for range silent {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 3)}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
	}
	testenv.WaitFor(t, 10*time.Second, "the silent connections to be pending", func() bool { return p.pending.len() == silent })
	p.Shutdown(context.Background())
	dl.Close()
	want, total := refused()
	if total != flood+silent {
		t.Fatalf("%d connections refused before CONNECT (%v), want %d", total, want, flood+silent)
	}
	if dl.Dropped() != 0 {
		t.Fatalf("%d entries dropped", dl.Dropped())
	}
	got, err := h.store.ReadDecisions(testenv.Context(t), decisionlog.Filter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	counted, summaries, guesses, level9 := map[string]int{}, 0, 0, 0
	for _, r := range got {
		t.Logf("%s %s %s count=%d: %s", r.Kind, r.Remote, r.Outcome, r.Count, r.Reason)
		switch r.Kind {
		case policy.KindSummary:
			summaries++
			if (r.Remote != "127.0.0.1" && r.Remote != "127.0.0.3") || r.Replica != "flooded" || r.Count < 1 ||
				!strings.HasPrefix(r.Reason, fmt.Sprintf("%s from %s refused before CONNECT: %s in the last", connections(r.Count), r.Remote, r.Outcome)) {
				t.Errorf("summary %+v", r)
			}
			counted[r.Outcome] += r.Count
		case "connect":
			switch {
			case r.Outcome == string(OutcomeProtocolVersion) && r.Protocol == 9 && strings.HasPrefix(r.Remote, "127.0.0.2:"):
				level9++
			case r.Username == "victim" && r.ClientID == "guess-1" && r.Outcome == string(policy.BadCredentials) && strings.HasPrefix(r.Remote, "127.0.0.2:"):
				guesses++
			default:
				t.Errorf("decision %+v", r)
			}
		default:
			t.Errorf("entry %+v", r)
		}
	}
	if guesses != 1 || level9 != 1 {
		t.Errorf("%d entries for the guess and %d for the CONNECT of level 9, want one each", guesses, level9)
	}
	// One per address and outcome, or two should the flood straddle a
	// window's end.
	if summaries > 2*(len(want)+1) {
		t.Errorf("%d summaries for %d outcomes (%v)", summaries, len(want), want)
	}
	if fmt.Sprint(counted) != fmt.Sprint(want) {
		t.Errorf("the summaries count %v, the metrics %v", counted, want)
	}
}
