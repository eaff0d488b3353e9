package app

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
)

// TestValidateStatus: STATUS=true needs ADMIN_TOKEN unless METRICS_LISTEN
// is a loopback address, and a listener; a token is long and printable.
// Each error is a ConfigError naming the variable to set.
func TestValidateStatus(t *testing.T) {
	f := testFiles(t)
	const token = "0123456789abcdef"
	for _, c := range []struct {
		name          string
		status        bool
		listen, token string
		wantVar       string // "": valid
	}{
		{"every interface, no token", true, ":9090", "", "AUTHPROXY_ADMIN_TOKEN"},
		{"0.0.0.0, no token", true, "0.0.0.0:9090", "", "AUTHPROXY_ADMIN_TOKEN"},
		{"[::], no token", true, "[::]:9090", "", "AUTHPROXY_ADMIN_TOKEN"},
		{"a private address, no token", true, "10.0.0.5:9090", "", "AUTHPROXY_ADMIN_TOKEN"},
		{"a host name, no token", true, "metrics.internal:9090", "", "AUTHPROXY_ADMIN_TOKEN"},
		{"127.0.0.1, no token", true, "127.0.0.1:9090", "", ""},
		{"127.0.0.2, no token", true, "127.0.0.2:9090", "", ""},
		{"[::1], no token", true, "[::1]:9090", "", ""},
		{"localhost, no token", true, "localhost:9090", "", ""},
		{"every interface, token", true, ":9090", token, ""},
		{"metrics off", true, "off", token, "AUTHPROXY_STATUS"},
		{"status off, every interface, no token", false, ":9090", "", ""},
		{"short token", true, ":9090", "short", "AUTHPROXY_ADMIN_TOKEN"},
		{"short token, status off", false, "127.0.0.1:9090", "short", "AUTHPROXY_ADMIN_TOKEN"},
		{"token with a space", true, ":9090", token + " x", "AUTHPROXY_ADMIN_TOKEN"},
		{"token with a newline", true, ":9090", token + "\n", "AUTHPROXY_ADMIN_TOKEN"},
		{"token not ASCII", true, ":9090", token + "é", "AUTHPROXY_ADMIN_TOKEN"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := validConfig(f)
			cfg.Status, cfg.MetricsListen, cfg.AdminToken = c.status, c.listen, c.token
			s, err := cfg.Validate()
			if c.wantVar == "" {
				if err != nil {
					t.Fatal(err)
				}
				if s.Status.On != c.status || s.Status.Token != c.token {
					t.Fatalf("settings %+v", s.Status)
				}
				return
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Var != c.wantVar {
				t.Fatalf("got %v; want a ConfigError naming %s", err, c.wantVar)
			}
			if c.token != "" && strings.Contains(err.Error(), c.token) {
				t.Fatalf("the error shows the token: %v", err)
			}
		})
	}
}

// TestStatusServedByApp: Start serves the status page on METRICS_LISTEN
// when STATUS=true (here on loopback without a token: this replica's id,
// the readiness checks, a readable decision log), and not otherwise.
func TestStatusServedByApp(t *testing.T) {
	f := testFiles(t)
	mr := miniredis.RunT(t)
	for _, on := range []bool{true, false} {
		c := Defaults()
		c.Listen, c.MetricsListen = "127.0.0.1:0", "127.0.0.1:0"
		c.TLSCertFile, c.TLSKeyFile = f.ServerCert, f.ServerKey
		c.BackendAddr, c.RedisURL, c.ShutdownGrace = fakeBroker(t), "redis://"+mr.Addr()+"/0", time.Second
		c.Status, c.ReplicaID = on, "replica-under-test"
		s, err := c.Validate()
		if err != nil {
			t.Fatal(err)
		}
		a, err := Start(context.Background(), s, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		base := "http://" + a.Addrs().Admin.String()
		code, body := get(t, base+"/status.json")
		if !on {
			if code != http.StatusNotFound {
				t.Errorf("STATUS=false: /status.json answers %d", code)
			}
			a.Stop()
			continue
		}
		var st struct {
			Replica        string            `json:"replica"`
			Health         map[string]string `json:"health"`
			Sessions       []any             `json:"sessions"`
			DecisionsError *string           `json:"decisions_error"`
		}
		if err := json.Unmarshal([]byte(body), &st); code != 200 || err != nil {
			t.Fatalf("/status.json: %d %v %q", code, err, body)
		}
		if st.Replica != "replica-under-test" || st.Health["redis"] != "ok" || st.Health["backend"] != "ok" || st.Sessions == nil || st.DecisionsError != nil {
			t.Errorf("/status.json: %s", body)
		}
		if code, body := get(t, base+"/status"); code != 200 || !strings.Contains(body, "mqtt-authproxy") {
			t.Errorf("/status: %d", code)
		}
		a.Stop()
	}
}
