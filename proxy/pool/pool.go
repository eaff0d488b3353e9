// Package pool is the proxy's Brokers for more than one broker address:
// pools of addresses (the default pool of BACKEND_ADDR and the named pools
// of BACKEND_POOLS, one chosen per session by its decision's Backend), a
// policy that orders a pool's addresses for each CONNECT (hash, first,
// least), health probes per address and interval, failover within the
// CONNECT's deadline, and the broker connect rate (pace.go).
//
// An address listed by several pools is one member: one probe, one rate,
// one count of sessions. A member is up, down or unknown (not probed yet);
// a down member is skipped until a probe finds it up again, unless every
// member of the pool is down: then the CONNECT tries them all, in order,
// so that a broker back before its next probe is not refused for nothing.
package pool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/logsafe"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
	"github.com/mqtt-authproxy/mqtt-authproxy/proxy"
)

// Policy orders a pool's addresses for a CONNECT.
type Policy int

const (
	// Hash ranks the addresses by rendezvous hashing of the client id: a
	// device keeps its broker (and its persistent session there) while
	// the set is healthy, and when a broker fails only its devices move,
	// each to its next address. A CONNECT without a client id (the broker
	// assigns one; no session to keep) goes to the least loaded.
	Hash Policy = iota
	// First takes the addresses in the order given: the next on failure.
	First
	// Least takes the address with the fewest sessions on this replica.
	Least
)

// ParsePolicy reads BACKEND_POLICY: hash, first or least.
func ParsePolicy(s string) (Policy, error) {
	switch s {
	case "hash":
		return Hash, nil
	case "first":
		return First, nil
	case "least":
		return Least, nil
	}
	return 0, fmt.Errorf("%q is not hash, first or least", s)
}

func (p Policy) String() string { return [...]string{"hash", "first", "least"}[p] }

// DefaultName is the default pool's name (BACKEND_ADDR); a decision's
// Backend of "" or DefaultName goes there.
const DefaultName = "default"

// Options configure a Set.
type Options struct {
	// Default are the default pool's addresses, host:port; required.
	Default []string
	// Pools are the named pools, by name (DefaultName is not one).
	Pools map[string][]string
	// Policy orders every pool's addresses.
	Policy Policy
	// Backend makes the proxy.Backend of an address (its TLS server name,
	// credentials and dial timeout); required.
	Backend func(addr string) proxy.Backend
	// HealthInterval is how often each address is probed; default
	// DefaultHealthInterval.
	HealthInterval time.Duration
	// Rate is the broker connect rate, CONNECTs a second per address
	// across every replica (shared through Bucket); 0 is none.
	Rate float64
	// Bucket takes the rate's slots; nil: each replica keeps the whole
	// rate (one replica, or tests).
	Bucket Bucket
	Logger *slog.Logger
	// Metrics (nil: a private, unregistered set).
	Metrics *Metrics
}

// DefaultHealthInterval is Options.HealthInterval's default.
const DefaultHealthInterval = 5 * time.Second

