// Command authproxy-bench is mqtt-authproxy's load generator. It measures a
// broker, the proxy, or any TLS terminator in front of a broker, with
// scenarios bounded in count and time, and samples the CPU seconds and RSS
// of named processes while it runs, so that the cost per connection of one
// process (the proxy alone) can be computed. Targets must be loopback
// addresses unless --allow-remote is given.
//
//	authproxy-bench -scenario connect -addr 127.0.0.1:8883 -tls -ca ca.pem -n 2000 -resume
//	authproxy-bench -scenario qos0 -addr ... -publishers 4 -size 1024 -duration 10s
//	authproxy-bench -scenario qos0 -addr ... -publishers 4 -size 1024 -rate 120000
//	authproxy-bench -scenario qos1 -addr ... -publishers 8 -duration 10s
//	authproxy-bench -scenario idle -addr ... -n 9000 -hold 10s -watch proxy=12345
//	authproxy-bench -scenario idle -addr ... -tls -ws /mqtt -n 9000     (MQTT over WebSocket)
//	authproxy-bench -scenario idle -addr ... -tls -proxy-v2 -n 9000     (a PROXY v2 header first)
//	authproxy-bench -scenario storm -addr ... -n 2000
//	authproxy-bench -scenario storm -cold -addr ... -n 2000 -users 2000 -pass-file pw.txt -duration 300s
//	authproxy-bench -scenario drain -addr ... -n 5000 -signal PID      (SIGTERM to the proxy: the drain's pace)
//
// A storm retries a device whose connect failed (closed, refused, a
// CONNACK other than 0: 0x03/0x89 "busy" when the proxy's hash queue is
// full) after an exponential back-off with jitter (-retry-min, -retry-max),
// keeping the TLS session it was given, as a device stack does, until the
// -duration bound. With -cold the measured phase is the first connect of
// all -n devices at once (to a freshly started server: nothing
// remembered); without it all connect first, drop, and the reconnect is
// measured. -users K gives device i the user <-user>-(i mod K) (default
// prefix bench) with that name as client id, and the password from line
// (i mod K) of -pass-file, or -pass with %d replaced by i mod K.
//
// Output is one JSON object per run on stdout (-json) or a line of text.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
	"github.com/pires/go-proxyproto"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/mqtttest"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

type options struct {
	scenario    string
	addr        string
	useTLS      bool
	caFile      string
	serverName  string
	tlsVersion  string
	resume      bool
	user, pass  string
	level       int
	n           int
	concurrency int
	publishers  int
	size        int
	rate        int
	duration    time.Duration
	hold        time.Duration
	sources     int
	allowRemote bool
	watch       string
	asJSON      bool
	label       string
	pq          bool
	wsPath      string
	proxyV2     bool
	users       int
	passFile    string
	cold        bool
	retryMin    time.Duration
	retryMax    time.Duration
	probes      int
	signal      int
}

func main() {
	var o options
	flag.StringVar(&o.scenario, "scenario", "connect", "connect, qos0, qos1, idle, storm or drain")
	flag.StringVar(&o.addr, "addr", "127.0.0.1:8883", "target host:port")
	flag.BoolVar(&o.useTLS, "tls", false, "connect with TLS")
	flag.StringVar(&o.caFile, "ca", "", "CA file for TLS (default: system roots)")
	flag.StringVar(&o.serverName, "servername", "localhost", "TLS server name")
	flag.StringVar(&o.tlsVersion, "tls-version", "1.3", "1.2 or 1.3")
	flag.BoolVar(&o.resume, "resume", false, "connect: resume TLS sessions (one session cache per worker)")
	flag.StringVar(&o.user, "user", "", "MQTT user name")
	flag.StringVar(&o.pass, "pass", "", "MQTT password (a benchmark account's, never a real one)")
	flag.IntVar(&o.level, "mqtt", 4, "MQTT protocol level: 4 (3.1.1) or 5")
	flag.IntVar(&o.n, "n", 1000, "connect/storm: connections; idle: connections held")
	flag.IntVar(&o.concurrency, "c", 8, "connect/storm: concurrent workers (storm -cold: all -n at once)")
	flag.IntVar(&o.publishers, "publishers", 4, "qos0/qos1: publishers")
	flag.IntVar(&o.size, "size", 1024, "qos0/qos1: payload bytes")
	flag.IntVar(&o.rate, "rate", 0, "qos0: offered messages/s over all publishers (0: as fast as they can)")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "qos0/qos1: measured time; connect/storm: time bound")
	flag.DurationVar(&o.hold, "hold", 5*time.Second, "idle: how long the connections are held before sampling")
	flag.IntVar(&o.sources, "sources", 50, "spread client source addresses over 127.0.0.1..127.0.0.N")
	flag.BoolVar(&o.allowRemote, "allow-remote", false, "allow a non-loopback target")
	flag.StringVar(&o.watch, "watch", "", "processes to sample: name=pid[,name=pid...] (CPU seconds and RSS)")
	flag.BoolVar(&o.asJSON, "json", false, "print the result as JSON")
	flag.StringVar(&o.label, "label", "", "label copied into the result")
	flag.StringVar(&o.wsPath, "ws", "", "MQTT over WebSocket at this path (wss:// with -tls, else ws://), subprotocol mqtt")
	flag.BoolVar(&o.proxyV2, "proxy-v2", false, "send a PROXY protocol v2 header first, with a made-up source address in 198.18.0.0/15 (as a load balancer does)")
	flag.IntVar(&o.users, "users", 0, "distinct users: device i is <-user>-(i mod K) (prefix bench if -user is empty), its client id the same name; 0: every device is -user")
	flag.StringVar(&o.passFile, "pass-file", "", "with -users: line k is the password of user k (a benchmark account's, never a real one)")
	flag.BoolVar(&o.cold, "cold", false, "storm: measure the first connect of all -n devices at once (start the server fresh: nothing remembered)")
	flag.DurationVar(&o.retryMin, "retry-min", 100*time.Millisecond, "storm: first back-off after a failed connect (doubled per failure, with jitter)")
	flag.DurationVar(&o.retryMax, "retry-max", 2*time.Second, "storm: largest back-off")
	flag.IntVar(&o.probes, "probes", 0, "idle: during the hold, this many fresh devices connect (full TLS handshake) one after the other, spread over it: their connect times")
	flag.IntVar(&o.signal, "signal", 0, "drain: the pid of the proxy to send SIGTERM once the -n devices are connected")
	flag.BoolVar(&o.pq, "pq", false, "offer the post-quantum hybrid X25519MLKEM768 key exchange (default: X25519 and P-256, as typical device TLS stacks do)")
	flag.Parse()
	res, err := run(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "authproxy-bench:", err)
		os.Exit(1)
	}
	if o.asJSON {
		_ = json.NewEncoder(os.Stdout).Encode(res)
		return
	}
	fmt.Println(res.String())
}

