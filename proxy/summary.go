package proxy

// Connections refused before a CONNECT (over CONN_RATE_PER_IP, a banned
// address, a failed handshake, closed or timed out before their CONNECT,
// evicted from the pending set, a PROXY header or a WebSocket upgrade
// refused...) cost a client nothing but a TCP connection: one entry each
// let a single client flush the decision log in seconds, and the evidence
// of a guessing run or a revocation with it. The decision log takes them as
// summaries instead: one entry per source address and outcome per window,
// with the count. An attempt that sent a CONNECT (decoded, or malformed past
// its protocol level) is a decision and keeps its entry.

import (
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

const (
	// summaryAddrs is the global cap: at most this many (address,
	// outcome) pairs are summarised one by one in a window (5 a second
	// on average). A window's refusals past it, from pairs it has not
	// seen yet, are counted together in one "other addresses" entry per
	// outcome, so that 2,000 addresses write at most summaryAddrs entries
	// plus one per outcome (there are a handful), not 2,000.
	summaryAddrs = 50
	// summaryOtherAddrs bounds the distinct addresses an "other addresses"
	// entry counts (its count of connections has no bound).
	summaryOtherAddrs = 1000
)

// refusalKey is one source address and outcome.
type refusalKey struct {
	addr    netip.Addr
	outcome string
}

// refusalCount is what a window knows of one address and outcome, or of
// the other addresses of one outcome.
type refusalCount struct {
	n     int
	first string // the first refusal's reason
	// For the other addresses: the distinct ones seen, up to
	// summaryOtherAddrs, and whether more came.
	addrs map[netip.Addr]struct{}
	more  bool
}

// refusalWindow counts the refusals since the last summaries. Its memory
// is bounded whatever comes: summaryAddrs pairs, plus per outcome at most
// summaryOtherAddrs addresses.
type refusalWindow struct {
	start      time.Time
	byAddr     map[refusalKey]*refusalCount
	order      []refusalKey // byAddr's keys, in the order they came
	other      map[string]*refusalCount
	otherOrder []string // other's keys, in the order they came
}

func newRefusalWindow(start time.Time) *refusalWindow {
	return &refusalWindow{start: start, byAddr: map[refusalKey]*refusalCount{}, other: map[string]*refusalCount{}}
}

func (w *refusalWindow) add(addr netip.Addr, outcome, reason string) {
	k := refusalKey{addr, outcome}
	if c := w.byAddr[k]; c != nil {
		c.n++
		return
	}
	if len(w.byAddr) < summaryAddrs {
		w.byAddr[k] = &refusalCount{n: 1, first: reason}
		w.order = append(w.order, k)
		return
	}
	c := w.other[outcome]
	if c == nil {
		c = &refusalCount{first: reason, addrs: map[netip.Addr]struct{}{}}
		w.other[outcome] = c
		w.otherOrder = append(w.otherOrder, outcome)
	}
	c.n++
	if _, seen := c.addrs[addr]; !seen {
		if len(c.addrs) < summaryOtherAddrs {
			c.addrs[addr] = struct{}{}
		} else {
			c.more = true
		}
	}
}

// records are the window's summaries at now: one per address and outcome,
// then one per outcome for the other addresses.
func (w *refusalWindow) records(now time.Time) []policy.Record {
	// The span, in whole seconds rounded up: "in the last 10s".
	span := max(now.Sub(w.start), 0)
	span = max((span+time.Second-1)/time.Second*time.Second, time.Second)
	out := make([]policy.Record, 0, len(w.order)+len(w.otherOrder))
	for _, k := range w.order {
		c := w.byAddr[k]
		from := "unknown address"
		if k.addr.IsValid() {
			from = k.addr.String()
		}
		out = append(out, policy.Record{Time: now, Kind: policy.KindSummary, Remote: from, Outcome: k.outcome, Count: c.n,
			Reason: fmt.Sprintf("%s from %s refused before CONNECT: %s in the last %s%s", connections(c.n), from, k.outcome, span, firstReason(c))})
	}
	for _, o := range w.otherOrder {
		c := w.other[o]
		addrs := fmt.Sprint(len(c.addrs))
		if c.more {
			addrs = "more than " + addrs
		}
		out = append(out, policy.Record{Time: now, Kind: policy.KindSummary, Outcome: o, Count: c.n,
			Reason: fmt.Sprintf("%s from %s other addresses refused before CONNECT: %s in the last %s (past the %d addresses summarised one by one)%s",
				connections(c.n), addrs, o, span, summaryAddrs, firstReason(c))})
	}
	return out
}

func connections(n int) string {
	if n == 1 {
		return "1 connection"
	}
	return fmt.Sprintf("%d connections", n)
}

func firstReason(c *refusalCount) string {
	switch {
	case c.first == "":
		return ""
	case c.n == 1:
		return "; " + c.first
	}
	return "; the first: " + c.first
}

// refusalLog is a proxy's open window of refusals before CONNECT: the
// proxy writes it every summaryWindow (with the sessions' denial
// summaries) and once more when Shutdown has seen every connection end,
// before the decision log is closed.
type refusalLog struct {
	mu  sync.Mutex
	win *refusalWindow // nil until the first refusal after the last take
}

// add counts one refusal at now.
func (l *refusalLog) add(now time.Time, addr netip.Addr, outcome, reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.win == nil {
		l.win = newRefusalWindow(now)
	}
	l.win.add(addr.Unmap(), outcome, reason)
}

// take returns the window's summaries at now, and starts the next window.
func (l *refusalLog) take(now time.Time) []policy.Record {
	l.mu.Lock()
	w := l.win
	l.win = nil
	l.mu.Unlock()
	if w == nil {
		return nil
	}
	return w.records(now)
}

// summariseRefusal counts a connection refused before its CONNECT, for
// the decision log's summaries.
func (p *Proxy) summariseRefusal(addr netip.Addr, outcome, reason string) {
	if p.cfg.Recorder != nil {
		p.refusals.add(time.Now(), addr, outcome, reason)
	}
}

// flushRefusals writes the summaries of the refusals counted so far.
func (p *Proxy) flushRefusals() {
	for _, r := range p.refusals.take(time.Now()) {
		p.record(r)
	}
}
