package admin

// The status page: GET /status (one HTML page, its CSS and script inline,
// nothing fetched from elsewhere) and GET /status.json, which the page
// fetches every few seconds. What it shows comes from a StatusSource the
// program implements, and from the readiness checks /readyz has.

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Session is a live session of this replica, as the page shows it.
type Session struct {
	Username   string    `json:"username"`
	ClientID   string    `json:"client_id"`
	Remote     string    `json:"remote"`
	Since      time.Time `json:"since"`
	Protocol   int       `json:"protocol"` // MQTT protocol level: 3, 4 or 5
	TLS        string    `json:"tls"`      // "TLS 1.3", "none"
	Resumed    bool      `json:"resumed"`
	TopicRules bool      `json:"topic_rules"` // relayed with topic checks
	BytesUp    int64     `json:"bytes_up"`    // device to broker
	BytesDown  int64     `json:"bytes_down"`  // broker to device
	// Slowed: a rate limit holds the device back now (limits.go); Limits
	// lists the session's limits ("pub_rate=20 (user), ..."; "" none).
	Slowed bool   `json:"slowed,omitempty"`
	Limits string `json:"limits,omitempty"`
}

// Decision is an entry of the decision log, of any replica.
type Decision struct {
	Time       time.Time `json:"time"`
	Replica    string    `json:"replica"`
	Kind       string    `json:"kind"` // connect, revalidate, kick, ban, acl
	Remote     string    `json:"remote"`
	Username   string    `json:"username"`
	ClientID   string    `json:"client_id"`
	Protocol   int       `json:"protocol"`
	TLS        string    `json:"tls"`
	Resumed    bool      `json:"resumed"`
	CertSHA256 string    `json:"cert_sha256"`
	Outcome    string    `json:"outcome"`
	Reason     string    `json:"reason"`
	// DurationMS is how long the decision took, in milliseconds.
	DurationMS float64 `json:"duration_ms"`
}

// DecisionQuery selects the decisions the page shows.
type DecisionQuery struct {
	User  string    // exact user name; "" any
	Since time.Time // entries at or after it
	Limit int       // the newest Limit entries at most
}

// Counters are this replica's counts since it started, from its metrics.
type Counters struct {
	// Connects is authproxy_connects_total by outcome.
	Connects map[string]float64
	// HandshakesFull and HandshakesResumed are
	// authproxy_tls_handshakes_total{resumed="false"} and {resumed="true"}.
	HandshakesFull, HandshakesResumed float64
}

// StatusSource is what the status page reads on every /status.json
// request. Its methods are called concurrently.
type StatusSource interface {
	// Sessions are this replica's live sessions, in any order.
	Sessions() []Session
	// Decisions are the newest entries of the decision log (of every
	// replica) that match q, in any order.
	Decisions(ctx context.Context, q DecisionQuery) ([]Decision, error)
	// Counters are this replica's counts since it started.
	Counters() Counters
	// LastChange is when the last change notification (a rule change,
	// kick, ban) reached this replica; zero if none has.
	LastChange() time.Time
}

// PasswordOldSource is a StatusSource that also says what still uses a
// user's previous password (the sentence `user show` prints; "" when the
// user has none).
type PasswordOldSource interface {
	PasswordOld(ctx context.Context, user string) string
}

// StatusOptions turn the status page on.
type StatusOptions struct {
	Source  StatusSource
	Replica string // this replica's id
	// Token, when set, must be presented on every request of /status and
	// /status.json: "Authorization: Bearer <Token>" or "?token=<Token>".
	// When empty, only requests that reach the listener on a loopback
	// address are served (else 401), and only with a loopback Host (else
	// 421, from the Server: see Options.Token).
	Token string
	// ReadToken (ADMIN_READ_TOKEN), when set, is accepted too. With
	// QueryReadOnly (the admin API is on), "?token=" takes the read token
	// alone: the token that may change things never goes in a URL.
	ReadToken     string
	QueryReadOnly bool
}