// Result is one run's figures.
type Result struct {
	Label    string  `json:"label,omitempty"`
	Scenario string  `json:"scenario"`
	Ops      int64   `json:"ops"`
	Errors   int64   `json:"errors"`
	Seconds  float64 `json:"seconds"`
	Rate     float64 `json:"rate_per_s"`
	Offered  float64 `json:"offered_per_s,omitempty"` // qos0 -rate: messages/s actually sent
	MBps     float64 `json:"mb_per_s,omitempty"`
	Resumed  float64 `json:"resumed_ratio,omitempty"`
	P50ms    float64 `json:"p50_ms,omitempty"`
	P99ms    float64 `json:"p99_ms,omitempty"`
	Held     int     `json:"held,omitempty"`
	// Idle: the watched processes' CPU share while the connections were
	// held, and the connect times of -probes fresh devices meanwhile.
	HoldCPUShare map[string]float64 `json:"hold_cpu_share,omitempty"`
	ProbeP50ms   float64            `json:"probe_p50_ms,omitempty"`
	ProbeMaxms   float64            `json:"probe_max_ms,omitempty"`
	ProbeErrors  int64              `json:"probe_errors,omitempty"`
	CPU          map[string]float64 `json:"cpu_s,omitempty"`          // CPU seconds per watched process during the run
	RSSKiB       map[string]float64 `json:"rss_kib,omitempty"`        // RSS at the end of the run
	RSSBefore    map[string]float64 `json:"rss_before_kib,omitempty"` // RSS before the run
	CPUPerOpUs   map[string]float64 `json:"cpu_per_op_us,omitempty"`
	CPUShare     map[string]float64 `json:"cpu_share,omitempty"` // CPU seconds per second of the measured window (1.0: a whole core)
	RSSPerConn   map[string]float64 `json:"rss_per_conn_kib,omitempty"`
	// Storm: connect attempts, CONNACK codes seen ("0x00" accepted),
	// failed attempts by kind, devices never connected within the bound.
	Attempts    int64            `json:"attempts,omitempty"`
	Connack     map[string]int64 `json:"connack,omitempty"`
	Failures    map[string]int64 `json:"failures,omitempty"`
	Unconnected int              `json:"unconnected,omitempty"`
	// PerSecond: a storm's connects by the second they completed in, from
	// its start, and the most in one (what reached the broker).
	PerSecond    []int64 `json:"per_second,omitempty"`
	MaxPerSecond int64   `json:"max_per_second,omitempty"`
}

