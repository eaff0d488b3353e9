package app

// The brokers as the program configures them (docs/brokers.md):
// BACKEND_ADDR's list, BACKEND_POOLS, BACKEND_POLICY,
// BACKEND_HEALTH_INTERVAL, BACKEND_CONNECT_RATE, and how SIGTERM drains
// (DRAIN_RATE, DRAIN_SERVER_REFERENCE); and the pools built from them.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/admin"
	"github.com/mqtt-authproxy/mqtt-authproxy/proxy"
	"github.com/mqtt-authproxy/mqtt-authproxy/proxy/pool"
)

// validateBrokers checks BACKEND_ADDR's list and the pools' variables
// into b.
func (c Config) validateBrokers(b *BackendSettings) []error {
	var errs []error
	if strings.TrimSpace(c.BackendAddr) == "" {
		errs = append(errs, cfgErr("BACKEND_ADDR", "is required: host:port of the broker (or several, space-separated)"))
	} else if addrs, err := parseAddrList(c.BackendAddr); err != nil {
		errs = append(errs, cfgErr("BACKEND_ADDR", "%v", err))
	} else {
		b.Addrs = addrs
	}
	var err error
	if b.Pools, err = parsePools(c.BackendPools); err != nil {
		errs = append(errs, cfgErr("BACKEND_POOLS", "%v", err))
	}
	if b.Policy, err = pool.ParsePolicy(c.BackendPolicy); err != nil {
		errs = append(errs, cfgErr("BACKEND_POLICY", "%v", err))
	}
	b.HealthInterval = c.BackendHealthInterval
	if c.BackendHealthInterval <= 0 {
		errs = append(errs, cfgErr("BACKEND_HEALTH_INTERVAL", "must be positive, is %v", c.BackendHealthInterval))
	}
	if b.ConnectRate = parseRate(c.BackendConnectRate); b.ConnectRate < 0 {
		errs = append(errs, cfgErr("BACKEND_CONNECT_RATE", "%q is not N/s (CONNECTs a second per broker address, every replica together) or 0", c.BackendConnectRate))
	}
	return errs
}

// parseAddrList reads a space-separated list of host:port addresses,
// each once.
func parseAddrList(v string) ([]string, error) {
	addrs := strings.Fields(v)
	seen := map[string]bool{}
	for _, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			return nil, fmt.Errorf("%q is not host:port (%v)", a, unwrapAll(err))
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || host == "" {
			return nil, fmt.Errorf("%q is not host:port (a host, and a port 1 to 65535)", a)
		}
		if seen[a] {
			return nil, fmt.Errorf("%q is listed twice", a)
		}
		seen[a] = true
	}
	return addrs, nil
}

// parsePools reads BACKEND_POOLS: name=host:port host:port;name2=...
func parsePools(v string) (map[string][]string, error) {
	pools := map[string][]string{}
	for part := range strings.SplitSeq(v, ";") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		name, list, ok := strings.Cut(part, "=")
		name = strings.TrimSpace(name)
		switch {
		case !ok:
			return nil, fmt.Errorf("%q is not name=host:port host:port", strings.TrimSpace(part))
		case !validPoolName(name):
			return nil, fmt.Errorf("pool name %q: 1 to 64 letters, digits, '-', '_' or '.'", name)
		case name == pool.DefaultName:
			return nil, fmt.Errorf("pool name %q is the pool of %sBACKEND_ADDR", name, EnvPrefix)
		case pools[name] != nil:
			return nil, fmt.Errorf("pool %q is defined twice", name)
		}
		addrs, err := parseAddrList(list)
		if err == nil && len(addrs) == 0 {
			err = errors.New("no address")
		}
		if err != nil {
			return nil, fmt.Errorf("pool %s: %v", name, err)
		}
		pools[name] = addrs
	}
	return pools, nil
}

// validPoolName is authstore/rules.CheckPoolName's syntax: what a backend
// field may name.
func validPoolName(n string) bool {
	return n != "" && len(n) <= 64 && !strings.ContainsFunc(n, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
	})
}

// PoolNames are the pools BACKEND_POOLS defines in environ (a list of
// KEY=value), and whether it is set there at all: user set and role set
// check a backend field's pool where it is (an operator's shell without
// the proxy's variables checks nothing).
func PoolNames(environ []string) (names map[string]bool, set bool, err error) {
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		if k != EnvPrefix+"BACKEND_POOLS" {
			continue
		}
		pools, err := parsePools(v)
		if err != nil {
			return nil, true, cfgErr("BACKEND_POOLS", "%v", err)
		}
		names = map[string]bool{pool.DefaultName: true}
		for n := range pools {
			names[n] = true
		}
		return names, true, nil
	}
	return nil, false, nil
}

// PoolNamesFromEnv is PoolNames of the process's environment.
func PoolNamesFromEnv() (map[string]bool, bool, error) { return PoolNames(os.Environ()) }

