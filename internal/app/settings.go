package app

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/redisconn"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/schemas"
	"github.com/mqtt-authproxy/mqtt-authproxy/proxy"
	"github.com/mqtt-authproxy/mqtt-authproxy/proxy/pool"
)

// Settings is a validated configuration with what validation derived:
// listener addresses with "off" resolved to "", the TLS and backend
// settings with their files loaded or checked, the effective MAX_PENDING.
// Make it with Config.Validate. It holds BACKEND_PASSWORD and ADMIN_TOKEN:
// never log it.
type Settings struct {
	Store StoreSettings
	Log   LogSettings

	Listen      string       // TLS listener; "" off
	PlainListen string       // listener without TLS; "" off
	TLS         *TLSSettings // nil when Listen and WS_LISTEN are off
	Edge        EdgeSettings // WS_LISTEN and PROXY_PROTOCOL_FROM
	AdminListen string       // METRICS_LISTEN: /metrics, /healthz, /readyz; "" off
	Pprof       bool         // /debug/pprof/ on AdminListen
	// Status is STATUS and ADMIN_TOKEN: the status page on AdminListen.
	Status StatusSettings

	Backend BackendSettings

	// Proxy are the proxy's own options, provisioned (its defaults filled
	// in, the ones that depend on others included); the App adds what it
	// builds at start (the store, the brokers, logs and metrics).
	Proxy proxy.Config

	DecisionLog DecisionLogSettings

	// Lifecycle is the admin API and the credential lifecycle's
	// settings (ADMIN_API, ADMIN_READ_TOKEN, ADMIN_TLS_*, LAST_USE,
	// SESSION_REGISTRY).
	Lifecycle LifecycleSettings
}

// ShutdownGrace is how long a shutdown lets relayed sessions run.
func (s Settings) ShutdownGrace() time.Duration { return s.Proxy.ShutdownGrace }

// RevalidateInterval is how often live sessions are decided again; 0:
// never.
func (s Settings) RevalidateInterval() time.Duration { return max(s.Proxy.RevalidateInterval, 0) }

// StoreSettings is what every command that talks to Redis needs.
type StoreSettings struct {
	RedisURL         string // may hold a password: show it with redisconn.RedactURL
	KeyPrefix        string
	Timeout          time.Duration
	ClientIDsDefault []string
	TopicRules       bool // ACL=on
	// FailLimitUser and FailLimitIP are AUTH_FAIL_LIMIT_USER and _IP.
	FailLimitUser, FailLimitIP authstore.Limit
	// Schema reads another product's layout (SCHEMA); nil: native.
	Schema schemas.Schema
	// Credentials are the credentials beyond passwords: JWT_ISSUERS_FILE,
	// JWT_LEEWAY, JWT_DEVICE_AUDIENCE, CERT_USERNAME.
	Credentials CredentialSettings
}

// LogSettings are LOG_LEVEL and LOG_FORMAT, parsed.
type LogSettings struct {
	Level  slog.Level
	Format string // "text" or "json"
}

// TLSSettings is the device-facing TLS listener. Its files were read and
// checked by Validate; the proxy reads them again itself, at start and on
// every reload.
type TLSSettings struct {
	CertFile, KeyFile string
	ClientCAFile      string // "": no client certificates
	ClientAuth        tls.ClientAuthType
	MinVersion        uint16
	CipherSuites      []uint16 // TLS 1.2 suites offered
	TicketKeyFile     string   // "": keys made and rotated in process
	// TicketSecret (TLS_TICKET_SECRET or the content of _FILE) shares the
	// rotating ticket keys between replicas through Redis; nil: per-process
	// keys. Secret: never log it.
	TicketSecret []byte
}

