package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/decisionlog"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/redisconn"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/admin"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/transport"
)

// App is a running proxy: its listeners, store, change feed and admin
// endpoint. Make it with Start, end it with Stop.
type App struct {
	log   *slog.Logger
	grace time.Duration
	addrs Addrs

	store      *authstore.Store
	closeStore func() error
	decisions  *decisionlog.Writer // nil when DECISION_LOG=off
	replicaID  string
	proxy      device
	admin      *admin.Server
	lifecycle  lifecycle // credential uses and the session registry

	stopBackground context.CancelFunc
	background     sync.WaitGroup // the change feed and the notification check
	serving        sync.WaitGroup // the listeners' Serve loops
	stopOnce       sync.Once
}

// Addrs are the bound addresses of an App's listeners; nil when off.
type Addrs struct {
	TLS, Plain, WS, Admin net.Addr
}

// Start wires the store, the proxy, the change feed (rule changes reach
// live connections), the startup check of Redis's keyspace notifications
// and the admin endpoint, and opens and serves the listeners. It returns
// once everything is serving; a listener that cannot be opened is an error
// naming its variable, and nothing is left running then. ctx bounds the
// start only: the App runs until Stop.
func Start(ctx context.Context, s Settings, log *slog.Logger) (*App, error) {
	if log == nil {
		log = slog.Default()
	}
	a := &App{log: log, grace: s.ShutdownGrace()}
	ls, err := openListeners(ctx, s)
	if err != nil {
		return nil, err
	}
	a.addrs = ls.addrs
	reg, err := a.openStore(s, log)
	if err != nil {
		ls.close()
		return nil, err
	}
	a.lifecycle.startUses(s.Lifecycle, a.store, reg, log)
	s.DecisionLog.ReplicaID = a.replicaID // the one openStore made: the proxy's and max_sessions' counter's
	a.proxy, err = startProxy(s, a.store, reg, log, ls.devices, &a.serving, recorder(a.decisions))
	if err != nil {
		ls.close()
		a.lifecycle.stop()
		a.decisions.Close()
		_ = a.closeStore()
		return nil, err
	}
	registerTicketMetrics(reg, a.proxy.tls)
	if err := a.lifecycle.startRegistry(s.Lifecycle, a.store, a.proxy, a.replicaID, log); err != nil {
		log.Warn("the session registry is off", "error", err)
	}
	a.startBackground(ctx, s, log)
	if ls.admin != nil {
		a.serveAdmin(ls.admin, s, reg, log)
	}
	return a, nil
}

// listeners are an App's open listeners: the devices' with the transport
// each serves, and the admin endpoint's (nil when off).
type listeners struct {
	devices []deviceListener
	admin   net.Listener
	addrs   Addrs
	opened  []net.Listener
}

func (ls *listeners) close() {
	for _, l := range ls.opened {
		_ = l.Close()
	}
}

// openListeners opens every listener the settings name, or none: on an
// error, those opened are closed, and the error names the variable.
func openListeners(ctx context.Context, s Settings) (*listeners, error) {
	ls := &listeners{}
	// No TCP keepalive on device connections: MQTT has its own, which the
	// broker enforces on the relayed session.
	deviceLC := net.ListenConfig{KeepAlive: -1}
	for _, d := range []struct {
		name, addr string
		kind       deviceKind
		bound      *net.Addr
	}{{"LISTEN", s.Listen, tlsDevice, &ls.addrs.TLS}, {"PLAIN_LISTEN", s.PlainListen, plainDevice, &ls.addrs.Plain},
		{"WS_LISTEN", s.Edge.WSListen, wsDevice, &ls.addrs.WS}} {
		if d.addr == "" {
			continue
		}
		l, err := ls.listen(ctx, d.name, d.addr, deviceLC)
		if err != nil {
			return nil, err
		}
		ls.devices = append(ls.devices, deviceListener{l, d.kind})
		*d.bound = l.Addr()
	}
	if s.AdminListen != "" {
		l, err := ls.listen(ctx, "METRICS_LISTEN", s.AdminListen, net.ListenConfig{})
		if err != nil {
			return nil, err
		}
		ls.admin, ls.addrs.Admin = l, l.Addr()
	}
	return ls, nil
}

