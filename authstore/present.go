package authstore

// What a CONNECT's credential says before its user is read: a token of a
// listed issuer names its user (its username claim), a client certificate
// names one with CERT_USERNAME, and a revoked token or certificate is
// refused here. The rest of the credential seam (credential.go) then
// chooses the verifier from the user's rules: see verifierFor.

import (
	"context"
	"fmt"
	"strings"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/revoked"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/rules"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/tokens"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/logsafe"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// Certificate identity modes (AUTHPROXY_CERT_USERNAME): rules.CertName's.
const (
	CertUsernameOff      = rules.CertNameOff
	CertUsernameCN       = rules.CertNameCN
	CertUsernameSANDNS   = rules.CertNameSANDNS
	CertUsernameSANEmail = rules.CertNameSANEmail
	CertUsernameSANURI   = rules.CertNameSANURI
)

// CheckCertUsername validates a CERT_USERNAME mode.
func CheckCertUsername(mode string) error { return rules.CheckCertName(mode) }

// presented is what present found: a refusal made before the user is
// read (a token refused, a revoked credential, a user name that is not
// the credential's), counted as a wrong password is.
type presented struct {
	refusal *policy.Decision
}

// final reports whether the refusal ends a live session decided again
// at once: its token expired, or its credential is revoked, whatever
// Redis answers.
func (p presented) final(req policy.Request) bool { return p.refusal != nil && req.Verified != nil }

// decision is the refusal, or the zero Decision.
func (p presented) decision() policy.Decision {
	if p.refusal == nil {
		return policy.Decision{}
	}
	return *p.refusal
}

// refused is a presented refusal.
func refused(reason string) presented {
	return presented{refusal: &policy.Decision{Outcome: policy.BadCredentials, Reason: reason}}
}

// present reads what req's credential says before the user is read, and
// returns req with the user it names: a token of a listed issuer is
// verified (its username claim is the user, its claims may be its rules:
// req.Token), a certificate names the user with CERT_USERNAME, and a
// revoked token or certificate is refused. A live session decided again
// (req.Verified) is checked against its token's expiry and revocation. An
// error: the revoked credentials were never read (fail closed).
func (s *Store) present(ctx context.Context, req policy.Request) (policy.Request, presented, error) {
	if req.Cert != nil {
		if err := s.revokedLoaded(ctx); err != nil {
			return req, presented{}, err
		}
		if why := s.revoked.Cert(req.CertCASHA256, req.Cert.SerialNumber); why != "" {
			req.Explain.Add("certificate revocation", policy.Fail, why)
			return req, refused("client " + why), nil
		}
		req.Explain.Add("certificate revocation", policy.Pass, "serial "+revoked.SerialHex(req.Cert.SerialNumber)+" is not revoked")
	}
	switch {
	case req.Verified != nil && req.Token != nil:
		return req, s.tokenStillValid(req), nil
	case req.Verified == nil && s.tokens != nil && req.HasPassword && s.tokens.IssuerOf(req.Password) != "":
		return s.presentIssued(ctx, req)
	}
	return s.presentCert(req)
}

// tokenStillValid decides a live token session's token again: its exp
// plus the leeway, and the revocations.
func (s *Store) tokenStillValid(req policy.Request) presented {
	t := req.Token
	if !s.now().Before(t.Ends()) {
		return presented{refusal: &policy.Decision{Outcome: policy.TokenExpired, Reason: "the token expired at " + t.Expiry.UTC().Format("2006-01-02T15:04:05Z")}}
	}
	if why := s.tokenRevoked(t); why != "" {
		return refused(why)
	}
	return presented{}
}

// tokenRevoked says why a verified token is revoked ("" when it is not).
func (s *Store) tokenRevoked(t *policy.Token) string {
	if why := s.revoked.Token(t.Issuer, t.Subject, t.JTI); why != "" {
		s.tokens.Count(tokens.CauseRevoked)
		return why
	}
	return ""
}

// presentIssued verifies a token of a listed issuer and makes its user
// the request's.
func (s *Store) presentIssued(ctx context.Context, req policy.Request) (policy.Request, presented, error) {
	if err := s.revokedLoaded(ctx); err != nil {
		return req, presented{}, err
	}
	vf, err := s.tokens.VerifyIssued(ctx, req.Password)
	if err != nil {
		req.Explain.Add("token", policy.Fail, err.Error())
		return req, refused(err.Error()), nil
	}
	if req.Username != "" && req.Username != vf.Username {
		s.tokens.Count(tokens.CauseUsername)
		why := fmt.Sprintf("the CONNECT's user name %s is not the token's (%s)", logsafe.String(req.Username), logsafe.String(vf.Username))
		req.Explain.Add("token", policy.Fail, why)
		return req, refused(why), nil
	}
	if why := s.tokenRevoked(vf.Token); why != "" {
		req.Explain.Add("token", policy.Fail, why)
		return req, refused(why), nil
	}
	req.Explain.Add("token", policy.Pass, describeToken(vf.Token, vf.Users))
	req.Username, req.Token = vf.Username, vf.Token
	return req, presented{}, nil
}

// describeToken says what a verified token is, for explain: never the
// token, nor its signature.
func describeToken(t *policy.Token, users string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "issuer %s, key %q, sub %s", logsafe.String(t.Issuer), t.KeyID, logsafe.String(t.Subject))
	if t.JTI != "" {
		fmt.Fprintf(&b, ", jti %s", logsafe.String(t.JTI))
	}
	fmt.Fprintf(&b, ", valid until %s", t.Expiry.UTC().Format("2006-01-02T15:04:05Z"))
	if users == tokens.UsersToken {
		b.WriteString("; the user's rules come from its claims")
	}
	return b.String()
}

