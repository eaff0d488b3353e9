package app

import (
	"crypto/tls"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/redisconn"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/pki"
)

// TestDefaults: Defaults is what an environment without AUTHPROXY_
// variables loads, and it validates; the components' defaults (those that
// follow other values) are filled in by the components themselves. Every
// variable and its default against docs/configuration.md:
// cmd/mqtt-authproxy's TestConfigurationDocumentsEveryVariable.
func TestDefaults(t *testing.T) {
	d := Defaults()
	loaded, err := Load([]string{"PATH=/bin", "HOME=/root", "AUTHPROXY", "NOT_AUTHPROXY_LISTEN=x"})
	if err != nil || !reflect.DeepEqual(d, loaded) {
		t.Fatalf("Load of an environment without AUTHPROXY_ variables: %+v %v; want Defaults() %+v", loaded, err, d)
	}
	if d.Listen != ":8883" || d.RedisTimeout != 500*time.Millisecond || d.RevalidateInterval != time.Minute || d.MaxConnectBytes != 65536 {
		t.Fatalf("Defaults() = %+v", d)
	}
	c := validConfig(testFiles(t))
	s, err := c.Validate()
	if err != nil {
		t.Fatal(err)
	}
	if p := s.Proxy; p.HandshakeTimeout != 5*time.Second || p.MaxPending != 4096 || p.ConnectTimeout != 10*time.Second || p.RevalidateInterval != time.Minute {
		t.Fatalf("the proxy's provisioned defaults: %+v", p)
	}
}

// TestDefaultsFollowWhatTheyDependOn: a default never conflicts with a
// value the operator set (CONNECT_TIMEOUT=3s alone used to refuse to start:
// the handshake's default, 5s, was longer); two explicit values that
// contradict each other are an error naming one of them.
func TestDefaultsFollowWhatTheyDependOn(t *testing.T) {
	c := validConfig(testFiles(t))
	c.ConnectTimeout = 3 * time.Second
	s, err := c.Validate()
	if err != nil || s.Proxy.HandshakeTimeout != 3*time.Second {
		t.Fatalf("CONNECT_TIMEOUT=3s alone: handshake %v, %v", s.Proxy.HandshakeTimeout, err)
	}
	c.HandshakeTimeout = 5 * time.Second
	if _, err := c.Validate(); err == nil || !strings.Contains(err.Error(), "AUTHPROXY_TLS_HANDSHAKE_TIMEOUT: 5s is longer than AUTHPROXY_CONNECT_TIMEOUT=3s") {
		t.Fatalf("both explicit and contradicting: %v", err)
	}
	c.HandshakeTimeout = 2 * time.Second
	if s, err := c.Validate(); err != nil || s.Proxy.HandshakeTimeout != 2*time.Second {
		t.Fatalf("both explicit and consistent: %v %v", s.Proxy.HandshakeTimeout, err)
	}
	c = validConfig(testFiles(t))
	c.MaxConnections = 100
	if s, err := c.Validate(); err != nil || s.Proxy.MaxPending != 25 {
		t.Fatalf("MAX_PENDING follows MAX_CONNECTIONS: %d %v", s.Proxy.MaxPending, err)
	}
}

// TestLoadNamesTheVariable: a value that does not parse is a ConfigError
// naming its variable; every such value is reported.
func TestLoadNamesTheVariable(t *testing.T) {
	_, err := Load([]string{"AUTHPROXY_REDIS_TIMEOUT=soon", "AUTHPROXY_MAX_CONNECTIONS=many", "AUTHPROXY_LISTEN=:1=2"})
	for _, want := range []string{`AUTHPROXY_REDIS_TIMEOUT: unable to parse duration: time: invalid duration "soon"`, "AUTHPROXY_MAX_CONNECTIONS: "} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Load: %v; want %q in it", err, want)
		}
	}
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("%T is no ConfigError", err)
	}
	c, err := Load([]string{"AUTHPROXY_LISTEN=:1=2", "AUTHPROXY_BACKEND_PASSWORD=a=b"})
	if err != nil || c.Listen != ":1=2" || c.BackendPassword != "a=b" {
		t.Fatalf("a value holding '=': %+v %v", c, err)
	}
}

// files are certificate files for the validation tests.
type files struct {
	pki.Files
	otherKey string
}

