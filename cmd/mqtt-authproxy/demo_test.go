//go:build !nodemo

package main

import (
	"reflect"
	"testing"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/app"
)

// TestDemoTakesServeDefaults: the demo's configuration is serve's defaults
// with only the demo's own addresses, files, log format and grace changed:
// loading the same changes as AUTHPROXY_ variables gives the same Config,
// and every other field is app.Defaults()'s. Its flag defaults for what
// serve also configures are serve's.
func TestDemoTakesServeDefaults(t *testing.T) {
	o := demoOptions{listen: "127.0.0.1:18883", redis: "127.0.0.1:16380", broker: "127.0.0.1:11884", metrics: "127.0.0.1:19090",
		user: "demo", logFormat: "json"}
	got := demoConfig(o, "/certs/server.pem", "/certs/server-key.pem", "127.0.0.1:11884", "127.0.0.1:16380")
	viaEnv, err := app.Load([]string{
		"AUTHPROXY_LISTEN=127.0.0.1:18883", "AUTHPROXY_TLS_CERT_FILE=/certs/server.pem", "AUTHPROXY_TLS_KEY_FILE=/certs/server-key.pem",
		"AUTHPROXY_BACKEND_ADDR=127.0.0.1:11884", "AUTHPROXY_REDIS_URL=redis://127.0.0.1:16380/0",
		"AUTHPROXY_SHUTDOWN_GRACE=" + demoShutdownGrace.String(), "AUTHPROXY_METRICS_LISTEN=127.0.0.1:19090", "AUTHPROXY_LOG_FORMAT=json",
	})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, viaEnv) {
		t.Fatalf("demo config differs from serve's with the same variables:\ndemo  %+v\nserve %+v", got, viaEnv)
	}
	changed := map[string]bool{"Listen": true, "TLSCertFile": true, "TLSKeyFile": true, "BackendAddr": true, "RedisURL": true,
		"ShutdownGrace": true, "MetricsListen": true, "LogFormat": true}
	defaults := reflect.ValueOf(app.Defaults())
	gv := reflect.ValueOf(got)
	for i := range gv.NumField() {
		name := gv.Type().Field(i).Name
		if !changed[name] && !reflect.DeepEqual(gv.Field(i).Interface(), defaults.Field(i).Interface()) {
			t.Errorf("demo's %s is %v, serve's default %v", name, gv.Field(i), defaults.Field(i))
		}
	}
	if got.ShutdownGrace != 2*time.Second {
		t.Errorf("demo grace %v", got.ShutdownGrace)
	}
	fs := cmdDemo(stdio{}).Flags()
	d := app.Defaults()
	for flag, want := range map[string]string{"metrics": d.MetricsListen, "log-format": d.LogFormat} {
		if f := fs.Lookup(flag); f == nil || f.DefValue != want {
			t.Errorf("demo --%s defaults to %v, serve's default is %q", flag, f, want)
		}
	}
}
