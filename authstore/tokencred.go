package authstore

// The credential seam's kinds beyond passwords: a token of a listed
// issuer (verified by present before the user was read), a token the
// device signed with a key of its user's jwt_keys, and the certificate
// identity (CERT_USERNAME). None costs a password hash.

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/rules"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/tokens"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// again decides a live session again without its credential (no token,
// no password, no hash): the kinds whose check is not the stored
// password's have one.
type again interface {
	again(req policy.Request, r rules.User) policy.Decision
}

// tokenCredential is the Credential of a session a token admitted: a MAC
// of what identifies the token (its kind, issuer, subject and jti).
func (s *Store) tokenCredential(t *policy.Token) policy.Credential {
	mac := hmac.New(sha256.New, s.credKey[:])
	for _, p := range []string{"token", t.Kind, t.Issuer, t.Subject, t.JTI} {
		mac.Write([]byte(p))
		mac.Write([]byte{0})
	}
	var c policy.Credential
	mac.Sum(c[:0])
	return c
}

// accepted is the decision of a credential of a kind that verified, for
// the user req names (the credential's): the session ends no later than
// the token, if there is one.
func (s *Store) accepted(kind string, req policy.Request, t *policy.Token, cred policy.Credential) policy.Decision {
	d := policy.Decision{CredentialKind: kind, Username: req.Username, Token: t, Credential: cred}
	if t != nil {
		d.NotAfter = t.Ends()
	}
	return d
}

// tokenVerifier: a token of a listed issuer, verified by present (its
// signature, time claims, audience, revocation); here its user's rules are
// checked as for any credential.
type tokenVerifier struct{ s *Store }

func (tokenVerifier) Kind() string { return policy.CredentialToken }

func (v tokenVerifier) Verify(_ context.Context, req policy.Request, _ rules.User, _ bool) (policy.Decision, error) {
	return v.s.accepted(policy.CredentialToken, req, req.Token, v.s.tokenCredential(req.Token)), nil
}

func (v tokenVerifier) again(req policy.Request, _ rules.User) policy.Decision {
	cred := v.s.tokenCredential(req.Token)
	if subtle.ConstantTimeCompare(req.Verified[:], cred[:]) != 1 {
		return policy.Decision{Outcome: policy.BadCredentials, Reason: "not the token the session was accepted with"}
	}
	return v.s.accepted(req.Token.Kind, req, req.Token, cred)
}

// deviceTokenVerifier: a token the device signed itself with a key of its
// user's jwt_keys (the user name is the hash's).
type deviceTokenVerifier struct{ s *Store }

func (deviceTokenVerifier) Kind() string { return policy.CredentialDeviceToken }

func (v deviceTokenVerifier) Verify(_ context.Context, req policy.Request, r rules.User, _ bool) (policy.Decision, error) {
	vf, err := v.s.tokens.VerifyDevice(req.Password, r.JWTKeys)
	if err != nil {
		req.Explain.Add("device token", policy.Fail, err.Error())
		return policy.Decision{Outcome: policy.BadCredentials, Reason: err.Error()}, nil
	}
	if why := v.s.tokenRevoked(vf.Token); why != "" {
		req.Explain.Add("device token", policy.Fail, why)
		return policy.Decision{Outcome: policy.BadCredentials, Reason: why}, nil
	}
	req.Explain.Add("device token", policy.Pass, describeToken(vf.Token, "")+" (signed with a key of the user's jwt_keys)")
	return v.s.accepted(policy.CredentialDeviceToken, req, vf.Token, v.s.tokenCredential(vf.Token)), nil
}

// certIdentityVerifier: with CERT_USERNAME the verified client
// certificate named the user (present), and no password was sent; the
// user's hash must exist (and its rules, certs included, apply).
type certIdentityVerifier struct{ s *Store }

func (certIdentityVerifier) Kind() string { return policy.CredentialCertIdentity }

func (v certIdentityVerifier) credential(req policy.Request) policy.Credential {
	mac := hmac.New(sha256.New, v.s.credKey[:])
	mac.Write([]byte("certificate identity\x00"))
	mac.Write(req.Cert.Raw)
	var c policy.Credential
	mac.Sum(c[:0])
	return c
}

func (v certIdentityVerifier) Verify(_ context.Context, req policy.Request, _ rules.User, _ bool) (policy.Decision, error) {
	req.Explain.Add("certificate", policy.Pass, "the client certificate names the user ("+v.s.certUsername+"): it is the credential")
	return v.s.accepted(policy.CredentialCertIdentity, req, nil, v.credential(req)), nil
}

func (v certIdentityVerifier) again(req policy.Request, _ rules.User) policy.Decision {
	cred := v.credential(req)
	if subtle.ConstantTimeCompare(req.Verified[:], cred[:]) != 1 {
		return policy.Decision{Outcome: policy.BadCredentials, Reason: "not the certificate the session was accepted with"}
	}
	return v.s.accepted(policy.CredentialCertIdentity, req, nil, cred)
}

// deviceToken reports whether req carries a token its user's jwt_keys
// verify: the user has jwt_keys and the password is a JWS.
func deviceToken(req policy.Request, r rules.User) bool {
	return r.JWTKeys != "" && req.HasPassword && req.Verified == nil && tokens.LooksLikeJWS(req.Password)
}