func (ls *listeners) listen(ctx context.Context, name, addr string, lc net.ListenConfig) (net.Listener, error) {
	l, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		ls.close()
		return nil, fmt.Errorf("listener %s%s=%s: %w", EnvPrefix, name, addr, err)
	}
	ls.opened = append(ls.opened, l)
	return l, nil
}

// openStore opens the store and the decision log, and the registry their
// metrics (and the proxy's, next) go to.
func (a *App) openStore(s Settings, log *slog.Logger) (*prometheus.Registry, error) {
	store, closeStore, err := OpenStore(s.Store, log)
	if err != nil {
		return nil, err
	}
	a.store, a.closeStore = store, closeStore
	if s.Store.Schema != nil {
		log.Info("users and topic rules are read in another product's layout", "schema", store.SchemaName())
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	registerStoreMetrics(reg, store)
	registerCredentialMetrics(reg, store)
	a.replicaID = replicaID(s.DecisionLog.ReplicaID)
	s.DecisionLog.ReplicaID = a.replicaID
	a.decisions = openDecisionLog(s.DecisionLog, a.replicaID, store, newDecisionLogDropped(reg), log)
	return reg, nil
}

// startBackground runs what goes on beside the listeners until Stop: the
// change feed, the check of Redis's keyspace notifications, the memory
// trim.
func (a *App) startBackground(ctx context.Context, s Settings, log *slog.Logger) {
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a.stopBackground = cancel
	a.background.Go(func() { a.proxy.follow(bg, a.store) })
	a.background.Go(func() { checkNotifications(bg, a.store, s.RevalidateInterval(), log) })
	a.background.Go(func() { trimMemory(bg, a.proxy.p.TakeParked) })
}

// serveAdmin serves the admin endpoint on l.
func (a *App) serveAdmin(l net.Listener, s Settings, reg *prometheus.Registry, log *slog.Logger) {
	a.admin = admin.New(admin.Options{Gatherer: reg, Pprof: s.Pprof, Logger: log, Checks: append([]admin.Check{
		{Name: "redis", Target: redisconn.RedactURL(s.Store.RedisURL), Probe: a.store.Ping},
		{Name: "backend", Target: s.Backend.Addr, Probe: a.proxy.brokers.Ready}, // the probes' answer: no dial of its own
	}, tokenCheck(s.Store.Credentials, a.store)...), Status: withReadToken(statusOptions(s.Status, a.replicaID, a.proxy, a.store), s.Lifecycle),
		Token: s.Status.Token, API: a.adminAPI(s, log)})
	a.serving.Go(func() { _ = a.admin.Serve(adminListener(l, s.Lifecycle)) })
	log.Info("metrics and health", "addr", l.Addr().String())
	if s.Status.On {
		log.Info("status page on /status", "url", "http://"+l.Addr().String()+"/status", "token_required", s.Status.Token != "")
	}
}

// registerTicketMetrics exports the TLS ticket keys' counts: 0 without TLS
// or TLS_TICKET_SECRET.
func registerTicketMetrics(reg prometheus.Registerer, t *transport.TLS) {
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "authproxy_ticket_salts_replaced_total",
		Help: "TLS ticket key salts found in Redis that no replica stored (another length, no expiry, an expiry past their key's window) and replaced."},
		func() float64 {
			if t == nil {
				return 0
			}
			return float64(t.TicketKeys().SaltsReplaced)
		}))
}

// Stop shuts the proxy down gracefully (new connections are refused at
// once, relayed sessions get SHUTDOWN_GRACE), then stops the change feed,
// the admin endpoint and the store. It returns when all of them have
// stopped; later calls do nothing.
func (a *App) Stop() {
	a.stopOnce.Do(func() {
		a.proxy.shutdown()
		a.lifecycle.stop()
		a.stopBackground()
		a.background.Wait()
		if a.admin != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = a.admin.Shutdown(ctx)
			cancel()
		}
		a.serving.Wait()
		a.decisions.Close() // after the proxy's last decisions: what is queued is written
		_ = a.closeStore()
	})
}

// ReloadCertificates re-reads the TLS certificate, key, client CA and
// ticket key files (for SIGHUP); on failure the previous ones stay in use.
func (a *App) ReloadCertificates() error {
	return errors.Join(a.proxy.reloadCertificates(), a.reloadIssuers())
}

// Addrs are the bound addresses of the listeners.
func (a *App) Addrs() Addrs { return a.addrs }

// Store is the App's rule store.
func (a *App) Store() *authstore.Store { return a.store }

