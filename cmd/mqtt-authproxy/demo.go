package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/pki"
)

const demoUsage = `Usage: mqtt-authproxy demo [flags]

Runs the whole product with nothing installed: an in-process Redis-protocol
server (miniredis), an in-process MQTT broker (mochi-mqtt), a fresh CA and
server certificate written to --dir, the proxy on a TLS port, and one seeded
user. It prints copy-paste commands to try it; Ctrl-C stops it.

Flags:
`

func cmdDemo(args []string, io stdio) error {
	fs := newFlags("demo", demoUsage, io)
	listen := fs.String("listen", "127.0.0.1:8883", "the proxy's TLS listener")
	redisAddr := fs.String("redis", "127.0.0.1:16379", "the embedded Redis-protocol server")
	brokerAddr := fs.String("broker", "127.0.0.1:11883", "the embedded broker (plain MQTT; devices should use the proxy)")
	metrics := fs.String("metrics", "127.0.0.1:9090", "metrics and health endpoint (empty: off)")
	dir := fs.String("dir", "", "folder for the generated CA and certificate (default: a new temporary folder)")
	user := fs.String("user", "demo", "the seeded user's name")
	logFormat := fs.String("log-format", "text", "text or json")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("demo takes no arguments, got %q", fs.Args())
	}
	if *logFormat != "text" && *logFormat != "json" {
		return usagef("demo: --log-format %q is not text or json", *logFormat)
	}
	log := newLogger(io.err, *logFormat, "info")

	// The embedded Redis.
	mr := miniredis.NewMiniRedis()
	if err := mr.StartAddr(*redisAddr); err != nil {
		return fmt.Errorf("embedded Redis on %s: %w (choose another with --redis)", *redisAddr, err)
	}
	defer mr.Close()

	// The embedded broker.
	broker := mqtt.New(&mqtt.Options{InlineClient: false, Logger: slog.New(slog.DiscardHandler)})
	if err := broker.AddHook(new(auth.AllowHook), nil); err != nil {
		return err
	}
	bl, err := net.Listen("tcp", *brokerAddr)
	if err != nil {
		return fmt.Errorf("embedded broker on %s: %w (choose another with --broker)", *brokerAddr, err)
	}
	bl.Close()
	if err := broker.AddListener(listeners.NewTCP(listeners.Config{ID: "demo", Address: *brokerAddr})); err != nil {
		return err
	}
	if err := broker.Serve(); err != nil {
		return fmt.Errorf("embedded broker: %w", err)
	}
	defer broker.Close()

	// A fresh CA and server certificate.
	if *dir == "" {
		if *dir, err = os.MkdirTemp("", "mqtt-authproxy-demo-"); err != nil {
			return err
		}
	}
	ca, err := pki.NewCA("mqtt-authproxy demo CA")
	if err != nil {
		return err
	}
	host, _, err := net.SplitHostPort(*listen)
	if err != nil {
		return usagef("demo: --listen %q is not host:port", *listen)
	}
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if host != "" && !slices.Contains(hosts, host) {
		hosts = append(hosts, host)
	}
	server, err := ca.Server(hosts...)
	if err != nil {
		return err
	}
	files, err := pki.WriteFiles(*dir, ca, server)
	if err != nil {
		return err
	}

	// The proxy, configured as serve would be from the environment.
	cfg := defaultConfig()
	cfg.Listen, cfg.TLSCertFile, cfg.TLSKeyFile = *listen, files.ServerCert, files.ServerKey
	cfg.BackendAddr, cfg.RedisURL = bl.Addr().String(), "redis://"+mr.Addr()+"/0"
	cfg.ShutdownGrace, cfg.MetricsListen, cfg.LogFormat = 2*time.Second, *metrics, *logFormat
	settings, err := cfg.validateServe()
	if err != nil {
		return err
	}
	srv, err := startServer(cfg, settings, log)
	if err != nil {
		return err
	}
	// The seeded user.
	password := "demo-" + strings.ToLower(rand.Text()[:10])
	if err := srv.store.SetUser(context.Background(), *user, authstore.Update{Password: &password}); err != nil {
		srv.stop()
		return err
	}
	addr := *listen
	for _, a := range srv.proxy.Addrs() {
		addr = a.String()
	}
	_, port, _ := net.SplitHostPort(addr)
	_, rport, _ := net.SplitHostPort(mr.Addr())
	printDemo(io.out, demoInfo{dir: *dir, ca: files.CA, port: port, redisPort: rport, redisAddr: mr.Addr(),
		user: *user, password: password, metrics: *metrics})

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	log.Info("demo stopping")
	srv.stop()
	return nil
}

type demoInfo struct {
	dir, ca, port, redisPort, redisAddr, user, password, metrics string
}

func printDemo(w io.Writer, d demoInfo) {
	self := "go run ./cmd/mqtt-authproxy"
	if exe, err := os.Executable(); err == nil && !strings.Contains(exe, "go-build") {
		self = exe
	}
	fmt.Fprintf(w, `
mqtt-authproxy demo is running.

  CA certificate: %s
  proxy (TLS):    localhost:%s
  Redis:          %s (embedded; key prefix mqtt:)
  user:           %s
  password:       %s
  metrics:        http://%s/metrics

Subscribe through the proxy (terminal 1):
  mosquitto_sub -h localhost -p %s --cafile %s -u %s -P %s -i %s-sub -t 'demo/#' -v

Publish through the proxy (terminal 2):
  mosquitto_pub -h localhost -p %s --cafile %s -u %s -P %s -i %s-pub -t demo/hello -m 'hello through the proxy'

Revoke the user, with the CLI or with plain redis-cli:
  AUTHPROXY_REDIS_URL=redis://%s/0 %s user disable %s
  redis-cli -p %s HSET mqtt:user:%s enabled false

Publish again: the very next CONNECT is refused (Connection Refused: not authorised).
Enable it again with "user enable %s" or "HSET mqtt:user:%s enabled true".

Ctrl-C stops the demo.
`, d.ca, d.port, d.redisAddr, d.user, d.password, d.metrics,
		d.port, d.ca, d.user, d.password, d.user,
		d.port, d.ca, d.user, d.password, d.user,
		d.redisAddr, self, d.user,
		d.redisPort, d.user,
		d.user, d.user)
}
