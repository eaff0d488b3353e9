package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
	"github.com/mqtt-authproxy/mqtt-authproxy/proxy"
)

// envPrefix is the prefix of every configuration variable.
const envPrefix = "AUTHPROXY_"

// Config is the whole configuration, from AUTHPROXY_* variables. Defaults
// are in the tags; validation is in Validate.
type Config struct {
	Listen           string `env:"LISTEN" envDefault:":8883"`
	TLSCertFile      string `env:"TLS_CERT_FILE"`
	TLSKeyFile       string `env:"TLS_KEY_FILE"`
	TLSClientCAFile  string `env:"TLS_CLIENT_CA_FILE"`
	TLSClientAuth    string `env:"TLS_CLIENT_AUTH"` // default: require if a CA is set, else none
	TLSMinVersion    string `env:"TLS_MIN_VERSION" envDefault:"1.2"`
	TLSTicketKeyFile string `env:"TLS_TICKET_KEY_FILE"`
	TLS12CBC         bool   `env:"TLS12_CBC"` // also offer the ECDHE CBC-SHA suites in TLS 1.2
	PlainListen      string `env:"PLAIN_LISTEN"`

	BackendAddr          string `env:"BACKEND_ADDR"`
	BackendTLS           bool   `env:"BACKEND_TLS"`
	BackendTLSCAFile     string `env:"BACKEND_TLS_CA_FILE"`
	BackendTLSServerName string `env:"BACKEND_TLS_SERVER_NAME"`
	BackendTLSCertFile   string `env:"BACKEND_TLS_CERT_FILE"`
	BackendTLSKeyFile    string `env:"BACKEND_TLS_KEY_FILE"`
	BackendUsername      string `env:"BACKEND_USERNAME"`
	BackendPassword      string `env:"BACKEND_PASSWORD"`

	RedisURL       string        `env:"REDIS_URL" envDefault:"redis://127.0.0.1:6379/0"`
	RedisKeyPrefix string        `env:"REDIS_KEY_PREFIX" envDefault:"mqtt:"`
	RedisTimeout   time.Duration `env:"REDIS_TIMEOUT" envDefault:"500ms"`
	// ClientIDsDefault are the client id globs of a user without a
	// clientids field: bound to the user name unless widened on purpose.
	ClientIDsDefault string `env:"CLIENTIDS_DEFAULT" envDefault:"%u %u-*"`

	ConnectTimeout     time.Duration `env:"CONNECT_TIMEOUT" envDefault:"10s"`
	HandshakeTimeout   time.Duration `env:"TLS_HANDSHAKE_TIMEOUT" envDefault:"5s"`
	BackendDialTimeout time.Duration `env:"BACKEND_DIAL_TIMEOUT" envDefault:"5s"`
	MaxConnectBytes    int           `env:"MAX_CONNECT_BYTES" envDefault:"65536"`
	MaxConnections     int           `env:"MAX_CONNECTIONS" envDefault:"0"`
	MaxPending         int           `env:"MAX_PENDING"` // default: MAX_CONNECTIONS/4 (at least 16), or 1024 without a cap
	ShutdownGrace      time.Duration `env:"SHUTDOWN_GRACE" envDefault:"10s"`
	RevalidateInterval time.Duration `env:"REVALIDATE_INTERVAL" envDefault:"60s"`

	MetricsListen string `env:"METRICS_LISTEN" envDefault:"127.0.0.1:9090"` // loopback: deployments that scrape it set :9090
	Pprof         bool   `env:"PPROF"`
	LogLevel      string `env:"LOG_LEVEL" envDefault:"info"`
	LogFormat     string `env:"LOG_FORMAT" envDefault:"text"`
}

// ConfigError is a bad or missing configuration value: exit code 2.
type ConfigError struct {
	Var string // the variable, with its prefix
	Msg string
}

func (e *ConfigError) Error() string { return e.Var + ": " + e.Msg }

