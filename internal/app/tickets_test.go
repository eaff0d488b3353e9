package app

import (
	"bytes"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/transport"
)

const testTicketSecret = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"

// TestTicketSecretValidation: TLS_TICKET_SECRET or its _FILE (trailing
// white space trimmed) becomes the TLS settings' secret; both at once, one
// with TLS_TICKET_KEY_FILE, a short one and an unreadable file are
// ConfigErrors naming the variable, and no message shows the secret.
func TestTicketSecretValidation(t *testing.T) {
	f := testFiles(t)
	dir := t.TempDir()
	secretFile := writeFile(t, dir, "ticket-secret", []byte(testTicketSecret+"\n"))
	keyFile := writeFile(t, dir, "ticket-keys", []byte(strings.Repeat("ab", 32)+"\n"))
	withTLS := func(change func(*Config)) Config {
		c := validConfig(f)
		c.Listen = "127.0.0.1:8883"
		change(&c)
		return c
	}
	for _, c := range []Config{
		withTLS(func(c *Config) { c.TLSTicketSecret = testTicketSecret }),
		withTLS(func(c *Config) { c.TLSTicketSecretFile = secretFile }),
	} {
		s, err := c.Validate()
		if err != nil {
			t.Fatal(err)
		}
		if string(s.TLS.TicketSecret) != testTicketSecret {
			t.Fatalf("secret %q", s.TLS.TicketSecret)
		}
	}
	if s, err := withTLS(func(*Config) {}).Validate(); err != nil || s.TLS.TicketSecret != nil {
		t.Fatalf("without a secret: %v, %q", err, s.TLS.TicketSecret)
	}
	short := "shortsecret-not-32-bytes"
	for _, bad := range []struct {
		change func(*Config)
		name   string
		msg    string
	}{
		{func(c *Config) { c.TLSTicketSecret, c.TLSTicketSecretFile = testTicketSecret, secretFile }, "AUTHPROXY_TLS_TICKET_SECRET", "both set"},
		{func(c *Config) { c.TLSTicketSecret, c.TLSTicketKeyFile = testTicketSecret, keyFile }, "AUTHPROXY_TLS_TICKET_SECRET", "TLS_TICKET_KEY_FILE"},
		{func(c *Config) { c.TLSTicketSecretFile, c.TLSTicketKeyFile = secretFile, keyFile }, "AUTHPROXY_TLS_TICKET_SECRET_FILE", "TLS_TICKET_KEY_FILE"},
		{func(c *Config) { c.TLSTicketSecret = short }, "AUTHPROXY_TLS_TICKET_SECRET", "at least 32"},
		{func(c *Config) { c.TLSTicketSecretFile = writeFile(t, dir, "short", []byte(short+"\n\n")) }, "AUTHPROXY_TLS_TICKET_SECRET_FILE", "is 24 bytes"},
		{func(c *Config) { c.TLSTicketSecretFile = filepath.Join(dir, "missing") }, "AUTHPROXY_TLS_TICKET_SECRET_FILE", "cannot read"},
	} {
		_, err := withTLS(bad.change).Validate()
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Var != bad.name || !strings.Contains(err.Error(), bad.msg) {
			t.Errorf("want a ConfigError for %s saying %q, got %v", bad.name, bad.msg, err)
			continue
		}
		if strings.Contains(err.Error(), short) || strings.Contains(err.Error(), testTicketSecret) {
			t.Errorf("the message shows the secret: %v", err)
		}
	}
}

// TestTicketModeLogged: the start says where ticket keys come from; with
// a secret, the secret's id (the same on every replica with the same
// secret) and never the secret; without, that a device resumes only on
// the replica that issued its ticket.
func TestTicketModeLogged(t *testing.T) {
	for _, c := range []struct {
		t    TLSSettings
		want string
	}{
		{TLSSettings{}, "per process: a device resumes only on the replica that issued its ticket"},
		{TLSSettings{TicketSecret: []byte(testTicketSecret)}, "shared through Redis"},
		{TLSSettings{TicketKeyFile: "/secrets/keys"}, "from AUTHPROXY_TLS_TICKET_KEY_FILE"},
	} {
		var b bytes.Buffer
		logTicketMode(slog.New(slog.NewTextHandler(&b, nil)), &c.t)
		if !strings.Contains(b.String(), c.want) || strings.Contains(b.String(), testTicketSecret) {
			t.Errorf("logged %q, want %q and no secret", b.String(), c.want)
		}
		if c.t.TicketSecret != nil && !strings.Contains(b.String(), "secret_id="+transport.TicketSecretID(c.t.TicketSecret)) {
			t.Errorf("logged %q without the secret's id", b.String())
		}
	}
}

// TestStartSharesTicketKeysThroughTheStore: with a secret, Start hands the
// TLS terminator the secret and the Redis store; the keys' salts appear in
// Redis under the key prefix once the terminator has proposed them.
func TestStartSharesTicketKeysThroughTheStore(t *testing.T) {
	f := testFiles(t)
	mr := miniredis.RunT(t)
	c := Defaults()
	c.Listen, c.MetricsListen = "127.0.0.1:0", "off"
	c.TLSCertFile, c.TLSKeyFile, c.TLSTicketSecret = f.ServerCert, f.ServerKey, testTicketSecret
	c.BackendAddr, c.RedisURL, c.ShutdownGrace = fakeBroker(t), "redis://"+mr.Addr()+"/0", time.Second
	logs := &testenv.SyncBuffer{}
	a := startApp(t, c, logs)
	defer a.Stop()
	if st := a.proxy.tls.TicketKeys(); st.Mode != "shared" || !st.StoreOK {
		t.Fatalf("ticket keys %+v, want shared through a store that answers", st)
	}
	if !strings.Contains(logs.String(), "shared through Redis") {
		t.Fatalf("start log:\n%s", logs.String())
	}
	// The first refresh found no salt; the next one (within 10 s) proposes.
	testenv.WaitFor(t, 15*time.Second, "sealing with a shared key", func() bool { return a.proxy.tls.TicketKeys().SealingShared })
	salts := 0
	for _, k := range mr.Keys() {
		if strings.HasPrefix(k, "mqtt:tls-ticket-salt:3600000:") {
			salts++
		}
	}
	if salts != 2 {
		t.Fatalf("%d salts in Redis, want the current and the next epoch's: %q", salts, mr.Keys())
	}
}
