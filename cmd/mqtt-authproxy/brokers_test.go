package main

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"go.yaml.in/yaml/v3"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/operator"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/app"
)

// TestComposeTwoHiveMQ: the compose file of docs/brokers.md ("Two HiveMQ
// CE brokers with hash") is YAML whose proxy service sets only variables
// the configuration reads (values that parse), names both brokers in
// BACKEND_ADDR with BACKEND_POLICY=hash, stops no sooner than its
// SHUTDOWN_GRACE, and publishes neither broker's port.
func TestComposeTwoHiveMQ(t *testing.T) {
	doc := string(mustRead(t, filepath.Join(repoRoot, "docs", "brokers.md")))
	_, section, ok := strings.Cut(doc, "\n## Two HiveMQ CE brokers with `hash`\n")
	if !ok {
		t.Fatal("docs/brokers.md has no section on two HiveMQ CE brokers")
	}
	_, block, ok := strings.Cut(section, "```yaml\n")
	block, _, closed := strings.Cut(block, "```")
	if !ok || !closed {
		t.Fatal("the section has no yaml block")
	}
	var compose struct {
		Services map[string]struct {
			Environment     map[string]string `yaml:"environment"`
			Ports           []string          `yaml:"ports"`
			StopGracePeriod string            `yaml:"stop_grace_period"`
			DependsOn       []string          `yaml:"depends_on"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal([]byte(block), &compose); err != nil {
		t.Fatalf("the compose file: %v", err)
	}
	proxySvc, ok := compose.Services["authproxy"]
	if !ok {
		t.Fatal("no authproxy service")
	}
	known := knownVars()
	var environ []string
	for k, v := range proxySvc.Environment {
		if !known[k] {
			t.Errorf("%s is not a variable the proxy reads", k)
		}
		environ = append(environ, k+"="+v)
	}
	cfg, err := app.Load(environ)
	if err != nil {
		t.Fatalf("the proxy's variables do not parse: %v", err)
	}
	var brokers []string
	for name, svc := range compose.Services {
		if strings.HasPrefix(name, "hivemq") {
			brokers = append(brokers, name+":1883")
			if len(svc.Ports) > 0 {
				t.Errorf("%s publishes %v: devices could bypass the proxy", name, svc.Ports)
			}
		}
	}
	slices.Sort(brokers)
	if got := strings.Fields(cfg.BackendAddr); len(brokers) != 2 || !slices.Equal(got, brokers) || cfg.BackendPolicy != "hash" {
		t.Fatalf("BACKEND_ADDR %q with %q, want both brokers %v with hash", cfg.BackendAddr, cfg.BackendPolicy, brokers)
	}
	if stop, err := time.ParseDuration(proxySvc.StopGracePeriod); err != nil || stop <= cfg.ShutdownGrace {
		t.Errorf("stop_grace_period %q does not outlast SHUTDOWN_GRACE %v: docker would kill the drain", proxySvc.StopGracePeriod, cfg.ShutdownGrace)
	}
}

// TestUserSetBackendAndMountpoint: user set and role set take --backend
// and --mountpoint; a mountpoint that cannot be one, and a pool name that
// AUTHPROXY_BACKEND_POOLS does not define where it is set, are refused
// (exit 2) naming what is wrong; without it in the environment any pool
// name is kept; an empty value removes the field; user show prints both.
func TestUserSetBackendAndMountpoint(t *testing.T) {
	m := miniredis.RunT(t)
	env := map[string]string{"AUTHPROXY_REDIS_URL": "redis://" + m.Addr() + "/0"}
	if r := runBin(t, env, "pw\n", "user", "set", "gw", "--backend", "acme", "--mountpoint", "acme/%u/"); r.code != 0 {
		t.Fatalf("without BACKEND_POOLS: %+v", r)
	}
	r := runBin(t, env, "", "user", "show", "gw", "--json")
	var u operator.User
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &u) != nil || u.Backend != "acme" || u.Mountpoint != "acme/%u/" || len(u.Extra) != 0 {
		t.Fatalf("user show: %+v %+v", r, u)
	}
	if r := runBin(t, env, "", "user", "show", "gw"); !strings.Contains(r.stdout, "backend:   acme") || !strings.Contains(r.stdout, "mountpoint: acme/%u/") {
		t.Errorf("user show, text: %q", r.stdout)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--mountpoint", "acme"}, "does not end in '/'"},
		{[]string{"--mountpoint", "a/#/"}, "wildcard"},
		{[]string{"--mountpoint", "$SYS/"}, "starts with '$'"},
		{[]string{"--mountpoint", "t/%c/"}, "%u is the only placeholder"},
		{[]string{"--backend", "a b"}, "pool name"},
	} {
		if r := runBin(t, env, "", append([]string{"user", "set", "gw"}, c.args...)...); r.code != 2 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%v: %+v, want exit 2 and %q", c.args, r, c.want)
		}
	}
	env["AUTHPROXY_BACKEND_POOLS"] = "acme=10.0.0.1:1883 10.0.0.2:1883;beta=10.0.1.1:1883"
	if r := runBin(t, env, "", "user", "set", "gw", "--backend", "gamma"); r.code != 2 || !strings.Contains(r.stderr, `--backend "gamma": no such pool`) ||
		!strings.Contains(r.stderr, "acme beta default") {
		t.Errorf("an unknown pool with BACKEND_POOLS set: %+v", r)
	}
	if r := runBin(t, env, "", "role", "set", "tenant", "--backend", "beta", "--mountpoint", "beta/"); r.code != 0 {
		t.Fatalf("role set: %+v", r)
	}
	if r := runBin(t, env, "", "role", "show", "tenant"); !strings.Contains(r.stdout, "backend:   beta") {
		t.Errorf("role show: %q", r.stdout)
	}
	if r := runBin(t, env, "", "user", "set", "gw", "--backend", "", "--mountpoint", ""); r.code != 0 {
		t.Fatalf("removing: %+v", r)
	}
	if r := runBin(t, env, "", "user", "show", "gw", "--json"); strings.Contains(r.stdout, "backend") || strings.Contains(r.stdout, "mountpoint") {
		t.Errorf("removed fields still shown: %s", r.stdout)
	}
	env["AUTHPROXY_BACKEND_POOLS"] = "acme"
	if r := runBin(t, env, "", "user", "set", "gw", "--backend", "acme"); r.code != 2 || !strings.Contains(r.stderr, "AUTHPROXY_BACKEND_POOLS") {
		t.Errorf("a BACKEND_POOLS that does not parse: %+v", r)
	}
}