// What the page shows: the newest StatusSessionLimit live sessions (all
// are counted), and the newest StatusDecisionLimit decisions of the last
// StatusDecisionAge (those are counted).
const (
	StatusSessionLimit  = 200
	StatusDecisionLimit = 200
	StatusDecisionAge   = time.Hour
	// statusReadTimeout bounds the read of the decision log for one request.
	statusReadTimeout = 2 * time.Second
)

// Status is the body of /status.json.
type Status struct {
	Replica string    `json:"replica"`
	Time    time.Time `json:"time"`
	// User is the filter applied to sessions and decisions; "" none.
	User string `json:"user"`
	// PasswordOld says, for the user filtered by, what still uses its
	// previous password during a rotation's overlap ("12 live sessions
	// and 40 client ids seen in the last 24 h still use the old
	// password ..."); "" otherwise.
	PasswordOld string  `json:"password_old,omitempty"`
	Summary     Summary `json:"summary"`
	// Health is the readiness checks' last answer: "ok" or "unavailable"
	// by check ("redis", "backend").
	Health     map[string]string `json:"health"`
	ChangeFeed ChangeFeed        `json:"change_feed"`
	// Sessions are this replica's live sessions, newest first: the newest
	// StatusSessionLimit of them (Summary.Sessions counts them all).
	Sessions []Session `json:"sessions"`
	// Decisions are the window's decisions of every replica, newest first.
	Decisions []Decision `json:"decisions"`
	// DecisionsError says why the decision log could not be read; "" when
	// it was.
	DecisionsError string `json:"decisions_error,omitempty"`
	Window         Window `json:"window"`
	// Outcomes count the window's decisions by kind and outcome.
	Outcomes []OutcomeCount `json:"outcomes"`
	// Connects is this replica's authproxy_connects_total by outcome, since
	// it started, largest first.
	Connects   []OutcomeCount `json:"connects_total"`
	Handshakes Handshakes     `json:"tls_handshakes"`
	// Brokers are this replica's broker pools (brokers.go); absent when
	// the source has none.
	Brokers *Brokers `json:"brokers,omitempty"`
	// Limits are what this replica's limits did (limits.go); absent when
	// the source does not report them.
	Limits *Limits `json:"limits,omitempty"`
}

// Summary is the line at the top of the page.
type Summary struct {
	// Sessions counts this replica's live sessions (of the user filtered by).
	Sessions int `json:"sessions"`
	// Accepted and Refused count the window's CONNECT decisions (kind
	// connect) of every replica.
	Accepted int `json:"accepted"`
	Refused  int `json:"refused"`
	// ResumptionRate is this replica's share of resumed TLS handshakes
	// since it started; null before the first handshake.
	ResumptionRate *float64 `json:"resumption_rate"`
}

// ChangeFeed is what the page knows of the change notifications.
type ChangeFeed struct {
	LastChange *time.Time `json:"last_change"` // null: none since the start
}

// Window is the span of the decisions shown and counted.
type Window struct {
	Limit         int        `json:"limit"`
	MaxAgeSeconds int        `json:"max_age_seconds"`
	Count         int        `json:"count"`
	Oldest        *time.Time `json:"oldest"` // null when empty
}

// OutcomeCount is a count of one outcome.
type OutcomeCount struct {
	Kind    string  `json:"kind,omitempty"`
	Outcome string  `json:"outcome"`
	Count   float64 `json:"count"`
}

// Handshakes are this replica's TLS handshakes since it started.
type Handshakes struct {
	Full           float64  `json:"full"`
	Resumed        float64  `json:"resumed"`
	ResumptionRate *float64 `json:"resumption_rate"`
}

//go:embed status.html
var statusPage []byte

// statusCSP allows the page its own inline style and script (by hash),
// fetches of its own origin, and nothing else.
var statusCSP = "default-src 'none'; style-src '" + inlineHash(statusPage, "style") + "'; script-src '" +
	inlineHash(statusPage, "script") + "'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// inlineHash is the CSP source ('sha256-...') of the first <tag> element's
