package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/logsafe"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// Outcome is how a connection attempt ended: a decision's outcome
// (policy.Outcome) or one of the proxy's own. It is the outcome label of
// authproxy_connects_total and the decision log's outcome.
type Outcome string

// The proxy's outcomes, beside the decisions' (Decided).
const (
	OutcomeStoreUnavailable   Outcome = "store_unavailable"
	OutcomeBusy               Outcome = "busy"
	OutcomeBackendUnavailable Outcome = "backend_unavailable"
	OutcomeBackendBusy        Outcome = "backend_busy"         // the broker connect rate, past the CONNECT's deadline
	OutcomeBackendPoolUnknown Outcome = "backend_pool_unknown" // the decision named a pool that does not exist
	OutcomeBrokerRefused      Outcome = "broker_refused"
	OutcomeMalformed          Outcome = "malformed"
	OutcomeProtocolVersion    Outcome = "unsupported_protocol"
	OutcomeTooLarge           Outcome = "too_large"
	OutcomeTimeout            Outcome = "timeout"
	OutcomeClosed             Outcome = "closed_before_connect"
	OutcomeTLSFailed          Outcome = "tls_handshake_failed"
	OutcomeShutdown           Outcome = "shutting_down"
	OutcomeLimit              Outcome = "max_connections"
	OutcomePendingFull        Outcome = "pending_full"
	OutcomeEvicted            Outcome = "pending_evicted"
	OutcomeRateLimited        Outcome = "rate_limited"
	OutcomeBannedIP           Outcome = "banned_ip"
	OutcomeProxyProtocol      Outcome = "proxy_protocol_refused"
	OutcomeUpgradeRefused     Outcome = "websocket_refused"
)

// Decided is the attempt outcome of a decision.
func Decided(o policy.Outcome) Outcome { return Outcome(o) }

// ConnackCode is the MQTT 5 reason code a CONNECT refused by a decision
// with outcome o is answered with (packets.ReasonCode.V3 gives 3.1 and
// 3.1.1's return code): the one table behind the CONNACKs of the proxy and
// of `explain`. Accepted is Success.
func ConnackCode(o policy.Outcome) packets.ReasonCode {
	switch o {
	case policy.Accepted:
		return packets.Success
	case policy.BadCredentials:
		return packets.BadUserNameOrPassword
	case policy.ClientIDNotAllowed:
		return packets.ClientIdentifierNotValid
	case policy.TooManyFailures:
		return packets.ConnectionRateExceeded
	case policy.TooManySessions:
		return packets.QuotaExceeded // 3.1.1: 0x05
	}
	return packets.NotAuthorized
}

// Answer is what a CONNECT decided d, or refused for err (the store
// unavailable or busy), is counted as and answered with: its outcome and
// the MQTT 5 reason code of its CONNACK. The attempt and `explain` both
// take it from here.
func Answer(d policy.Decision, err error) (Outcome, packets.ReasonCode) {
	switch {
	case errors.Is(err, policy.ErrBusy):
		return OutcomeBusy, packets.ServerBusy
	case err != nil:
		return OutcomeStoreUnavailable, packets.ServerUnavailable
	}
	return Decided(d.Outcome), ConnackCode(d.Outcome)
}

// answer is how a refused attempt is told.
type answer uint8

const (
	// answerNone: closed without a packet (before a CONNECT, or a 3.x
	// CONNECT that cannot be answered).
	answerNone answer = iota
	// answerConnack: a CONNACK with the refusal's code in its version's
	// form (3.1.1's when the version is unknown).
	answerConnack
	// answerConnackV5: a CONNACK for an MQTT 5 client only (a malformed
	// CONNECT: 0x81/0x82 first); 3.x is closed.
	answerConnackV5
	// answerDisconnectV5: a DISCONNECT for an MQTT 5 client only (the
	// session could not start); 3.x is closed.
	answerDisconnectV5
	// answerRaw: the bytes the broker answered (its own refusal), as they
	// are.
	answerRaw
)

// refusal is why an attempt ended before its relay started: what it is
// counted and recorded as, what the device is told, and why. Every step
// of an attempt returns one, or nil to go on.
type refusal struct {
	outcome Outcome
	answer  answer
	code    packets.ReasonCode // with answerConnack*, answerDisconnectV5
	level   packets.Level      // the version to answer in; 0: the attempt's
	raw     []byte             // with answerRaw
	reason  string             // one line a person reads; "" takes err's text in the decision log
	err     error              // the cause, logged
}

func (r *refusal) Error() string {
	if r.reason != "" {
		return r.reason
	}
	if r.err != nil {
		return r.err.Error()
	}
	return string(r.outcome)
}

// refuseWith is a refusal answered by a CONNACK with code.
func refuseWith(o Outcome, code packets.ReasonCode, err error) *refusal {
	return &refusal{outcome: o, answer: answerConnack, code: code, err: err}
}

// closed is a refusal answered by closing the connection.
func closed(o Outcome, err error) *refusal { return &refusal{outcome: o, err: err} }

// errorOutcome is the outcome of a transport or read failure before a
// CONNECT: a passed deadline, a closed connection, or else fallback.
func errorOutcome(err error, fallback Outcome) Outcome {
	switch {
	case isTimeout(err):
		return OutcomeTimeout
	case errors.Is(err, net.ErrClosed):
		return OutcomeClosed
	}
	return fallback
}

// log writes the attempt's one line: what the device presented (its names
// made safe to log), its transport, the outcome with its reason, and how
// long it took. Never a password. Refusals past the log budget go to debug.
func (a *attempt) log(l *slog.Logger, lim *logLimiter, e policy.Record, r *refusal) {
	level := slog.LevelInfo
	if r != nil && r.err != nil && (r.outcome == OutcomeStoreUnavailable || r.outcome == OutcomeBackendUnavailable) {
		level = slog.LevelWarn
	}
	if level == slog.LevelInfo && r != nil && !lim.allow(string(r.outcome)) {
		// A flood of refusals is summarised at info; each one is at debug.
		level = slog.LevelDebug
	}
	if !l.Enabled(context.Background(), level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("remote", e.Remote),
		slog.String("client_id", logsafe.String(e.ClientID)),
		slog.String("username", logsafe.String(e.Username)),
		slog.Int("protocol", e.Protocol),
		slog.String("tls", e.TLS),
		slog.Bool("resumed", e.Resumed),
		slog.String("cert_sha256", e.CertSHA256),
		slog.String("outcome", e.Outcome),
		slog.Duration("duration", e.Duration),
	}
	if a.reason != "" {
		attrs = append(attrs, slog.String("reason", a.reason))
	}
	if e.Credential != "" && e.Credential != "password" { // the token's issuer and id, never the token
		attrs = append(attrs, slog.String("credential", e.Credential), slog.String("issuer", logsafe.String(e.Issuer)), slog.String("jti", logsafe.String(e.JTI)))
	}
	if r != nil && r.err != nil {
		attrs = append(attrs, slog.String("error", logsafe.Error(r.err)))
	}
	l.LogAttrs(context.Background(), level, "connect", attrs...)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}