func (r Result) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: %d ops, %d errors, %.2fs, %.0f/s", r.Label, r.Scenario, r.Ops, r.Errors, r.Seconds, r.Rate)
	if r.MBps > 0 {
		fmt.Fprintf(&b, ", %.1f MB/s", r.MBps)
	}
	if r.Offered > 0 {
		fmt.Fprintf(&b, " (offered %.0f/s, delivered %.3f)", r.Offered, r.Rate/r.Offered)
	}
	if r.Resumed > 0 {
		fmt.Fprintf(&b, ", resumed %.0f%%", 100*r.Resumed)
	}
	if r.P50ms > 0 {
		fmt.Fprintf(&b, ", p50 %.3fms p99 %.3fms", r.P50ms, r.P99ms)
	}
	if r.ProbeP50ms > 0 || r.ProbeErrors > 0 {
		fmt.Fprintf(&b, ", fresh devices during the hold: p50 %.1fms max %.1fms, %d failed", r.ProbeP50ms, r.ProbeMaxms, r.ProbeErrors)
	}
	if r.MaxPerSecond > 0 {
		fmt.Fprintf(&b, ", at most %d connected in one second", r.MaxPerSecond)
	}
	if r.Attempts > 0 {
		fmt.Fprintf(&b, ", %d attempts, %d unconnected", r.Attempts, r.Unconnected)
		for _, code := range sortedKeys(r.Connack) {
			fmt.Fprintf(&b, ", CONNACK %s x%d", code, r.Connack[code])
		}
		for _, kind := range sortedKeys(r.Failures) {
			fmt.Fprintf(&b, ", %s x%d", kind, r.Failures[kind])
		}
	}
	for _, name := range sortedKeys(r.CPU) {
		fmt.Fprintf(&b, ", %s cpu %.2fs", name, r.CPU[name])
		if v, ok := r.CPUShare[name]; ok {
			fmt.Fprintf(&b, " (%.0f%% of a core)", 100*v)
		}
		if v, ok := r.CPUPerOpUs[name]; ok {
			fmt.Fprintf(&b, " (%.0fus/op)", v)
		}
		if v, ok := r.RSSPerConn[name]; ok {
			fmt.Fprintf(&b, " rss %.0fKiB (%.1fKiB/conn)", r.RSSKiB[name], v)
		}
	}
	return b.String()
}

func sortedKeys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func run(o options) (Result, error) {
	host, _, err := net.SplitHostPort(o.addr)
	if err != nil {
		return Result{}, fmt.Errorf("-addr %q: %v", o.addr, err)
	}
	if ip := net.ParseIP(host); !o.allowRemote && (ip == nil || !ip.IsLoopback()) && host != "localhost" {
		return Result{}, fmt.Errorf("-addr %s is not a loopback address; load may only target loopback (use -allow-remote for your own test hosts)", o.addr)
	}
	if o.duration > 10*time.Minute || o.n > 200000 || o.hold > 10*time.Minute || o.rate < 0 || o.rate > 10_000_000 ||
		o.users < 0 || o.users > 200000 || o.probes < 0 || o.probes > 1000 || o.retryMin <= 0 || o.retryMax < o.retryMin || o.retryMax > time.Minute {
		return Result{}, errors.New("bounds: -duration and -hold at most 10m, -n and -users at most 200000, -probes at most 1000, -rate 0 to 10000000, 0 < -retry-min <= -retry-max <= 1m")
	}
	if err := raiseNoFile(o); err != nil {
		return Result{}, err
	}
	d, err := newDialer(o)
	if err != nil {
		return Result{}, err
	}
	watched, err := parseWatch(o.watch)
	if err != nil {
		return Result{}, err
	}
	quiesce(watched)
	m := &meter{watched: watched}
	m.begin()
	start := time.Now()
	var r Result
	switch o.scenario {
	case "connect":
		r, err = connectScenario(o, d)
	case "qos0":
		r, err = qos0Scenario(o, d, m)
	case "qos1":
		r, err = qos1Scenario(o, d, m)
	case "idle":
		r, err = idleScenario(o, d, watched, m.s0)
		return r, err
	case "storm":
		r, err = stormScenario(o, d, m)
	case "drain":
		r, err = drainScenario(o, d)
	default:
		return Result{}, fmt.Errorf("unknown -scenario %q", o.scenario)
	}
	if err != nil {
		return r, err
	}
	if !m.done {
		m.end()
	}
	r.Label, r.Scenario = o.label, o.scenario
	if r.Seconds == 0 {
		r.Seconds = time.Since(start).Seconds()
	}
	if r.Rate == 0 && r.Seconds > 0 {
		r.Rate = float64(r.Ops) / r.Seconds
	}
	r.CPU, r.CPUPerOpUs, r.CPUShare = map[string]float64{}, map[string]float64{}, map[string]float64{}
	window := m.t1.Sub(m.t0).Seconds()
	for name := range watched {
		cpu := m.s1[name].cpu - m.s0[name].cpu
		r.CPU[name] = cpu
		if r.Ops > 0 {
			r.CPUPerOpUs[name] = cpu / float64(r.Ops) * 1e6
		}
		if window > 0 {
			r.CPUShare[name] = cpu / window
		}
	}
	return r, nil
}

// meter samples the watched processes at the start and the end of the
// measured window: the whole run, unless a scenario marks a window of its
// own (qos0 after its warm-up, qos1 once its publishers are connected, the
// reconnect of a warm storm), so that CPU per message and the CPU share
// count only what the figure counts.
type meter struct {
	watched map[string]int
	t0, t1  time.Time
	s0, s1  map[string]procSample
	done    bool
}

