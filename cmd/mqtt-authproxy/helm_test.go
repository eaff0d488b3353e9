package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/app"
)

const chartDir = repoRoot + "/deploy/helm/mqtt-authproxy"

// helmBin finds helm on PATH or where go install puts it (.ci/run builds
// it there). Missing, it fails the test under CI and skips it elsewhere.
func helmBin(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("helm"); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		p := filepath.Join(strings.TrimSpace(string(out)), "bin", "helm")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("helm not found: .ci/run builds it (go install helm.sh/helm/v3/cmd/helm@v3.22.0)")
	}
	t.Skip("helm not installed (go install helm.sh/helm/v3/cmd/helm@v3.22.0, or run bash .ci/run)")
	return ""
}

// helmObject is the part of a rendered object the chart test reads.
type helmObject struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name        string            `yaml:"name"`
		Namespace   string            `yaml:"namespace"`
		Annotations map[string]string `yaml:"annotations"`
	} `yaml:"metadata"`
	Data map[string]string `yaml:"data"`
	Spec struct {
		Replicas       int `yaml:"replicas"`
		MaxUnavailable any `yaml:"maxUnavailable"`
		Selector       struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		// NetworkPolicy
		PodSelector labelSelector `yaml:"podSelector"`
		Ingress     []struct {
			From []struct {
				PodSelector       *labelSelector `yaml:"podSelector"`
				NamespaceSelector *labelSelector `yaml:"namespaceSelector"`
			} `yaml:"from"`
			Ports []struct {
				Port any `yaml:"port"`
			} `yaml:"ports"`
		} `yaml:"ingress"`
		// Deployment
		Template struct {
			Spec struct {
				Containers []struct {
					Name string `yaml:"name"`
					Env  []struct {
						Name      string `yaml:"name"`
						Value     string `yaml:"value"`
						ValueFrom *struct {
							SecretKeyRef *struct{ Name, Key string } `yaml:"secretKeyRef"`
						} `yaml:"valueFrom"`
					} `yaml:"env"`
					VolumeMounts []struct {
						Name      string `yaml:"name"`
						MountPath string `yaml:"mountPath"`
					} `yaml:"volumeMounts"`
					ReadinessProbe *struct {
						HTTPGet struct{ Path string } `yaml:"httpGet"`
					} `yaml:"readinessProbe"`
					LivenessProbe *struct {
						HTTPGet struct{ Path string } `yaml:"httpGet"`
					} `yaml:"livenessProbe"`
					Resources struct {
						Requests map[string]string `yaml:"requests"`
					} `yaml:"resources"`
				} `yaml:"containers"`
				Volumes []struct {
					Name   string `yaml:"name"`
					Secret *struct {
						SecretName string `yaml:"secretName"`
					} `yaml:"secret"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

// helmTemplate renders the chart with a values file and returns the text
// and its objects.
func helmTemplate(t *testing.T, helm string, args ...string) (string, []helmObject) {
	t.Helper()
	cmd := exec.Command(helm, append([]string{"template", "rel", chartDir, "--namespace", "iot"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm template %v: %v\n%s", args, err, stderr.String())
	}
	var objs []helmObject
	dec := yaml.NewDecoder(bytes.NewReader(out))
	for {
		var o helmObject
		if err := dec.Decode(&o); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("rendered chart: %v", err)
			}
			break
		}
		if o.Kind != "" {
			objs = append(objs, o)
		}
	}
	return string(out), objs
}

func findObject(objs []helmObject, kind, name string) *helmObject {
	for i, o := range objs {
		if o.Kind == kind && (name == "" || o.Metadata.Name == name) {
			return &objs[i]
		}
	}
	return nil
}

// TestHelmChart: helm lint --strict passes with every values file of the
// chart's ci/ folder, and each rendering sets only AUTHPROXY_ variables the
// configuration defines (values that parse), the required ones, the Redis
// password before the URL that expands it, the ticket secret from a
// mounted Secret, PROXY protocol with the balancer's annotation and the
// operator's CIDRs, probes and resources, a PodDisruptionBudget, and
// NetworkPolicies that keep the metrics port to the monitoring namespace
// and the broker to the proxy's Pods. A rendering without the broker's
// address fails.
func TestHelmChart(t *testing.T) {
	helm := helmBin(t)
	known := knownVars()
	files, _ := filepath.Glob(filepath.Join(chartDir, "ci", "*.yaml"))
	if len(files) < 2 {
		t.Fatalf("values files in %s/ci: %v", chartDir, files)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if out, err := exec.Command(helm, "lint", "--strict", chartDir, "-f", f).CombinedOutput(); err != nil {
				t.Fatalf("helm lint: %v\n%s", err, out)
			}
			text, objs := helmTemplate(t, helm, "-f", f)
			for _, v := range varRE.FindAllString(text, -1) {
				if !known[v] {
					t.Errorf("the chart renders %s, which the configuration does not define", v)
				}
			}
			d := findObject(objs, "Deployment", "")
			if d == nil || len(d.Spec.Template.Spec.Containers) != 1 {
				t.Fatal("no Deployment with one container")
			}
			if d.Spec.Replicas != 3 {
				t.Errorf("replicas %d, want 3", d.Spec.Replicas)
			}
			c := d.Spec.Template.Spec.Containers[0]
			env := map[string]string{}
			var environ []string
			for _, e := range c.Env {
				if strings.HasPrefix(e.Name, app.EnvPrefix) && !known[e.Name] {
					t.Errorf("env %s is not read by the proxy", e.Name)
				}
				if e.Name == "AUTHPROXY_REDIS_URL" {
					for _, ref := range regexp.MustCompile(`\$\(([A-Z0-9_]+)\)`).FindAllStringSubmatch(e.Value, -1) {
						if _, ok := env[ref[1]]; !ok {
							t.Errorf("AUTHPROXY_REDIS_URL uses $(%s) before it is defined", ref[1])
						}
					}
				}
				env[e.Name] = e.Value
				if e.ValueFrom == nil {
					environ = append(environ, e.Name+"="+e.Value)
				}
			}
			if _, err := app.Load(environ); err != nil {
				t.Errorf("the rendered values do not parse: %v", err)
			}
			for _, v := range requiredFor {
				if _, ok := env[v]; !ok {
					t.Errorf("env misses %s", v)
				}
			}
			secretFile := env["AUTHPROXY_TLS_TICKET_SECRET_FILE"]
			mounted := ""
			for _, m := range c.VolumeMounts {
				if strings.HasPrefix(secretFile, m.MountPath+"/") {
					mounted = m.Name
				}
			}
			secretName := ""
			for _, v := range d.Spec.Template.Spec.Volumes {
				if v.Name == mounted && v.Secret != nil {
					secretName = v.Secret.SecretName
				}
			}
			if secretFile == "" || secretName == "" {
				t.Fatalf("AUTHPROXY_TLS_TICKET_SECRET_FILE %q is not in a mounted Secret", secretFile)
			}
			if s := findObject(objs, "Secret", secretName); s != nil && len(s.Data["secret"]) < 44 {
				t.Errorf("the chart's ticket secret holds %d base64 characters, want at least 32 bytes", len(s.Data["secret"]))
			} else if s == nil && !strings.Contains(f, "full") {
				t.Errorf("the ticket secret %s is neither made by the chart nor an existing one", secretName)
			}
			if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
				t.Error("probes are not /readyz and /healthz")
			}
			if c.Resources.Requests["cpu"] == "" || c.Resources.Requests["memory"] == "" {
				t.Error("no resource requests")
			}
			if pdb := findObject(objs, "PodDisruptionBudget", ""); pdb == nil || pdb.Spec.MaxUnavailable == nil {
				t.Error("no PodDisruptionBudget")
			}
			np := findObject(objs, "NetworkPolicy", "rel-mqtt-authproxy")
			if np == nil || len(np.Spec.Ingress) != 2 {
				t.Fatal("no NetworkPolicy for the proxy with two rules")
			}
			for _, r := range np.Spec.Ingress {
				metrics := slices.ContainsFunc(r.Ports, func(p struct {
					Port any `yaml:"port"`
				}) bool {
					return p.Port == 9090
				})
				if metrics && (len(r.From) != 1 || r.From[0].NamespaceSelector == nil ||
					r.From[0].NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] != "monitoring") {
					t.Errorf("the metrics port is open to %+v, want the monitoring namespace", r.From)
				}
			}
			svc := findObject(objs, "Service", "")
			if svc == nil {
				t.Fatal("no Service")
			}
			if !strings.Contains(f, "full") {
				if _, ok := env["AUTHPROXY_PROXY_PROTOCOL_FROM"]; ok {
					t.Error("PROXY protocol on by default")
				}
				return
			}
			if env["AUTHPROXY_PROXY_PROTOCOL_FROM"] != "10.0.0.0/16" {
				t.Errorf("AUTHPROXY_PROXY_PROTOCOL_FROM %q, want the operator's CIDRs", env["AUTHPROXY_PROXY_PROTOCOL_FROM"])
			}
			if svc.Metadata.Annotations["service.beta.kubernetes.io/aws-load-balancer-target-group-attributes"] != "proxy_protocol_v2.enabled=true" ||
				svc.Metadata.Annotations["service.beta.kubernetes.io/aws-load-balancer-name"] != "mqtt" {
				t.Errorf("Service annotations %v: want the balancer's PROXY protocol and the operator's own", svc.Metadata.Annotations)
			}
			bp := findObject(objs, "NetworkPolicy", "rel-mqtt-authproxy-broker")
			if bp == nil || bp.Metadata.Namespace != "broker" || bp.Spec.PodSelector.MatchLabels["app.kubernetes.io/name"] != "hivemq" {
				t.Fatal("no NetworkPolicy on the broker's Pods in its namespace")
			}
			if len(bp.Spec.Ingress) != 1 || len(bp.Spec.Ingress[0].From) != 1 {
				t.Fatalf("broker policy %+v: want one rule from the proxy", bp.Spec.Ingress)
			}
			from := bp.Spec.Ingress[0].From[0]
			if from.PodSelector == nil || from.PodSelector.MatchLabels["app.kubernetes.io/instance"] != "rel" ||
				from.NamespaceSelector == nil || from.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] != "iot" {
				t.Errorf("the broker admits %+v, want the proxy's Pods in the release's namespace", from)
			}
		})
	}
	out, err := exec.Command(helm, "template", "rel", chartDir).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "backend.addr is required") {
		t.Errorf("rendering without backend.addr: %v\n%s", err, out)
	}
}

// TestHelmShutdownFollowsTheDrain: the Pod's terminationGracePeriodSeconds
// follows the drain (docs/brokers.md): preStop's sleep, plus
// AUTHPROXY_SHUTDOWN_GRACE (the drain's span), plus a margin, and moves
// with them; DRAIN_RATE and DRAIN_SERVER_REFERENCE come from the same
// values; setting the drain's variables under env instead fails the
// rendering (the grace period would not follow).
func TestHelmShutdownFollowsTheDrain(t *testing.T) {
	helm := helmBin(t)
	type pod struct {
		Kind string `yaml:"kind"`
		Spec struct {
			Template struct {
				Spec struct {
					Grace      int `yaml:"terminationGracePeriodSeconds"`
					Containers []struct {
						Env []struct {
							Name, Value string
						} `yaml:"env"`
						Lifecycle *struct {
							PreStop struct {
								Sleep *struct {
									Seconds int `yaml:"seconds"`
								} `yaml:"sleep"`
							} `yaml:"preStop"`
						} `yaml:"lifecycle"`
					} `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	render := func(set ...string) (grace, preStop int, env map[string]string) {
		t.Helper()
		args := []string{"template", "rel", chartDir, "--set", "backend.addr=hivemq-0:1883 hivemq-1:1883"}
		for _, s := range set {
			args = append(args, "--set", s)
		}
		out, err := exec.Command(helm, args...).Output()
		if err != nil {
			t.Fatalf("helm %v: %v", args, err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(out))
		for {
			var p pod
			if err := dec.Decode(&p); err != nil {
				t.Fatalf("no Deployment: %v", err)
			}
			if p.Kind != "Deployment" {
				continue
			}
			c := p.Spec.Template.Spec.Containers[0]
			env = map[string]string{}
			for _, e := range c.Env {
				env[e.Name] = e.Value
			}
			if c.Lifecycle != nil && c.Lifecycle.PreStop.Sleep != nil {
				preStop = c.Lifecycle.PreStop.Sleep.Seconds
			}
			return p.Spec.Template.Spec.Grace, preStop, env
		}
	}
	grace, preStop, env := render()
	if preStop != 5 || env["AUTHPROXY_SHUTDOWN_GRACE"] != "30s" || grace != 5+30+5 || env["AUTHPROXY_DRAIN_RATE"] != "" {
		t.Fatalf("defaults: grace %d, preStop %d, env %v", grace, preStop, env)
	}
	cfg, err := app.Load([]string{"AUTHPROXY_SHUTDOWN_GRACE=" + env["AUTHPROXY_SHUTDOWN_GRACE"]})
	if err != nil || cfg.ShutdownGrace.Seconds() != 30 {
		t.Fatalf("the rendered SHUTDOWN_GRACE: %v %v", cfg.ShutdownGrace, err)
	}
	grace, preStop, env = render("shutdown.graceSeconds=300", "shutdown.preStopSeconds=0", "shutdown.drainRate=50/s",
		"shutdown.serverReference=mqtt-b.example.com:8883")
	if preStop != 0 || grace != 305 || env["AUTHPROXY_SHUTDOWN_GRACE"] != "300s" || env["AUTHPROXY_DRAIN_RATE"] != "50/s" ||
		env["AUTHPROXY_DRAIN_SERVER_REFERENCE"] != "mqtt-b.example.com:8883" {
		t.Fatalf("a longer drain: grace %d, preStop %d, env %v", grace, preStop, env)
	}
	for _, v := range []string{"SHUTDOWN_GRACE=60s", "DRAIN_RATE=10/s"} {
		out, err := exec.Command(helm, "template", "rel", chartDir, "--set", "backend.addr=b:1883", "--set", "env."+v).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "set shutdown.* instead of env.") {
			t.Errorf("env.%s: %v %s", v, err, out)
		}
	}
}
