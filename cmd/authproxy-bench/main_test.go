package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// broker starts an in-process mochi-mqtt broker on a free loopback port
// that admits anyone.
func broker(t *testing.T) string {
	t.Helper()
	return brokerWith(t, new(auth.AllowHook), nil)
}

// brokerWith starts one with the given auth hook.
func brokerWith(t *testing.T, hook mqtt.Hook, config any) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s := mqtt.New(&mqtt.Options{InlineClient: false, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := s.AddHook(hook, config); err != nil {
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
		hold: 100 * time.Millisecond, sources: 8, watch: fmt.Sprintf("self=%d", os.Getpid()),
		retryMin: 10 * time.Millisecond, retryMax: 50 * time.Millisecond}
}

func TestScenarios(t *testing.T) {
	addr := broker(t)
	for _, sc := range []string{"connect", "qos0", "qos1", "idle", "storm"} {
		t.Run(sc, func(t *testing.T) {
			o := base(addr)
			o.scenario, o.probes = sc, 3
			r, err := run(o)
			if err != nil {
				t.Fatal(err)
			}
			if r.Ops <= 0 || r.Errors != 0 || r.Rate <= 0 {
				t.Fatalf("%+v", r)
			}
			switch sc {
			case "storm":
				if r.Ops != int64(o.n) {
					t.Fatalf("%d of %d connections", r.Ops, o.n)
				}
			case "connect":
				if r.Ops != int64(o.n) || r.P50ms <= 0 || r.P99ms < r.P50ms {
					t.Fatalf("%d of %d connections, latencies %+v", r.Ops, o.n, r)
				}
			case "qos1":
				if r.P50ms <= 0 || r.P99ms < r.P50ms {
					t.Fatalf("latencies %+v", r)
				}
			}
			switch sc {
			case "qos0", "qos1", "connect":
				if v, ok := r.CPUShare["self"]; !ok || v < 0 {
					t.Fatalf("no CPU share: %+v", r)
				}
			case "idle":
				if r.Held != o.n || r.RSSKiB["self"] <= 0 {
					t.Fatalf("idle %+v", r)
				}
				if _, ok := r.HoldCPUShare["self"]; !ok || r.ProbeP50ms <= 0 || r.ProbeMaxms < r.ProbeP50ms || r.ProbeErrors != 0 {
					t.Fatalf("idle: no hold CPU share or probe times %+v", r)
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

// TestColdStorm: K distinct users, their passwords from a file, all
// connecting at once; a user whose password is wrong is refused with a
// CONNACK code that is counted, retried until the bound, and reported
// as unconnected.
func TestColdStorm(t *testing.T) {
	const k = 12
	users := auth.Users{}
	var pw []string
	for i := range k {
		users[fmt.Sprintf("dev-%d", i)] = auth.UserRule{Password: auth.RString(fmt.Sprintf("secret-%d", i))}
		pw = append(pw, fmt.Sprintf("secret-%d", i))
	}
	pw[k-1] = "wrong"
	file := filepath.Join(t.TempDir(), "pw.txt")
	if err := os.WriteFile(file, []byte(strings.Join(pw, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o := base(brokerWith(t, new(auth.Hook), &auth.Options{Ledger: &auth.Ledger{Users: users}}))
	o.scenario, o.cold, o.n, o.users, o.user, o.passFile, o.duration = "storm", true, 2*k, k, "dev", file, 700*time.Millisecond
	r, err := run(o)
	if err != nil {
		t.Fatal(err)
	}
	// Devices k-1 and 2k-1 are the user with the wrong password.
	if r.Ops != 2*k-2 || r.Unconnected != 2 || r.Connack["0x00"] != 2*k-2 {
		t.Fatalf("%d connected, %d unconnected: %+v", r.Ops, r.Unconnected, r)
	}
	refused := r.Connack["0x05"] + r.Connack["0x04"]
	// Every error is a failure counted by its cause: the refusals, and on
	// a loaded machine now and then a dropped connection, retried too.
	var failures int64
	for _, n := range r.Failures {
		failures += n
	}
	if refused < 4 || r.Errors != failures || r.Attempts != r.Errors+r.Ops || r.Failures["connack 0x05"]+r.Failures["connack 0x04"] != refused {
		t.Fatalf("refusals not counted or not retried: %+v", r)
	}
	if r.Seconds < 0.6 || r.P50ms <= 0 || !strings.Contains(r.String(), "unconnected") {
		t.Fatalf("seconds %.2f with devices unconnected, or no latency: %s", r.Seconds, r)
	}
	// Without the wrong one: all in, nothing retried.
	o.users, o.n = k-1, k-1
	if r, err = run(o); err != nil || r.Ops != k-1 || r.Attempts != k-1 || r.Unconnected != 0 || r.Seconds > 0.6 {
		t.Fatalf("%v %+v", err, r)
	}
	o.passFile, o.pass = "", "secret-%d"
	if r, err = run(o); err != nil || r.Ops != k-1 || r.Errors != 0 {
		t.Fatalf("-pass with %%d: %v %+v", err, r)
	}
}

func TestFailureKind(t *testing.T) {
	for err, want := range map[error]string{
		connackError{0x03}:                          "connack 0x03",
		stageError{"tls", io.EOF}:                   "tls closed",
		stageError{"dial", syscall.ECONNREFUSED}:    "dial refused",
		stageError{"tls", context.DeadlineExceeded}: "tls timeout",
		stageError{"mqtt", errors.New("x")}:         "mqtt error",
	} {
		if got := failureKind(err); got != want {
			t.Errorf("failureKind(%v) = %q, want %q", err, got, want)
		}
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
	o = base("127.0.0.1:1")
	o.retryMax = time.Hour
	if _, err := run(o); err == nil || !strings.Contains(err.Error(), "bounds") {
		t.Fatalf("an unbounded back-off was not refused: %v", err)
	}
	o = base("127.0.0.1:1")
	o.passFile = "x"
	if _, err := run(o); err == nil || !strings.Contains(err.Error(), "-users") {
		t.Fatalf("-pass-file without -users accepted: %v", err)
	}
	if _, err := parseWatch("proxy"); err == nil {
		t.Fatal("-watch without pid accepted")
	}
}
