package authstore

// The credential check of a decision: what a CONNECT presents (a
// password, a client certificate) against what the user's rules hold,
// one Verifier per kind of credential, and, for a live session decided
// again, the credential it was accepted with. checkCredential is its one
// entry point.

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/passwords"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/rules"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/logsafe"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// Verifier is one kind of credential, the credential seam: how a CONNECT
// proves who it is against what the user's rules hold (a password against
// the stored hash, a client certificate the user's certs name; tokens are
// one more kind). The decision chooses one per CONNECT (verifierFor) and
// asks it; each kind has its own cost (a password: a hash, unless a
// success with the same stored hash and password is remembered; a
// certificate: none, the handshake verified it). A refusal is a Decision
// with an Outcome (BadCredentials, costing what a wrong password costs);
// an error means the decision cannot be made now (policy.ErrBusy).
type Verifier interface {
	// Kind names the credential ("password", "certificate", "none") in
	// explain and the logs.
	Kind() string
	// Verify checks req's proof against the user's rules r; known: the
	// user authenticated from req's address before (its verification
	// goes first in a queue). On success the Decision says whether a
	// verification was remembered.
	Verify(ctx context.Context, req policy.Request, r rules.User, known bool) (policy.Decision, error)
}

// verifierFor chooses the credential a CONNECT is checked with, from what
// it presents and what the user's rules hold: a token of a listed issuer
// (verified by present: req.Token), a token the device signed with a key
// of the user's jwt_keys, the client certificate's name without a
// password (CERT_USERNAME), a password when the user has one (a
// certificate its certs name is checked after, as a rule), else the
// certificate for a certificate-only user, else nothing to authenticate
// with. A live session decided again gets the kind it was accepted with.
func (s *Store) verifierFor(req policy.Request, r rules.User) Verifier {
	switch {
	case req.Token != nil:
		return tokenVerifier{s}
	case deviceToken(req, r):
		return deviceTokenVerifier{s}
	case s.certIdentity(req):
		return certIdentityVerifier{s}
	case r.HasPassword:
		return passwordVerifier{s}
	case r.HasCerts:
		return certificateVerifier{s}
	}
	return noCredential{s}
}

// checkCredential authenticates req with the credential verifierFor
// chooses. It returns a decision with a policy.Outcome only when it
// refuses; otherwise d carries the policy.Credential and the caller goes
// on with the rules. A refusal for a wrong password, a missing one, a
// certificate-only user without a matching certificate, a user with
// nothing to authenticate with and a stored hash that cannot be read all
// cost one (shared) verification, like an unknown user. A live session
// decided again (req.Verified) is checked against the credential it was
// accepted with, without a hash.
func (s *Store) checkCredential(ctx context.Context, req policy.Request, r rules.User, known bool) (policy.Decision, error) {
	stored := ""
	if r.HasPassword {
		stored = r.Password
	}
	cred := s.credential(r.HasPassword, stored)
	v := s.verifierFor(req, r)
	if req.Verified != nil {
		if a, ok := v.(again); ok {
			return a.again(req, r), nil
		}
		if d, ok := s.verifiedOld(req, r); ok {
			return d, nil
		}
		return checkVerified(req, r, cred), nil
	}
	d, err := v.Verify(ctx, req, r, known)
	if err != nil || d.Outcome != "" || d.CredentialKind != "" { // a kind with its own credential has set it
		return d, err
	}
	d.Credential, d.CredentialKind = cred, v.Kind()
	if d.OldPassword {
		d.Credential = s.credential(true, r.Rotation.Old)
	}
	return d, nil
}

// passwordVerifier checks the CONNECT's password against the stored hash.
type passwordVerifier struct{ s *Store }

func (passwordVerifier) Kind() string { return "password" }

func (v passwordVerifier) Verify(ctx context.Context, req policy.Request, r rules.User, known bool) (policy.Decision, error) {
	if req.Explain != nil && req.Explain.NoPassword {
		req.Explain.Add("password", policy.NotChecked, "no password given to explain (--password-stdin); the checks below assume it matches")
		return policy.Decision{}, nil
	}
	d, err := v.s.checkStoredPassword(ctx, req, r.Password, known)
	if err == nil && d.Outcome == policy.BadCredentials && req.HasPassword && r.Rotation.Active(v.s.now()) {
		d, err = v.s.checkOldPassword(ctx, req, r.Rotation, known, d)
	}
	if err != nil || d.Outcome != "" {
		req.Explain.Add("password", policy.Fail, d.Reason)
		return d, err
	}
	if d.OldPassword {
		req.Explain.Add("password", policy.Pass, "the previous password matches: accepted until "+r.Rotation.Until.UTC().Format(time.RFC3339)+" (a rotation's overlap)")
		return d, nil
	}
	req.Explain.Add("password", policy.Pass, "the password matches")
	return d, nil
}

