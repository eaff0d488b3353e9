package proxy

import (
	"fmt"
	"slices"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// Draining: Shutdown ends the live sessions one at a time, evenly spaced,
// so that their devices reconnect (to the other replicas) at a pace the
// brokers behind them take, instead of all at once.

// drain starts ending the sessions open now, oldest first, one every
// interval (drainInterval), each MQTT 5 device told with final; it
// returns a function that stops the drain and waits for it. Sessions
// that end on their own are skipped without spending a turn.
func (p *Proxy) drain(grace time.Duration, final []byte) (stop func()) {
	ss := p.allSessions()
	slices.SortFunc(ss, func(a, b *session) int { return a.since.Compare(b.since) })
	interval := drainInterval(len(ss), p.cfg.DrainRate, grace)
	quit, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		start, k := time.Now(), 0
		for _, s := range ss {
			if s.done() {
				continue
			}
			if wait := time.Until(start.Add(time.Duration(k) * interval)); wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-t.C:
				case <-quit:
					t.Stop()
					return
				}
			}
			k++
			go s.endFinal(final, "drain")
		}
	}()
	return func() { close(quit); <-finished }
}

// drainInterval is the time between two ends of a drain of n sessions:
// one over rate (a second), or the grace spread evenly over them.
func drainInterval(n int, rate float64, grace time.Duration) time.Duration {
	switch {
	case rate > 0:
		return time.Duration(float64(time.Second) / rate)
	case n > 0:
		return grace / time.Duration(n)
	}
	return 0
}

// drainFinal is the DISCONNECT an MQTT 5 device gets when Shutdown ends
// its session: 0x9C (use another server) with the Server Reference when
// DrainServerReference is set, else 0x8B (server shutting down).
func (p *Proxy) drainFinal() []byte {
	if ref := p.cfg.DrainServerReference; ref != "" {
		props := packets.Properties{}.With(packets.Property{ID: packets.PropServerReference, Str: ref})
		return packets.AppendDisconnectProperties(nil, packets.V5, packets.UseAnotherServer, props)
	}
	return packets.AppendDisconnect(nil, packets.V5, packets.ServerShuttingDown)
}

// endFinal ends the session with final for an MQTT 5 device (a 3.x one
// is closed), counted and recorded under cause, as end does.
func (s *session) endFinal(final []byte, cause string) {
	if s.req.Protocol != packets.V5 {
		final = nil
	}
	if s.endWith(final, cause, kickGrace) {
		code := packets.ServerShuttingDown
		if s.p.cfg.DrainServerReference != "" {
			code = packets.UseAnotherServer
		}
		s.record("kick", cause, fmt.Sprintf("closed by the proxy (%s), DISCONNECT 0x%02X for MQTT 5", cause, byte(code)))
	}
}