func (m *meter) begin() { m.s0, m.t0 = sample(m.watched), time.Now() }
func (m *meter) end()   { m.s1, m.t1, m.done = sample(m.watched), time.Now(), true }

// raiseNoFile lifts the open-file limit to its hard maximum and says
// clearly when that is still too low for the connections asked for.
func raiseNoFile(o options) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return nil
	}
	lim.Cur = lim.Max
	_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	need := uint64(o.n + 64)
	if o.scenario != "idle" && o.scenario != "storm" {
		need = uint64(o.concurrency + o.publishers + 64)
	}
	if uint64(lim.Cur) < need { // int64 on some BSDs
		return fmt.Errorf("open-file limit is %d, %d connections need about %d: raise it (ulimit -n %d, or LimitNOFILE=) and the server's too", lim.Cur, o.n, need, need)
	}
	return nil
}

// dialer opens MQTT connections, spreading source addresses over 127.0.0.x
// so that tens of thousands of connections do not exhaust ephemeral ports.
type dialer struct {
	o         options
	tls       *tls.Config
	next      atomic.Uint64
	local     bool
	ws        *http.Client // with -ws: its transport dials through rawDial
	passwords []string     // -pass-file, one per user
}

// creds are what one device presents.
type creds struct{ user, pass, clientID string }

// creds of device i: with -users, user <prefix>-(i mod K) with its own
// password and its name as client id; else -user and -pass with the
// client id <user>:<suffix> (the proxy's default client ids are the user
// name, or the user name, a colon and anything).
func (d *dialer) creds(i int, suffix string) creds {
	if d.o.users <= 0 {
		return creds{d.o.user, d.o.pass, d.o.user + ":" + suffix}
	}
	k := i % d.o.users
	prefix := d.o.user
	if prefix == "" {
		prefix = "bench"
	}
	c := creds{user: fmt.Sprintf("%s-%d", prefix, k), pass: d.o.pass}
	c.clientID = c.user
	switch {
	case d.passwords != nil:
		c.pass = d.passwords[k]
	case strings.Contains(d.o.pass, "%d"):
		c.pass = strings.ReplaceAll(d.o.pass, "%d", strconv.Itoa(k))
	}
	return c
}

// connackError is a CONNACK that refused.
type connackError struct{ code byte }

func (e connackError) Error() string { return fmt.Sprintf("CONNACK 0x%02X", e.code) }

// stageError is a connect that failed before a CONNACK: in the TCP dial,
// the PROXY header, the WebSocket upgrade, the TLS handshake or the
// CONNECT/CONNACK exchange.
type stageError struct {
	stage string
	err   error
}

func (e stageError) Error() string { return e.stage + ": " + e.err.Error() }
func (e stageError) Unwrap() error { return e.err }

// failureKind names a failed connect for the storm's counts: "connack
// 0x03", or the stage and what happened ("tls closed", "dial timeout").
func failureKind(err error) string {
	var ce connackError
	if errors.As(err, &ce) {
		return fmt.Sprintf("connack 0x%02X", ce.code)
	}
	stage := "other"
	var se stageError
	if errors.As(err, &se) {
		stage = se.stage
	}
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return stage + " timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return stage + " closed"
	case errors.Is(err, syscall.ECONNREFUSED):
		return stage + " refused"
	}
	return stage + " error"
}

func newDialer(o options) (*dialer, error) {
	d := &dialer{o: o}
	host, _, _ := net.SplitHostPort(o.addr)
	d.local = strings.HasPrefix(host, "127.") && o.sources > 1
	if o.useTLS {
		d.tls = &tls.Config{ServerName: o.serverName}
		if !o.pq {
			d.tls.CurvePreferences = []tls.CurveID{tls.X25519, tls.CurveP256}
		}
		switch o.tlsVersion {
		case "1.2":
			d.tls.MinVersion, d.tls.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
		case "1.3":
			d.tls.MinVersion, d.tls.MaxVersion = tls.VersionTLS13, tls.VersionTLS13
		default:
			return nil, fmt.Errorf("-tls-version %q is not 1.2 or 1.3", o.tlsVersion)
		}
		if o.caFile != "" {
			pem, err := os.ReadFile(o.caFile)
			if err != nil {
				return nil, err
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("%s: no certificate", o.caFile)
			}
			d.tls.RootCAs = pool
		}
	}
	if o.users > 0 && o.passFile != "" {
		b, err := os.ReadFile(o.passFile)
		if err != nil {
			return nil, err
		}
		d.passwords = strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(d.passwords) < o.users {
			return nil, fmt.Errorf("-pass-file %s: %d passwords for %d users", o.passFile, len(d.passwords), o.users)
		}
	} else if o.passFile != "" {
		return nil, errors.New("-pass-file needs -users")
	}
	if o.wsPath != "" {
		d.ws = &http.Client{Transport: &http.Transport{TLSClientConfig: d.tls, ForceAttemptHTTP2: false,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return d.rawDial(ctx) }}}
	}
	return d, nil
}

