package authstore

import (
	"testing"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/rules"
)

// TestVerifierFor: the credential seam chooses one kind per CONNECT from
// what the user's rules hold.
func TestVerifierFor(t *testing.T) {
	s := &Store{}
	for _, c := range []struct {
		r    rules.User
		kind string
	}{
		{rules.User{HasPassword: true, HasCerts: true}, "password"},
		{rules.User{HasPassword: true}, "password"},
		{rules.User{HasCerts: true}, "certificate"},
		{rules.User{}, "none"},
	} {
		if got := s.verifierFor(c.r).Kind(); got != c.kind {
			t.Errorf("%+v: %s, want %s", c.r, got, c.kind)
		}
	}
}