// drain reads DRAIN_RATE and DRAIN_SERVER_REFERENCE for the proxy.
func (c Config) drain() (rate float64, reference string, errs []error) {
	n := parseRate(c.DrainRate)
	if n < 0 {
		errs = append(errs, cfgErr("DRAIN_RATE", "%q is not N/s (sessions ended a second on shutdown) or 0 (spread over %sSHUTDOWN_GRACE)", c.DrainRate, EnvPrefix))
	}
	if len(c.DrainServerReference) > 1024 || strings.ContainsAny(c.DrainServerReference, "\x00\r\n") {
		errs = append(errs, cfgErr("DRAIN_SERVER_REFERENCE", "must be one line of at most 1024 bytes"))
	}
	return float64(max(n, 0)), c.DrainServerReference, errs
}

// brokerSet is the proxy's pools, with the connect rate's heartbeat
// when there is a rate.
type brokerSet struct {
	*pool.Set
	stopRate context.CancelFunc // nil without a rate
	rateDone chan struct{}
}

// startBrokers builds the proxy's pools from the settings (every address
// with the backend's TLS settings, the server name defaulting to each
// address's host, its credentials and dial timeout) and starts their
// probes; with BACKEND_CONNECT_RATE, the rate's slots are shared with the
// other replicas through the store's Redis.
func startBrokers(s Settings, store *authstore.Store, reg prometheus.Registerer, log *slog.Logger) (brokerSet, error) {
	b := s.Backend
	o := pool.Options{Default: b.Addrs, Pools: b.Pools, Policy: b.Policy, HealthInterval: b.HealthInterval,
		Rate: float64(b.ConnectRate), Logger: log, Metrics: pool.NewMetrics(reg),
		Backend: func(addr string) proxy.Backend { return backendFor(b, addr) }}
	var bs brokerSet
	if b.ConnectRate > 0 {
		limiter := store.BrokerRate(replicaID(s.DecisionLog.ReplicaID))
		o.Bucket = limiter
		ctx, cancel := context.WithCancel(context.Background())
		bs.stopRate, bs.rateDone = cancel, make(chan struct{})
		go func() { defer close(bs.rateDone); limiter.Run(ctx) }()
	}
	set, err := pool.New(o)
	if err != nil {
		bs.stop()
		return brokerSet{}, err
	}
	bs.Set = set
	set.Start()
	return bs, nil
}

// stop ends the probes and the rate's heartbeat.
func (b brokerSet) stop() {
	if b.Set != nil {
		b.Close()
	}
	if b.stopRate != nil {
		b.stopRate()
		<-b.rateDone
	}
}

// brokersStatus is the pools as the status page shows them.
func (b brokerSet) status() *admin.Brokers {
	if b.Set == nil {
		return nil
	}
	st := b.Status()
	out := &admin.Brokers{Policy: st.Policy, Addresses: make([]admin.BrokerAddress, len(st.Addresses)), UnknownPools: make([]admin.UnknownPool, len(st.UnknownPools))}
	for i, a := range st.Addresses {
		out.Addresses[i] = admin.BrokerAddress{Address: a.Address, Pools: a.Pools, State: a.State, Since: a.Since, LastProbe: a.LastProbe,
			LastError: a.LastError, Sessions: a.Sessions, Connects: a.Connects, Failures: a.Failures, Busy: a.Busy}
	}
	for i, u := range st.UnknownPools {
		out.UnknownPools[i] = admin.UnknownPool{Name: u.Name, Count: u.Count, Last: u.Last}
	}
	return out
}

// ProbeBackend checks that every broker address (of BACKEND_ADDR and
// BACKEND_POOLS) is reachable as the proxy reaches it: with backend
// credentials a real MQTT CONNECT that must be accepted, without them a
// TCP (or TLS) connection. The error names each address that is not.
func ProbeBackend(ctx context.Context, b BackendSettings) error {
	seen := map[string]bool{}
	var errs []error
	for _, addrs := range append([][]string{b.Addrs}, poolLists(b.Pools)...) {
		for _, a := range addrs {
			if seen[a] {
				continue
			}
			seen[a] = true
			errs = append(errs, backendFor(b, a).Probe(ctx))
		}
	}
	return errors.Join(errs...)
}

// poolLists are the pools' address lists, by pool name.
func poolLists(pools map[string][]string) [][]string {
	names := make([]string, 0, len(pools))
	for n := range pools {
		names = append(names, n)
	}
	slices.Sort(names)
	out := make([][]string, len(names))
	for i, n := range names {
		out[i] = pools[n]
	}
	return out
}

// backendFor is the proxy's view of one broker address.
func backendFor(b BackendSettings, addr string) proxy.Backend {
	pb := proxy.Backend{Addr: addr, Username: b.Username, Password: b.Password, DialTimeout: b.DialTimeout}
	if b.TLS {
		name := b.ServerName
		if name == "" {
			name, _, _ = net.SplitHostPort(addr)
		}
		pb.TLS = &tls.Config{ServerName: name, RootCAs: b.RootCAs, MinVersion: tls.VersionTLS12}
		if b.Certificate != nil {
			pb.TLS.Certificates = []tls.Certificate{*b.Certificate}
		}
	}
	return pb
}

// Brokers is the status page's Brokers section.
func (s statusSource) Brokers() *admin.Brokers { return s.dev.brokers.status() }
