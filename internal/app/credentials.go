package app

// The credentials beyond passwords as the program configures them: the
// JWT issuers file with its leeway and the device tokens' audience, the
// certificate identity, and what the App shows of them (metrics,
// readiness).

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/tokens"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/admin"
)

// CredentialSettings are JWT_ISSUERS_FILE (read and checked by
// validation; the store reads it again, and on every change), JWT_LEEWAY,
// JWT_DEVICE_AUDIENCE and CERT_USERNAME.
type CredentialSettings struct {
	IssuersFile    string // "": no issuer
	Leeway         time.Duration
	DeviceAudience string // "": device-signed tokens are refused
	CertUsername   string // authstore.CertUsername*
	// LazyKeys: the issuers' keys are read at the first token (a
	// command), not at start.
	LazyKeys bool
}

// tokensOn reports whether tokens are verified at all.
func (c CredentialSettings) tokensOn() bool { return c.IssuersFile != "" || c.DeviceAudience != "" }

// validateCredentials checks the credentials' variables: the issuers file
// is read and every problem of it named.
func (c Config) validateCredentials() (CredentialSettings, []error) {
	var errs []error
	s := CredentialSettings{IssuersFile: c.JWTIssuersFile, Leeway: c.JWTLeeway, DeviceAudience: c.JWTDeviceAudience, CertUsername: c.CertUsername}
	if c.JWTIssuersFile != "" {
		f, err := tokens.ReadFile(c.JWTIssuersFile)
		if err != nil {
			errs = append(errs, cfgErr("JWT_ISSUERS_FILE", "%v", err))
		}
		for _, is := range f.Issuers {
			if is.Users == tokens.UsersToken && c.Schema != "native" {
				errs = append(errs, cfgErr("JWT_ISSUERS_FILE", "issuer %q has users: token, which needs %sSCHEMA=native", is.Issuer, EnvPrefix))
			}
		}
	}
	if c.JWTLeeway < 0 || c.JWTLeeway > 10*time.Minute {
		errs = append(errs, cfgErr("JWT_LEEWAY", "%v is not between 0 and 10m", c.JWTLeeway))
	}
	if err := authstore.CheckCertUsername(c.CertUsername); err != nil {
		errs = append(errs, cfgErr("CERT_USERNAME", "%v", err))
	}
	return s, errs
}

// checkCertUsername: a certificate identity needs client certificates.
func (c Config) checkCertUsername() error {
	if c.CertUsername != authstore.CertUsernameOff && c.TLSClientCAFile == "" {
		return cfgErr("CERT_USERNAME", "is %q but %sTLS_CLIENT_CA_FILE is not set: no client certificate is ever verified", c.CertUsername, EnvPrefix)
	}
	return nil
}

// openTokens starts the token verifier of the settings (nil when tokens
// are off): it reads the issuers file, watches it, and reads each
// issuer's keys in the background.
func openTokens(c CredentialSettings, log *slog.Logger) (*tokens.Verifier, error) {
	if !c.tokensOn() {
		return nil, nil
	}
	leeway := c.Leeway
	if leeway == 0 {
		leeway = -1 // tokens' "none"; its zero is the default
	}
	v, err := tokens.New(tokens.Options{File: c.IssuersFile, Leeway: leeway, DeviceAudience: c.DeviceAudience, Lazy: c.LazyKeys, Logger: log})
	if err != nil {
		return nil, cfgErr("JWT_ISSUERS_FILE", "%v", err)
	}
	return v, nil
}

// tokenCheck is /readyz's check of the issuers' keys: not ready while a
// listed issuer's keys have never loaded.
func tokenCheck(c CredentialSettings, store *authstore.Store) []admin.Check {
	if c.IssuersFile == "" {
		return nil
	}
	return []admin.Check{{Name: "jwks", Target: c.IssuersFile, Probe: func(context.Context) error { return store.Tokens().Ready() }}}
}

// reloadIssuers reads the issuers file again (SIGHUP); nothing without one.
func (a *App) reloadIssuers() error {
	if a.store == nil || len(a.store.Tokens().Issuers()) == 0 {
		return nil
	}
	return a.store.Tokens().Reload()
}

// credentialMetrics exports what the credentials beyond passwords count:
// authproxy_token_refused_total{cause}, authproxy_jwks_fetch_failures_total{issuer},
// authproxy_jwks_keys{issuer} and authproxy_revoked_credentials.
type credentialMetrics struct {
	store                       *authstore.Store
	refused, failures, keys, rv *prometheus.Desc
}

func registerCredentialMetrics(reg prometheus.Registerer, store *authstore.Store) {
	reg.MustRegister(&credentialMetrics{store: store,
		refused:  prometheus.NewDesc("authproxy_token_refused_total", "Tokens refused, by cause (the token's reason code is 0x04 / 0x86).", []string{"cause"}, nil),
		failures: prometheus.NewDesc("authproxy_jwks_fetch_failures_total", "Reads of an issuer's JWKS that failed (the keys held stay).", []string{"issuer"}, nil),
		keys:     prometheus.NewDesc("authproxy_jwks_keys", "Keys held of an issuer's JWKS; 0 before its first read.", []string{"issuer"}, nil),
		rv:       prometheus.NewDesc("authproxy_revoked_credentials", "Revoked tokens and certificates held in memory.", nil, nil),
	})
}

func (m *credentialMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.refused
	ch <- m.failures
	ch <- m.keys
	ch <- m.rv
}

func (m *credentialMetrics) Collect(ch chan<- prometheus.Metric) {
	v := m.store.Tokens()
	for _, cause := range tokens.Causes {
		ch <- prometheus.MustNewConstMetric(m.refused, prometheus.CounterValue, float64(v.Refused(cause)), cause)
	}
	for _, st := range v.States() {
		ch <- prometheus.MustNewConstMetric(m.failures, prometheus.CounterValue, float64(st.FetchFailures), st.Issuer)
		ch <- prometheus.MustNewConstMetric(m.keys, prometheus.GaugeValue, float64(st.Keys), st.Issuer)
	}
	ch <- prometheus.MustNewConstMetric(m.rv, prometheus.GaugeValue, float64(m.store.Revoked().Size()))
}
