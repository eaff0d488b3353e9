package main

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// broker starts an in-process mochi-mqtt broker on a free loopback port.
func broker(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s := mqtt.New(&mqtt.Options{InlineClient: false, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := s.AddHook(new(auth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.AddListener(listeners.NewTCP(listeners.Config{ID: "t", Address: addr})); err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return addr
}

func base(addr string) options {
	return options{addr: addr, level: 4, n: 40, concurrency: 4, publishers: 2, size: 64, duration: 400 * time.Millisecond,
		hold: 100 * time.Millisecond, sources: 8, watch: fmt.Sprintf("self=%d", os.Getpid())}
}

func TestScenarios(t *testing.T) {
	addr := broker(t)
	for _, sc := range []string{"connect", "qos0", "qos1", "idle", "storm"} {
		t.Run(sc, func(t *testing.T) {
			o := base(addr)
			o.scenario = sc
			r, err := run(o)
			if err != nil {
				t.Fatal(err)
			}
			if r.Ops <= 0 || r.Errors != 0 || r.Rate <= 0 {
				t.Fatalf("%+v", r)
			}
			switch sc {
			case "connect", "storm":
				if r.Ops != int64(o.n) {
					t.Fatalf("%d of %d connections", r.Ops, o.n)
				}
			case "qos1":
				if r.P50ms <= 0 || r.P99ms < r.P50ms {
					t.Fatalf("latencies %+v", r)
				}
			case "idle":
				if r.Held != o.n || r.RSSKiB["self"] <= 0 {
					t.Fatalf("idle %+v", r)
				}
			}
			if _, ok := r.CPU["self"]; !ok {
				t.Fatalf("no CPU sample: %+v", r)
			}
			if !strings.Contains(r.String(), sc) {
				t.Fatalf("String() = %q", r.String())
			}
		})
	}
}

// TestPacedQoS0: with -rate the publishers send at about that rate, not as
// fast as they can (unpaced, they send tens of thousands per second here).
func TestPacedQoS0(t *testing.T) {
	o := base(broker(t))
	o.scenario, o.rate = "qos0", 2000
	r, err := run(o)
	if err != nil {
		t.Fatal(err)
	}
	if r.Ops <= 0 || r.Offered <= 0 || r.Offered > 10*float64(o.rate) {
		t.Fatalf("offered %.0f/s for -rate %d, delivered %d: %+v", r.Offered, o.rate, r.Ops, r)
	}
	if !strings.Contains(r.String(), "offered") {
		t.Fatalf("String() = %q", r.String())
	}
}

func TestGuards(t *testing.T) {
	o := base("192.0.2.1:1883")
	o.scenario = "connect"
	if _, err := run(o); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("a non-loopback target was not refused: %v", err)
	}
	o = base("127.0.0.1:1")
	o.duration = time.Hour
	if _, err := run(o); err == nil || !strings.Contains(err.Error(), "bounds") {
		t.Fatalf("an unbounded run was not refused: %v", err)
	}
	o = base("127.0.0.1:1")
	o.rate = -1
	if _, err := run(o); err == nil || !strings.Contains(err.Error(), "bounds") {
		t.Fatalf("a negative -rate was not refused: %v", err)
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Max < 190000 {
		o = base("127.0.0.1:1")
		o.n = int(lim.Max) + 100
		o.scenario = "idle"
		if _, err := run(o); err == nil || !strings.Contains(err.Error(), "open-file limit") {
			t.Fatalf("the open-file limit was not checked: %v", err)
		}
	}
	if _, err := parseWatch("proxy"); err == nil {
		t.Fatal("-watch without pid accepted")
	}
}