// rawDial opens a TCP connection to the target from the next source
// address and, with -proxy-v2, writes a PROXY v2 header first.
func (d *dialer) rawDial(ctx context.Context) (net.Conn, error) {
	nd := net.Dialer{Timeout: 10 * time.Second}
	i := d.next.Add(1)
	if d.local {
		nd.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i%uint64(d.o.sources)))}
	}
	raw, err := nd.DialContext(ctx, "tcp", d.o.addr)
	if err != nil {
		return nil, err
	}
	if d.o.proxyV2 {
		src := &net.TCPAddr{IP: net.IPv4(198, 18+byte(i>>16&1), byte(i>>8), byte(i)), Port: 1024 + int(i%60000)}
		h, err := proxyproto.HeaderProxyFromAddrs(2, src, raw.RemoteAddr()).Format()
		if err == nil {
			_, err = raw.Write(h)
		}
		if err != nil {
			raw.Close()
			return nil, err
		}
	}
	return raw, nil
}

// dialWS upgrades to a WebSocket (over TLS with -tls) and returns the
// connection carrying the MQTT bytes.
func (d *dialer) dialWS(ctx context.Context) (net.Conn, error) {
	scheme := "ws://"
	if d.tls != nil {
		scheme = "wss://"
	}
	ws, _, err := websocket.Dial(ctx, scheme+d.o.addr+d.o.wsPath, &websocket.DialOptions{HTTPClient: d.ws, Subprotocols: []string{"mqtt"}})
	if err != nil {
		return nil, err
	}
	return websocket.NetConn(context.Background(), ws, websocket.MessageBinary), nil
}

// conn is one MQTT client connection.
type conn struct {
	net.Conn
	r       *bufio.Reader
	resumed bool
	level   packets.Level
}

// dial connects as cr and completes CONNECT/CONNACK. cache, when set, is
// the TLS session cache to resume from.
func (d *dialer) dial(ctx context.Context, cr creds, cache tls.ClientSessionCache) (*conn, error) {
	var c *conn
	if d.ws != nil {
		wc, err := d.dialWS(ctx)
		if err != nil {
			return nil, stageError{"websocket", err}
		}
		c = &conn{Conn: wc, level: packets.Level(d.o.level)}
	} else if raw, err := d.rawDial(ctx); err != nil {
		return nil, stageError{"dial", err}
	} else {
		c = &conn{Conn: raw, level: packets.Level(d.o.level)}
	}
	if raw := c.Conn; d.tls != nil && d.ws == nil {
		cfg := d.tls
		if cache != nil {
			cfg = d.tls.Clone()
			cfg.ClientSessionCache = cache
		}
		tc := tls.Client(raw, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, stageError{"tls", err}
		}
		c.Conn, c.resumed = tc, tc.ConnectionState().DidResume
	}
	cp := packets.Connect{ProtocolName: "MQTT", ProtocolLevel: packets.Level(d.o.level), CleanStart: true, KeepAlive: 300, ClientID: cr.clientID}
	if cr.user != "" {
		cp.UsernameFlag, cp.Username = true, cr.user
	}
	if cr.pass != "" {
		cp.PasswordFlag, cp.Password = true, cr.pass
	}
	// Connect reads the CONNACK without reading past it: the buffered
	// reader starts after it.
	_, ack, err := mqtttest.Connect(c.Conn, cp)
	if err != nil {
		c.Close()
		return nil, stageError{"mqtt", err}
	}
	if !ack.Accepted() {
		c.Close()
		return nil, connackError{byte(ack.Code)}
	}
	c.r = bufio.NewReaderSize(c.Conn, 32<<10)
	return c, nil
}

func (c *conn) disconnect() {
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = c.Write(packets.AppendDisconnect(nil, c.level, packets.Success))
	c.Close()
}

func (c *conn) subscribe(filter string, qos byte) error {
	if _, err := c.Write(mqtttest.AppendSubscribe(nil, c.level, 1, filter, qos)); err != nil {
		return err
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	_, _, err := mqtttest.ReadUntil(c.r, packets.SUBACK, 1<<16)
	return err
}

// connectScenario: -n connections, each TCP + TLS + CONNECT/CONNACK +
// DISCONNECT, by -c workers; with -resume each worker keeps a session
// cache, so all but its first handshake may resume.
func connectScenario(o options, d *dialer) (Result, error) {
	var ops, errs, resumed atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), o.duration)
	defer cancel()
	caches := make([]tls.ClientSessionCache, o.concurrency)
	if o.resume {
		for w := range caches {
			caches[w] = tls.NewLRUClientSessionCache(1)
		}
	}
	start := time.Now()
	lat := make([]time.Duration, o.n) // each connect's time to CONNACK; 0: failed
	parallel(ctx, o.concurrency, o.n, func(w, i int) {
		t0 := time.Now()
		c, err := d.dial(ctx, d.creds(i, fmt.Sprintf("c-%d", i)), caches[w])
		if err != nil {
			errs.Add(1)
			return
		}
		lat[i] = time.Since(t0)
		if c.resumed {
			resumed.Add(1)
		}
		if d.tls != nil && o.resume && d.o.tlsVersion == "1.3" {
			// A TLS 1.3 ticket arrives after the handshake: read until the
			// DISCONNECT closes the connection so that it is processed.
			_, _ = c.Write(packets.AppendDisconnect(nil, c.level, packets.Success))
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			_, _ = io.Copy(io.Discard, c.r)
			c.Close()
		} else {
			c.disconnect()
		}
		ops.Add(1)
	})
	r := Result{Ops: ops.Load(), Errors: errs.Load(), Seconds: time.Since(start).Seconds()}
	if r.Ops > 0 {
		r.Resumed = float64(resumed.Load()) / float64(r.Ops)
	}
	r.P50ms, r.P99ms, _ = percentiles(slices.DeleteFunc(lat, func(d time.Duration) bool { return d == 0 }))
	return r, nil
}

