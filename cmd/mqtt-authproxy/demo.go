//go:build !nodemo

// The demo links an in-process Redis (miniredis, with a Lua interpreter)
// and an MQTT broker (mochi-mqtt); the container image is built with
// -tags nodemo, which leaves them out (see nodemo.go).

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
	"github.com/spf13/cobra"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/operator"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/app"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/pki"
)

// demoOptions are demo's flags.
type demoOptions struct {
	listen, redis, broker, metrics, dir, user, logFormat string
}

// demoTopics is the topic filter the seeded user may publish and
// subscribe to.
const demoTopics = "demo/#"

// demoShutdownGrace replaces SHUTDOWN_GRACE: Ctrl-C should not wait long.
const demoShutdownGrace = 2 * time.Second

func cmdDemo(io stdio) *cobra.Command {
	c := &cobra.Command{
		Use:   "demo",
		Short: "Everything embedded: Redis, broker, CA, proxy, one user",
		Long: `Runs the whole product with nothing installed: an in-process Redis-protocol
server (miniredis), an in-process MQTT broker (mochi-mqtt), a fresh CA and
server certificate written to --dir, the proxy on a TLS port, and one seeded
user. It prints copy-paste commands to try it; Ctrl-C stops it. Everything
else is configured as serve is by default.`,
		Args: noArgs("demo takes no arguments, got %q"),
	}
	defaults := app.Defaults()
	var o demoOptions
	fs := c.Flags()
	fs.StringVar(&o.listen, "listen", "127.0.0.1:8883", "the proxy's TLS listener")
	fs.StringVar(&o.redis, "redis", "127.0.0.1:16379", "the embedded Redis-protocol server")
	fs.StringVar(&o.broker, "broker", "127.0.0.1:11883", "the embedded broker (plain MQTT; devices should use the proxy)")
	fs.StringVar(&o.metrics, "metrics", defaults.MetricsListen, "metrics and health endpoint (empty: off)")
	fs.StringVar(&o.dir, "dir", "", "folder for the generated CA and certificate (default: a new temporary folder)")
	fs.StringVar(&o.user, "user", "demo", "the seeded user's name")
	fs.StringVar(&o.logFormat, "log-format", defaults.LogFormat, "text or json")
	c.RunE = func(*cobra.Command, []string) error { return runDemo(io, o) }
	return c
}

// demoConfig is the proxy's configuration in the demo: serve's defaults
// (app.Defaults) with the demo's listener, certificate, broker, Redis,
// metrics address, log format and a short shutdown grace.
func demoConfig(o demoOptions, certFile, keyFile, brokerAddr, redisAddr string) app.Config {
	cfg := app.Defaults()
	cfg.Listen, cfg.TLSCertFile, cfg.TLSKeyFile = o.listen, certFile, keyFile
	cfg.BackendAddr, cfg.RedisURL = brokerAddr, "redis://"+redisAddr+"/0"
	cfg.ShutdownGrace, cfg.MetricsListen, cfg.LogFormat = demoShutdownGrace, o.metrics, o.logFormat
	return cfg
}

func runDemo(io stdio, o demoOptions) error {
	if o.logFormat != "text" && o.logFormat != "json" {
		return usagef("demo: --log-format %q is not text or json", o.logFormat)
	}
	host, _, err := net.SplitHostPort(o.listen)
	if err != nil {
		return usagef("demo: --listen %q is not host:port", o.listen)
	}
	mr := miniredis.NewMiniRedis()
	if err := mr.StartAddr(o.redis); err != nil {
		return fmt.Errorf("embedded Redis on %s: %w (choose another with --redis)", o.redis, err)
	}
	defer mr.Close()
	broker, brokerAddr, err := startDemoBroker(o.broker)
	if err != nil {
		return err
	}
	defer broker.Close()
	files, err := demoCertificates(&o, host)
	if err != nil {
		return err
	}

	// The proxy, configured as serve would be from an empty environment.
	settings, err := demoConfig(o, files.ServerCert, files.ServerKey, brokerAddr, mr.Addr()).Validate()
	if err != nil {
		return err
	}
	log := slog.New(demoQuiet{newLogger(io.err, settings.Log).Handler()})
	a, err := app.Start(context.Background(), settings, log)
	if err != nil {
		return err
	}
	password, err := seedDemoUser(a, o.user)
	if err != nil {
		a.Stop()
		return err
	}
	_, port, _ := net.SplitHostPort(a.Addrs().TLS.String())
	_, rport, _ := net.SplitHostPort(mr.Addr())
	printDemo(io.out, demoInfo{dir: o.dir, ca: files.CA, port: port, redisPort: rport, redisAddr: mr.Addr(),
		user: o.user, password: password, metrics: o.metrics})

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	log.Info("demo stopping")
	a.Stop()
	return nil
}