// BackendSettings is how the proxy reaches the brokers, files loaded.
type BackendSettings struct {
	Addr string // BACKEND_ADDR as given
	TLS  bool
	// ServerName is BACKEND_TLS_SERVER_NAME, else, with one address, its
	// host; "" without TLS, or with several addresses (each its own host).
	ServerName  string
	RootCAs     *x509.CertPool   // nil: the system roots
	Certificate *tls.Certificate // client certificate; nil: none
	Username    string           // "": keep the device's
	Password    string           // "": send none; secret
	DialTimeout time.Duration

	// The brokers (brokers.go): BACKEND_ADDR's addresses, BACKEND_POOLS,
	// BACKEND_POLICY, BACKEND_HEALTH_INTERVAL, BACKEND_CONNECT_RATE (0:
	// none).
	Addrs          []string
	Pools          map[string][]string
	Policy         pool.Policy
	HealthInterval time.Duration
	ConnectRate    int
}

// off is the value that turns a listener with a default address off (an
// empty value takes the default).
const off = "off"

// Validate checks everything serve and check need and returns the
// Settings derived from c. It reads the certificate, key, CA and ticket key
// files (each once), so that an unreadable file or a key that does not match
// its certificate stops the start with a message naming the variable; it
// opens no connection and creates no client, and it never changes c. Every
// problem found is returned, joined, each a *ConfigError.
func (c Config) Validate() (Settings, error) {
	var errs []error
	add := func(err error) { errs = append(errs, err) }
	store, log, err := c.validateCommon()
	if err != nil {
		add(err)
	}
	s := Settings{Store: store, Log: log,
		Listen: resolveOff(c.Listen), PlainListen: c.PlainListen, AdminListen: resolveOff(c.MetricsListen), Pprof: c.Pprof}
	p, proxyErrs := c.proxyConfig()
	s.Proxy = p
	errs = append(errs, proxyErrs...)

	if s.Listen == "" && s.PlainListen == "" && c.WSListen == "" {
		add(cfgErr("LISTEN", "is off and %sPLAIN_LISTEN and %sWS_LISTEN are empty: nothing to serve", EnvPrefix, EnvPrefix))
	}
	edge, edgeErrs := c.validateEdge()
	s.Edge = edge
	errs = append(errs, edgeErrs...)
	for _, v := range []struct{ name, addr string }{{"LISTEN", s.Listen}, {"PLAIN_LISTEN", s.PlainListen}, {"METRICS_LISTEN", s.AdminListen}} {
		if v.addr != "" {
			if _, _, err := net.SplitHostPort(v.addr); err != nil {
				add(cfgErr(v.name, "%q is not host:port (%v)", v.addr, err))
			}
		}
	}
	if s.Listen != "" || c.WSListen != "" {
		t, tlsErrs := c.validateTLS(tlsListeners(s.Listen, c.WSListen))
		s.TLS = t
		errs = append(errs, tlsErrs...)
	}
	b, backendErrs := c.validateBackend()
	s.Backend = b
	errs = append(errs, backendErrs...)
	st, stErrs := c.validateStatus(s.AdminListen)
	s.Status = st
	errs = append(errs, stErrs...)
	dl, dlErrs := c.validateDecisionLog()
	s.DecisionLog = dl
	errs = append(errs, dlErrs...)
	lc, lcErrs := c.validateLifecycle(s.AdminListen)
	s.Lifecycle = lc
	errs = append(errs, lcErrs...)

	if err := c.checkCertUsername(); err != nil {
		add(err)
	}
	if c.BackendDialTimeout <= 0 {
		add(cfgErr("BACKEND_DIAL_TIMEOUT", "must be positive, is %v", c.BackendDialTimeout))
	}
	return s, errors.Join(errs...)
}

// proxyVars name the variable of each of the proxy's options the
// configuration sets.
var proxyVars = map[string]string{
	"ConnectTimeout": "CONNECT_TIMEOUT", "HandshakeTimeout": "TLS_HANDSHAKE_TIMEOUT", "ShutdownGrace": "SHUTDOWN_GRACE",
	"RevalidateInterval": "REVALIDATE_INTERVAL", "MaxConnectBytes": "MAX_CONNECT_BYTES", "MaxPacketBytes": "MAX_PACKET_BYTES",
	"MaxConnections": "MAX_CONNECTIONS", "MaxPending": "MAX_PENDING", "ConnRatePerIP": "CONN_RATE_PER_IP",
	"DrainRate": "DRAIN_RATE",
}