// percentiles of ds in milliseconds: the median, the 99th and the largest.
func percentiles(ds []time.Duration) (p50, p99, maxMs float64) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	slices.Sort(ds)
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	return ms(ds[len(ds)/2]), ms(ds[len(ds)*99/100]), ms(ds[len(ds)-1])
}

// qos0Scenario: -publishers publish -size payloads at QoS 0 for -duration,
// as fast as they can or, with -rate, at that many messages per second in
// all; one subscriber counts what it receives.
func qos0Scenario(o options, d *dialer, m *meter) (Result, error) {
	ctx := context.Background()
	sub, err := d.dial(ctx, d.creds(0, "sub"), nil)
	if err != nil {
		return Result{}, fmt.Errorf("subscriber: %w", err)
	}
	defer sub.Close()
	if err := sub.subscribe("bench/q0", 0); err != nil {
		return Result{}, err
	}
	var received, bytesIn, sent atomic.Int64
	go func() {
		for {
			h, _, err := packets.ReadPacket(sub.r, 1<<20)
			if err != nil {
				return
			}
			if h.Type == packets.PUBLISH {
				received.Add(1)
				bytesIn.Add(int64(o.size))
			}
		}
	}()
	payload := make([]byte, o.size)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var errs atomic.Int64
	perPublisher := float64(o.rate) / float64(o.publishers)
	for p := 0; p < o.publishers; p++ {
		c, err := d.dial(ctx, d.creds(p+1, fmt.Sprintf("pub-%d", p)), nil)
		if err != nil {
			return Result{}, fmt.Errorf("publisher: %w", err)
		}
		defer c.Close()
		// Batch several PUBLISH packets per write, as a busy client would.
		one := mqtttest.AppendPublish(nil, c.level, "bench/q0", payload, 0, false, 0)
		const perBatch = 16
		batch := make([]byte, 0, perBatch*len(one))
		for len(batch)+len(one) <= cap(batch) {
			batch = append(batch, one...)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := bufio.NewWriterSize(c, 64<<10)
			start, done := time.Now(), 0
			for {
				select {
				case <-stop:
					_ = w.Flush()
					return
				default:
				}
				n := perBatch
				if o.rate > 0 {
					// Paced: send what is due now (at most a batch), flush,
					// and sleep a little when nothing is.
					n = min(int(perPublisher*time.Since(start).Seconds())-done, perBatch)
					if n <= 0 {
						_ = w.Flush()
						time.Sleep(200 * time.Microsecond)
						continue
					}
				}
				if _, err := w.Write(batch[:n*len(one)]); err != nil {
					errs.Add(1)
					return
				}
				done += n
				sent.Add(int64(n))
			}
		}()
	}
	// Warm up, then measure.
	time.Sleep(500 * time.Millisecond)
	m.begin()
	r0, b0, s0, t0 := received.Load(), bytesIn.Load(), sent.Load(), time.Now()
	time.Sleep(o.duration)
	r1, b1, s1, t1 := received.Load(), bytesIn.Load(), sent.Load(), time.Now()
	m.end()
	close(stop)
	wg.Wait()
	secs := t1.Sub(t0).Seconds()
	r := Result{Ops: r1 - r0, Errors: errs.Load(), Seconds: secs, Rate: float64(r1-r0) / secs, MBps: float64(b1-b0) / secs / 1e6}
	if o.rate > 0 {
		r.Offered = float64(s1-s0) / secs
	}
	return r, nil
}

