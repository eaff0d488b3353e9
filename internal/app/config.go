// Package app is the proxy as a program: its configuration (one struct with
// env tags, the one place defaults are written), the validation that turns
// it into Settings without touching the network, and Start, which wires the
// store, the proxy, the change feed and the admin endpoint and opens the
// listeners. The binary's serve and demo commands both run through Start.
package app

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
)

// EnvPrefix is the prefix of every configuration variable.
const EnvPrefix = "AUTHPROXY_"

// Config is the whole configuration, as read from AUTHPROXY_* variables.
// The defaults are the envDefault tags and nowhere else (Defaults parses an
// empty environment); a value that depends on another one (MAX_PENDING,
// TLS_CLIENT_AUTH) is derived by Validate, which never changes a Config.
type Config struct {
	Listen           string `env:"LISTEN" envDefault:":8883"` // "off": no TLS listener
	TLSCertFile      string `env:"TLS_CERT_FILE"`
	TLSKeyFile       string `env:"TLS_KEY_FILE"`
	TLSClientCAFile  string `env:"TLS_CLIENT_CA_FILE"`
	TLSClientAuth    string `env:"TLS_CLIENT_AUTH"` // empty: require if a CA is set, else none
	TLSMinVersion    string `env:"TLS_MIN_VERSION" envDefault:"1.2"`
	TLSTicketKeyFile string `env:"TLS_TICKET_KEY_FILE"`
	TLS12CBC         bool   `env:"TLS12_CBC"` // also offer the ECDHE CBC-SHA suites in TLS 1.2
	PlainListen      string `env:"PLAIN_LISTEN"`

	// Edge listeners: MQTT over WebSocket over TLS (the TLS listener's
	// certificate and ticket keys), and the load balancers trusted to send
	// a PROXY protocol header on every device listener.
	WSListen          string        `env:"WS_LISTEN"`                         // empty: off
	WSPath            string        `env:"WS_PATH" envDefault:"/mqtt"`        // the upgrade's path
	WSOrigins         string        `env:"WS_ORIGINS"`                        // allowed browser origins, space-separated; * any; empty: none
	WSPingInterval    time.Duration `env:"WS_PING_INTERVAL" envDefault:"30s"` // 0: no pings
	ProxyProtocolFrom string        `env:"PROXY_PROTOCOL_FROM"`               // space-separated CIDRs; empty: off

	// The secret the replicas' ticket keys are derived from (with salts
	// in Redis), given itself or as a file; one of them, never with
	// TLS_TICKET_KEY_FILE. Empty: per-process keys.
	TLSTicketSecret     string `env:"TLS_TICKET_SECRET"`
	TLSTicketSecretFile string `env:"TLS_TICKET_SECRET_FILE"`

	BackendAddr          string `env:"BACKEND_ADDR"`
	BackendTLS           bool   `env:"BACKEND_TLS"`
	BackendTLSCAFile     string `env:"BACKEND_TLS_CA_FILE"`
	BackendTLSServerName string `env:"BACKEND_TLS_SERVER_NAME"` // empty: the host of BACKEND_ADDR
	BackendTLSCertFile   string `env:"BACKEND_TLS_CERT_FILE"`
	BackendTLSKeyFile    string `env:"BACKEND_TLS_KEY_FILE"`
	BackendUsername      string `env:"BACKEND_USERNAME"`
	BackendPassword      string `env:"BACKEND_PASSWORD"`

	// Brokers (docs/brokers.md): BACKEND_ADDR takes a space-separated list;
	// named pools for tenants; the probes; the connect rate every replica
	// shares; and how SIGTERM drains the sessions.
	BackendPolicy         string        `env:"BACKEND_POLICY" envDefault:"hash"`        // hash, first or least
	BackendHealthInterval time.Duration `env:"BACKEND_HEALTH_INTERVAL" envDefault:"5s"` // one probe per address and interval
	BackendPools          string        `env:"BACKEND_POOLS"`                           // name=host:port host:port;name2=...; empty: none
	BackendConnectRate    string        `env:"BACKEND_CONNECT_RATE" envDefault:"0"`     // N/s per broker address, every replica together; 0: off
	DrainRate             string        `env:"DRAIN_RATE" envDefault:"0"`               // N/s sessions ended on shutdown; 0: spread over SHUTDOWN_GRACE
	DrainServerReference  string        `env:"DRAIN_SERVER_REFERENCE"`                  // MQTT 5 Server Reference of the drain's DISCONNECT 0x9C; empty: 0x8B

	RedisURL       string        `env:"REDIS_URL" envDefault:"redis://127.0.0.1:6379/0"`
	RedisKeyPrefix string        `env:"REDIS_KEY_PREFIX" envDefault:"mqtt:"`
	RedisTimeout   time.Duration `env:"REDIS_TIMEOUT" envDefault:"500ms"`
	// ClientIDsDefault are the client id globs of a user without a
	// clientids field: bound to the user name unless widened on purpose.
	ClientIDsDefault string `env:"CLIENTIDS_DEFAULT" envDefault:"%u %u:*"`

	// Schema is the layout of users and topic rules in Redis: native, or
	// another product's (README "Migrating from EMQX", "Migrating from
	// mosquitto-go-auth"), configured under that product's names.
	Schema                     string `env:"SCHEMA" envDefault:"native"`
	EMQXAuthnCmd               string `env:"EMQX_AUTHN_CMD" envDefault:"HMGET mqtt_user:${username} password_hash salt is_superuser"`
	EMQXAuthzCmd               string `env:"EMQX_AUTHZ_CMD" envDefault:"HGETALL mqtt_acl:${username}"`
	EMQXPasswordHash           string `env:"EMQX_PASSWORD_HASH" envDefault:"sha256"`
	EMQXSaltPosition           string `env:"EMQX_SALT_POSITION" envDefault:"prefix"`
	EMQXAllowPlain             bool   `env:"EMQX_ALLOW_PLAIN"`
	EMQXPBKDF2MacFun           string `env:"EMQX_PBKDF2_MAC_FUN"`
	EMQXPBKDF2Iterations       int    `env:"EMQX_PBKDF2_ITERATIONS"`
	EMQXPBKDF2DKLength         int    `env:"EMQX_PBKDF2_DK_LENGTH"` // 0: the MAC's size
	EMQXAuthzCompatibilityMode string `env:"EMQX_AUTHZ_COMPATIBILITY_MODE" envDefault:"disabled"`
	GoAuthDisableSuperuser     bool   `env:"GOAUTH_DISABLE_SUPERUSER"`
	GoAuthSaltEncoding         string `env:"GOAUTH_SALT_ENCODING" envDefault:"base64"`

	// Credentials beyond passwords (docs/credentials.md): the token
	// issuers, the leeway of their time claims, the audience of tokens
	// devices sign themselves, and the client certificate's name as the
	// user name.
	JWTIssuersFile    string        `env:"JWT_ISSUERS_FILE"`               // empty: no issuer
	JWTLeeway         time.Duration `env:"JWT_LEEWAY" envDefault:"30s"`    // nbf, iat and exp may be this far off
	JWTDeviceAudience string        `env:"JWT_DEVICE_AUDIENCE"`            // empty: device-signed tokens refused
	CertUsername      string        `env:"CERT_USERNAME" envDefault:"off"` // off, cn, san-dns, san-email, san-uri

	ConnectTimeout     time.Duration `env:"CONNECT_TIMEOUT" envDefault:"10s"`
	HandshakeTimeout   time.Duration `env:"TLS_HANDSHAKE_TIMEOUT"` // empty: 5s, or CONNECT_TIMEOUT when shorter (the proxy's default)
	BackendDialTimeout time.Duration `env:"BACKEND_DIAL_TIMEOUT" envDefault:"5s"`
	MaxConnectBytes    int           `env:"MAX_CONNECT_BYTES" envDefault:"65536"`
	ACL                string        `env:"ACL" envDefault:"on"`                   // on: topic rules enforced; off: opaque relay
	ACLDenyAction      string        `env:"ACL_DENY_ACTION" envDefault:"drop"`     // drop or disconnect
	MaxPacketBytes     int           `env:"MAX_PACKET_BYTES" envDefault:"1048576"` // a packet of a session with topic rules
	MaxConnections     int           `env:"MAX_CONNECTIONS" envDefault:"0"`
	ConnRatePerIP      string        `env:"CONN_RATE_PER_IP" envDefault:"0"`         // N/s, burst N; 0: off
	AuthFailLimitUser  string        `env:"AUTH_FAIL_LIMIT_USER" envDefault:"10/5m"` // N/window; 0: off
	AuthFailLimitIP    string        `env:"AUTH_FAIL_LIMIT_IP" envDefault:"100/5m"`  // N/window; 0: off
	MaxPending         int           `env:"MAX_PENDING"`                             // 0: MAX_CONNECTIONS/4 (at least 16), or 1024 without a cap
	ShutdownGrace      time.Duration `env:"SHUTDOWN_GRACE" envDefault:"10s"`
	RevalidateInterval time.Duration `env:"REVALIDATE_INTERVAL" envDefault:"60s"` // 0: off

	DecisionLog       string `env:"DECISION_LOG" envDefault:"redis"`         // redis: every decision to <prefix>decisions; off
	DecisionLogMaxLen int64  `env:"DECISION_LOG_MAXLEN" envDefault:"100000"` // the stream's cap (MAXLEN ~)
	ReplicaID         string `env:"REPLICA_ID"`                              // empty: the host name plus a random suffix made at start

	MetricsListen string `env:"METRICS_LISTEN" envDefault:"127.0.0.1:9090"` // loopback: deployments that scrape it set :9090; "off": none
	Pprof         bool   `env:"PPROF"`
	Status        bool   `env:"STATUS"`      // /status and /status.json on METRICS_LISTEN
	AdminToken    string `env:"ADMIN_TOKEN"` // the status page's bearer token; required unless METRICS_LISTEN is loopback
	LogLevel      string `env:"LOG_LEVEL" envDefault:"info"`
	LogFormat     string `env:"LOG_FORMAT" envDefault:"text"`

	// The admin API (docs/admin-api.md) and the credential lifecycle
	// (docs/rotating-credentials.md).
	AdminAPI         bool   `env:"ADMIN_API"`                        // JSON API under /api/v1/ on METRICS_LISTEN
	AdminReadToken   string `env:"ADMIN_READ_TOKEN"`                 // a token that may only read; empty: none
	AdminTLSCertFile string `env:"ADMIN_TLS_CERT_FILE"`              // the admin listener serves TLS with it
	AdminTLSKeyFile  string `env:"ADMIN_TLS_KEY_FILE"`               // its key
	LastUse          string `env:"LAST_USE" envDefault:"on"`         // on: record each credential's last use; off
	SessionRegistry  string `env:"SESSION_REGISTRY" envDefault:"on"` // on: publish the live sessions to Redis; off
}