// startDemoBroker starts the embedded broker on addr and returns it with
// the address it listens on.
func startDemoBroker(addr string) (*mqtt.Server, string, error) {
	broker := mqtt.New(&mqtt.Options{InlineClient: false, Logger: slog.New(slog.DiscardHandler)})
	if err := broker.AddHook(new(auth.AllowHook), nil); err != nil {
		return nil, "", err
	}
	bl, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("embedded broker on %s: %w (choose another with --broker)", addr, err)
	}
	bl.Close()
	if err := broker.AddListener(listeners.NewTCP(listeners.Config{ID: "demo", Address: addr})); err != nil {
		return nil, "", err
	}
	if err := broker.Serve(); err != nil {
		return nil, "", fmt.Errorf("embedded broker: %w", err)
	}
	return broker, bl.Addr().String(), nil
}

// demoCertificates writes a fresh CA and a server certificate for
// localhost and host to o.dir (a new temporary folder when empty).
func demoCertificates(o *demoOptions, host string) (pki.Files, error) {
	if o.dir == "" {
		dir, err := os.MkdirTemp("", "mqtt-authproxy-demo-")
		if err != nil {
			return pki.Files{}, err
		}
		o.dir = dir
	}
	ca, err := pki.NewCA("mqtt-authproxy demo CA")
	if err != nil {
		return pki.Files{}, err
	}
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if host != "" && !slices.Contains(hosts, host) {
		hosts = append(hosts, host)
	}
	server, err := ca.Server(hosts...)
	if err != nil {
		return pki.Files{}, err
	}
	return pki.WriteFiles(o.dir, ca, server)
}

// seedDemoUser creates the demo's user with a fresh password, and the
// topics of the printed commands (topic rules are on by default: without
// them the user could do nothing).
func seedDemoUser(a *app.App, user string) (password string, err error) {
	password = "demo-" + strings.ToLower(rand.Text()[:10])
	topics := []string{demoTopics}
	err = a.Store().SetUser(context.Background(), user, operator.Update{Password: &password, Publish: &topics, Subscribe: &topics})
	return password, err
}

// demoQuiet leaves out of the demo's log the line the embedded Redis
// causes that a newcomer reads as an error: miniredis has no CONFIG GET,
// so the proxy cannot check its keyspace notifications. The demo needs
// none: the CLI's writes announce themselves to live connections, and a
// redis-cli change reaches the next CONNECT, as the demo says.
type demoQuiet struct{ slog.Handler }

func (h demoQuiet) Handle(ctx context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, "Redis keyspace notifications could not be checked") {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h demoQuiet) WithAttrs(attrs []slog.Attr) slog.Handler {
	return demoQuiet{h.Handler.WithAttrs(attrs)}
}

func (h demoQuiet) WithGroup(name string) slog.Handler { return demoQuiet{h.Handler.WithGroup(name)} }

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
  topics:         %s (publish and subscribe)
  metrics:        http://%s/metrics

Subscribe through the proxy (terminal 1):
  mosquitto_sub -h localhost -p %s --cafile %s -u %s -P %s -i %s:sub -t '%s' -v

Publish through the proxy (terminal 2):
  mosquitto_pub -h localhost -p %s --cafile %s -u %s -P %s -i %s:pub -t demo/hello -m 'hello through the proxy'

Revoke the user, with the CLI or with plain redis-cli:
  AUTHPROXY_REDIS_URL=redis://%s/0 %s user disable %s
  redis-cli -p %s HSET mqtt:user:%s enabled false

Publish again: the very next CONNECT is refused (Connection Refused: not authorised).
Enable it again with "user enable %s" or "HSET mqtt:user:%s enabled true".

Ctrl-C stops the demo.
`, d.ca, d.port, d.redisAddr, d.user, d.password, demoTopics, d.metrics,
		d.port, d.ca, d.user, d.password, d.user, demoTopics,
		d.port, d.ca, d.user, d.password, d.user,
		d.redisAddr, self, d.user,
		d.redisPort, d.user,
		d.user, d.user)
}