// text in page.
func inlineHash(page []byte, tag string) string {
	s := string(page)
	open, end := "<"+tag+">", "</"+tag+">"
	i := strings.Index(s, open)
	j := strings.Index(s, end)
	if i < 0 || j < i {
		panic("admin: status.html has no <" + tag + "> element")
	}
	sum := sha256.Sum256([]byte(s[i+len(open) : j]))
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}

// statusHandler serves /status and /status.json.
type statusHandler struct {
	o     StatusOptions
	token [sha256.Size]byte // SHA-256 of o.Token
	ready *readiness
}

func newStatusHandler(o StatusOptions, ready *readiness) *statusHandler {
	return &statusHandler{o: o, token: sha256.Sum256([]byte(o.Token)), ready: ready}
}

// authorized: with a token, the request must present it (compared in
// constant time, lengths included: both sides are hashed first); without
// one, the request must have reached the listener on a loopback address.
func (h *statusHandler) authorized(r *http.Request) bool {
	if h.o.Token == "" {
		return localLoopback(r)
	}
	given, inURL := r.URL.Query().Get("token"), true
	if a := r.Header.Get("Authorization"); len(a) > len("Bearer ") && strings.EqualFold(a[:len("Bearer ")], "Bearer ") {
		given, inURL = a[len("Bearer "):], false
	}
	sum := sha256.Sum256([]byte(given))
	if h.o.ReadToken != "" {
		read := sha256.Sum256([]byte(h.o.ReadToken))
		if subtle.ConstantTimeCompare(sum[:], read[:]) == 1 {
			return true
		}
	}
	if inURL && h.o.QueryReadOnly {
		return false
	}
	return subtle.ConstantTimeCompare(sum[:], h.token[:]) == 1
}

// localLoopback reports whether r reached the server on a loopback
// address (the listener's side of the connection).
func localLoopback(r *http.Request) bool {
	a, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	t, ok := a.(*net.TCPAddr)
	return ok && t.IP.IsLoopback()
}