// proxyConfig is the proxy's part of the configuration, provisioned by the
// proxy: its defaults (MAX_PENDING's and TLS_HANDSHAKE_TIMEOUT's follow
// the values they depend on) and its validation, each problem named by
// its variable. A duration set to 0 here means off or invalid as each
// variable says, never the proxy's default (an empty variable takes it).
func (c Config) proxyConfig() (proxy.Config, []error) {
	var errs []error
	p := proxy.Config{ConnectTimeout: c.ConnectTimeout, HandshakeTimeout: c.HandshakeTimeout, ShutdownGrace: c.ShutdownGrace,
		RevalidateInterval: c.RevalidateInterval, MaxConnectBytes: c.MaxConnectBytes, MaxConnections: c.MaxConnections,
		MaxPending: c.MaxPending, MaxPacketBytes: c.MaxPacketBytes, DenyAction: proxy.DenyDrop}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"CONNECT_TIMEOUT", c.ConnectTimeout}, {"SHUTDOWN_GRACE", c.ShutdownGrace}} {
		if d.v <= 0 {
			errs = append(errs, cfgErr(d.name, "must be positive, is %v", d.v))
		}
	}
	switch {
	case c.HandshakeTimeout < 0:
		errs = append(errs, cfgErr("TLS_HANDSHAKE_TIMEOUT", "must be positive, is %v", c.HandshakeTimeout))
	case c.RevalidateInterval < 0:
		errs = append(errs, cfgErr("REVALIDATE_INTERVAL", "must be positive (or 0 to turn it off), is %v", c.RevalidateInterval))
	case c.RevalidateInterval == 0:
		p.RevalidateInterval = -1 // the proxy's off
	}
	if c.MaxConnectBytes == 0 || c.MaxPacketBytes == 0 {
		errs = append(errs, cfgErr(map[bool]string{true: "MAX_CONNECT_BYTES", false: "MAX_PACKET_BYTES"}[c.MaxConnectBytes == 0], "must not be 0"))
	}
	switch c.ACLDenyAction {
	case "drop":
	case "disconnect":
		p.DenyAction = proxy.DenyDisconnect
	default:
		errs = append(errs, cfgErr("ACL_DENY_ACTION", "%q is not drop or disconnect", c.ACLDenyAction))
	}
	var drainErrs []error
	p.DrainRate, p.DrainServerReference, drainErrs = c.drain()
	errs = append(errs, drainErrs...)
	rate := parseRate(c.ConnRatePerIP)
	if rate < 0 {
		errs = append(errs, cfgErr("CONN_RATE_PER_IP", "%q is not N/s (connections a second per address, burst N) or 0", c.ConnRatePerIP))
	} else {
		p.ConnRatePerIP, p.ConnBurstPerIP = float64(rate), rate
	}
	if len(errs) > 0 {
		return p, errs
	}
	if err := p.Provision(); err != nil {
		var oe *proxy.OptionError
		if errors.As(err, &oe) && proxyVars[oe.Option] != "" {
			msg := oe.Msg
			if v := proxyVars[oe.Related]; v != "" {
				msg = strings.Replace(msg, oe.Related, EnvPrefix+v, 1)
			}
			return p, []error{cfgErr(proxyVars[oe.Option], "%s", msg)}
		}
		return p, []error{err}
	}
	return p, nil
}

// ValidateStore checks what every command that talks to Redis needs (the
// Redis URL, key prefix and timeout, CLIENTIDS_DEFAULT, and the log
// variables) and returns the store's settings. Like Validate, it opens no
// connection and never changes c.
func (c Config) ValidateStore() (StoreSettings, error) {
	s, _, err := c.validateCommon()
	return s, err
}