// DecisionLog is the App's decision log writer; nil when DECISION_LOG=off.
func (a *App) DecisionLog() *decisionlog.Writer { return a.decisions }

// ReplicaID names this process in the decision log: REPLICA_ID, or the
// host name plus a random suffix made at Start.
func (a *App) ReplicaID() string { return a.replicaID }

// ShutdownGrace is how long Stop lets relayed sessions run.
func (a *App) ShutdownGrace() time.Duration { return a.grace }

// OpenStore opens the Redis store of s (no connection is made until it is
// used); closeStore releases its client. log nil is slog.Default().
func OpenStore(s StoreSettings, log *slog.Logger) (store *authstore.Store, closeStore func() error, err error) {
	rdb, err := redisconn.NewClient(s.RedisURL)
	if err != nil {
		return nil, nil, cfgErr("REDIS_URL", "%v", err) // NewClient's errors hide the password
	}
	verifier, err := openTokens(s.Credentials, log)
	if err != nil {
		_ = rdb.Close()
		return nil, nil, err
	}
	store = authstore.New(rdb, authstore.Options{Prefix: s.KeyPrefix, Timeout: s.Timeout, Logger: log, ClientIDsDefault: s.ClientIDsDefault,
		NoTopicRules: !s.TopicRules, FailLimitUser: s.FailLimitUser, FailLimitIP: s.FailLimitIP, Schema: s.Schema,
		Tokens: verifier, CertUsername: s.Credentials.CertUsername})
	return store, func() error { store.Tokens().Close(); return rdb.Close() }, nil
}

// checkNotifications reads Redis's notify-keyspace-events at start and
// says in the log what a missing class costs: changes made with plain
// redis-cli (or a hash reaching its EXPIRE time) then reach live
// connections only at the periodic re-validation.
func checkNotifications(ctx context.Context, store *authstore.Store, revalidate time.Duration, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	missing, err := store.CheckNotifications(ctx)
	if ctx.Err() != nil && err != nil {
		return // stopping, or Redis never answered: the other logs say so
	}
	want := store.NotifyFlags()
	switch {
	case err != nil:
		log.Info("Redis keyspace notifications could not be checked (CONFIG GET not allowed?); set notify-keyspace-events "+want+
			" on every Redis node so that redis-cli changes and expiries reach live connections at once", "error", err)
	case missing != "":
		var lost []string
		for _, f := range missing {
			lost = append(lost, notifyClassCost[f])
		}
		every := "off: never"
		if revalidate > 0 {
			every = revalidate.String()
		}
		log.Warn("Redis keyspace notifications incomplete: these changes reach live connections only at the periodic re-validation; set notify-keyspace-events "+want,
			"missing", missing, "unseen", strings.Join(lost, "; "), "revalidate_interval", every)
	default:
		log.Info("Redis keyspace notifications on", "need", want)
	}
}

// notifyClassCost says what goes unseen without a notify-keyspace-events class.
var notifyClassCost = map[rune]string{
	'K': "K: no keyspace notification at all (redis-cli HSET, DEL, EXPIRE)",
	'g': "g: DEL, RENAME, EXPIRE of a user",
	'h': "h: HSET, HDEL of a user's fields",
	'x': "x: a user hash reaching its EXPIRE time",
	'$': "$: SET of a user's password or :su key (mosquitto-go-auth)",
	's': "s: SADD, SREM of a user's or the common ACL sets (mosquitto-go-auth)",
}

// trimAfterParks is how many relay directions gone idle (each gave up its
// goroutine and stack) make it worth returning freed memory to the
// operating system.
const trimAfterParks = 512

// trimMemory returns the stacks of goroutines that went idle to the
// operating system, every 10 seconds when enough did, until ctx ends: the
// runtime keeps freed stacks until a GC, and an idle proxy rarely
// collects, so without this the memory of connections that went idle
// would stay resident. It trims once more 10 seconds after the last
// trim, when the work a wave of connections leaves behind (the session
// registry's round, the last uses' batches) is garbage too. The process
// decides this, not the proxy package.
func trimMemory(ctx context.Context, takeParked func() int64) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	parked, settle := int64(0), false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			switch parked += takeParked(); {
			case parked >= trimAfterParks:
				parked, settle = 0, true
				debug.FreeOSMemory()
			case settle:
				settle = false
				debug.FreeOSMemory()
			}
		}
	}
}