// certificateVerifier: a certificate-only user's credential is a client
// certificate its certs name (verified against the CA at the handshake).
type certificateVerifier struct{ s *Store }

func (certificateVerifier) Kind() string { return "certificate" }

func (v certificateVerifier) Verify(ctx context.Context, req policy.Request, r rules.User, _ bool) (policy.Decision, error) {
	if !rules.CertAllowed(r.Certs, req.CertSHA256, req.CertCN, req.CertCASHA256) {
		req.Explain.Add("certificate", policy.Fail, "certificate-only user without a matching client certificate")
		return v.s.denyAfterDummy(ctx, req.Password, "certificate-only user without a matching client certificate")
	}
	req.Explain.Add("certificate", policy.Pass, "the client certificate is the credential and matches")
	return policy.Decision{}, nil
}

// noCredential refuses a user with neither a password nor certs: nothing
// to authenticate with.
type noCredential struct{ s *Store }

func (noCredential) Kind() string { return "none" }

func (v noCredential) Verify(ctx context.Context, req policy.Request, _ rules.User, _ bool) (policy.Decision, error) {
	req.Explain.Add("credential", policy.Fail, "user has neither password nor certs")
	v.s.log.Warn("user has neither password nor certs: refused", "username", logsafe.String(req.Username))
	return v.s.denyAfterDummy(ctx, req.Password, "user has neither password nor certs")
}

// checkVerified decides a live session again, without a hash: the
// credential it was accepted with must still be the stored one (cred);
// a certificate-only user's certificate is checked again.
func checkVerified(req policy.Request, r rules.User, cred policy.Credential) policy.Decision {
	if subtle.ConstantTimeCompare(req.Verified[:], cred[:]) != 1 {
		return policy.Decision{Outcome: policy.BadCredentials, Reason: "password changed since the session was accepted"}
	}
	if !r.HasPassword && r.HasCerts && !rules.CertAllowed(r.Certs, req.CertSHA256, req.CertCN, req.CertCASHA256) {
		return policy.Decision{Outcome: policy.BadCredentials, Reason: "client certificate no longer matches the user's certs"}
	}
	if !r.HasPassword && !r.HasCerts {
		return policy.Decision{Outcome: policy.BadCredentials, Reason: "user has neither password nor certs"}
	}
	return policy.Decision{Credential: cred}
}

// checkStoredPassword verifies the CONNECT's password against the user's
// stored hash; a refusal has an Outcome.
func (s *Store) checkStoredPassword(ctx context.Context, req policy.Request, stored string, known bool) (policy.Decision, error) {
	if !req.HasPassword {
		return s.denyAfterDummy(ctx, "", "no password given")
	}
	checkFormat := passwords.CheckHashFormat
	if s.schema == nil {
		checkFormat = passwords.CheckNativeFormat
	}
	if err := checkFormat(stored); err != nil {
		s.log.Warn("malformed password hash refuses the user", "username", logsafe.String(req.Username), "error", err)
		return s.denyAfterDummy(ctx, req.Password, "stored password hash cannot be read: "+err.Error())
	}
	s.dummy.Adopt(stored)
	ok, remembered, err := s.passwords.Check(ctx, stored, req.Password, known)
	if err != nil {
		return policy.Decision{}, err
	}
	if !ok {
		return policy.Decision{Outcome: policy.BadCredentials, Reason: "password does not match"}, nil
	}
	return policy.Decision{Remembered: remembered}, nil
}

// credential is the MAC a session keeps of the stored password field it
// was accepted with.
func (s *Store) credential(hasPassword bool, stored string) policy.Credential {
	mac := hmac.New(sha256.New, s.credKey[:])
	if hasPassword {
		mac.Write([]byte("password\x00"))
		mac.Write([]byte(stored))
	} else {
		mac.Write([]byte("no password\x00"))
	}
	var c policy.Credential
	mac.Sum(c[:0])
	return c
}

// denyAfterDummy answers "bad credentials" after verifying against the dummy
// hash, through the same shared verification as a real user's password, so
// that the answer costs what a wrong password costs, alone or in a crowd.
func (s *Store) denyAfterDummy(ctx context.Context, password, reason string) (policy.Decision, error) {
	if _, _, err := s.passwords.Check(ctx, s.dummy.Hash(), password, false); errors.Is(err, policy.ErrBusy) {
		return policy.Decision{}, err
	}
	return policy.Decision{Outcome: policy.BadCredentials, Reason: reason}, nil
}