func (c Config) validateCommon() (StoreSettings, LogSettings, error) {
	var errs []error
	s := StoreSettings{RedisURL: c.RedisURL, KeyPrefix: c.RedisKeyPrefix, Timeout: c.RedisTimeout, ClientIDsDefault: strings.Fields(c.ClientIDsDefault),
		TopicRules: c.ACL == "on"}
	if c.ACL != "on" && c.ACL != "off" {
		errs = append(errs, cfgErr("ACL", "%q is not on or off", c.ACL))
	}
	var schemaErrs []error
	s.Schema, schemaErrs = c.schema()
	errs = append(errs, schemaErrs...)
	var err error
	if s.FailLimitUser, err = authstore.ParseLimit(c.AuthFailLimitUser); err != nil {
		errs = append(errs, cfgErr("AUTH_FAIL_LIMIT_USER", "%v", err))
	}
	if s.FailLimitIP, err = authstore.ParseLimit(c.AuthFailLimitIP); err != nil {
		errs = append(errs, cfgErr("AUTH_FAIL_LIMIT_IP", "%v", err))
	}
	var credErrs []error
	s.Credentials, credErrs = c.validateCredentials()
	errs = append(errs, credErrs...)
	if err := checkRedisURL(c.RedisURL); err != nil {
		errs = append(errs, cfgErr("REDIS_URL", "%v", err)) // the error hides the password
	}
	if len(s.ClientIDsDefault) == 0 {
		errs = append(errs, cfgErr("CLIENTIDS_DEFAULT", "is empty: no user without a clientids field could connect (use * to allow any client id)"))
	}
	if c.RedisKeyPrefix == "" {
		errs = append(errs, cfgErr("REDIS_KEY_PREFIX", "must not be empty"))
	}
	if c.RedisTimeout <= 0 {
		errs = append(errs, cfgErr("REDIS_TIMEOUT", "must be positive, is %v", c.RedisTimeout))
	}
	l := LogSettings{Format: c.LogFormat}
	lv, err := parseLevel(c.LogLevel)
	if err != nil {
		errs = append(errs, cfgErr("LOG_LEVEL", "%v", err))
	}
	l.Level = lv
	if c.LogFormat != "text" && c.LogFormat != "json" {
		errs = append(errs, cfgErr("LOG_FORMAT", "%q is not text or json", c.LogFormat))
	}
	return s, l, errors.Join(errs...)
}