func cfgErr(v, format string, args ...any) error {
	return &ConfigError{Var: envPrefix + v, Msg: fmt.Sprintf(format, args...)}
}

// loadConfig reads the environment. Parse errors name the variable.
func loadConfig() (Config, error) {
	var c Config
	err := env.ParseWithOptions(&c, env.Options{Prefix: envPrefix})
	if err == nil {
		return c, nil
	}
	var agg env.AggregateError
	if errors.As(err, &agg) {
		var msgs []error
		for _, e := range agg.Errors {
			var pe env.ParseError
			if errors.As(e, &pe) {
				msgs = append(msgs, cfgErr(envName(pe.Name), "%v", unwrapAll(pe.Err)))
				continue
			}
			msgs = append(msgs, e)
		}
		return c, errors.Join(msgs...)
	}
	return c, err
}

// defaultConfig is the configuration of an empty environment: the
// defaults of the env tags, the one place they are written.
func defaultConfig() Config {
	var c Config
	if err := env.ParseWithOptions(&c, env.Options{Prefix: envPrefix, Environment: map[string]string{}}); err != nil {
		panic("config defaults do not parse: " + err.Error())
	}
	return c
}

// envName maps a Config field name to its variable name (without prefix).
func envName(field string) string {
	if f, ok := reflect.TypeOf(Config{}).FieldByName(field); ok {
		return f.Tag.Get("env")
	}
	return field
}

func unwrapAll(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}

// serveConfigFromEnv loads and validates the configuration of serve and check.
func serveConfigFromEnv() (Config, serveSettings, error) {
	cfg, err := loadConfig()
	if err != nil {
		return cfg, serveSettings{}, err
	}
	settings, err := cfg.validateServe()
	return cfg, settings, err
}

// validateCommon checks what every command that talks to Redis needs.
func (c *Config) validateCommon() error {
	var errs []error
	if rdb, err := authstore.NewClient(c.RedisURL); err != nil {
		errs = append(errs, cfgErr("REDIS_URL", "%v", err)) // NewClient's errors hide the password
	} else {
		_ = rdb.Close()
	}
	if len(strings.Fields(c.ClientIDsDefault)) == 0 {
		errs = append(errs, cfgErr("CLIENTIDS_DEFAULT", "is empty: no user without a clientids field could connect (use * to allow any client id)"))
	}
	if c.RedisKeyPrefix == "" {
		errs = append(errs, cfgErr("REDIS_KEY_PREFIX", "must not be empty"))
	}
	if c.RedisTimeout <= 0 {
		errs = append(errs, cfgErr("REDIS_TIMEOUT", "must be positive, is %v", c.RedisTimeout))
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		errs = append(errs, cfgErr("LOG_LEVEL", "%v", err))
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		errs = append(errs, cfgErr("LOG_FORMAT", "%q is not text or json", c.LogFormat))
	}
	return errors.Join(errs...)
}

// serveSettings is the validated configuration of serve and check.
type serveSettings struct {
	tls     *proxy.TLSConfig
	backend proxy.Backend
}

// off is the value that turns a listener with a default address off
// (an empty value takes the default).
const off = "off"

