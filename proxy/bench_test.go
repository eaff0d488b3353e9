package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/transport"

	"github.com/mqtt-authproxy/mqtt-authproxy/policy"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/mqtttest"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/pki"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// allowAll is an Authenticator that accepts everyone, to measure the relay alone.
type allowAll struct{}

func (allowAll) Authenticate(context.Context, policy.Request) (policy.Decision, error) {
	return policy.Decision{Outcome: policy.Accepted}, nil
}

// echoBroker answers a CONNECT with CONNACK and then echoes every byte.
func echoBroker(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, _, err := packets.ReadPacket(c, 1<<16); err != nil {
					return
				}
				_, _ = c.Write([]byte{0x20, 2, 0, 0})
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return l.Addr().String()
}

// BenchmarkRelayThroughput: bytes through the proxy and back (device ->
// proxy -> broker -> proxy -> device) over loopback, with and without TLS.
func BenchmarkRelayThroughput(b *testing.B) {
	for _, withTLS := range []bool{false, true} {
		name := "plain"
		if withTLS {
			name = "tls"
		}
		b.Run(name, func(b *testing.B) {
			ca, _ := pki.NewCA("bench")
			srv, _ := ca.Server("localhost")
			files, err := pki.WriteFiles(b.TempDir(), ca, srv)
			if err != nil {
				b.Fatal(err)
			}
			tt, err := transport.NewTLS(transport.TLSConfig{CertFile: files.ServerCert, KeyFile: files.ServerKey}, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer tt.Close()
			p, err := New(Config{Brokers: Backend{Addr: echoBroker(b)}, Auth: allowAll{}, RevalidateInterval: -1, ShutdownGrace: 100 * time.Millisecond,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				b.Fatal(err)
			}
			l, _ := net.Listen("tcp", "127.0.0.1:0")
			var tr transport.Terminator = transport.Plain{}
			if withTLS {
				tr = tt
			}
			go func() { _ = p.Serve(l, tr) }()
			defer p.Shutdown(context.Background())
			var conn net.Conn
			if withTLS {
				conn, err = tls.Dial("tcp", l.Addr().String(), &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"})
			} else {
				conn, err = net.Dial("tcp", l.Addr().String())
			}
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			if _, ack, err := mqtttest.Connect(conn, mqtttest.Creds(packets.V311, "u:bench", "u", "p")); err != nil || ack.Code != 0 {
				b.Fatal(ack, err)
			}
			chunk := make([]byte, 32<<10)
			back := make([]byte, len(chunk))
			b.SetBytes(int64(len(chunk)))
			b.ResetTimer()
			done := make(chan error, 1)
			go func() {
				for i := 0; i < b.N; i++ {
					if _, err := conn.Write(chunk); err != nil {
						done <- err
						return
					}
				}
				done <- nil
			}()
			_ = conn.SetReadDeadline(time.Now().Add(time.Minute))
			for i := 0; i < b.N; i++ {
				if _, err := io.ReadFull(conn, back); err != nil {
					b.Fatal(err)
				}
			}
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		})
	}
}

// topicAuth accepts everyone with 20 topic rules (the last one matching
// the benchmark's topic), as a fleet's device would have.
type topicAuth struct {
	rules      *policy.TopicRules
	mountpoint string
	limits     *policy.Limits
}

func (a topicAuth) Authenticate(context.Context, policy.Request) (policy.Decision, error) {
	return policy.Decision{Outcome: policy.Accepted, Topics: a.rules, Mountpoint: a.mountpoint, Limits: a.limits}, nil
}

func benchRules(b *testing.B) *policy.TopicRules {
	var pub []policy.Pattern
	for i := range 19 {
		pub = append(pub, policy.Pattern{Filter: fmt.Sprintf("fleet/%d/%%u/+/data", i), Source: "role fleet"})
	}
	pub = append(pub, policy.Pattern{Filter: "devices/%u/#", Source: "user"})
	r, err := policy.CompileTopics(pub, pub, "u", "u-bench")
	if err != nil {
		b.Fatal(err)
	}
	return r
}

// BenchmarkRelayPublish: 1 KiB QoS 0 PUBLISHes through the proxy and back
// (device -> proxy -> echo broker -> proxy -> device), with topic rules
// off (the opaque relay) and on (every PUBLISH framed, decoded and matched
// against 20 rules; the broker's packets framed on the way back), and on
// with a mountpoint (each PUBLISH rewritten under mp/ on its way to the
// broker and back out of it on its way back), and on with every limit set
// (both rate buckets taken, never empty; the quotas checked; the keep
// alive watch fed). ns/op is one message both ways; allocs/op counts the
// whole process.
func BenchmarkRelayPublish(b *testing.B) {
	for _, name := range []string{"acl-off", "acl-on", "acl-on-mountpoint", "acl-on-limits"} {
		var auth policy.Authenticator = allowAll{}
		switch name {
		case "acl-on":
			auth = topicAuth{rules: benchRules(b)}
		case "acl-on-mountpoint":
			auth = topicAuth{rules: benchRules(b), mountpoint: "mp/"}
		case "acl-on-limits":
			auth = topicAuth{rules: benchRules(b), limits: benchLimits()} // limits_bench_test.go
		}
		b.Run(name, func(b *testing.B) {
			p, err := New(Config{Brokers: Backend{Addr: echoBroker(b)}, Auth: auth, RevalidateInterval: -1, ShutdownGrace: 100 * time.Millisecond,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				b.Fatal(err)
			}
			l, _ := net.Listen("tcp", "127.0.0.1:0")
			go func() { _ = p.Serve(l, transport.Plain{}) }()
			defer p.Shutdown(context.Background())
			conn, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			if _, ack, err := mqtttest.Connect(conn, mqtttest.Creds(packets.V311, "u:bench", "u", "p")); err != nil || ack.Code != 0 {
				b.Fatal(ack, err)
			}
			msg := mqtttest.AppendPublish(nil, packets.V311, "devices/u/telemetry", make([]byte, 1024), 0, false, 0)
			batch := 32
			if os.Getenv("BENCH_BATCH1") != "" {
				batch = 1
			}
			burst := bytes.Repeat(msg, batch)
			back := make([]byte, len(burst))
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += batch {
				if _, err := conn.Write(burst); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(conn, back); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
