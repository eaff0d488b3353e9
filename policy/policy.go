// Package policy holds the decision's types, shared by the rule store
// that makes decisions (authstore) and the proxy that enforces them: what a
// CONNECT presents, the decision with its outcome and reason, the errors
// that mean "cannot decide now", and the change notifications that make a
// live session be decided again. It knows no Redis and no connection.
package policy

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
)

// Authenticator is the port the proxy uses: a denial is a Decision, an
// infrastructure failure (store down, slow, malformed rule) is an error, and
// the caller must refuse the connection on either.
type Authenticator interface {
	Authenticate(ctx context.Context, req Request) (Decision, error)
}

// Request is what a CONNECT presents.
type Request struct {
	Username    string
	HasPassword bool   // the CONNECT's password flag
	Password    string // never logged
	ClientID    string
	Protocol    packets.Level // packets.V31, V311 or V5
	RemoteAddr  netip.Addr    // source address of the TCP connection
	// CertSHA256 is the SHA-256 of the client certificate's DER, when the
	// client presented one that verified; CertCN its subject common name.
	CertSHA256 []byte
	CertCN     string
	// Verified, when set, re-decides a live session: it is the Credential of
	// the decision that accepted the session's CONNECT. The stored
	// credential is compared with it instead of verifying a password, so a
	// re-decision never computes a hash and needs no password: a user that
	// is gone, or whose password hash changed, is refused at once.
	Verified *Credential
	// WillTopic is the CONNECT's will topic, when it has a will: the user
	// must be allowed to publish to it.
	HasWill   bool
	WillTopic string
	// Explain, when set, receives every check's verdict (explain).
	Explain *Explanation
}

// Credential identifies the stored credential a decision accepted: a MAC,
// under a key of this process, of the user's password field (or of its
// absence, for a certificate-only user). It never holds the password.
type Credential [32]byte

// Outcome is a decision's result; it doubles as a metric label.
type Outcome string

// Outcomes. Every one but Accepted denies.
const (
	Accepted           Outcome = "accepted"
	BadCredentials     Outcome = "bad_credentials"      // unknown user, wrong password, no matching cert for a cert-only user
	Disabled           Outcome = "disabled"             // enabled=false
	Expired            Outcome = "expired"              // not_after passed
	CertNotAllowed     Outcome = "cert_not_allowed"     // certs set, none matches
	AddressNotAllowed  Outcome = "address_not_allowed"  // cidrs set, none contains the source
	ClientIDNotAllowed Outcome = "clientid_not_allowed" // clientids set, none matches
	WillNotAllowed     Outcome = "will_not_allowed"     // the will's topic is not one the user may publish to
	Banned             Outcome = "banned"               // the user name or the client id is banned
	TooManyFailures    Outcome = "too_many_failures"    // past the failed-attempt limit of the user or the address
)

// Decision is the answer to a Request.
type Decision struct {
	Outcome Outcome
	// Remembered: the password verification was served from the cache.
	Remembered bool
	// NotAfter is the user's not_after, zero when there is none: a live
	// connection should be re-decided at that moment.
	NotAfter time.Time
	// Credential is set on an accepted decision: pass it as
	// Request.Verified to decide the session again without a hash.
	Credential Credential
	// Reason is a one-line, human explanation of the outcome ("password
	// does not match", "disabled"); it never holds a password.
	Reason string
	// Topics are the user's topic rules, compiled for the request's user
	// name and client id; nil when the store does not read them (topic
	// rules off).
	Topics *TopicRules
	// Roles are the roles whose rules the decision read (the default role
	// included when it exists): a change to one of them decides the
	// session again.
	Roles []string
}

// Allowed reports whether the CONNECT may go on to the broker.
func (d Decision) Allowed() bool { return d.Outcome == Accepted }

// Errors. Test with errors.Is; all of them mean "server unavailable".
var (
	// ErrUnavailable: Redis failed or did not answer within the timeout.
	ErrUnavailable = errors.New("rule store unavailable")
	// ErrBusy: no slot to verify a password before the context ended.
	ErrBusy = errors.New("too many password verifications in progress")
)

// ErrMalformedRule marks a field of a user's hash that cannot be read. It
// never allows: the decision becomes an error (CONNACK "server unavailable").
var ErrMalformedRule = errors.New("malformed rule")

// Change is a notification that a user's rules may have changed.
type Change struct {
	Username string
	// Kick asks to close the user's live connections without re-deciding.
	Kick bool
	// BanKind and BanValue, when set, name a ban that was added or
	// lifted ("ip", "user", "clientid").
	BanKind, BanValue string
	// Role, when set, names a role whose rules may have changed: every
	// session holding it (every session, for the default role) is decided
	// again.
	Role string
	// Resync: notifications may have been missed (the subscription was
	// re-established after a Redis outage): re-decide every live connection.
	Resync bool
}

// Record is one entry of the decision log: a CONNECT decided, a live
// session decided again and closed, a kick, a ban, a summary of topic
// denials, a summary of connections refused before a CONNECT. It never
// holds a password.
type Record struct {
	Time       time.Time     `json:"time"`
	Replica    string        `json:"replica"`
	Kind       string        `json:"kind"` // connect, revalidate, kick, ban, acl, summary
	Remote     string        `json:"remote,omitempty"`
	Username   string        `json:"username,omitempty"`
	ClientID   string        `json:"client_id,omitempty"`
	Protocol   int           `json:"protocol,omitempty"` // 3, 4 or 5
	TLS        string        `json:"tls,omitempty"`      // "TLS 1.3", "none"
	Resumed    bool          `json:"resumed"`
	CertSHA256 string        `json:"cert_sha256,omitempty"`
	Outcome    string        `json:"outcome"`
	Reason     string        `json:"reason,omitempty"`
	Duration   time.Duration `json:"duration_ns,omitempty"`
	// Count is how many connections a summary stands for (Kind
	// KindSummary); 0 in an entry about one.
	Count int `json:"count,omitempty"`
}

// KindSummary is the Kind of an entry that stands for Count connections
// refused before a CONNECT, from one address (Remote) or from several
// (Remote empty), with one outcome: those are summarised, never logged one
// by one, since they cost a client nothing but a TCP connection.
const KindSummary = "summary"

// Recorder takes decision log entries. Record must not block: an entry it
// cannot keep is dropped (and counted), never delaying a decision.
type Recorder interface {
	Record(Record)
}

// Explanation collects, in order, the verdict of every check a decision
// makes, for `mqtt-authproxy explain`. Give it in Request.Explain: the
// decision is then made by the same code as a CONNECT's, but leaves
// nothing behind (no failed attempt counted, no address remembered).
type Explanation struct {
	// NoPassword: the operator gave no password; the password check is
	// reported as not made, and the checks after it are made as if it
	// had passed.
	NoPassword bool
	Steps      []Step
}

// Step is one check of a decision.
type Step struct {
	Check   string `json:"check"`
	Verdict string `json:"verdict"` // "pass", "fail", "not checked", "n/a"
	Detail  string `json:"detail,omitempty"`
}

// Verdicts of a Step.
const (
	Pass       = "pass"
	Fail       = "fail"
	NotChecked = "not checked"
	NotApplied = "n/a"
)

// Add records a step (e is nil outside explain).
func (e *Explanation) Add(check, verdict, detail string) {
	if e != nil {
		e.Steps = append(e.Steps, Step{Check: check, Verdict: verdict, Detail: detail})
	}
}
