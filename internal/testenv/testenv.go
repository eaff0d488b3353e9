// Package testenv starts real servers (redis-server, mosquitto) on free
// loopback ports for integration tests. Where a server's binary is missing,
// a test fails under CI (CI=true) and is skipped elsewhere.
package testenv

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// LookPath finds a server binary, also in the sbin directories a CI shell
// may not have on PATH. It fails the test under CI and skips it elsewhere.
func LookPath(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not found: .ci/run must install it", name)
	}
	t.Skipf("%s not installed (apt-get install it, or run bash .ci/run)", name)
	return ""
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// WaitFor polls cond every few milliseconds until it holds or timeout passes.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Server is a real server process on a fixed loopback port. Stop and Start
// restart it on the same port.
type Server struct {
	t    testing.TB
	Name string
	Port int
	args []string
	bin  string
	dir  string
	// logFile, when set, is read by Output after what the process printed.
	logFile string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	out  *SyncBuffer
}

// Addr is host:port of the server.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) }

// Output returns what the server has printed so far.
func (s *Server) Output() string {
	out := s.out.String()
	if s.logFile != "" {
		b, _ := os.ReadFile(s.logFile)
		out += string(b)
	}
	return out
}

// Start launches the server and waits until its port accepts connections.
func (s *Server) Start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return
	}
	cmd := exec.Command(s.bin, s.args...)
	dieWithParent(cmd)
	cmd.Dir = s.dir
	cmd.Stdout = s.out
	cmd.Stderr = s.out
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start %s: %v", s.Name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.cmd, s.done = cmd, done
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.Addr(), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-done:
			s.cmd = nil
			s.t.Fatalf("%s exited at start:\n%s", s.Name, s.out.String())
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s did not listen on %s:\n%s", s.Name, s.Addr(), s.out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Stop asks the server to exit (SIGTERM), kills it after 20 seconds, and
// waits until it has exited.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