// qos1Scenario: -publishers each publish at QoS 1 and wait for the PUBACK
// before the next (a round trip), for -duration.
func qos1Scenario(o options, d *dialer, m *meter) (Result, error) {
	ctx := context.Background()
	payload := make([]byte, o.size)
	var mu sync.Mutex
	var lat []time.Duration
	var ops, errs atomic.Int64
	var wg sync.WaitGroup
	conns := make([]*conn, o.publishers)
	for p := range conns {
		c, err := d.dial(ctx, d.creds(p, fmt.Sprintf("q1-%d", p)), nil)
		if err != nil {
			return Result{}, fmt.Errorf("publisher: %w", err)
		}
		defer c.Close()
		conns[p] = c
	}
	m.begin()
	start := time.Now()
	deadline := start.Add(o.duration)
	for p, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			topic := fmt.Sprintf("bench/q1/%d", p)
			var buf []byte // one PUBLISH, reused
			for id := uint16(1); time.Now().Before(deadline); id++ {
				if id == 0 {
					id = 1
				}
				t := time.Now()
				buf = mqtttest.AppendPublish(buf[:0], c.level, topic, payload, 1, false, id)
				if _, err := c.Write(buf); err != nil {
					errs.Add(1)
					return
				}
				if _, _, err := mqtttest.ReadUntil(c.r, packets.PUBACK, 1<<16); err != nil {
					errs.Add(1)
					return
				}
				mine = append(mine, time.Since(t))
				ops.Add(1)
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	m.end()
	r := Result{Ops: ops.Load(), Errors: errs.Load(), Seconds: time.Since(start).Seconds()}
	r.P50ms, r.P99ms, _ = percentiles(lat)
	return r, nil
}

// idleScenario: open -n connections, hold them -hold, sample the watched
// processes' RSS; RSS per connection is (after - before) / n.
func idleScenario(o options, d *dialer, watched map[string]int, before map[string]procSample) (Result, error) {
	ctx := context.Background()
	conns := make([]*conn, 0, o.n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var mu sync.Mutex
	var errs atomic.Int64
	start := time.Now()
	parallel(ctx, o.concurrency, o.n, func(_, i int) {
		c, err := d.dial(ctx, d.creds(i, fmt.Sprintf("idle-%d", i)), nil)
		if err != nil {
			errs.Add(1)
			return
		}
		// The client's own buffer is not needed while idle.
		c.r = nil
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	})
	opened := time.Since(start)
	held, heldAt := sample(watched), time.Now()
	probes, probeErrs := probeDuring(o, d, o.hold)
	after := sample(watched)
	holdSecs := time.Since(heldAt).Seconds()
	r := Result{Label: o.label, Scenario: o.scenario, Ops: int64(len(conns)), Errors: errs.Load(), Seconds: opened.Seconds(),
		Held: len(conns), RSSKiB: map[string]float64{}, RSSBefore: map[string]float64{}, RSSPerConn: map[string]float64{}, CPU: map[string]float64{}}
	r.Rate = float64(len(conns)) / opened.Seconds()
	r.HoldCPUShare = map[string]float64{}
	r.ProbeP50ms, _, r.ProbeMaxms = percentiles(probes)
	r.ProbeErrors = probeErrs
	for name := range watched {
		r.HoldCPUShare[name] = (after[name].cpu - held[name].cpu) / holdSecs
		r.RSSKiB[name] = after[name].rssKiB
		r.RSSBefore[name] = before[name].rssKiB
		r.CPU[name] = after[name].cpu - before[name].cpu
		if len(conns) > 0 {
			r.RSSPerConn[name] = (after[name].rssKiB - before[name].rssKiB) / float64(len(conns))
		}
	}
	return r, nil
}

// probeDuring spreads -probes connects of fresh devices (a full TLS
// handshake each, a client id of their own) over hold, one after the
// other, and returns their connect times; it returns after hold.
func probeDuring(o options, d *dialer, hold time.Duration) ([]time.Duration, int64) {
	end := time.Now().Add(hold)
	var took []time.Duration
	var errs int64
	for i := range o.probes {
		time.Sleep(time.Until(end.Add(-hold * time.Duration(o.probes-i) / time.Duration(o.probes+1))))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		t0 := time.Now()
		c, err := d.dial(ctx, d.creds(o.n+i, fmt.Sprintf("probe-%d", i)), nil)
		cancel()
		if err != nil {
			errs++
			continue
		}
		took = append(took, time.Since(t0))
		c.disconnect()
	}
	time.Sleep(time.Until(end))
	return took, errs
}

// stormScenario: -n devices connect at once (-c at a time; -cold: all
// of them) and the time until all are connected is measured: with -cold
// their first connect to a freshly started server, else their reconnect
// after all connected and dropped at once. A failed connect is retried
// after a back-off until the -duration bound.
func stormScenario(o options, d *dialer, m *meter) (Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), o.duration)
	defer cancel()
	devices := make([]stormDevice, o.n)
	for i := range devices {
		devices[i].cache = tls.NewLRUClientSessionCache(1)
	}
	workers := o.concurrency
	if o.cold {
		workers = o.n
	}
	var st stormStats
	if !o.cold {
		warm := &stormStats{start: time.Now()}
		parallel(ctx, workers, o.n, func(_, i int) { devices[i].connect(ctx, o, d, i, warm) })
		for i := range devices {
			if c := devices[i].c; c != nil {
				c.Close() // no DISCONNECT: a network drop
				devices[i].c = nil
			}
		}
		m.begin()
	}
	start := time.Now()
	st.start = start
	parallel(ctx, workers, o.n, func(_, i int) { devices[i].connect(ctx, o, d, i, &st) })
	secs := time.Since(start).Seconds()
	m.end()
	r := Result{Seconds: secs, Attempts: st.attempts.Load(), Errors: st.failed.Load(), Connack: map[string]int64{}, Failures: map[string]int64{}}
	var took []time.Duration
	for i := range devices {
		if c := devices[i].c; c != nil {
			r.Ops++
			took = append(took, devices[i].took)
			c.Close()
		} else {
			r.Unconnected++
		}
	}
	r.PerSecond, r.MaxPerSecond = perSecond(took)
	if len(took) > 0 {
		var last float64
		r.P50ms, r.P99ms, last = percentiles(took)
		r.Seconds = last / 1e3 // until the last device was in
	}
	if r.Unconnected > 0 {
		r.Seconds = secs
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	maps.Copy(r.Connack, st.connack)
	maps.Copy(r.Failures, st.failures)
	if st.accepted > 0 {
		r.Connack["0x00"] = st.accepted
	}
	return r, nil
}

// stormStats counts a storm's attempts and their outcomes.
type stormStats struct {
	start            time.Time
	attempts, failed atomic.Int64
	mu               sync.Mutex
	accepted         int64
	connack          map[string]int64 // refusals by code
	failures         map[string]int64 // failed attempts by kind
}

func (st *stormStats) note(err error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.connack == nil {
		st.connack, st.failures = map[string]int64{}, map[string]int64{}
	}
	if err == nil {
		st.accepted++
		return
	}
	var ce connackError
	if errors.As(err, &ce) {
		st.connack[fmt.Sprintf("0x%02X", ce.code)]++
	}
	st.failures[failureKind(err)]++
}

// stormDevice is one device of a storm: its TLS session survives its
// attempts, as a device stack keeps it.
type stormDevice struct {
	cache tls.ClientSessionCache
	c     *conn
	took  time.Duration // from the storm's start until connected
}

// attemptTimeout bounds one connect attempt (the proxy's CONNECT_TIMEOUT
// is 10 s by default).
const attemptTimeout = 15 * time.Second

// connect tries until connected or ctx ends, backing off exponentially
// from -retry-min to -retry-max with jitter (half of it random).
func (dv *stormDevice) connect(ctx context.Context, o options, d *dialer, i int, st *stormStats) {
	backoff := o.retryMin
	cr := d.creds(i, fmt.Sprintf("storm-%d", i))
	for ctx.Err() == nil {
		st.attempts.Add(1)
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		c, err := d.dial(actx, cr, dv.cache)
		cancel()
		if err == nil && ctx.Err() == nil {
			st.note(nil)
			dv.c, dv.took = c, time.Since(st.start)
			return
		}
		if err == nil {
			c.Close()
			return
		}
		st.failed.Add(1)
		st.note(err)
		wait := backoff/2 + time.Duration(rand.Int64N(int64(backoff/2)+1))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		backoff = min(2*backoff, o.retryMax)
	}
}

// parallel runs f(worker, i) for every i in [0, n) on workers goroutines,
// each taking the next i, until all are taken or ctx ends.
func parallel(ctx context.Context, workers, n int, f func(worker, i int)) {
	var wg sync.WaitGroup
	var next atomic.Int64
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				f(w, i)
			}
		}()
	}
	wg.Wait()
}