// validateTLS checks the TLS listener's variables and files.
func (c Config) validateTLS(listeners string) (*TLSSettings, []error) {
	var errs []error
	add := func(err error) { errs = append(errs, err) }
	t := &TLSSettings{CertFile: c.TLSCertFile, KeyFile: c.TLSKeyFile, ClientCAFile: c.TLSClientCAFile, TicketKeyFile: c.TLSTicketKeyFile,
		CipherSuites: cipherSuites(c.TLS12CBC)}
	if c.TLSTicketKeyFile != "" {
		if err := checkTicketKeys(c.TLSTicketKeyFile); err != nil {
			add(cfgErr("TLS_TICKET_KEY_FILE", "%v", err))
		}
	}
	secret, err := c.ticketSecret()
	if err != nil {
		add(err)
	}
	t.TicketSecret = secret
	switch {
	case c.TLSCertFile == "":
		add(cfgErr("TLS_CERT_FILE", "is required for %s", listeners))
	case c.TLSKeyFile == "":
		add(cfgErr("TLS_KEY_FILE", "is required for %s", listeners))
	default:
		// Checked only: the proxy loads (and reloads) the files itself.
		if _, err := LoadKeyPair("TLS_CERT_FILE", "TLS_KEY_FILE", c.TLSCertFile, c.TLSKeyFile); err != nil {
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
	var authErrs []error
	t.ClientAuth, authErrs = c.clientAuth()
	errs = append(errs, authErrs...)
	return t, errs
}

// clientAuth is TLS_CLIENT_AUTH, its default following TLS_CLIENT_CA_FILE
// (require with a CA, none without), checked with the CA file.
func (c Config) clientAuth() (tls.ClientAuthType, []error) {
	var errs []error
	auth := c.TLSClientAuth
	if auth == "" {
		auth = "none"
		if c.TLSClientCAFile != "" {
			auth = "require"
		}
	}
	mode := tls.NoClientCert
	switch auth {
	case "none":
	case "request":
		mode = tls.VerifyClientCertIfGiven
	case "require":
		mode = tls.RequireAndVerifyClientCert
	default:
		errs = append(errs, cfgErr("TLS_CLIENT_AUTH", "%q is not none, request or require", c.TLSClientAuth))
	}
	if auth != "none" && c.TLSClientCAFile == "" {
		errs = append(errs, cfgErr("TLS_CLIENT_AUTH", "is %q but %sTLS_CLIENT_CA_FILE is not set", auth, EnvPrefix))
	}
	if c.TLSClientCAFile != "" {
		if _, err := loadCAPool(c.TLSClientCAFile); err != nil {
			errs = append(errs, cfgErr("TLS_CLIENT_CA_FILE", "%v", err))
		}
	}
	return mode, errs
}

// validateBackend checks the broker's variables and loads its files.
func (c Config) validateBackend() (BackendSettings, []error) {
	var errs []error
	add := func(err error) { errs = append(errs, err) }
	b := BackendSettings{Addr: c.BackendAddr, TLS: c.BackendTLS, Username: c.BackendUsername, Password: c.BackendPassword, DialTimeout: c.BackendDialTimeout}
	errs = append(errs, c.validateBrokers(&b)...)
	if !c.BackendTLS {
		for _, v := range []struct{ name, val string }{{"BACKEND_TLS_CA_FILE", c.BackendTLSCAFile}, {"BACKEND_TLS_CERT_FILE", c.BackendTLSCertFile},
			{"BACKEND_TLS_KEY_FILE", c.BackendTLSKeyFile}, {"BACKEND_TLS_SERVER_NAME", c.BackendTLSServerName}} {
			if v.val != "" {
				add(cfgErr(v.name, "is set but %sBACKEND_TLS is not true", EnvPrefix))
			}
		}
		return b, errs
	}
	b.ServerName = c.BackendTLSServerName
	if b.ServerName == "" && len(b.Addrs) == 1 {
		b.ServerName, _, _ = net.SplitHostPort(b.Addrs[0]) // several: each address's host
	}
	if c.BackendTLSCAFile != "" {
		pool, err := loadCAPool(c.BackendTLSCAFile)
		if err != nil {
			add(cfgErr("BACKEND_TLS_CA_FILE", "%v", err))
		}
		b.RootCAs = pool
	}
	if (c.BackendTLSCertFile == "") != (c.BackendTLSKeyFile == "") {
		add(cfgErr("BACKEND_TLS_CERT_FILE", "and %sBACKEND_TLS_KEY_FILE must be set together", EnvPrefix))
	} else if c.BackendTLSCertFile != "" {
		cert, err := LoadKeyPair("BACKEND_TLS_CERT_FILE", "BACKEND_TLS_KEY_FILE", c.BackendTLSCertFile, c.BackendTLSKeyFile)
		if err != nil {
			add(err)
		} else {
			b.Certificate = &cert
		}
	}
	return b, errs
}

// resolveOff maps "off" to "" (off).
func resolveOff(addr string) string {
	if addr == off {
		return ""
	}
	return addr
}

// parseLevel parses LOG_LEVEL.
func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info", "":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("%q is not debug, info, warn or error", s)
}

// checkRedisURL parses a REDIS_URL the way redisconn.NewClient does, only
// parsing: no client is created. The error names no password.
func checkRedisURL(raw string) error { return redisconn.CheckURL(raw) }

// parseRate reads CONN_RATE_PER_IP: "N/s" or "0"; -1 when it is neither.
func parseRate(v string) int {
	v = strings.TrimSpace(v)
	if v == "0" {
		return 0
	}
	n, ok := strings.CutSuffix(v, "/s")
	r, err := strconv.Atoi(n)
	if !ok || err != nil || r < 1 {
		return -1
	}
	return r
}

// ticketSecret reads TLS_TICKET_SECRET or TLS_TICKET_SECRET_FILE (the
// file's content without its trailing white space): nil when neither is
// set. It must hold at least transport.MinTicketSecret bytes, and excludes
// TLS_TICKET_KEY_FILE (two sources of keys).
func (c Config) ticketSecret() ([]byte, error) {
	name, secret := "TLS_TICKET_SECRET", []byte(c.TLSTicketSecret)
	switch {
	case c.TLSTicketSecret != "" && c.TLSTicketSecretFile != "":
		return nil, cfgErr("TLS_TICKET_SECRET", "and %sTLS_TICKET_SECRET_FILE are both set: set one", EnvPrefix)
	case c.TLSTicketSecretFile != "":
		name = "TLS_TICKET_SECRET_FILE"
		b, err := os.ReadFile(c.TLSTicketSecretFile)
		if err != nil {
			return nil, cfgErr(name, "cannot read: %v", unwrapAll(err))
		}
		secret = bytes.TrimRight(b, " \t\r\n")
	case c.TLSTicketSecret == "":
		return nil, nil
	}
	if c.TLSTicketKeyFile != "" {
		return nil, cfgErr(name, "and %sTLS_TICKET_KEY_FILE are both set: ticket keys come from one of them", EnvPrefix)
	}
	if len(secret) < minTicketSecret {
		return nil, cfgErr(name, "is %d bytes, at least %d are needed (openssl rand -hex 32 makes one)", len(secret), minTicketSecret)
	}
	return secret, nil
}

// schemaVars name the variable of each option of the other schemas.
var schemaVars = map[string]string{
	"AuthnCmd": "EMQX_AUTHN_CMD", "AuthzCmd": "EMQX_AUTHZ_CMD", "PasswordHash": "EMQX_PASSWORD_HASH",
	"SaltPosition": "EMQX_SALT_POSITION", "PBKDF2MacFun": "EMQX_PBKDF2_MAC_FUN", "PBKDF2Iterations": "EMQX_PBKDF2_ITERATIONS",
	"PBKDF2DKLength": "EMQX_PBKDF2_DK_LENGTH", "AuthzCompatibilityMode": "EMQX_AUTHZ_COMPATIBILITY_MODE",
	"SaltEncoding": "GOAUTH_SALT_ENCODING",
}

// schema makes the SCHEMA's reader from its variables (nil for native);
// each option it cannot use is a ConfigError naming its variable.
func (c Config) schema() (schemas.Schema, []error) {
	var sc schemas.Schema
	var err error
	switch c.Schema {
	case "native":
		return nil, nil
	case "emqx":
		sc, err = schemas.NewEMQX(schemas.EMQXOptions{AuthnCmd: c.EMQXAuthnCmd, AuthzCmd: c.EMQXAuthzCmd,
			PasswordHash: c.EMQXPasswordHash, SaltPosition: c.EMQXSaltPosition, AllowPlain: c.EMQXAllowPlain,
			PBKDF2MacFun: c.EMQXPBKDF2MacFun, PBKDF2Iterations: c.EMQXPBKDF2Iterations, PBKDF2DKLength: c.EMQXPBKDF2DKLength,
			AuthzCompatibilityMode: c.EMQXAuthzCompatibilityMode})
	case "mosquitto-go-auth":
		sc, err = schemas.NewGoAuth(schemas.GoAuthOptions{DisableSuperuser: c.GoAuthDisableSuperuser, SaltEncoding: c.GoAuthSaltEncoding})
	default:
		return nil, []error{cfgErr("SCHEMA", "%q is not native, emqx or mosquitto-go-auth", c.Schema)}
	}
	var errs []error
	for _, e := range unjoin(err) {
		var oe *schemas.OptionError
		if errors.As(e, &oe) && schemaVars[oe.Option] != "" {
			errs = append(errs, cfgErr(schemaVars[oe.Option], "%s", oe.Msg))
		} else {
			errs = append(errs, cfgErr("SCHEMA", "%v", e))
		}
	}
	return sc, errs
}

// unjoin is the errors an errors.Join holds (err itself otherwise).
func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