func newServer(t testing.TB, name, bin, dir string, port int, args ...string) *Server {
	s := &Server{t: t, Name: name, Port: port, bin: bin, dir: dir, args: args, out: &SyncBuffer{}}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// Redis starts a real redis-server on a free loopback port, with no
// persistence. Extra are more command-line options ("--notify-keyspace-events", "KEA").
func Redis(t testing.TB, extra ...string) *Server {
	t.Helper()
	bin := LookPath(t, "redis-server")
	dir := t.TempDir()
	port := FreePort(t)
	args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", dir, "--protected-mode", "no"}, extra...)
	return newServer(t, "redis-server", bin, dir, port, args...)
}

// Sentinel starts a real Redis Sentinel (redis-server --sentinel) on a free
// loopback port, monitoring master under name with a quorum of one. It marks
// the master down after 1 s without answers, so a failover to a replica
// takes a few seconds. Start it after the master's replicas have synced:
// it learns about replicas from the master's INFO, which it asks for at
// start and then every 10 seconds.
func Sentinel(t testing.TB, name string, master *Server) *Server {
	t.Helper()
	bin := LookPath(t, "redis-server")
	dir := t.TempDir()
	port := FreePort(t)
	conf := fmt.Sprintf("port %d\nbind 127.0.0.1\nprotected-mode no\ndir %s\n"+
		"sentinel monitor %s 127.0.0.1 %d 1\n"+
		"sentinel down-after-milliseconds %s 1000\n"+
		"sentinel failover-timeout %s 10000\n", port, dir, name, master.Port, name, name)
	cfg := filepath.Join(dir, "sentinel.conf") // Sentinel rewrites it: writable
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return newServer(t, "redis-sentinel", bin, dir, port, cfg, "--sentinel")
}

// RedisCluster starts real redis-server nodes in cluster mode on free
// loopback ports (cluster bus ports too): masters masters, each with
// replicas replicas, joined with redis-cli --cluster create; it waits until
// every node reports the cluster ok. A node that stops answering for 2 s is
// failed over. Extra are more options for every node.
func RedisCluster(t testing.TB, masters, replicas int, extra ...string) []*Server {
	t.Helper()
	bin := LookPath(t, "redis-server")
	cli := LookPath(t, "redis-cli")
	var nodes []*Server
	create := []string{"--cluster", "create"}
	for range masters * (1 + replicas) {
		dir := t.TempDir()
		port := FreePort(t)
		args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
			"--appendonly", "no", "--dir", dir, "--protected-mode", "no",
			"--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			"--cluster-port", strconv.Itoa(FreePort(t)), "--cluster-node-timeout", "2000"}, extra...)
		s := newServer(t, "redis-server (cluster)", bin, dir, port, args...)
		nodes = append(nodes, s)
		create = append(create, s.Addr())
	}
	create = append(create, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	if out, err := exec.Command(cli, create...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	WaitFor(t, 20*time.Second, "the cluster to be ok on every node", func() bool {
		for _, s := range nodes {
			out, err := exec.Command(cli, "-p", strconv.Itoa(s.Port), "cluster", "info").Output()
			if err != nil || !strings.Contains(string(out), "cluster_state:ok") {
				return false
			}
		}
		return true
	})
	return nodes
}

// RedisURL is the go-redis URL of a Redis server.
func RedisURL(s *Server) string { return "redis://" + s.Addr() + "/0" }

// MosquittoOptions configure a test broker.
type MosquittoOptions struct {
	// Users, when set, turns off anonymous access: only these name/password
	// pairs may connect.
	Users map[string]string
	// TLSCert and TLSKey make the listener TLS-only; with TLSClientCA it
	// requires a client certificate issued by that CA.
	TLSCert, TLSKey, TLSClientCA string
}

// Mosquitto starts a real mosquitto broker on a free loopback port, logging
// every connection (with its username) to Output.
func Mosquitto(t testing.TB, o MosquittoOptions) *Server {
	t.Helper()
	bin := LookPath(t, "mosquitto")
	dir := t.TempDir()
	port := FreePort(t)
	var conf bytes.Buffer
	fmt.Fprintf(&conf, "listener %d 127.0.0.1\n", port)
	if o.TLSCert != "" {
		fmt.Fprintf(&conf, "certfile %s\nkeyfile %s\n", o.TLSCert, o.TLSKey)
		if o.TLSClientCA != "" {
			fmt.Fprintf(&conf, "cafile %s\nrequire_certificate true\n", o.TLSClientCA)
		}
	}
	// A log file, not stdout: mosquitto flushes it per line, but buffers a pipe.
	logFile := filepath.Join(dir, "mosquitto.log")
	fmt.Fprintf(&conf, "log_dest file %s\nlog_type all\nconnection_messages true\npersistence false\n", logFile)
	if os.Geteuid() == 0 {
		// Run as root so that the broker can read its files in the test's
		// private temp dir instead of dropping to the mosquitto user.
		conf.WriteString("user root\n")
	}
	if len(o.Users) > 0 {
		pwfile := filepath.Join(dir, "passwd")
		if err := os.WriteFile(pwfile, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		passwd := LookPath(t, "mosquitto_passwd")
		for u, p := range o.Users {
			if out, err := exec.Command(passwd, "-b", pwfile, u, p).CombinedOutput(); err != nil {
				t.Fatalf("mosquitto_passwd: %v: %s", err, out)
			}
		}
		fmt.Fprintf(&conf, "allow_anonymous false\npassword_file %s\n", pwfile)
	} else {
		conf.WriteString("allow_anonymous true\n")
	}
	cfg := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(cfg, conf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	s := newServer(t, "mosquitto", bin, dir, port, "-c", cfg)
	s.logFile = logFile
	return s
}

// WaitOutput waits until the server's output contains substr.
func (s *Server) WaitOutput(substr string, timeout time.Duration) {
	s.t.Helper()
	WaitFor(s.t, timeout, fmt.Sprintf("%s to print %q", s.Name, substr), func() bool {
		return strings.Contains(s.Output(), substr)
	})
}

// OutputLines returns the lines of output that contain substr.
func (s *Server) OutputLines(substr string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s.Output()))
	for sc.Scan() {
		if strings.Contains(sc.Text(), substr) {
			out = append(out, sc.Text())
		}
	}
	return out
}

// SyncBuffer is a bytes.Buffer safe for concurrent writes and reads.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (l *SyncBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns what was written so far.
func (l *SyncBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Context returns a context that ends with the test.
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx
}
