package authstore

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"testing"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/rules"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// TestVerifierFor: the credential seam chooses one kind per CONNECT from
// what it presents and what the user's rules hold.
func TestVerifierFor(t *testing.T) {
	s := &Store{certUsername: CertUsernameCN}
	jws := "eyJhbGciOiJFUzI1NiJ9.eyJhdWQiOiJ4In0.c2ln"
	cert := &x509.Certificate{Subject: pkix.Name{CommonName: "dev1"}}
	for _, c := range []struct {
		req  policy.Request
		r    rules.User
		kind string
	}{
		{policy.Request{}, rules.User{HasPassword: true, HasCerts: true}, "password"},
		{policy.Request{}, rules.User{HasPassword: true}, "password"},
		{policy.Request{}, rules.User{HasCerts: true}, "certificate"},
		{policy.Request{}, rules.User{}, "none"},
		{policy.Request{Token: &policy.Token{}}, rules.User{HasPassword: true}, policy.CredentialToken},
		{policy.Request{HasPassword: true, Password: jws}, rules.User{HasPassword: true, JWTKeys: "{}"}, policy.CredentialDeviceToken},
		{policy.Request{HasPassword: true, Password: "not-a-jws"}, rules.User{HasPassword: true, JWTKeys: "{}"}, "password"},
		{policy.Request{HasPassword: true, Password: jws}, rules.User{HasPassword: true}, "password"},
		{policy.Request{Username: "dev1", Cert: cert}, rules.User{HasPassword: true}, policy.CredentialCertIdentity},
		{policy.Request{Username: "dev1", Cert: cert, HasPassword: true}, rules.User{HasPassword: true}, "password"},
		{policy.Request{Username: "dev2", Cert: cert}, rules.User{HasPassword: true}, "password"},
	} {
		if got := s.verifierFor(c.req, c.r).Kind(); got != c.kind {
			t.Errorf("%+v %+v: %s, want %s", c.req, c.r, got, c.kind)
		}
	}
}