// quiesce waits, up to 10 s, until the watched processes are idle (under
// 20 ms of CPU in 250 ms): a broker still delivering what the previous run
// queued would otherwise bill that work to this one.
func quiesce(watched map[string]int) {
	if len(watched) == 0 {
		return
	}
	prev := sample(watched)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		time.Sleep(250 * time.Millisecond)
		cur := sample(watched)
		busy := false
		for name := range watched {
			busy = busy || cur[name].cpu-prev[name].cpu > 0.020
		}
		if !busy {
			return
		}
		prev = cur
	}
}

// procSample is one reading of a process's CPU time and RSS.
type procSample struct {
	cpu    float64 // seconds, user + system
	rssKiB float64
}

func parseWatch(s string) (map[string]int, error) {
	out := map[string]int{}
	if s == "" {
		return out, nil
	}
	for _, kv := range strings.Split(s, ",") {
		name, pid, ok := strings.Cut(kv, "=")
		n, err := strconv.Atoi(pid)
		if !ok || err != nil {
			return nil, fmt.Errorf("-watch %q: want name=pid", kv)
		}
		out[name] = n
	}
	return out, nil
}

const clockTicks = 100 // USER_HZ on Linux

func sample(watched map[string]int) map[string]procSample {
	out := map[string]procSample{}
	for name, pid := range watched {
		var s procSample
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
			// Fields after the command name, which is in parentheses.
			if i := strings.LastIndexByte(string(b), ')'); i > 0 {
				f := strings.Fields(string(b[i+1:]))
				if len(f) > 13 {
					ut, _ := strconv.ParseFloat(f[11], 64)
					st, _ := strconv.ParseFloat(f[12], 64)
					s.cpu = (ut + st) / clockTicks
				}
			}
		}
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
					f := strings.Fields(v)
					if len(f) > 0 {
						s.rssKiB, _ = strconv.ParseFloat(f[0], 64)
					}
				}
			}
		}
		out[name] = s
	}
	return out
}
