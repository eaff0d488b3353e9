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
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
)

const repoRoot = "../.."

// knownVars is every AUTHPROXY_ variable the configuration defines.
func knownVars() map[string]bool {
	vars := map[string]bool{}
	t := reflect.TypeOf(Config{})
	for i := range t.NumField() {
		vars[envPrefix+t.Field(i).Tag.Get("env")] = true
	}
	return vars
}

var varRE = regexp.MustCompile(`AUTHPROXY_[A-Z0-9_]+`)

// requiredFor is what serve needs when a TLS listener is configured.
var requiredFor = []string{"AUTHPROXY_BACKEND_ADDR", "AUTHPROXY_TLS_CERT_FILE", "AUTHPROXY_TLS_KEY_FILE"}

// TestDeployUsesOnlyDefinedVariables reads the compose file, the Kubernetes
// manifests, the Dockerfile and the READMEs: every AUTHPROXY_ variable they
// name must exist, and the proxy's deployments must set the required ones.
func TestDeployUsesOnlyDefinedVariables(t *testing.T) {
	known := knownVars()
	files := []string{"Dockerfile", "README.md", "deploy/README.md", "deploy/docker-compose.yml"}
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
	if !reflect.DeepEqual(env, []string{"CGO_ENABLED=0"}) || !reflect.DeepEqual(flags, []string{"-trimpath", "-ldflags", "-s -w -X main.version=test"}) {
		t.Fatalf("Dockerfile builds with %v %v: static, trimmed and stamped is expected", env, flags)
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
	if err := checkKeyPair("TLS_CERT_FILE", "TLS_KEY_FILE", filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem")); err != nil {
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
