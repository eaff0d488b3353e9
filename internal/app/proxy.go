package app

// This file (with brokers.go, which builds the broker pools the proxy
// dials through) is the package's user of package proxy: the settings
// mapped to its types, the helpers validation borrows from it, and
// startProxy, the one function that builds a proxy and hands it its
// listeners (where a change of the proxy's listener API lands). The rest of
// the package holds a running proxy as a device.

import (
	"context"
	"crypto/x509"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/admin"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/transport"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
	"github.com/mqtt-authproxy/mqtt-authproxy/proxy"
)

// deviceListener is an open device-facing listener and the transport the
// proxy terminates on it.
type deviceListener struct {
	net.Listener
	kind deviceKind
}

// device is a running proxy, the TLS terminator its listeners share
// (nil without TLS), which the App owns: it reloads and closes it, and the
// broker pools behind it (brokers.go).
type device struct {
	p       *proxy.Proxy
	tls     *transport.TLS
	brokers brokerSet
	// counter counts the replica's sessions for max_sessions in Redis
	// (nil: it could not start); closed after the proxy, so that the last
	// sessions are counted out.
	counter interface{ Close() }
}

// startProxy builds the proxy from s and serves every listener on its own
// goroutine, counted in serving; each returns once the proxy is shut down.
// rec (nil: none) takes the decision log's entries.
func startProxy(s Settings, store *authstore.Store, reg prometheus.Registerer, log *slog.Logger, ls []deviceListener, serving *sync.WaitGroup,
	rec policy.Recorder) (device, error) {
	var terminator *transport.TLS
	if s.TLS != nil {
		t := transport.TLSConfig{CertFile: s.TLS.CertFile, KeyFile: s.TLS.KeyFile, ClientCAFile: s.TLS.ClientCAFile, ClientAuth: s.TLS.ClientAuth,
			MinVersion: s.TLS.MinVersion, CipherSuites: s.TLS.CipherSuites, TicketKeyFile: s.TLS.TicketKeyFile}
		if s.TLS.TicketSecret != nil {
			t.TicketSecret, t.TicketStore = s.TLS.TicketSecret, store
		}
		var err error
		if terminator, err = transport.NewTLS(t, log); err != nil {
			return device{}, err
		}
		logTicketMode(log, s.TLS)
	}
	cfg := s.Proxy
	brokers, err := startBrokers(s, store, reg, log)
	if err != nil {
		if terminator != nil {
			terminator.Close()
		}
		return device{}, err
	}
	cfg.Brokers, cfg.Auth, cfg.IPBans = brokers, store, ipBans(store)
	cfg.Revoked = store.RevokedReason
	cfg.Logger, cfg.Metrics, cfg.Recorder, cfg.ReplicaID = log, proxy.NewMetrics(reg), rec, s.DecisionLog.ReplicaID
	var closer interface{ Close() }
	if counter, err := store.SessionCounter(s.DecisionLog.ReplicaID); err == nil { // max_sessions
		cfg.Sessions, closer = counter, counter
	}
	p, err := proxy.New(cfg)
	if err != nil {
		if terminator != nil {
			terminator.Close()
		}
		brokers.stop()
		if closer != nil {
			closer.Close()
		}
		return device{}, err
	}
	for _, l := range ls {
		t := deviceTerminator(l.kind, terminator, s.Edge)
		serving.Go(func() { _ = p.Serve(l.Listener, t) })
	}
	return device{p: p, tls: terminator, brokers: brokers, counter: closer}, nil
}

// follow applies rule changes to live connections until ctx ends.
func (d device) follow(ctx context.Context, store *authstore.Store) { _ = d.p.Follow(ctx, store) }

// shutdown stops accepting, drains the relayed sessions over the grace
// (DRAIN_RATE), then closes the rest; it returns when every connection is
// closed, and stops the TLS terminator's key rotation and file reloads and
// the brokers' probes.
func (d device) shutdown() {
	_ = d.p.Shutdown(context.Background())
	if d.counter != nil {
		d.counter.Close()
	}
	if d.tls != nil {
		d.tls.Close()
	}
	d.brokers.stop()
}

