package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/app"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
)

const repoRoot = "../.."

// knownVars is every AUTHPROXY_ variable the configuration defines.
func knownVars() map[string]bool {
	vars := map[string]bool{}
	t := reflect.TypeOf(app.Config{})
	for i := range t.NumField() {
		vars[app.EnvPrefix+t.Field(i).Tag.Get("env")] = true
	}
	return vars
}

var varRE = regexp.MustCompile(`AUTHPROXY_[A-Z0-9_]+`)

// requiredFor is what serve needs when a TLS listener is configured.
var requiredFor = []string{"AUTHPROXY_BACKEND_ADDR", "AUTHPROXY_TLS_CERT_FILE", "AUTHPROXY_TLS_KEY_FILE"}

// TestDeployUsesOnlyDefinedVariables reads the compose file, the Kubernetes
// manifests, the Dockerfile and the docs (README.md, docs/, deploy/README.md):
// every AUTHPROXY_ variable they name must exist, and the proxy's deployments
// must set the required ones.
func TestDeployUsesOnlyDefinedVariables(t *testing.T) {
	known := knownVars()
	files := append([]string{"Dockerfile", "deploy/docker-compose.yml"}, docFiles(t)...)
	k8s, _ := filepath.Glob(filepath.Join(repoRoot, "deploy/kubernetes/*.yaml"))
	if len(k8s) == 0 {
		t.Fatal("no Kubernetes manifests")
	}
	for _, f := range k8s {
		rel, _ := filepath.Rel(repoRoot, f)
		files = append(files, rel)
	}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(repoRoot, f))
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range varRE.FindAllString(string(b), -1) {
			if !known[v] {
				t.Errorf("%s names %s, which the configuration does not define", f, v)
			}
		}
	}

	// Compose: the proxy service's environment.
	var compose struct {
		Services map[string]struct {
			Environment map[string]string `yaml:"environment"`
			Ports       []string          `yaml:"ports"`
			Networks    []string          `yaml:"networks"`
		} `yaml:"services"`
		Networks map[string]struct {
			Internal bool `yaml:"internal"`
		} `yaml:"networks"`
	}
	readYAML(t, "deploy/docker-compose.yml", &compose)
	proxySvc, ok := compose.Services["authproxy"]
	if !ok {
		t.Fatal("compose has no authproxy service")
	}
	for _, v := range requiredFor {
		if proxySvc.Environment[v] == "" {
			t.Errorf("compose authproxy service misses %s", v)
		}
	}
	if b := compose.Services["hivemq"]; len(b.Ports) > 0 {
		t.Errorf("compose publishes the broker's ports %v: devices could bypass the proxy", b.Ports)
	}
	for _, n := range compose.Services["hivemq"].Networks {
		if !compose.Networks[n].Internal {
			t.Errorf("compose puts the broker on network %q, which is not internal", n)
		}
	}

	// Kubernetes: the proxy's ConfigMap.
	found := false
	for _, f := range k8s {
		dec := yaml.NewDecoder(bytes.NewReader(mustRead(t, f)))
		for {
			var doc struct {
				Kind     string `yaml:"kind"`
				Metadata struct{ Name string }
				Data     map[string]string `yaml:"data"`
			}
			if err := dec.Decode(&doc); err != nil {
				break
			}
			if doc.Kind == "ConfigMap" && doc.Metadata.Name == "mqtt-authproxy" {
				found = true
				for _, v := range requiredFor {
					if doc.Data[v] == "" {
						t.Errorf("%s: ConfigMap mqtt-authproxy misses %s", f, v)
					}
				}
				if doc.Data["AUTHPROXY_BACKEND_ADDR"] != "127.0.0.1:1883" {
					t.Errorf("sidecar backend is %q, want the Pod's loopback", doc.Data["AUTHPROXY_BACKEND_ADDR"])
				}
			}
		}
	}
	if !found {
		t.Fatal("no ConfigMap mqtt-authproxy in deploy/kubernetes")
	}
}

func readYAML(t *testing.T, rel string, v any) {
	t.Helper()
	if err := yaml.Unmarshal(mustRead(t, filepath.Join(repoRoot, rel)), v); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// dockerfileBuild returns the environment and the go build flags of the
// Dockerfile's build stage, with ${VERSION} replaced.
func dockerfileBuild(version string) (env, flags []string, err error) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		return nil, nil, err
	}
	m := regexp.MustCompile(`(?m)^RUN ((?:[A-Z_]+=\S+ )*)go build (.*) -o \S+ \./cmd/mqtt-authproxy\s*$`).FindSubmatch(b)
	if m == nil {
		return nil, nil, fmt.Errorf("no 'RUN ... go build ... -o ... ./cmd/mqtt-authproxy' line in the Dockerfile")
	}
	env = strings.Fields(string(m[1]))
	flags, err = shellSplit(strings.ReplaceAll(string(m[2]), "${VERSION}", version))
	return env, flags, err
}

