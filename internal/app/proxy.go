package app

// This file is the package's only user of package proxy: the settings
// mapped to its types, the helpers validation borrows from it, and
// startProxy, the one function that builds a proxy and hands it its
// listeners (where a change of the proxy's listener API lands). The rest of
// the package holds a running proxy as a device.

import (
	"context"
	"crypto/tls"
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

// device is a running proxy and the TLS terminator its listeners share
// (nil without TLS), which the App owns: it reloads and closes it.
type device struct {
	p   *proxy.Proxy
	tls *transport.TLS
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
	cfg.Brokers, cfg.Auth, cfg.IPBans = backend(s.Backend), store, ipBans(store)
	cfg.Logger, cfg.Metrics, cfg.Recorder, cfg.ReplicaID = log, proxy.NewMetrics(reg), rec, s.DecisionLog.ReplicaID
	p, err := proxy.New(cfg)
	if err != nil {
		if terminator != nil {
			terminator.Close()
		}
		return device{}, err
	}
	for _, l := range ls {
		t := deviceTerminator(l.kind, terminator, s.Edge)
		serving.Go(func() { _ = p.Serve(l.Listener, t) })
	}
	return device{p, terminator}, nil
}

// follow applies rule changes to live connections until ctx ends.
func (d device) follow(ctx context.Context, store *authstore.Store) { _ = d.p.Follow(ctx, store) }

// shutdown stops accepting, lets relayed sessions run for the grace, then
// closes them; it returns when every connection is closed, and stops the
// TLS terminator's key rotation and file reloads.
func (d device) shutdown() {
	_ = d.p.Shutdown(context.Background())
	if d.tls != nil {
		d.tls.Close()
	}
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
			TLS: s.TLS, Resumed: s.Resumed, TopicRules: s.TopicRules, BytesUp: s.BytesUp, BytesDown: s.BytesDown}
	}
	return out
}

// lastChange is when the last change notification came; zero if none has.
func (d device) lastChange() time.Time { return d.p.LastChange() }

// backend is the proxy's view of the broker.
func backend(b BackendSettings) proxy.Backend {
	pb := proxy.Backend{Addr: b.Addr, Username: b.Username, Password: b.Password, DialTimeout: b.DialTimeout}
	if b.TLS {
		pb.TLS = &tls.Config{ServerName: b.ServerName, RootCAs: b.RootCAs, MinVersion: tls.VersionTLS12}
		if b.Certificate != nil {
			pb.TLS.Certificates = []tls.Certificate{*b.Certificate}
		}
	}
	return pb
}

// ProbeBackend checks that the broker is reachable as the proxy reaches it:
// with backend credentials a real MQTT CONNECT that must be accepted,
// without them a TCP (or TLS) connection.
func ProbeBackend(ctx context.Context, b BackendSettings) error {
	return backendProbe(b)(ctx)
}

// backendProbe is ProbeBackend with the broker's TLS configuration built
// once, for repeated probes.
func backendProbe(b BackendSettings) func(context.Context) error {
	return backend(b).Probe
}

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