// reloadCertificates re-reads the TLS listener's files (nothing without
// TLS).
func (d device) reloadCertificates() error {
	if d.tls == nil {
		return nil
	}
	return d.tls.Reload()
}

// sessions are the live sessions, as the status page shows them.
func (d device) sessions() []admin.Session {
	snap := d.p.Snapshot()
	out := make([]admin.Session, len(snap))
	for i, s := range snap {
		out[i] = admin.Session{Username: s.Username, ClientID: s.ClientID, Remote: s.Remote, Since: s.Since, Protocol: s.Protocol,
			TLS: s.TLS, Resumed: s.Resumed, TopicRules: s.TopicRules, BytesUp: s.BytesUp, BytesDown: s.BytesDown,
			Slowed: s.Slowed, Limits: s.Limits}
	}
	return out
}

// lastChange is when the last change notification came; zero if none has.
func (d device) lastChange() time.Time { return d.p.LastChange() }

// cipherSuites are the TLS 1.2 suites the listener offers: AEAD only, plus
// the ECDHE CBC-SHA ones with TLS12_CBC.
func cipherSuites(cbc bool) []uint16 {
	s := transport.DefaultCipherSuites()
	if cbc {
		s = append(s, transport.LegacyCBCCipherSuites()...)
	}
	return s
}

// minTicketSecret is the shortest TLS_TICKET_SECRET, in bytes.
const minTicketSecret = transport.MinTicketSecret

// logTicketMode says at start where the TLS session ticket keys come
// from, and so whether a device resumes on any replica or on this one only.
func logTicketMode(log *slog.Logger, t *TLSSettings) {
	switch {
	case t.TicketKeyFile != "":
		log.Info("TLS session ticket keys from "+EnvPrefix+"TLS_TICKET_KEY_FILE; replicas given the same file resume each other's sessions", "file", t.TicketKeyFile)
	case t.TicketSecret != nil:
		log.Info("TLS session ticket keys shared through Redis: derived from "+EnvPrefix+"TLS_TICKET_SECRET and a salt per hour; a device resumes on any replica with the same secret_id",
			"secret_id", transport.TicketSecretID(t.TicketSecret))
	default:
		log.Info("TLS session ticket keys are per process: a device resumes only on the replica that issued its ticket; set " + EnvPrefix +
			"TLS_TICKET_SECRET_FILE (the same secret on every replica) to share them through Redis")
	}
}

// checkTicketKeys parses a ticket key file as the proxy will.
func checkTicketKeys(file string) error {
	_, err := transport.LoadTicketKeys(file)
	return err
}

// loadCAPool reads a PEM file of CA certificates.
func loadCAPool(file string) (*x509.CertPool, error) {
	return transport.LoadCAPool(file)
}

// ipBans reads the IP bans for the proxy.
func ipBans(store *authstore.Store) func(context.Context) ([]proxy.IPBan, error) {
	return func(ctx context.Context) ([]proxy.IPBan, error) {
		bans, err := store.IPBans(ctx)
		out := make([]proxy.IPBan, len(bans))
		for i, b := range bans {
			out[i] = proxy.IPBan{Prefix: b.Prefix, Until: b.Until, Reason: b.Reason}
		}
		return out, err
	}
}

// registerStoreMetrics exports the store's counts:
// authproxy_password_hashes_total{result="computed|remembered"} and
// authproxy_clientid_default_refused_total.
func registerStoreMetrics(reg prometheus.Registerer, store *authstore.Store) {
	help := "Password verifications: computed (a hash) or remembered (a success verified before, no hash)."
	for result, f := range map[string]func() int64{"computed": store.HashCount, "remembered": store.RememberedCount} {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "authproxy_password_hashes_total", Help: help,
			ConstLabels: prometheus.Labels{"result": result}}, func() float64 { return float64(f()) }))
	}
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "authproxy_clientid_default_refused_total",
		Help: "CONNECTs refused because their client id did not match CLIENTIDS_DEFAULT (users without a clientids field)."},
		func() float64 { return float64(store.DefaultClientIDRefusals()) }))
}
