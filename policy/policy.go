// Package policy holds the decision's types, shared by the rule store
// that makes decisions (authstore) and the proxy that enforces them: what a
// CONNECT presents, the decision with its outcome and reason, the errors
// that mean "cannot decide now", and the change notifications that make a
// live session be decided again. It knows no Redis and no connection.
package policy

import (
	"context"
	"crypto/x509"
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
	// Cert is the verified client certificate (nil: none) and
	// CertCASHA256 the SHA-256 of the DER of the CA certificate that
	// signed it (nil when unknown): the certificate identity
	// (CERT_USERNAME), ca:sha256 pinning and certificate revocation read
	// them.
	Cert         *x509.Certificate
	CertCASHA256 []byte
	// Token, on a live session decided again, is what the token its
	// CONNECT was accepted with said (Decision.Token): never the token.
	Token *Token
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
	// TokenExpired: a live session's token reached its exp plus the
	// leeway (a CONNECT with an expired token is BadCredentials).
	TokenExpired Outcome = "token_expired"
	// MountpointNotAllowed: the user's mountpoint holds %u and the user
	// name holds '/', '+' or '#', which would reach outside its place.
	MountpointNotAllowed Outcome = "mountpoint_not_allowed"
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
	// OldPassword: the CONNECT was accepted with the user's previous
	// password, kept through a rotation's overlap (password_old); NotAfter
	// is then at most the overlap's end, when the session is decided again.
	OldPassword bool
	// CredentialKind names the credential an accepted CONNECT proved
	// itself with (see the Credential* constants).
	CredentialKind string
	// Username, when set, is the user the credential named for a CONNECT
	// that gave none (a token's username claim, a certificate's name): the
	// session is that user's.
	Username string
	// Token is set when a token was the credential: the session keeps it
	// (Request.Token) to be decided again, and ends at its expiry
	// (NotAfter is at most its exp plus the leeway).
	Token *Token
	// Backend names the broker pool the session goes to (the backend
	// field of the user, else of its roles); "" is the default pool.
	Backend string
	// Mountpoint is the prefix of every topic of the session on the
	// broker's side (the mountpoint field, %u filled in), ending in '/';
	// "" none. The topic rules judge the device's view, without it.
	Mountpoint string
	// Known: the CONNECT's address authenticated this user recently (the
	// addresses the failed-attempt limits know); such a CONNECT goes first
	// where CONNECTs wait their turn (the broker connect rate).
	Known bool
	// Limits are how much the session may do (pub_rate, max_qos, ...;
	// see limits.go), each with where it came from; nil: none.
	Limits *Limits
}

// Kinds of credential (Decision.CredentialKind).
const (
	CredentialPassword     = "password"
	CredentialCertificate  = "certificate"          // a certificate-only user's certs
	CredentialCertIdentity = "certificate identity" // CERT_USERNAME: the name from the certificate
	CredentialToken        = "token"                // a token of an issuer of JWT_ISSUERS_FILE
	CredentialDeviceToken  = "device token"         // a token signed with a key of the user's jwt_keys
)

// Token is what a verified token said, as a decision and a live session
// keep it: never the token itself, nor its signature.
type Token struct {
	Kind    string // CredentialToken or CredentialDeviceToken
	Issuer  string // iss ("" for a device token without one)
	Subject string // sub
	JTI     string // jti, "" when absent
	KeyID   string // kid of the key that verified it, "" when the token named none
	Expiry  time.Time
	// Leeway is how long past Expiry the token is still accepted.
	Leeway time.Duration
	// Rules, for an issuer whose users come from the token, are the
	// user's rules from its claims; nil when the user's hash holds them.
	Rules *TokenRules
}

// Ends is when a session admitted by the token ends: its exp plus the
// leeway.
func (t *Token) Ends() time.Time { return t.Expiry.Add(t.Leeway) }

// TokenRules are a user's rules taken from a token's claims, in the
// syntax of the user hash's fields (one entry per element); a nil slice
// is a claim that is absent.
type TokenRules struct {
	Publish, Subscribe, ClientIDs, Roles []string
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
	// Revoked: the revoked tokens and certificates changed; sessions
	// whose credential they now name are closed.
	Revoked bool
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
	// Credential is the kind of credential a CONNECT was accepted with
	// ("password", "token", ...); Issuer and JTI name its token, if one
	// was (never the token itself).
	Credential string `json:"credential,omitempty"`
	Issuer     string `json:"issuer,omitempty"`
	JTI        string `json:"jti,omitempty"`
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