// presentCert applies CERT_USERNAME: the certificate names the user when
// the CONNECT names none, and must name the one it names.
func (s *Store) presentCert(req policy.Request) (policy.Request, presented, error) {
	if s.certUsername == CertUsernameOff || req.Cert == nil || req.Token != nil {
		return req, presented{}, nil
	}
	name, ok := rules.CertName(s.certUsername, req.Cert)
	switch {
	case !ok:
		req.Explain.Add("certificate identity", policy.NotApplied, "the certificate has no "+s.certUsername+" name")
	case req.Username == "":
		req.Username = name
		req.Explain.Add("certificate identity", policy.Pass, "the user is the certificate's "+s.certUsername+": "+logsafe.String(name))
	case req.Username != name:
		why := fmt.Sprintf("the CONNECT's user name %s is not the certificate's %s %s", logsafe.String(req.Username), s.certUsername, logsafe.String(name))
		req.Explain.Add("certificate identity", policy.Fail, why)
		return req, refused(why), nil
	default:
		req.Explain.Add("certificate identity", policy.Pass, "the user name is the certificate's "+s.certUsername)
	}
	return req, presented{}, nil
}

// certIdentity reports whether req is authenticated by its certificate's
// name alone (CERT_USERNAME, no password sent).
func (s *Store) certIdentity(req policy.Request) bool {
	if s.certUsername == CertUsernameOff || req.HasPassword || req.Token != nil {
		return false
	}
	name, ok := rules.CertName(s.certUsername, req.Cert)
	return ok && name == req.Username
}

// refuseShown answers a refusal present made, after the bans and limits:
// no hash is computed (a token or a certificate costs none), and it
// counts as a failed attempt.
func (s *Store) refuseShown(ctx context.Context, req policy.Request, p presented, sideEffects bool) policy.Decision {
	if sideEffects && p.refusal.Outcome == policy.BadCredentials {
		s.countFailure(ctx, req)
	}
	return *p.refusal
}

// RevokedReason says why the credential a live session was accepted with
// is revoked now ("" when it is not): its token's jti or subject, or its
// client certificate's serial. It reads memory only: the proxy asks it of
// every session on each revocation.
func (s *Store) RevokedReason(req policy.Request) string {
	if req.Token != nil {
		if why := s.revoked.Token(req.Token.Issuer, req.Token.Subject, req.Token.JTI); why != "" {
			return why
		}
	}
	if req.Cert != nil {
		return s.revoked.Cert(req.CertCASHA256, req.Cert.SerialNumber)
	}
	return ""
}

// revokedLoaded reads the revoked credentials if they never were (the
// change feed reads them at start; a command such as explain reads them
// here): until they are, no token or certificate is accepted.
func (s *Store) revokedLoaded(ctx context.Context) error {
	if s.revoked.Loaded() {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := s.revoked.EnsureLoaded(ctx); err != nil {
		return fmt.Errorf("%w: %w: %w", policy.ErrUnavailable, revoked.ErrNotLoaded, err)
	}
	return nil
}

// namedByCredential reports whether req's user was named, or is
// authenticated, by a token or a certificate (no password hash to spend
// on an unknown one).
func (s *Store) namedByCredential(req policy.Request) bool {
	return req.Token != nil || s.certIdentity(req)
}

// credentialsBeyondPasswords sets up the store's tokens, revoked
// credentials and certificate identity from o.
func (s *Store) credentialsBeyondPasswords(o Options) {
	s.tokens = o.Tokens
	if s.tokens == nil {
		s.tokens, _ = tokens.New(tokens.Options{Logger: o.Logger}) // no file: nothing to fail
	}
	s.revoked = revoked.NewSet(s.rdb, o.Prefix, o.Logger, o.Now)
	s.certUsername = o.CertUsername
	if s.certUsername == "" {
		s.certUsername = CertUsernameOff
	}
}

// Tokens is the store's token verifier.
func (s *Store) Tokens() *tokens.Verifier { return s.tokens }

// Revoked is the revoked credentials this store holds in memory.
func (s *Store) Revoked() *revoked.Set { return s.revoked }

// Revocations writes revocations (token revoke, cert revoke, crl import)
// under the store's key prefix.
func (s *Store) Revocations() *revoked.Writer { return revoked.NewWriter(s.rdb, s.Prefix(), s.now) }

// tokenRules are the rules a verified token's claims hold (nil: none,
// the user's hash holds them).
func tokenRules(t *policy.Token) *policy.TokenRules {
	if t == nil {
		return nil
	}
	return t.Rules
}
