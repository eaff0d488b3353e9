package app

// The credential lifecycle and the admin API as the program configures
// them: ADMIN_API, ADMIN_READ_TOKEN, ADMIN_TLS_CERT_FILE and _KEY_FILE,
// LAST_USE, SESSION_REGISTRY; the writers of credential uses and of the
// session registry the App runs; the API it mounts on the admin listener.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/lastuse"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/revoked"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/sessions"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/admin"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/adminapi"
)

// LifecycleSettings are the lifecycle's and the admin API's variables,
// validated. It holds tokens: never log it.
type LifecycleSettings struct {
	API       bool   // ADMIN_API: the admin API under /api/v1/
	Token     string // ADMIN_TOKEN: may read and change
	ReadToken string // ADMIN_READ_TOKEN: may only read; "" none
	// TLS is the admin listener's certificate (ADMIN_TLS_CERT_FILE and
	// _KEY_FILE); nil: plain HTTP.
	TLS *tls.Certificate
	// LastUse: record when and from where each credential was last used.
	LastUse bool
	// Registry: publish this replica's live sessions to Redis.
	Registry bool
}

// validateLifecycle checks the variables against the admin listener's
// address ("" when METRICS_LISTEN is off).
func (c Config) validateLifecycle(adminListen string) (LifecycleSettings, []error) {
	var errs []error
	s := LifecycleSettings{API: c.AdminAPI, Token: c.AdminToken, ReadToken: c.AdminReadToken,
		LastUse: c.LastUse == "on", Registry: c.SessionRegistry == "on"}
	for _, v := range []struct{ name, val string }{{"LAST_USE", c.LastUse}, {"SESSION_REGISTRY", c.SessionRegistry}} {
		if v.val != "on" && v.val != "off" {
			errs = append(errs, cfgErr(v.name, "%q is not on or off", v.val))
		}
	}
	if c.AdminReadToken != "" && !goodToken(c.AdminReadToken) {
		errs = append(errs, cfgErr("ADMIN_READ_TOKEN", "must be at least %d printable ASCII characters without spaces (openssl rand -hex 16 makes one)", minAdminToken))
	}
	if c.AdminReadToken != "" && c.AdminReadToken == c.AdminToken {
		errs = append(errs, cfgErr("ADMIN_READ_TOKEN", "is ADMIN_TOKEN: the read token must differ from the one that may change things"))
	}
	cert, certErrs := c.adminTLS()
	s.TLS = cert
	errs = append(errs, certErrs...)
	if !c.AdminAPI {
		return s, errs
	}
	switch {
	case adminListen == "":
		errs = append(errs, cfgErr("ADMIN_API", "is true but %sMETRICS_LISTEN is off: the API is served on that listener", EnvPrefix))
	case c.AdminToken == "":
		errs = append(errs, cfgErr("ADMIN_TOKEN", "is required with %sADMIN_API=true: the API changes users, roles and bans", EnvPrefix))
	case cert == nil && len(certErrs) == 0 && !loopbackListen(adminListen):
		errs = append(errs, cfgErr("ADMIN_TLS_CERT_FILE", "and %sADMIN_TLS_KEY_FILE are required with %sADMIN_API=true when %sMETRICS_LISTEN=%s is not a loopback address: the API's tokens and passwords must not cross the network in clear",
			EnvPrefix, EnvPrefix, EnvPrefix, adminListen))
	}
	return s, errs
}

// goodToken: at least minAdminToken printable ASCII characters, no space.
func goodToken(t string) bool {
	return len(t) >= minAdminToken && !strings.ContainsFunc(t, func(r rune) bool { return r > unicode.MaxASCII || !unicode.IsGraphic(r) || r == ' ' })
}

// adminTLS loads the admin listener's key pair, when one is set.
func (c Config) adminTLS() (*tls.Certificate, []error) {
	switch {
	case c.AdminTLSCertFile == "" && c.AdminTLSKeyFile == "":
		return nil, nil
	case c.AdminTLSCertFile == "" || c.AdminTLSKeyFile == "":
		return nil, []error{cfgErr("ADMIN_TLS_CERT_FILE", "and %sADMIN_TLS_KEY_FILE must be set together", EnvPrefix)}
	}
	cert, err := LoadKeyPair("ADMIN_TLS_CERT_FILE", "ADMIN_TLS_KEY_FILE", c.AdminTLSCertFile, c.AdminTLSKeyFile)
	if err != nil {
		return nil, []error{err}
	}
	return &cert, nil
}

// lifecycle is what the App runs for the credential lifecycle: the writer
// of credential uses and the session registry's publisher (nil when off).
type lifecycle struct {
	uses     *lastuse.Writer
	sessions *sessions.Publisher
}