// ConfigError is a bad or missing configuration value; the binary exits
// with code 2 on it.
type ConfigError struct {
	Var string // the variable, with its prefix
	Msg string
}

func (e *ConfigError) Error() string { return e.Var + ": " + e.Msg }

// cfgErr is a ConfigError for the variable v (without its prefix).
func cfgErr(v, format string, args ...any) error {
	return &ConfigError{Var: EnvPrefix + v, Msg: fmt.Sprintf(format, args...)}
}

// Load reads the configuration from environ, a list of KEY=value strings
// as os.Environ returns; variables without the prefix are ignored. A value
// that does not parse (a number, a duration, a boolean) is a ConfigError
// naming the variable; all of them are returned, joined.
func Load(environ []string) (Config, error) {
	vars := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, EnvPrefix) {
			vars[k] = v
		}
	}
	var c Config
	err := env.ParseWithOptions(&c, env.Options{Prefix: EnvPrefix, Environment: vars})
	if err == nil {
		return c, nil
	}
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return c, err
	}
	var errs []error
	for _, e := range agg.Errors {
		var pe env.ParseError
		if errors.As(e, &pe) {
			errs = append(errs, cfgErr(envName(pe.Name), "%v", unwrapAll(pe.Err)))
			continue
		}
		errs = append(errs, e)
	}
	return c, errors.Join(errs...)
}

// Defaults is the configuration of an empty environment: the defaults of
// the env tags, the one place they are written.
func Defaults() Config {
	c, err := Load(nil)
	if err != nil {
		panic("app: the configuration defaults do not parse: " + err.Error())
	}
	return c
}

// envName maps a Config field name to its variable name (without prefix).
func envName(field string) string {
	if f, ok := reflect.TypeFor[Config]().FieldByName(field); ok {
		return f.Tag.Get("env")
	}
	return field
}

// unwrapAll is the innermost error of a chain: the reason without the
// operation and file name around it.
func unwrapAll(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}
