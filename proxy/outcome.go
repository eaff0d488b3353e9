package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/logsafe"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// Outcomes the proxy adds to the policy's (metric label "outcome").
const (
	outcomeStoreUnavailable   = "store_unavailable"
	outcomeBackendUnavailable = "backend_unavailable"
	outcomeBrokerRefused      = "broker_refused"
	outcomeMalformed          = "malformed"
	outcomeProtocolVersion    = "unsupported_protocol"
	outcomeTooLarge           = "too_large"
	outcomeTimeout            = "timeout"
	outcomeClosed             = "closed_before_connect"
	outcomeTLSFailed          = "tls_handshake_failed"
	outcomeShutdown           = "shutting_down"
	outcomeLimit              = "max_connections"
	outcomePendingFull        = "pending_full"
	outcomeEvicted            = "pending_evicted"
	outcomeRateLimited        = "rate_limited"
	outcomeBannedIP           = "banned_ip"
	outcomeBusy               = "busy"
	outcomeProxyProtocol      = "proxy_protocol_refused"
	outcomeUpgradeRefused     = "websocket_refused"
)

// log writes the attempt's one line: what the device presented (its names
// made safe to log), its transport, the outcome with its reason, and how
// long it took. Never a password. Refusals past the log budget go to debug.
func (a *attempt) log(l *slog.Logger, lim *logLimiter, e policy.Record) {
	level := slog.LevelInfo
	if a.err != nil && (a.outcome == outcomeStoreUnavailable || a.outcome == outcomeBackendUnavailable) {
		level = slog.LevelWarn
	}
	if level == slog.LevelInfo && a.outcome != string(policy.Accepted) && !lim.allow(a.outcome) {
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
	if a.err != nil {
		attrs = append(attrs, slog.String("error", logsafe.Error(a.err)))
	}
	l.LogAttrs(context.Background(), level, "connect", attrs...)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}