// Set is the pools of a proxy: a proxy.Brokers. Create it with New, start
// its probes with Start, stop them with Close.
type Set struct {
	o       Options
	log     *slog.Logger
	m       *Metrics
	def     *Pool
	pools   map[string]*Pool
	members []*member // every address once, in the order first listed

	unknownMu sync.Mutex
	unknown   map[string]*UnknownPool // pool names decisions named that do not exist

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Pool is one pool: its addresses in the order given.
type Pool struct {
	name    string
	members []*member
	policy  Policy
}

var _ proxy.Brokers = (*Set)(nil)

// New checks o and returns the Set; no address is dialled before Start.
func New(o Options) (*Set, error) {
	if len(o.Default) == 0 || o.Backend == nil {
		return nil, errors.New("pool: no default addresses, or no Backend")
	}
	if o.HealthInterval <= 0 {
		o.HealthInterval = DefaultHealthInterval
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	s := &Set{o: o, log: o.Logger, m: o.Metrics, pools: map[string]*Pool{}, unknown: map[string]*UnknownPool{}}
	byAddr := map[string]*member{}
	s.def = s.newPool(DefaultName, o.Default, byAddr)
	names := make([]string, 0, len(o.Pools))
	for n := range o.Pools {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if n == DefaultName || len(o.Pools[n]) == 0 {
			return nil, fmt.Errorf("pool: pool %q: a name other than %q with at least one address", n, DefaultName)
		}
		s.pools[n] = s.newPool(n, o.Pools[n], byAddr)
	}
	return s, nil
}

// newPool makes the pool name of addrs, sharing the members of addresses
// already listed.
func (s *Set) newPool(name string, addrs []string, byAddr map[string]*member) *Pool {
	p := &Pool{name: name, policy: s.o.Policy}
	for _, a := range addrs {
		m := byAddr[a]
		if m == nil {
			m = newMember(a, s.o.Backend(a), s)
			byAddr[a] = m
			s.members = append(s.members, m)
		}
		if !slices.Contains(m.pools, name) {
			m.pools = append(m.pools, name)
		}
		if !slices.Contains(p.members, m) {
			p.members = append(p.members, m)
		}
	}
	return p
}

// Connect sends the session's CONNECT to a broker of its pool (the
// decision's Backend): the first of the pool's order that is not down and
// answers, each attempt with its Backend's dial timeout, all within ctx.
// A broker that answers "server unavailable", "busy", "use another server"
// or "server moved" counts as a failed one; any other CONNACK (a
// refusal included) is the session's answer.
func (s *Set) Connect(ctx context.Context, a proxy.Admitted) (*proxy.BrokerConn, error) {
	p, err := s.pool(a.Decision.Backend)
	if err != nil {
		return nil, err
	}
	return p.connect(ctx, a)
}

// pool is the pool a decision named; an unknown name is recorded (the
// status page lists it) and refused.
func (s *Set) pool(name string) (*Pool, error) {
	if name == "" || name == DefaultName {
		return s.def, nil
	}
	if p := s.pools[name]; p != nil {
		return p, nil
	}
	s.noteUnknown(name)
	return nil, fmt.Errorf("%w: %s (not in BACKEND_POOLS)", proxy.ErrUnknownPool, logsafe.String(name))
}

func (p *Pool) connect(ctx context.Context, a proxy.Admitted) (*proxy.BrokerConn, error) {
	var errs []error
	for _, m := range p.order(a.Request.ClientID) {
		if ctx.Err() != nil {
			break
		}
		if err := m.pace.wait(ctx, a.Decision.Known); err != nil {
			m.s.m.connects.WithLabelValues(m.addr, "busy").Inc()
			m.busy.Add(1)
			return nil, err
		}
		bc, err := m.backend.Connect(ctx, a)
		if err == nil && !brokerFailed(bc.Connack.Code) {
			m.took(bc)
			return bc, nil
		}
		if err == nil {
			bc.Conn.Close()
			err = fmt.Errorf("broker %s answered CONNACK 0x%02X", m.addr, bc.Connack.Code)
		}
		m.failed(err)
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		errs = append(errs, ctx.Err())
	}
	return nil, fmt.Errorf("pool %s: no broker answered: %w", p.name, errors.Join(errs...))
}

// brokerFailed: the broker's CONNACK says it cannot take the session now
// (v5 0x88 unavailable, 0x89 busy, 0x9C use another server, 0x9D server
// moved; 3.1.1's 0x03 unavailable): the next address is tried.
func brokerFailed(code byte) bool {
	switch packets.ReasonCode(code) {
	case 0x03, packets.ServerUnavailable, packets.ServerBusy, packets.UseAnotherServer, packets.ServerMoved:
		return true
	}
	return false
}

// order is the pool's addresses for a CONNECT of clientID, best first:
// those not down in the policy's order, then, when every one is down, all
// of them.
func (p *Pool) order(clientID string) []*member {
	ranked := p.rank(clientID)
	live := make([]*member, 0, len(ranked))
	for _, m := range ranked {
		if m.state.Load() != stateDown {
			live = append(live, m)
		}
	}
	if len(live) == 0 {
		return ranked
	}
	return live
}

// rank orders every member by the policy.
func (p *Pool) rank(clientID string) []*member {
	out := slices.Clone(p.members)
	if len(out) == 1 {
		return out
	}
	switch {
	case p.policy == Hash && clientID != "":
		h := hashString(clientID)
		slices.SortStableFunc(out, func(a, b *member) int { return compareDesc(score(h, a.key), score(h, b.key)) })
	case p.policy == Least || p.policy == Hash:
		slices.SortStableFunc(out, func(a, b *member) int { return compareAsc(a.sessions.Load(), b.sessions.Load()) })
	}
	return out
}

func compareDesc(a, b uint64) int { return compareAsc(b, a) }

func compareAsc[T int64 | uint64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// hashString is 64-bit FNV-1a: stable across processes and builds, so
// that every replica, and a proxy after a restart, ranks alike.
func hashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// score is the rendezvous weight of an address (key: its hash) for a
// client id (h: its hash): splitmix64's finaliser over both, so that
// close inputs give unrelated weights.
func score(h, key uint64) uint64 {
	z := h ^ key
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// Ready reports whether the default pool has an address up, as the
// probes found it (never a dial of its own): /readyz's backend check.
// Before the first probes have answered, it waits for them, up to ctx.
func (s *Set) Ready(ctx context.Context) error {
	for {
		var pending chan struct{}
		for _, m := range s.def.members {
			if m.state.Load() == stateUp {
				return nil
			}
			select {
			case <-m.probed:
			default:
				pending = m.probed
			}
		}
		if pending == nil {
			return fmt.Errorf("no broker of the default pool is up (%s)", strings.Join(s.def.addrs(), " "))
		}
		select {
		case <-pending:
		case <-ctx.Done():
			return fmt.Errorf("no broker of the default pool probed yet (%s): %w", strings.Join(s.def.addrs(), " "), ctx.Err())
		}
	}
}

func (p *Pool) addrs() []string {
	out := make([]string, len(p.members))
	for i, m := range p.members {
		out[i] = m.addr
	}
	return out
}
