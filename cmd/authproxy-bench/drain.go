package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"syscall"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// The brokers' figures (issue 29): a storm's connects per second (what
// reaches the broker when BACKEND_CONNECT_RATE holds it), and the drain of
// a proxy that is told to stop.

// perSecond counts the connects of a storm by the second (from its start)
// they completed in, and returns the counts and the largest.
func perSecond(took []time.Duration) (counts []int64, most int64) {
	for _, d := range took {
		s := int(d / time.Second)
		for len(counts) <= s {
			counts = append(counts, 0)
		}
		counts[s]++
	}
	for _, c := range counts {
		most = max(most, c)
	}
	return counts, most
}

// drainScenario: -n devices connect (-c at a time) and stay; then the
// process -signal names gets SIGTERM and each device reads until its
// connection closes. The result: Rate is the drain's pace, (n-1) over the
// span from the first close to the last; Seconds that span; Connack
// counts the MQTT 5 DISCONNECT reason codes the devices got ("0x9C"...),
// "none" for a close without one.
func drainScenario(o options, d *dialer) (Result, error) {
	if o.signal <= 0 {
		return Result{}, fmt.Errorf("-scenario drain needs -signal PID (the proxy to stop)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.duration)
	defer cancel()
	conns := make([]*conn, o.n)
	parallel(ctx, o.concurrency, o.n, func(_, i int) {
		c, err := d.dial(ctx, d.creds(i, fmt.Sprintf("drain-%d", i)), nil)
		if err == nil {
			conns[i] = c
		}
	})
	type end struct {
		at   time.Time
		code string
	}
	ends := make(chan end, o.n)
	held := 0
	for _, c := range conns {
		if c == nil {
			continue
		}
		held++
		go func() {
			code := "none"
			for {
				_ = c.SetReadDeadline(time.Now().Add(o.duration))
				h, pkt, err := packets.ReadPacket(c.r, 1<<16)
				if err != nil {
					break
				}
				if h.Type == packets.DISCONNECT && c.level == packets.V5 {
					if dc, err := packets.DecodeDisconnect(pkt, c.level); err == nil {
						code = fmt.Sprintf("0x%02X", byte(dc.Code))
					}
				}
			}
			ends <- end{time.Now(), code}
		}()
	}
	p, err := os.FindProcess(o.signal)
	if err == nil {
		err = p.Signal(syscall.SIGTERM)
	}
	if err != nil {
		return Result{}, fmt.Errorf("SIGTERM to %d: %w", o.signal, err)
	}
	r := Result{Held: held, Connack: map[string]int64{}, Errors: int64(o.n - held)}
	var at []time.Time
	for range held {
		select {
		case e := <-ends:
			at = append(at, e.at)
			r.Connack[e.code]++
		case <-ctx.Done():
			return r, fmt.Errorf("%d of %d sessions still open at the -duration bound", held-len(at), held)
		}
	}
	slices.SortFunc(at, func(a, b time.Time) int { return a.Compare(b) })
	r.Ops = int64(len(at))
	if len(at) > 1 {
		r.Seconds = at[len(at)-1].Sub(at[0]).Seconds()
		r.Rate = float64(len(at)-1) / r.Seconds
	}
	return r, nil
}
