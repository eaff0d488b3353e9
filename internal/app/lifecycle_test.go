package app

import (
	"strings"
	"testing"
)

// TestAdminAPIConfig: ADMIN_API needs the admin listener and ADMIN_TOKEN,
// and TLS when that listener is not loopback; the read token must be
// well formed and differ from ADMIN_TOKEN; the TLS files go together and
// must load; LAST_USE and SESSION_REGISTRY are on or off. Each refusal
// names its variable.
func TestAdminAPIConfig(t *testing.T) {
	f := testFiles(t)
	token := "0123456789abcdef0123"
	for _, c := range []struct {
		name string
		set  func(*Config)
		want string // "" valid
	}{
		{"on loopback, no TLS", func(c *Config) { c.AdminAPI, c.AdminToken = true, token }, ""},
		{"no token", func(c *Config) { c.AdminAPI = true }, "AUTHPROXY_ADMIN_TOKEN: is required with AUTHPROXY_ADMIN_API=true"},
		{"listener off", func(c *Config) { c.AdminAPI, c.AdminToken, c.MetricsListen = true, token, "off" }, "AUTHPROXY_ADMIN_API: is true but AUTHPROXY_METRICS_LISTEN is off"},
		{"every interface, no TLS", func(c *Config) { c.AdminAPI, c.AdminToken, c.MetricsListen = true, token, ":9090" },
			"AUTHPROXY_ADMIN_TLS_CERT_FILE: and AUTHPROXY_ADMIN_TLS_KEY_FILE are required with AUTHPROXY_ADMIN_API=true when AUTHPROXY_METRICS_LISTEN=:9090 is not a loopback address"},
		{"every interface, TLS", func(c *Config) {
			c.AdminAPI, c.AdminToken, c.MetricsListen, c.AdminTLSCertFile, c.AdminTLSKeyFile = true, token, ":9090", f.ServerCert, f.ServerKey
		}, ""},
		{"half the TLS files", func(c *Config) { c.AdminTLSCertFile = f.ServerCert }, "AUTHPROXY_ADMIN_TLS_CERT_FILE: and AUTHPROXY_ADMIN_TLS_KEY_FILE must be set together"},
		{"a key that is no key", func(c *Config) { c.AdminTLSCertFile, c.AdminTLSKeyFile = f.ServerCert, f.CA }, "AUTHPROXY_ADMIN_TLS_KEY_FILE"},
		{"short read token", func(c *Config) { c.AdminReadToken = "short" }, "AUTHPROXY_ADMIN_READ_TOKEN: must be at least 16"},
		{"read token = token", func(c *Config) { c.AdminToken, c.AdminReadToken = token, token }, "AUTHPROXY_ADMIN_READ_TOKEN: is ADMIN_TOKEN"},
		{"LAST_USE", func(c *Config) { c.LastUse = "yes" }, `AUTHPROXY_LAST_USE: "yes" is not on or off`},
		{"SESSION_REGISTRY", func(c *Config) { c.SessionRegistry = "1" }, `AUTHPROXY_SESSION_REGISTRY: "1" is not on or off`},
	} {
		cfg := validConfig(f)
		cfg.MetricsListen = "127.0.0.1:9090"
		c.set(&cfg)
		s, err := cfg.Validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want == "" && (!s.Lifecycle.API || !s.Lifecycle.LastUse || !s.Lifecycle.Registry):
			t.Errorf("%s: settings %+v", c.name, s.Lifecycle)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}
