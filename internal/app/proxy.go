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

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/transport"
	"github.com/mqtt-authproxy/mqtt-authproxy/proxy"
)

// deviceListener is an open device-facing listener and whether the proxy
// terminates TLS on it.
type deviceListener struct {
	net.Listener
	tls bool
}

// device is a running proxy.
type device struct{ p *proxy.Proxy }

// startProxy builds the proxy from s and serves every listener on its own
// goroutine, counted in serving; each returns once the proxy is shut down.
func startProxy(s Settings, store *authstore.Store, reg prometheus.Registerer, log *slog.Logger, ls []deviceListener, serving *sync.WaitGroup) (device, error) {
	var t *transport.TLSConfig
	if s.TLS != nil {
		t = &transport.TLSConfig{CertFile: s.TLS.CertFile, KeyFile: s.TLS.KeyFile, ClientCAFile: s.TLS.ClientCAFile, ClientAuth: s.TLS.ClientAuth,
			MinVersion: s.TLS.MinVersion, CipherSuites: s.TLS.CipherSuites, TicketKeyFile: s.TLS.TicketKeyFile}
	}
	revalidate := s.RevalidateInterval
	if revalidate == 0 {
		revalidate = -1 // proxy.Config: negative is off
	}
	p, err := proxy.New(proxy.Config{
		TLS: t, Backend: backend(s.Backend), Auth: store,
		ConnectTimeout: s.ConnectTimeout, HandshakeTimeout: s.HandshakeTimeout, MaxConnectBytes: s.MaxConnectBytes,
		MaxConnections: s.MaxConnections, MaxPending: s.MaxPending, ShutdownGrace: s.ShutdownGrace, RevalidateInterval: revalidate,
		MaxPacketBytes: s.MaxPacketBytes, DenyAction: denyAction(s.DenyDisconnect),
		Logger: log, Metrics: proxy.NewMetrics(reg),
	})
	if err != nil {
		return device{}, err
	}
	for _, l := range ls {
		var t transport.Terminator = transport.Plain{}
		if l.tls {
			t = p.TLS()
		}
		serving.Go(func() { _ = p.Serve(l.Listener, t) })
	}
	return device{p}, nil
}

// follow applies rule changes to live connections until ctx ends.
func (d device) follow(ctx context.Context, store *authstore.Store) { _ = d.p.Follow(ctx, store) }

// shutdown stops accepting, lets relayed sessions run for the grace, then
// closes them; it returns when every connection is closed.
func (d device) shutdown() { d.p.Shutdown(context.Background()) }

// reloadCertificates re-reads the listener's files.
func (d device) reloadCertificates() error { return d.p.ReloadCertificates() }

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

// checkTicketKeys parses a ticket key file as the proxy will.
func checkTicketKeys(file string) error {
	_, err := transport.LoadTicketKeys(file)
	return err
}

// loadCAPool reads a PEM file of CA certificates.
func loadCAPool(file string) (*x509.CertPool, error) {
	return transport.LoadCAPool(file)
}

// defaultMaxPending is MAX_PENDING's default for a MAX_CONNECTIONS.
func defaultMaxPending(maxConnections int) int { return proxy.DefaultMaxPending(maxConnections) }

// denyAction maps ACL_DENY_ACTION to the proxy's.
func denyAction(disconnect bool) proxy.DenyAction {
	if disconnect {
		return proxy.DenyDisconnect
	}
	return proxy.DenyDrop
}