// validateServe checks everything serve needs, loading the certificate
// files so that an unreadable file or a key that does not match stops the
// start with a message naming the variable.
func (c *Config) validateServe() (serveSettings, error) {
	var s serveSettings
	errs := []error{c.validateCommon()}
	if c.Listen == off {
		c.Listen = ""
	}
	if c.MetricsListen == off {
		c.MetricsListen = ""
	}
	add := func(err error) { errs = append(errs, err) }

	if c.Listen == "" && c.PlainListen == "" {
		add(cfgErr("LISTEN", "is off and %sPLAIN_LISTEN is empty: nothing to serve", envPrefix))
	}
	for _, v := range []struct{ name, addr string }{{"LISTEN", c.Listen}, {"PLAIN_LISTEN", c.PlainListen}, {"METRICS_LISTEN", c.MetricsListen}} {
		if v.addr != "" {
			if _, _, err := net.SplitHostPort(v.addr); err != nil {
				add(cfgErr(v.name, "%q is not host:port (%v)", v.addr, err))
			}
		}
	}
	if c.Listen != "" {
		t := &proxy.TLSConfig{CertFile: c.TLSCertFile, KeyFile: c.TLSKeyFile, ClientCAFile: c.TLSClientCAFile, TicketKeyFile: c.TLSTicketKeyFile,
			CipherSuites: proxy.DefaultCipherSuites()}
		if c.TLS12CBC {
			t.CipherSuites = append(t.CipherSuites, proxy.LegacyCBCCipherSuites()...)
		}
		if c.TLSTicketKeyFile != "" {
			if _, err := proxy.LoadTicketKeys(c.TLSTicketKeyFile); err != nil {
				add(cfgErr("TLS_TICKET_KEY_FILE", "%v", err))
			}
		}
		switch {
		case c.TLSCertFile == "":
			add(cfgErr("TLS_CERT_FILE", "is required for the TLS listener %sLISTEN=%s", envPrefix, c.Listen))
		case c.TLSKeyFile == "":
			add(cfgErr("TLS_KEY_FILE", "is required for the TLS listener %sLISTEN=%s", envPrefix, c.Listen))
		default:
			if err := checkKeyPair("TLS_CERT_FILE", "TLS_KEY_FILE", c.TLSCertFile, c.TLSKeyFile); err != nil {
				add(err)
			}
		}
		switch c.TLSMinVersion {
		case "1.2":
			t.MinVersion = tls.VersionTLS12
		case "1.3":
			t.MinVersion = tls.VersionTLS13
		default:
			add(cfgErr("TLS_MIN_VERSION", "%q is not 1.2 or 1.3", c.TLSMinVersion))
		}
		auth := c.TLSClientAuth
		if auth == "" {
			auth = "none"
			if c.TLSClientCAFile != "" {
				auth = "require"
			}
		}
		switch auth {
		case "none":
			t.ClientAuth = tls.NoClientCert
		case "request":
			t.ClientAuth = tls.VerifyClientCertIfGiven
		case "require":
			t.ClientAuth = tls.RequireAndVerifyClientCert
		default:
			add(cfgErr("TLS_CLIENT_AUTH", "%q is not none, request or require", c.TLSClientAuth))
		}
		if auth != "none" && c.TLSClientCAFile == "" {
			add(cfgErr("TLS_CLIENT_AUTH", "is %q but %sTLS_CLIENT_CA_FILE is not set", auth, envPrefix))
		}
		if c.TLSClientCAFile != "" {
			if _, err := proxy.LoadCAPool(c.TLSClientCAFile); err != nil {
				add(cfgErr("TLS_CLIENT_CA_FILE", "%v", err))
			}
		}
		s.tls = t
	}

	if c.BackendAddr == "" {
		add(cfgErr("BACKEND_ADDR", "is required: host:port of the broker"))
	} else if _, _, err := net.SplitHostPort(c.BackendAddr); err != nil {
		add(cfgErr("BACKEND_ADDR", "%q is not host:port (%v)", c.BackendAddr, err))
	}
	s.backend = proxy.Backend{Addr: c.BackendAddr, Username: c.BackendUsername, Password: c.BackendPassword, DialTimeout: c.BackendDialTimeout}
	if c.BackendTLS {
		bt := &tls.Config{ServerName: c.BackendTLSServerName, MinVersion: tls.VersionTLS12}
		if bt.ServerName == "" {
			bt.ServerName, _, _ = net.SplitHostPort(c.BackendAddr)
		}
		if c.BackendTLSCAFile != "" {
			pool, err := proxy.LoadCAPool(c.BackendTLSCAFile)
			if err != nil {
				add(cfgErr("BACKEND_TLS_CA_FILE", "%v", err))
			}
			bt.RootCAs = pool
		}
		if (c.BackendTLSCertFile == "") != (c.BackendTLSKeyFile == "") {
			add(cfgErr("BACKEND_TLS_CERT_FILE", "and %sBACKEND_TLS_KEY_FILE must be set together", envPrefix))
		} else if c.BackendTLSCertFile != "" {
			if err := checkKeyPair("BACKEND_TLS_CERT_FILE", "BACKEND_TLS_KEY_FILE", c.BackendTLSCertFile, c.BackendTLSKeyFile); err != nil {
				add(err)
			} else {
				cert, _ := tls.LoadX509KeyPair(c.BackendTLSCertFile, c.BackendTLSKeyFile)
				bt.Certificates = []tls.Certificate{cert}
			}
		}
		s.backend.TLS = bt
	} else {
		for _, v := range []struct{ name, val string }{{"BACKEND_TLS_CA_FILE", c.BackendTLSCAFile}, {"BACKEND_TLS_CERT_FILE", c.BackendTLSCertFile},
			{"BACKEND_TLS_KEY_FILE", c.BackendTLSKeyFile}, {"BACKEND_TLS_SERVER_NAME", c.BackendTLSServerName}} {
			if v.val != "" {
				add(cfgErr(v.name, "is set but %sBACKEND_TLS is not true", envPrefix))
			}
		}
	}

	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"CONNECT_TIMEOUT", c.ConnectTimeout}, {"TLS_HANDSHAKE_TIMEOUT", c.HandshakeTimeout}, {"BACKEND_DIAL_TIMEOUT", c.BackendDialTimeout}, {"SHUTDOWN_GRACE", c.ShutdownGrace}} {
		if d.v <= 0 {
			add(cfgErr(d.name, "must be positive, is %v", d.v))
		}
	}
	if c.RevalidateInterval < 0 {
		add(cfgErr("REVALIDATE_INTERVAL", "must be positive (or 0 to turn it off), is %v", c.RevalidateInterval))
	}
	if c.MaxConnectBytes < 16 || c.MaxConnectBytes > packets.MaxRemainingLength {
		add(cfgErr("MAX_CONNECT_BYTES", "%d is out of range 16..%d", c.MaxConnectBytes, packets.MaxRemainingLength))
	}
	if c.MaxConnections < 0 {
		add(cfgErr("MAX_CONNECTIONS", "%d is negative (0 means no cap)", c.MaxConnections))
	}
	if c.MaxPending < 0 || c.MaxConnections > 0 && c.MaxPending > c.MaxConnections {
		add(cfgErr("MAX_PENDING", "%d is out of range 0..%sMAX_CONNECTIONS (0 takes the default)", c.MaxPending, envPrefix))
	}
	if c.HandshakeTimeout > c.ConnectTimeout {
		add(cfgErr("TLS_HANDSHAKE_TIMEOUT", "%v is longer than %sCONNECT_TIMEOUT=%v, which bounds the handshake too", c.HandshakeTimeout, envPrefix, c.ConnectTimeout))
	}
	return s, errors.Join(errs...)
}

// checkKeyPair loads a certificate and key, naming the right variable when
// a file is unreadable or the key does not match.
func checkKeyPair(certVar, keyVar, certFile, keyFile string) error {
	if _, err := os.ReadFile(certFile); err != nil {
		return cfgErr(certVar, "cannot read certificate: %v", unwrapAll(err))
	}
	if _, err := os.ReadFile(keyFile); err != nil {
		return cfgErr(keyVar, "cannot read key: %v", unwrapAll(err))
	}
	if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
		msg := err.Error()
		switch {
		case strings.Contains(msg, "private key does not match"):
			return cfgErr(keyVar, "%s does not match the certificate in %s", keyFile, certFile)
		case strings.Contains(msg, "failed to find any PEM data in certificate"), strings.Contains(msg, "failed to find certificate PEM"):
			return cfgErr(certVar, "%s holds no PEM certificate", certFile)
		default:
			return cfgErr(keyVar, "%s with %s: %v", keyFile, certFile, err)
		}
	}
	return nil
}