func testFiles(t *testing.T) files {
	t.Helper()
	ca, err := pki.NewCA("t")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.Server("localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f, err := pki.WriteFiles(dir, ca, srv)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := ca.Server("other")
	return files{f, writeFile(t, dir, "other-key.pem", other.KeyPEM)}
}

// validConfig is a configuration that validates, with every file and
// derived value in use.
func validConfig(f files) Config {
	c := Defaults()
	c.Listen, c.MetricsListen, c.PlainListen = "off", "off", "127.0.0.1:1884"
	c.TLSCertFile, c.TLSKeyFile, c.TLSClientCAFile = f.ServerCert, f.ServerKey, f.CA
	c.BackendAddr, c.BackendTLS, c.BackendTLSCAFile = "broker.example:8883", true, f.CA
	c.BackendTLSCertFile, c.BackendTLSKeyFile = f.ServerCert, f.ServerKey
	return c
}

// TestValidateDoesNotMutate: Validate leaves the Config as it was, "off"
// included, and gives the same Settings every time.
func TestValidateDoesNotMutate(t *testing.T) {
	f := testFiles(t)
	for _, c := range []Config{validConfig(f), func() Config {
		c := validConfig(f)
		c.Listen, c.MetricsListen = "127.0.0.1:8883", "127.0.0.1:9090"
		return c
	}(), func() Config { // and one that fails
		c := validConfig(f)
		c.TLSKeyFile, c.BackendTLSKeyFile, c.MaxPending = f.otherKey, "", -1
		return c
	}()} {
		before := c
		s1, err1 := c.Validate()
		s2, err2 := c.Validate()
		if !reflect.DeepEqual(c, before) {
			t.Fatalf("Validate changed the Config:\nbefore %+v\nafter  %+v", before, c)
		}
		if (err1 == nil) != (err2 == nil) || err1 != nil && err1.Error() != err2.Error() {
			t.Fatalf("two validations disagree: %v / %v", err1, err2)
		}
		if s1.Listen != s2.Listen || s1.AdminListen != s2.AdminListen || s1.Proxy.MaxPending != s2.Proxy.MaxPending ||
			!reflect.DeepEqual(s1.TLS, s2.TLS) || s1.Backend.ServerName != s2.Backend.ServerName {
			t.Fatalf("two validations disagree:\n%+v\n%+v", s1, s2)
		}
	}
	c := validConfig(f)
	if _, err := c.ValidateStore(); err != nil || !reflect.DeepEqual(c, validConfig(f)) {
		t.Fatalf("ValidateStore: %v, or it changed the Config", err)
	}
}

// TestValidateDerives: what Settings holds beyond the Config's values.
func TestValidateDerives(t *testing.T) {
	f := testFiles(t)
	s, err := validConfig(f).Validate()
	if err != nil {
		t.Fatal(err)
	}
	if s.Listen != "" || s.AdminListen != "" || s.TLS != nil || s.PlainListen != "127.0.0.1:1884" {
		t.Errorf("off not resolved: listen %q admin %q tls %+v plain %q", s.Listen, s.AdminListen, s.TLS, s.PlainListen)
	}
	b := s.Backend
	if !b.TLS || b.ServerName != "broker.example" || b.RootCAs == nil || b.Certificate == nil || b.DialTimeout != 5*time.Second {
		t.Errorf("backend settings: %+v", b)
	}
	want, _ := tls.LoadX509KeyPair(f.ServerCert, f.ServerKey)
	if b.Certificate != nil && !reflect.DeepEqual(b.Certificate.Certificate, want.Certificate) {
		t.Errorf("the backend client certificate is not the file's")
	}
	if s.Store.RedisURL != "redis://127.0.0.1:6379/0" || s.Store.KeyPrefix != "mqtt:" || !reflect.DeepEqual(s.Store.ClientIDsDefault, authstore.DefaultClientIDs) {
		t.Errorf("store settings: %+v", s.Store)
	}

	c := validConfig(f)
	c.Listen, c.TLS12CBC, c.TLSMinVersion = "127.0.0.1:8883", true, "1.3"
	if s, err = c.Validate(); err != nil {
		t.Fatal(err)
	}
	if s.TLS == nil || s.TLS.ClientAuth != tls.RequireAndVerifyClientCert || s.TLS.MinVersion != tls.VersionTLS13 || len(s.TLS.CipherSuites) != 10 {
		t.Errorf("TLS settings: %+v", s.TLS)
	}
	c.TLSClientAuth = "request"
	if s, _ = c.Validate(); s.TLS.ClientAuth != tls.VerifyClientCertIfGiven {
		t.Errorf("TLS_CLIENT_AUTH=request: %v", s.TLS.ClientAuth)
	}
	c.TLSClientAuth, c.TLSClientCAFile = "", ""
	if s, _ = c.Validate(); s.TLS.ClientAuth != tls.NoClientCert {
		t.Errorf("no CA: %v", s.TLS.ClientAuth)
	}

	for _, p := range []struct{ conns, pending, want int }{{0, 0, 4096}, {0, 7, 7}, {40, 0, 16}, {400, 0, 100}, {10, 0, 10}, {400, 3, 3}} {
		c := validConfig(f)
		c.MaxConnections, c.MaxPending = p.conns, p.pending
		if s, err := c.Validate(); err != nil || s.Proxy.MaxPending != p.want {
			t.Errorf("MAX_CONNECTIONS=%d MAX_PENDING=%d: pending %d %v, want %d", p.conns, p.pending, s.Proxy.MaxPending, err, p.want)
		}
	}
}

// TestValidateNamesTheVariable: a key that does not match its certificate
// names the key's variable, for the listener and for the broker.
func TestValidateNamesTheVariable(t *testing.T) {
	f := testFiles(t)
	for _, c := range []struct {
		change  func(*Config)
		wantVar string
	}{
		{func(c *Config) { c.Listen, c.TLSKeyFile = ":8883", f.otherKey }, "AUTHPROXY_TLS_KEY_FILE"},
		{func(c *Config) { c.BackendTLSKeyFile = f.otherKey }, "AUTHPROXY_BACKEND_TLS_KEY_FILE"},
		{func(c *Config) { c.BackendTLSCertFile = filepath.Join(t.TempDir(), "none.pem") }, "AUTHPROXY_BACKEND_TLS_CERT_FILE"},
		{func(c *Config) { c.Listen, c.TLSTicketKeyFile = ":8883", f.CA }, "AUTHPROXY_TLS_TICKET_KEY_FILE"},
		{func(c *Config) { c.BackendTLSCAFile = f.ServerKey }, "AUTHPROXY_BACKEND_TLS_CA_FILE"},
	} {
		cfg := validConfig(f)
		c.change(&cfg)
		_, err := cfg.Validate()
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Var != c.wantVar {
			t.Errorf("got %v; want a ConfigError naming %s", err, c.wantVar)
		}
	}
}

// TestRedisURLCheckAgreesWithNewClient: the parse-only check accepts
// exactly the URLs redisconn.NewClient accepts, and its error hides the
// password as NewClient's does.
func TestRedisURLCheckAgreesWithNewClient(t *testing.T) {
	for _, u := range []string{
		"redis://127.0.0.1:6379/0", "rediss://user:pw@redis.example:6380/2", "redis://:p%40ss@127.0.0.1:6379/0",
		"redis://127.0.0.1:26379/0?master_name=m&addr=127.0.0.1:26380", "redis://127.0.0.1:7000?cluster=true&addr=127.0.0.1:7001",
		"redis://127.0.0.1:6379/0?cluster=false", "redis://127.0.0.1:6379/0?cluster=maybe", "redis://127.0.0.1:6379/0?cluster=true&dial_timeout=x",
		"redis://user:SECRET@127.0.0.1:notaport/0", "redis://user:SEC%zzRET@127.0.0.1:6379/0", "redis://user:SEC/RET@127.0.0.1:6379/0",
		"http://x", "user:SECRET@127.0.0.1:6379", "redis://127.0.0.1:bad/0?master_name=m&password=SECRET", "",
		"redis://127.0.0.1:6379/notanumber", "redis://127.0.0.1:6379/0?master_name=m&dial_timeout=x",
	} {
		rdb, nerr := redisconn.NewClient(u)
		if nerr == nil {
			_ = rdb.Close()
		}
		err := checkRedisURL(u)
		if (err == nil) != (nerr == nil) {
			t.Errorf("%q: check says %v, NewClient %v", u, err, nerr)
		}
		if err != nil && strings.Contains(err.Error(), "SECRET") {
			t.Errorf("%q: %v shows the password", u, err)
		}
	}
	if _, err := Defaults().ValidateStore(); err != nil {
		t.Fatal(err)
	}
	c := Defaults()
	c.RedisURL = "redis://user:SECRET@127.0.0.1:notaport/0"
	var ce *ConfigError
	if _, err := c.ValidateStore(); !errors.As(err, &ce) || ce.Var != "AUTHPROXY_REDIS_URL" || strings.Contains(err.Error(), "SECRET") {
		t.Fatalf("bad REDIS_URL: %v", err)
	}
}

// TestSchemaVariables: SCHEMA picks the layout, and each of the other
// schemas' variables that cannot be used is a ConfigError naming it; the
// defaults are EMQX's documented ones.
func TestSchemaVariables(t *testing.T) {
	load := func(env ...string) (StoreSettings, error) {
		t.Helper()
		c, err := Load(env)
		if err != nil {
			t.Fatal(err)
		}
		return c.ValidateStore()
	}
	for env, want := range map[string]string{
		"AUTHPROXY_SCHEMA=native":            "native",
		"AUTHPROXY_SCHEMA=emqx":              "emqx",
		"AUTHPROXY_SCHEMA=mosquitto-go-auth": "mosquitto-go-auth",
	} {
		s, err := load(env)
		if err != nil {
			t.Fatalf("%s: %v", env, err)
		}
		if got := "native"; s.Schema != nil {
			got = s.Schema.Name()
			if got != want {
				t.Errorf("%s: schema %s", env, got)
			}
		} else if want != "native" {
			t.Errorf("%s: the native schema", env)
		}
	}
	for _, c := range []struct {
		env     []string
		wantVar string
	}{
		{[]string{"AUTHPROXY_SCHEMA=emq"}, "SCHEMA"},
		{[]string{"AUTHPROXY_SCHEMA=emqx", "AUTHPROXY_EMQX_AUTHN_CMD=GET mqtt_user:${username}"}, "EMQX_AUTHN_CMD"},
		{[]string{"AUTHPROXY_SCHEMA=emqx", "AUTHPROXY_EMQX_AUTHZ_CMD=HGETALL acl:${zone}"}, "EMQX_AUTHZ_CMD"},
		{[]string{"AUTHPROXY_SCHEMA=emqx", "AUTHPROXY_EMQX_PASSWORD_HASH=plain"}, "EMQX_PASSWORD_HASH"},
		{[]string{"AUTHPROXY_SCHEMA=emqx", "AUTHPROXY_EMQX_SALT_POSITION=both"}, "EMQX_SALT_POSITION"},
		{[]string{"AUTHPROXY_SCHEMA=emqx", "AUTHPROXY_EMQX_PASSWORD_HASH=pbkdf2", "AUTHPROXY_EMQX_PBKDF2_ITERATIONS=1000"}, "EMQX_PBKDF2_MAC_FUN"},
		{[]string{"AUTHPROXY_SCHEMA=emqx", "AUTHPROXY_EMQX_PASSWORD_HASH=pbkdf2", "AUTHPROXY_EMQX_PBKDF2_MAC_FUN=sha256"}, "EMQX_PBKDF2_ITERATIONS"},
		{[]string{"AUTHPROXY_SCHEMA=emqx", "AUTHPROXY_EMQX_PASSWORD_HASH=pbkdf2", "AUTHPROXY_EMQX_PBKDF2_MAC_FUN=sha256", "AUTHPROXY_EMQX_PBKDF2_ITERATIONS=1", "AUTHPROXY_EMQX_PBKDF2_DK_LENGTH=-1"}, "EMQX_PBKDF2_DK_LENGTH"},
		{[]string{"AUTHPROXY_SCHEMA=emqx", "AUTHPROXY_EMQX_AUTHZ_COMPATIBILITY_MODE=v5"}, "EMQX_AUTHZ_COMPATIBILITY_MODE"},
		{[]string{"AUTHPROXY_SCHEMA=mosquitto-go-auth", "AUTHPROXY_GOAUTH_SALT_ENCODING=hex"}, "GOAUTH_SALT_ENCODING"},
	} {
		_, err := load(c.env...)
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Var != EnvPrefix+c.wantVar {
			t.Errorf("%v: %v; want a ConfigError naming %s%s", c.env, err, EnvPrefix, c.wantVar)
		}
	}
	// The emqx variables are read with SCHEMA=emqx only.
	if _, err := load("AUTHPROXY_EMQX_PASSWORD_HASH=plain"); err != nil {
		t.Fatalf("an emqx variable refused the native schema: %v", err)
	}
	if s, err := load("AUTHPROXY_SCHEMA=emqx", "AUTHPROXY_EMQX_PASSWORD_HASH=plain", "AUTHPROXY_EMQX_ALLOW_PLAIN=true"); err != nil || s.Schema == nil {
		t.Fatalf("plain with ALLOW_PLAIN: %v", err)
	}
}
