package proxy

import (
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// record hands an entry to the decision log, if there is one. It never
// blocks: the log drops what it cannot keep.
func (p *Proxy) record(r policy.Record) {
	if p.cfg.Recorder == nil {
		return
	}
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	r.Replica = p.cfg.ReplicaID
	p.cfg.Recorder.Record(r)
}

// entry is what both the log line and the decision log say of the
// attempt, computed once.
func (a *attempt) entry(outcome Outcome, r *refusal) policy.Record {
	info := a.conn.Info
	e := policy.Record{Time: a.start, Kind: "connect", Remote: a.remote(), Protocol: int(a.level),
		TLS: a.tlsVersion(), Resumed: info.Resumed, CertSHA256: hex.EncodeToString(info.CertSHA256),
		Outcome: string(outcome), Reason: a.reason, Duration: time.Since(a.start)}
	if r != nil {
		e.Reason = r.reason
	}
	if a.connect != nil {
		e.Username, e.ClientID = a.connect.Username, a.connect.ClientID
	}
	e.Credential = a.decision.CredentialKind
	if t := a.decision.Token; t != nil {
		e.Issuer, e.JTI = t.Issuer, t.JTI
	}
	return e
}

// record hands how the attempt ended to the decision log: an attempt that
// read a CONNECT (one malformed past its protocol level included) is a
// decision, one entry each; a refusal before any CONNECT is only counted,
// for the summaries of its address and outcome (summary.go).
func (a *attempt) record(e policy.Record, r *refusal) {
	if a.p.cfg.Recorder == nil {
		return
	}
	if e.Reason == "" && r != nil && r.err != nil {
		e.Reason = r.err.Error()
	}
	if a.connect == nil && a.level == 0 {
		a.p.summariseRefusal(a.conn.Info.Remote, e.Outcome, e.Reason)
		return
	}
	if e.Resumed {
		e.Reason += "; resumed TLS session, decided afresh"
	}
	a.p.record(e)
}

// sessionRecord is an entry about a live session.
func (s *session) record(kind, outcome, reason string) {
	s.p.record(policy.Record{Kind: kind, Remote: s.remote, Username: s.req.Username, ClientID: s.req.ClientID,
		Protocol: int(s.req.Protocol), Outcome: outcome, Reason: reason})
}

// denials counts a session's topic denials between two summaries: the
// decision log gets one entry per session and interval, not one per
// PUBLISH.
type denials struct {
	mu                          sync.Mutex
	publish, subscribe, deliver int
	topics                      []string // the first few refused, for the reason
}

// maxDeniedTopics bounds the topics a denial summary names.
const maxDeniedTopics = 3

func (d *denials) add(action, topic string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch action {
	case "publish":
		d.publish++
	case "deliver":
		d.deliver++
	default:
		d.subscribe++
	}
	if len(d.topics) < maxDeniedTopics {
		d.topics = append(d.topics, topic)
	}
}

// take returns the summary since the last take, "" when nothing was denied.
func (d *denials) take() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := d.publish + d.subscribe + d.deliver
	if n == 0 {
		return ""
	}
	s := fmt.Sprintf("%d PUBLISH and %d SUBSCRIBE filters refused by the topic rules", d.publish, d.subscribe)
	if d.deliver > 0 {
		s += fmt.Sprintf(", %d deliveries from the broker withheld", d.deliver)
	}
	s += fmt.Sprintf(" (%q", d.topics[0])
	for _, t := range d.topics[1:] {
		s += fmt.Sprintf(", %q", t)
	}
	if n -= len(d.topics); n > 0 {
		s += fmt.Sprintf(" and %d more", n)
	}
	d.publish, d.subscribe, d.deliver, d.topics = 0, 0, 0, d.topics[:0]
	return s + ")"
}

// denialSummaryEvery is how often sessions' topic denials, and the
// connections refused before a CONNECT, are summarised in the decision
// log: a lone refusal reaches it within this time.
const denialSummaryEvery = 10 * time.Second

// summariseDenials writes each session's denial summary, and the
// summaries of refusals before CONNECT, every denialSummaryEvery until
// the proxy stops (Shutdown writes the last).
func (p *Proxy) summariseDenials() {
	t := time.NewTicker(denialSummaryEvery)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			for _, s := range p.allSessions() {
				s.flushDenials()
			}
			p.flushRefusals()
		}
	}
}

func (s *session) flushDenials() {
	if sum := s.denied.take(); sum != "" {
		s.record("acl", "acl_denied", sum)
	}
}