// shellSplit splits words as a shell would for plain and double-quoted words.
func shellSplit(s string) ([]string, error) {
	var out []string
	var cur strings.Builder
	inWord, quoted := false, false
	for _, r := range s {
		switch {
		case r == '"':
			quoted, inWord = !quoted, true
		case r == ' ' && !quoted:
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quoted {
		return nil, fmt.Errorf("unbalanced quote in %q", s)
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out, nil
}

// TestDockerfileBinaryHealthcheck: the binary built with exactly the
// Dockerfile's flags (TestMain) is static, stamped, and its healthcheck
// subcommand tells a live instance from a dead one.
func TestDockerfileBinaryHealthcheck(t *testing.T) {
	env, flags, err := dockerfileBuild("test")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(env, []string{"CGO_ENABLED=0"}) || !reflect.DeepEqual(flags, []string{"-trimpath", "-tags", "nodemo", "-ldflags", "-s -w -X main.version=test"}) {
		t.Fatalf("Dockerfile builds with %v %v: static, trimmed, without the demo and stamped is expected", env, flags)
	}
	if out, err := exec.Command("ldd", binary).CombinedOutput(); err == nil && !strings.Contains(string(out), "not a dynamic executable") {
		t.Fatalf("binary is dynamically linked: %s", out)
	}
	if r := runBin(t, nil, "", "version"); strings.TrimSpace(r.stdout) != "mqtt-authproxy test" {
		t.Fatalf("version not stamped: %q", r.stdout)
	}

	rs := testenv.Redis(t)
	broker := testenv.Mosquitto(t, testenv.MosquittoOptions{})
	f, _, _ := certs(t)
	metrics := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	envv := map[string]string{"AUTHPROXY_TLS_CERT_FILE": f.ServerCert, "AUTHPROXY_TLS_KEY_FILE": f.ServerKey,
		"AUTHPROXY_LISTEN": fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), "AUTHPROXY_BACKEND_ADDR": broker.Addr(),
		"AUTHPROXY_REDIS_URL": testenv.RedisURL(rs), "AUTHPROXY_METRICS_LISTEN": metrics}
	if r := runBin(t, map[string]string{"AUTHPROXY_METRICS_LISTEN": metrics}, "", "healthcheck"); r.code != 1 {
		t.Fatalf("healthcheck with nothing running: %+v", r)
	}
	p := startBin(t, envv, "serve")
	waitHTTP(t, "http://"+metrics+"/healthz", 200)
	if r := runBin(t, map[string]string{"AUTHPROXY_METRICS_LISTEN": metrics}, "", "healthcheck"); r.code != 0 || r.stdout != "ok\n" {
		t.Fatalf("healthcheck against a live instance: %+v", r)
	}
	// The image's default, METRICS_LISTEN=:9090 style, is queried on loopback.
	_, port, _ := strings.Cut(metrics, ":")
	if r := runBin(t, map[string]string{"AUTHPROXY_METRICS_LISTEN": ":" + port}, "", "healthcheck"); r.code != 0 {
		t.Fatalf("healthcheck with METRICS_LISTEN=:%s: %+v", port, r)
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	<-p.done
	if r := runBin(t, map[string]string{"AUTHPROXY_METRICS_LISTEN": metrics}, "", "healthcheck"); r.code != 1 {
		t.Fatalf("healthcheck after stop: %+v", r)
	}
}

// TestGenCertsScript: deploy/gen-certs.sh makes certificates the proxy loads
// and a client certificate that verifies for mTLS.
func TestGenCertsScript(t *testing.T) {
	testenv.LookPath(t, "openssl")
	dir := t.TempDir()
	out, err := exec.Command("bash", filepath.Join(repoRoot, "deploy/gen-certs.sh"), dir, "localhost", "127.0.0.1").CombinedOutput()
	if err != nil {
		t.Fatalf("gen-certs.sh: %v\n%s", err, out)
	}
	if _, err := app.LoadKeyPair("TLS_CERT_FILE", "TLS_KEY_FILE", filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem")); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(mustRead(t, filepath.Join(dir, "ca.pem")))
	for _, c := range []struct {
		file  string
		usage x509.ExtKeyUsage
		name  string
	}{{"server.pem", x509.ExtKeyUsageServerAuth, "localhost"}, {"client.pem", x509.ExtKeyUsageClientAuth, ""}} {
		kp, err := tls.LoadX509KeyPair(filepath.Join(dir, c.file), filepath.Join(dir, strings.Replace(c.file, ".pem", "-key.pem", 1)))
		if err != nil {
			t.Fatal(err)
		}
		leaf, _ := x509.ParseCertificate(kp.Certificate[0])
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: c.name, KeyUsages: []x509.ExtKeyUsage{c.usage}}); err != nil {
			t.Fatalf("%s does not verify: %v", c.file, err)
		}
	}
	if !regexp.MustCompile(`sha256:[0-9a-f]{64}`).Match(out) {
		t.Fatalf("no client fingerprint printed: %s", out)
	}
}

// k8sObject is the part of a Kubernetes object the manifest tests read.
type k8sObject struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Data map[string]string `yaml:"data"`
	Spec struct {
		// NetworkPolicy
		PodSelector labelSelector `yaml:"podSelector"`
		PolicyTypes []string      `yaml:"policyTypes"`
		Ingress     []struct {
			From []struct {
				PodSelector       *labelSelector `yaml:"podSelector"`
				NamespaceSelector *labelSelector `yaml:"namespaceSelector"`
				IPBlock           any            `yaml:"ipBlock"`
			} `yaml:"from"`
			Ports []struct {
				Port any `yaml:"port"`
			} `yaml:"ports"`
		} `yaml:"ingress"`
		// Deployment
		Template struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
			Spec struct {
				Containers []k8sContainer `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type labelSelector struct {
	MatchLabels map[string]string `yaml:"matchLabels"`
}

type k8sContainer struct {
	Name  string   `yaml:"name"`
	Args  []string `yaml:"args"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	Env []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			SecretKeyRef *struct {
				Name string `yaml:"name"`
				Key  string `yaml:"key"`
			} `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
}

// k8sObjects reads every object of deploy/kubernetes/*.yaml.
func k8sObjects(t *testing.T) []k8sObject {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(repoRoot, "deploy/kubernetes/*.yaml"))
	var objs []k8sObject
	for _, f := range files {
		dec := yaml.NewDecoder(bytes.NewReader(mustRead(t, f)))
		for {
			var o k8sObject
			if err := dec.Decode(&o); err != nil {
				if err.Error() != "EOF" {
					t.Fatalf("%s: %v", f, err)
				}
				break
			}
			objs = append(objs, o)
		}
	}
	return objs
}

// policyFor is the NetworkPolicy whose podSelector selects the app.
func policyFor(t *testing.T, objs []k8sObject, app string) *k8sObject {
	t.Helper()
	for i, o := range objs {
		if o.Kind == "NetworkPolicy" && o.Spec.PodSelector.MatchLabels["app"] == app {
			return &objs[i]
		}
	}
	t.Fatalf("no NetworkPolicy selects the %s pods", app)
	return nil
}

func deployment(t *testing.T, objs []k8sObject, name string) *k8sObject {
	t.Helper()
	for i, o := range objs {
		if o.Kind == "Deployment" && o.Metadata.Name == name {
			return &objs[i]
		}
	}
	t.Fatalf("no Deployment %s", name)
	return nil
}

func container(t *testing.T, d *k8sObject, name string) *k8sContainer {
	t.Helper()
	for i, c := range d.Spec.Template.Spec.Containers {
		if c.Name == name {
			return &d.Spec.Template.Spec.Containers[i]
		}
	}
	t.Fatalf("Deployment %s has no container %s", d.Metadata.Name, name)
	return nil
}

// TestKubernetesNetworkPolicies: the proxy's MQTT port is open to all, its
// metrics port only to the monitoring namespace; the sample Redis admits
// only the proxy's pods.
func TestKubernetesNetworkPolicies(t *testing.T) {
	objs := k8sObjects(t)
	np := policyFor(t, objs, "mqtt-broker")
	if !slices.Contains(np.Spec.PolicyTypes, "Ingress") {
		t.Errorf("the mqtt-broker NetworkPolicy does not restrict ingress: %v", np.Spec.PolicyTypes)
	}
	mqttOpen, metricsRule := false, false
	for i, r := range np.Spec.Ingress {
		if len(r.Ports) == 0 {
			t.Errorf("ingress rule %d admits every port", i)
		}
		for _, p := range r.Ports {
			switch fmt.Sprint(p.Port) {
			case "8883", "mqtts":
				mqttOpen = mqttOpen || len(r.From) == 0
			case "9090", "metrics":
				metricsRule = true
				if len(r.From) == 0 {
					t.Errorf("ingress rule %d opens the metrics port to everyone", i)
				}
				for _, peer := range r.From {
					if peer.IPBlock != nil || peer.NamespaceSelector == nil ||
						peer.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] != "monitoring" {
						t.Errorf("ingress rule %d admits the metrics port from %+v, want the monitoring namespace only", i, peer)
					}
				}
			default:
				t.Errorf("ingress rule %d opens port %v", i, p.Port)
			}
		}
	}
	if !mqttOpen || !metricsRule {
		t.Errorf("want 8883 open to all (%v) and a rule for the metrics port (%v)", mqttOpen, metricsRule)
	}

	rp := policyFor(t, objs, "redis")
	if !slices.Contains(rp.Spec.PolicyTypes, "Ingress") || len(rp.Spec.Ingress) == 0 {
		t.Errorf("the redis NetworkPolicy does not restrict ingress: %+v", rp.Spec)
	}
	for i, r := range rp.Spec.Ingress {
		if len(r.From) == 0 {
			t.Errorf("redis ingress rule %d admits everyone", i)
		}
		for _, peer := range r.From {
			if peer.IPBlock != nil || peer.NamespaceSelector != nil || peer.PodSelector == nil ||
				!reflect.DeepEqual(peer.PodSelector.MatchLabels, map[string]string{"app": "mqtt-broker"}) {
				t.Errorf("redis ingress rule %d admits %+v, want the proxy's pods only", i, peer)
			}
		}
		if len(r.Ports) != 1 || fmt.Sprint(r.Ports[0].Port) != "6379" {
			t.Errorf("redis ingress rule %d ports %+v, want 6379", i, r.Ports)
		}
	}
}

// TestKubernetesRedisRequiresPassword: the sample Redis requires a password
// from a Secret, and the proxy's AUTHPROXY_REDIS_URL carries the same one.
func TestKubernetesRedisRequiresPassword(t *testing.T) {
	objs := k8sObjects(t)
	secretRef := func(c *k8sContainer, name string) (string, string) {
		for _, e := range c.Env {
			if e.Name == name && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				return e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key
			}
		}
		return "", ""
	}
	ref := regexp.MustCompile(`^\$\(([A-Z0-9_]+)\)$`)
	redisC := container(t, deployment(t, objs, "redis"), "redis")
	i := slices.Index(redisC.Args, "--requirepass")
	if i < 0 || i+1 >= len(redisC.Args) || !ref.MatchString(redisC.Args[i+1]) {
		t.Fatalf("redis args %q: want --requirepass $(VAR)", redisC.Args)
	}
	redisSecret, redisKey := secretRef(redisC, ref.FindStringSubmatch(redisC.Args[i+1])[1])
	if redisSecret == "" {
		t.Fatalf("redis's password variable does not come from a Secret: %+v", redisC.Env)
	}

	proxyC := container(t, deployment(t, objs, "mqtt-broker"), "authproxy")
	var url string
	defined := map[string]bool{}
	for _, e := range proxyC.Env {
		if e.Name == "AUTHPROXY_REDIS_URL" {
			url = e.Value
			m := regexp.MustCompile(`^redis://:\$\(([A-Z0-9_]+)\)@redis:6379/\d+$`).FindStringSubmatch(url)
			if m == nil {
				t.Fatalf("proxy AUTHPROXY_REDIS_URL %q: want redis://:$(VAR)@redis:6379/0", url)
			}
			if !defined[m[1]] {
				t.Fatalf("AUTHPROXY_REDIS_URL uses $(%s) before it is defined (Kubernetes expands only earlier variables)", m[1])
			}
			if s, k := secretRef(proxyC, m[1]); s != redisSecret || k != redisKey {
				t.Fatalf("proxy takes the Redis password from %s/%s, Redis from %s/%s", s, k, redisSecret, redisKey)
			}
		}
		defined[e.Name] = true
	}
	if url == "" {
		t.Fatal("the authproxy container does not set AUTHPROXY_REDIS_URL")
	}
	for _, o := range objs {
		if o.Kind == "ConfigMap" && o.Data["AUTHPROXY_REDIS_URL"] != "" {
			t.Errorf("ConfigMap %s sets AUTHPROXY_REDIS_URL too, without the password", o.Metadata.Name)
		}
	}
}

// TestMetricsListenSetWhereScraped: the default METRICS_LISTEN is loopback
// only, so every deployment whose metrics port is reached from outside the
// container (Prometheus, the kubelet, a published port) sets :9090.
func TestMetricsListenSetWhereScraped(t *testing.T) {
	if !regexp.MustCompile(`(?m)^ENV (?:.*\\\n)*\s*AUTHPROXY_METRICS_LISTEN=:9090\b`).Match(mustRead(t, filepath.Join(repoRoot, "Dockerfile"))) {
		t.Error("the Dockerfile does not set AUTHPROXY_METRICS_LISTEN=:9090")
	}
	var compose struct {
		Services map[string]struct {
			Environment map[string]string `yaml:"environment"`
		} `yaml:"services"`
	}
	readYAML(t, "deploy/docker-compose.yml", &compose)
	if v := compose.Services["authproxy"].Environment["AUTHPROXY_METRICS_LISTEN"]; v != ":9090" {
		t.Errorf("compose authproxy AUTHPROXY_METRICS_LISTEN is %q, want :9090", v)
	}
	objs := k8sObjects(t)
	for _, o := range objs {
		if o.Kind == "ConfigMap" && o.Metadata.Name == "mqtt-authproxy" && o.Data["AUTHPROXY_METRICS_LISTEN"] != ":9090" {
			t.Errorf("ConfigMap mqtt-authproxy AUTHPROXY_METRICS_LISTEN is %q, want :9090", o.Data["AUTHPROXY_METRICS_LISTEN"])
		}
	}
}

// TestKeyspaceNotificationsDocumented: wherever the docs and deploy/
// name notify-keyspace-events, the flags include K, g, h and x (expired
// events), A standing for g$lshzxetd.
func TestKeyspaceNotificationsDocumented(t *testing.T) {
	files := append([]string{"deploy/docker-compose.yml"}, docFiles(t)...)
	k8s, _ := filepath.Glob(filepath.Join(repoRoot, "deploy/kubernetes/*.yaml"))
	for _, f := range k8s {
		rel, _ := filepath.Rel(repoRoot, f)
		files = append(files, rel)
	}
	re := regexp.MustCompile(`notify-keyspace-events["'\x60,\s]+([KEA$glshzxetdmn]+)(?:[^A-Za-z]|$)`)
	seen := 0
	for _, f := range files {
		for _, m := range re.FindAllStringSubmatch(string(mustRead(t, filepath.Join(repoRoot, f))), -1) {
			seen++
			flags := strings.ReplaceAll(m[1], "A", "g$lshzxetd")
			for _, need := range "Kghx" {
				if !strings.ContainsRune(flags, need) {
					t.Errorf("%s: notify-keyspace-events %s lacks %c", f, m[1], need)
				}
			}
		}
	}
	if seen < 4 {
		t.Fatalf("found notify-keyspace-events only %d times", seen)
	}
}

// TestImageLeavesOutTheDemo: the binary built with the Dockerfile's flags
// links neither the demo's embedded Redis (miniredis, gopher-lua) nor its
// broker (mochi-mqtt), which the demo build does; its demo command says
// how to run the demo instead, with exit code 2.
func TestImageLeavesOutTheDemo(t *testing.T) {
	demoOnly := []string{"github.com/alicebob/miniredis/", "github.com/yuin/gopher-lua", "github.com/mochi-mqtt/server/"}
	deps := func(bin string) string {
		out, err := exec.Command("go", "version", "-m", bin).CombinedOutput()
		if err != nil {
			t.Fatalf("go version -m %s: %v\n%s", bin, err, out)
		}
		return string(out)
	}
	image, demo := deps(binary), deps(demoBinary(t))
	if !strings.Contains(image, "\tdep\tgithub.com/redis/go-redis/v9\t") {
		t.Fatalf("go version -m lists no dependency of the image binary:\n%s", image)
	}
	for _, mod := range demoOnly {
		if strings.Contains(image, "\tdep\t"+mod) {
			t.Errorf("the image binary links %s", mod)
		}
		if !strings.Contains(demo, "\tdep\t"+mod) {
			t.Errorf("the demo build does not link %s: this test no longer sees what it checks", mod)
		}
	}
	for _, args := range [][]string{{"demo"}, {"demo", "--listen", "127.0.0.1:1", "--user", "x"}} {
		r := runBin(t, nil, "", args...)
		if r.code != 2 || !strings.Contains(r.stderr, "go run ./cmd/mqtt-authproxy demo") || !strings.Contains(r.stderr, "nodemo") {
			t.Errorf("%v in the image binary: %+v", args, r)
		}
	}
}