// startUses starts recording credential uses (before the proxy decides
// its first CONNECT), and exports authproxy_last_use_dropped_total (0
// when LAST_USE=off).
func (l *lifecycle) startUses(s LifecycleSettings, store *authstore.Store, reg prometheus.Registerer, log *slog.Logger) {
	if s.LastUse {
		l.uses = store.LastUse(lastuse.Options{Logger: log})
	}
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "authproxy_last_use_dropped_total",
		Help: "Credential uses (LAST_USE) not recorded in Redis: the queue was full, or Redis failed or was too slow to take them."},
		func() float64 { return float64(l.uses.Dropped()) }))
}

// startRegistry starts publishing the proxy's live sessions.
func (l *lifecycle) startRegistry(s LifecycleSettings, store *authstore.Store, dev device, replica string, log *slog.Logger) error {
	if !s.Registry {
		return nil
	}
	p, err := store.PublishSessions(sessions.PublisherOptions{Replica: replica, Logger: log, Snapshot: dev.registrySessions,
		Version: dev.p.SessionsVersion})
	l.sessions = p
	return err
}

// stop stops both, after the proxy: the last uses are written and this
// replica's sessions are removed from the registry.
func (l *lifecycle) stop() {
	if l.sessions != nil {
		l.sessions.Close()
	}
	l.uses.Close()
}

// registrySessions are the proxy's live sessions as the registry keeps
// them.
func (d device) registrySessions() []sessions.Session {
	snap := d.p.Snapshot()
	out := make([]sessions.Session, len(snap))
	for i, s := range snap {
		out[i] = sessions.Session{Username: s.Username, ClientID: s.ClientID, Remote: s.Remote, Since: s.Since, Protocol: s.Protocol,
			TLS: s.TLS, Resumed: s.Resumed, Credential: s.Credential, OldPassword: s.OldPassword}
	}
	return out
}

// adminAPI is the admin API's handler; nil when ADMIN_API is off (or,
// which validation prevents, when it cannot be made: logged).
func (a *App) adminAPI(s Settings, log *slog.Logger) http.Handler {
	if !s.Lifecycle.API {
		return nil
	}
	api, err := adminapi.New(adminapi.Options{Store: a.store, Token: s.Lifecycle.Token, ReadToken: s.Lifecycle.ReadToken,
		Recorder: recorder(a.decisions), Replica: a.replicaID, Logger: log, Revoker: newRevoker(a.store, s, log)})
	if err != nil {
		log.Error("the admin API is off", "error", err)
		return nil
	}
	log.Info("admin API on /api/v1/", "tls", s.Lifecycle.TLS != nil, "read_token", s.Lifecycle.ReadToken != "")
	return api
}

// revoker is the API's token and certificate revocation: the writer
// `token revoke` and `cert revoke` use, the client CA file's
// certificates, the issuers listed.
type revoker struct {
	*revoked.Writer
	cas   []*x509.Certificate
	store *authstore.Store
}

func newRevoker(store *authstore.Store, s Settings, log *slog.Logger) revoker {
	r := revoker{Writer: store.Revocations(), store: store}
	if s.TLS != nil && s.TLS.ClientCAFile != "" {
		cas, err := revoked.ReadCAs(s.TLS.ClientCAFile)
		if err != nil {
			log.Warn("admin API: the client CA file cannot be read; a certificate can be revoked by its serial only", "error", err)
		}
		r.cas = cas
	}
	return r
}

func (r revoker) ClientCAs() []*x509.Certificate { return r.cas }

func (r revoker) Issuers() []string { return r.store.Tokens().Issuers() }

// withReadToken lets the status page take the read token, and with the
// API on, take "?token=" for the read token alone.
func withReadToken(o *admin.StatusOptions, s LifecycleSettings) *admin.StatusOptions {
	if o != nil {
		o.ReadToken, o.QueryReadOnly = s.ReadToken, s.API
	}
	return o
}

// adminListener wraps the admin listener in TLS when a certificate is set.
func adminListener(l net.Listener, s LifecycleSettings) net.Listener {
	if s.TLS == nil {
		return l
	}
	return tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{*s.TLS}, MinVersion: tls.VersionTLS12})
}

// PasswordOld is the status page's sentence on what still uses a user's
// previous password ("" without one): admin.PasswordOldSource.
func (s statusSource) PasswordOld(ctx context.Context, user string) string {
	u, err := s.store.Uses(ctx, user)
	if err != nil || u.Old == nil {
		return ""
	}
	return u.Old.Sentence()
}