// guard answers 401 to a request that is not authorized, and sets the
// headers every answer of the page carries; it reports whether to go on.
func (h *statusHandler) guard(w http.ResponseWriter, r *http.Request) bool {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "no-referrer")
	if h.authorized(r) {
		return true
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="mqtt-authproxy status"`)
	msg := "401 unauthorized: send Authorization: Bearer <AUTHPROXY_ADMIN_TOKEN>, or open /status?token=<AUTHPROXY_ADMIN_TOKEN>\n"
	if h.o.Token == "" {
		msg = "401 unauthorized: without AUTHPROXY_ADMIN_TOKEN the status page answers on a loopback address only\n"
	}
	http.Error(w, msg, http.StatusUnauthorized)
	return false
}

func (h *statusHandler) page(w http.ResponseWriter, r *http.Request) {
	if !h.guard(w, r) {
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", statusCSP)
	w.Header().Set("X-Frame-Options", "DENY")
	_, _ = w.Write(statusPage)
}

func (h *statusHandler) json(w http.ResponseWriter, r *http.Request) {
	if !h.guard(w, r) {
		return
	}
	st := h.status(r.Context(), strings.TrimSpace(r.URL.Query().Get("user")), time.Now())
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(st)
}

// status gathers the page's data, filtered by user when it is not empty.
func (h *statusHandler) status(ctx context.Context, user string, now time.Time) Status {
	src := h.o.Source
	st := Status{Replica: h.o.Replica, Time: now.UTC(), User: user, Health: map[string]string{},
		Window: Window{Limit: StatusDecisionLimit, MaxAgeSeconds: int(StatusDecisionAge / time.Second)}}
	for k, v := range h.ready.get(ctx) {
		st.Health[k] = v
	}
	if t := src.LastChange(); !t.IsZero() {
		t = t.UTC()
		st.ChangeFeed.LastChange = &t
	}
	if p, ok := src.(PasswordOldSource); ok && user != "" {
		st.PasswordOld = p.PasswordOld(ctx, user)
	}
	st.sessions(src, user)
	st.decisions(ctx, src, user, now)
	st.counters(src.Counters())
	if b, ok := src.(BrokerSource); ok {
		st.Brokers = b.Brokers()
	}
	st.limits(src)
	return st
}

// sessions fills the live sessions (of user, or all), newest first.
func (st *Status) sessions(src StatusSource, user string) {
	st.Sessions = []Session{}
	for _, s := range src.Sessions() {
		if user == "" || s.Username == user {
			st.Sessions = append(st.Sessions, s)
		}
	}
	slices.SortStableFunc(st.Sessions, func(a, b Session) int { return b.Since.Compare(a.Since) })
	st.Summary.Sessions = len(st.Sessions)
	st.Sessions = st.Sessions[:min(len(st.Sessions), StatusSessionLimit)]
}

// decisions fills the window of recent decisions (of user, or all),
// newest first, and what is counted of them.
func (st *Status) decisions(ctx context.Context, src StatusSource, user string, now time.Time) {
	rctx, cancel := context.WithTimeout(ctx, statusReadTimeout)
	ds, err := src.Decisions(rctx, DecisionQuery{User: user, Since: now.Add(-StatusDecisionAge), Limit: StatusDecisionLimit})
	cancel()
	if err != nil {
		st.DecisionsError = "the decision log could not be read: " + err.Error()
	}
	st.Decisions = append([]Decision{}, ds...)
	slices.SortStableFunc(st.Decisions, func(a, b Decision) int { return b.Time.Compare(a.Time) })
	st.Window.Count = len(st.Decisions)
	if n := len(st.Decisions); n > 0 {
		oldest := st.Decisions[n-1].Time
		st.Window.Oldest = &oldest
	}
	st.Outcomes = countOutcomes(st.Decisions)
	for _, d := range st.Decisions {
		if d.Kind != "connect" {
			continue
		}
		if d.Outcome == "accepted" {
			st.Summary.Accepted++
		} else {
			st.Summary.Refused++
		}
	}
}

// counters fills this replica's counts since it started.
func (st *Status) counters(c Counters) {
	st.Connects = []OutcomeCount{}
	for o, n := range c.Connects {
		if n > 0 {
			st.Connects = append(st.Connects, OutcomeCount{Outcome: o, Count: n})
		}
	}
	sortCounts(st.Connects)
	st.Handshakes = Handshakes{Full: c.HandshakesFull, Resumed: c.HandshakesResumed}
	if total := c.HandshakesFull + c.HandshakesResumed; total > 0 {
		rate := c.HandshakesResumed / total
		st.Handshakes.ResumptionRate = &rate
		st.Summary.ResumptionRate = &rate
	}
}

// countOutcomes counts ds by kind and outcome: CONNECTs first, then the
// other kinds, each largest first.
func countOutcomes(ds []Decision) []OutcomeCount {
	type key struct{ kind, outcome string }
	n := map[key]float64{}
	for _, d := range ds {
		n[key{d.Kind, d.Outcome}]++
	}
	out := make([]OutcomeCount, 0, len(n))
	for k, c := range n {
		out = append(out, OutcomeCount{Kind: k.kind, Outcome: k.outcome, Count: c})
	}
	sortCounts(out)
	return out
}

// sortCounts orders counts: kind connect first, then by kind, then
// largest first, then by outcome.
func sortCounts(cs []OutcomeCount) {
	slices.SortFunc(cs, func(a, b OutcomeCount) int {
		if (a.Kind == "connect") != (b.Kind == "connect") {
			if a.Kind == "connect" {
				return -1
			}
			return 1
		}
		if c := strings.Compare(a.Kind, b.Kind); c != 0 {
			return c
		}
		if a.Count != b.Count {
			if a.Count > b.Count {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Outcome, b.Outcome)
	})
}
