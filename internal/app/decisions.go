package app

// The decision log as the program configures it: DECISION_LOG,
// DECISION_LOG_MAXLEN, REPLICA_ID, its drop counter, and the writer Start
// hands the proxy.

import (
	"crypto/rand"
	"log/slog"
	"os"
	"strings"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/decisionlog"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// DecisionLogSettings are DECISION_LOG, DECISION_LOG_MAXLEN and
// REPLICA_ID, validated.
type DecisionLogSettings struct {
	On     bool  // DECISION_LOG=redis: every decision is appended to <prefix>decisions
	MaxLen int64 // the stream's approximate cap
	// ReplicaID names this process in the log; "" until Start makes one
	// (the host name plus a random suffix).
	ReplicaID string
}

// maxReplicaID is the longest REPLICA_ID, in bytes.
const maxReplicaID = 128

// validateDecisionLog checks the decision log's variables.
func (c Config) validateDecisionLog() (DecisionLogSettings, []error) {
	var errs []error
	d := DecisionLogSettings{On: c.DecisionLog == "redis", MaxLen: c.DecisionLogMaxLen, ReplicaID: c.ReplicaID}
	if c.DecisionLog != "redis" && c.DecisionLog != "off" {
		errs = append(errs, cfgErr("DECISION_LOG", "%q is not redis or off", c.DecisionLog))
	}
	if c.DecisionLogMaxLen < 1 {
		errs = append(errs, cfgErr("DECISION_LOG_MAXLEN", "%d is not a positive number of entries", c.DecisionLogMaxLen))
	}
	if len(c.ReplicaID) > maxReplicaID || strings.ContainsFunc(c.ReplicaID, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsGraphic(r) }) {
		errs = append(errs, cfgErr("REPLICA_ID", "%q: at most %d bytes of printable characters without spaces", c.ReplicaID, maxReplicaID))
	}
	return d, errs
}

// replicaID is id, or when it is empty the host name plus a random suffix
// made now, so that two processes never share one (two containers may
// share a host name; a restarted process is another replica).
func replicaID(id string) string {
	if id != "" {
		return id
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "authproxy"
	}
	return host + "-" + strings.ToLower(rand.Text()[:6])
}

// newDecisionLogDropped registers authproxy_decision_log_dropped_total on
// reg: it is exported whether the log is on or not (0 when off).
func newDecisionLogDropped(reg prometheus.Registerer) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "authproxy_decision_log_dropped_total",
		Help: "Decision log entries dropped without reaching Redis: the in-memory queue was full, or Redis failed or was too slow to take them."})
	reg.MustRegister(c)
	return c
}

// openDecisionLog starts the decision log of d on the store's Redis, with
// replica as its replica id; nil when it is off.
func openDecisionLog(d DecisionLogSettings, replica string, store *authstore.Store, dropped prometheus.Counter, log *slog.Logger) *decisionlog.Writer {
	if !d.On {
		return nil
	}
	return store.DecisionLog(decisionlog.Options{MaxLen: d.MaxLen, Replica: replica, Logger: log,
		OnDrop: func(n int) { dropped.Add(float64(n)) }})
}

// recorder is l as the proxy's Recorder: none at all when the log is off.
func recorder(l *decisionlog.Writer) policy.Recorder {
	if l == nil {
		return nil
	}
	return l
}
