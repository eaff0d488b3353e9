package app

// The status page as the program configures it: STATUS and ADMIN_TOKEN,
// and the page's data source over the running proxy, the decision log and
// the metrics.

import (
	"context"
	"net"
	"strings"
	"time"
	"unicode"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/decisionlog"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/admin"
)

// StatusSettings are STATUS and ADMIN_TOKEN, validated.
type StatusSettings struct {
	On bool // STATUS=true: /status and /status.json on METRICS_LISTEN
	// Token is ADMIN_TOKEN: when set, every request of the page must
	// present it; when empty, the page answers on a loopback address only
	// (Validate refuses STATUS=true on another METRICS_LISTEN), and the
	// page and pprof only to a loopback Host (admin.Options.Token: DNS
	// rebinding). Secret: never log it.
	Token string
}

// minAdminToken is the shortest ADMIN_TOKEN, in bytes.
const minAdminToken = 16

// validateStatus checks STATUS and ADMIN_TOKEN against the admin
// listener's address ("" when METRICS_LISTEN is off).
func (c Config) validateStatus(adminListen string) (StatusSettings, []error) {
	var errs []error
	st := StatusSettings{On: c.Status, Token: c.AdminToken}
	if c.AdminToken != "" && (len(c.AdminToken) < minAdminToken || strings.ContainsFunc(c.AdminToken, func(r rune) bool { return r > unicode.MaxASCII || !unicode.IsGraphic(r) || r == ' ' })) {
		errs = append(errs, cfgErr("ADMIN_TOKEN", "must be at least %d printable ASCII characters without spaces (openssl rand -hex 16 makes one)", minAdminToken))
	}
	switch {
	case !c.Status:
	case adminListen == "":
		errs = append(errs, cfgErr("STATUS", "is true but %sMETRICS_LISTEN is off: the status page is served on that listener", EnvPrefix))
	case c.AdminToken == "" && !loopbackListen(adminListen):
		errs = append(errs, cfgErr("ADMIN_TOKEN", "is required with %sSTATUS=true when %sMETRICS_LISTEN=%s is not a loopback address: the status page shows user names and addresses",
			EnvPrefix, EnvPrefix, adminListen))
	}
	return st, errs
}

// loopbackListen reports whether a host:port listens on loopback only: a
// loopback IP address, or localhost. An empty host (every interface) or
// another name is not.
func loopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	host, _, _ = strings.Cut(host, "%") // an IPv6 zone
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// statusOptions turns the status page on for a running App; nil when it
// is off.
func statusOptions(s StatusSettings, replica string, dev device, store *authstore.Store) *admin.StatusOptions {
	if !s.On {
		return nil
	}
	return &admin.StatusOptions{Source: statusSource{dev: dev, store: store}, Replica: replica, Token: s.Token}
}

// statusDecisionScan bounds how many decision log entries one refresh of
// the page examines (a user filter that matches few entries scans this
// many at most, in pages of a thousand).
const statusDecisionScan = 10000

// statusSource is admin.StatusSource over the App's proxy (its typed
// counts and sessions) and the decision log in Redis.
type statusSource struct {
	dev   device
	store *authstore.Store
}

func (s statusSource) Sessions() []admin.Session { return s.dev.sessions() }

func (s statusSource) LastChange() time.Time { return s.dev.lastChange() }

func (s statusSource) Decisions(ctx context.Context, q admin.DecisionQuery) ([]admin.Decision, error) {
	recs, err := s.store.ReadDecisions(ctx, decisionlog.Filter{User: q.User, Since: q.Since, Limit: q.Limit, MaxScan: statusDecisionScan})
	out := make([]admin.Decision, len(recs))
	for i, r := range recs {
		out[i] = admin.Decision{Time: r.Time, Replica: r.Replica, Kind: r.Kind, Remote: r.Remote, Username: r.Username, ClientID: r.ClientID,
			Protocol: r.Protocol, TLS: r.TLS, Resumed: r.Resumed, CertSHA256: r.CertSHA256, Outcome: r.Outcome, Reason: r.Reason,
			DurationMS: float64(r.Duration) / float64(time.Millisecond)}
	}
	return out, err
}

// Counters are the proxy's counts since it started (what
// authproxy_connects_total and authproxy_tls_handshakes_total count).
func (s statusSource) Counters() admin.Counters {
	st := s.dev.p.Stats()
	c := admin.Counters{Connects: make(map[string]float64, len(st.Connects)),
		HandshakesFull: float64(st.HandshakesFull), HandshakesResumed: float64(st.HandshakesResumed)}
	for o, n := range st.Connects {
		c.Connects[string(o)] = float64(n)
	}
	return c
}
