package main

import (
	"strings"
	"testing"
)

// TestStatusWithoutTokenExits2: STATUS=true on a METRICS_LISTEN that is
// not loopback, without ADMIN_TOKEN, stops serve and check with exit 2,
// naming the variable to set.
func TestStatusWithoutTokenExits2(t *testing.T) {
	f, _, _ := certs(t)
	env := map[string]string{
		"AUTHPROXY_TLS_CERT_FILE": f.ServerCert, "AUTHPROXY_TLS_KEY_FILE": f.ServerKey,
		"AUTHPROXY_BACKEND_ADDR": "127.0.0.1:1883", "AUTHPROXY_LISTEN": "127.0.0.1:0",
		"AUTHPROXY_METRICS_LISTEN": ":0", "AUTHPROXY_STATUS": "true",
	}
	for _, cmd := range []string{"serve", "check"} {
		r := runBin(t, env, "", cmd)
		if r.code != 2 || !strings.Contains(r.stderr, "AUTHPROXY_ADMIN_TOKEN: is required with AUTHPROXY_STATUS=true") {
			t.Fatalf("%s: exit %d, stderr %q; want exit 2 naming AUTHPROXY_ADMIN_TOKEN", cmd, r.code, r.stderr)
		}
	}
}
