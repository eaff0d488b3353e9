package proxy

// What the proxy does with credentials beyond passwords: the user a token
// or a certificate named becomes the session's (and the broker's), a
// session whose token expires ends with MQTT 5's "maximum connect time",
// and a revocation closes the sessions it names at once.

import (
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/logsafe"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// adopt takes from an accepting decision what the session keeps beyond
// the request: the user its credential named when the CONNECT named none
// (the broker's CONNECT names it too, as if the device had), and the
// token it was accepted with (never the token itself), so that the
// session is decided again without it.
func (a *attempt) adopt(d policy.Decision) {
	if d.Username != "" && d.Username != a.req.Username {
		a.req.Username = d.Username
		a.connect.UsernameFlag, a.connect.Username = true, d.Username
	}
	a.req.Token = d.Token
}

// endOf is how a live session a re-decision refuses ends: a token that
// expired with MQTT 5's "maximum connect time" (0xA0), anything else with
// "administrative action" (0x98).
func endOf(o policy.Outcome) (packets.ReasonCode, string) {
	if o == policy.TokenExpired {
		return packets.MaximumConnectTime, "token_expired"
	}
	return packets.AdministrativeAction, "revoked"
}

// applyRevocations closes the sessions whose credential (a token's jti or
// subject, a client certificate's serial) is now revoked, MQTT 5 with
// DISCONNECT 0x98: from memory, without a decision per session.
func (p *Proxy) applyRevocations() {
	if p.cfg.Revoked == nil {
		return
	}
	for _, s := range p.allSessions() {
		if s.req.Token == nil && s.req.Cert == nil || s.done() {
			continue
		}
		why := p.cfg.Revoked(s.req)
		if why == "" {
			continue
		}
		p.metrics.Revalidations.WithLabelValues("revoked").Inc()
		p.log.Info("revoked", "username", logsafe.String(s.req.Username), "client_id", logsafe.String(s.req.ClientID),
			"remote", s.remote, "reason", why)
		s.record("revalidate", "revoked", why+" (live session closed)")
		s.end(packets.AdministrativeAction, "revoked")
	}
}
