package authstore

import (
	"encoding/hex"
	"errors"
	"sync"
	"testing"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/internal/storetest"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/operator"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/passwords"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// TestReDecisionNeedsNoHash (security review, findings 2 and 3): a live
// session is decided again against the credential it was accepted with,
// with no password and no hash, so that a full hash queue cannot delay a
// revocation: a deleted user, a changed password hash and a rule that can
// no longer be read all refuse at once, while every hash slot is taken.
func TestReDecisionNeedsNoHash(t *testing.T) {
	s, admin, _ := realStore(t, Options{Passwords: passwords.Options{MaxHashes: 1}})
	ctx := testenv.Context(t)
	key := "mqtt:user:alice"
	if err := s.SetUser(ctx, "alice", operator.Update{Password: ptr("pw")}); err != nil {
		t.Fatal(err)
	}
	d, err := s.Authenticate(ctx, storetest.Req("alice", "pw"))
	if err != nil || !d.Allowed() {
		t.Fatal(d, err)
	}
	live := storetest.Req("alice", "")
	live.HasPassword = false
	live.Verified = &d.Credential

	// Every hash slot taken, as by a flood of unknown users.
	if err := s.passwords.Slots().Acquire(ctx, false); err != nil {
		t.Fatal(err)
	}
	defer s.passwords.Slots().Release()
	before := s.HashCount()
	// A re-decision that needed a hash would wait for the slot held above
	// until its budget ran out, and end busy.
	decide := func(what string) (policy.Decision, error) {
		t.Helper()
		d, err := s.Authenticate(ctx, live)
		if errors.Is(err, policy.ErrBusy) {
			t.Fatalf("%s: a re-decision waited for a hash slot: %v", what, err)
		}
		return d, err
	}
	if d, err := decide("unchanged"); err != nil || !d.Allowed() {
		t.Fatalf("unchanged: %+v %v", d, err)
	}
	// The same password hashed again is a new stored hash: the session
	// was accepted with another one.
	admin.HSet(ctx, key, "password", passwords.HashPassword("pw"))
	if d, err := decide("rehashed"); err != nil || d.Outcome != policy.BadCredentials {
		t.Fatalf("password hash changed: %+v %v", d, err)
	}
	for _, bad := range [][]string{{"enabled", "no"}, {"not_after", "2020-01-01"}, {"cidrs", "nonsense"}} {
		if err := s.SetUser(ctx, "alice", operator.Update{Password: ptr("pw")}); err != nil {
			t.Fatal(err)
		}
		fields, _ := admin.HGetAll(ctx, key).Result()
		cred := s.credential(true, fields["password"])
		live.Verified = &cred
		admin.HSet(ctx, key, bad[0], bad[1])
		if d, err := decide("malformed"); !errors.Is(err, policy.ErrMalformedRule) || d.Allowed() {
			t.Fatalf("malformed %v: %+v %v; want ErrMalformedRule", bad, d, err)
		}
		admin.HDel(ctx, key, bad[0])
		if d, err := decide("mended"); err != nil || !d.Allowed() {
			t.Fatalf("after mending %v: %+v %v", bad, d, err)
		}
	}
	admin.Del(ctx, key)
	if d, err := decide("deleted"); err != nil || d.Outcome != policy.BadCredentials {
		t.Fatalf("deleted: %+v %v", d, err)
	}
	if got := s.HashCount() - before; got != 0 {
		t.Fatalf("re-decisions computed %d hashes", got)
	}
	// A certificate-only session: its certificate is checked again.
	if err := s.SetUser(ctx, "cam", operator.Update{Certs: &[]string{"sha256:" + hex.EncodeToString(storetest.FpA[:])}}); err != nil {
		t.Fatal(err)
	}
	camReq := storetest.Req("cam", "")
	camReq.HasPassword, camReq.CertSHA256 = false, storetest.FpA[:]
	d, err = s.Authenticate(ctx, camReq)
	if err != nil || !d.Allowed() {
		t.Fatal(d, err)
	}
	camReq.Verified = &d.Credential
	decide2 := func(s *Store, r policy.Request) (policy.Decision, error) { return s.Authenticate(ctx, r) }
	if d, err := decide2(s, camReq); err != nil || !d.Allowed() {
		t.Fatalf("cert-only unchanged: %+v %v", d, err)
	}
	admin.HSet(ctx, "mqtt:user:cam", "certs", "sha256:"+hex.EncodeToString(storetest.FpB[:]))
	if d, err := decide2(s, camReq); err != nil || d.Outcome != policy.BadCredentials {
		t.Fatalf("cert-only, certs changed: %+v %v", d, err)
	}
	// A password added to a certificate-only user changes its credential.
	admin.HSet(ctx, "mqtt:user:cam", "certs", "sha256:"+hex.EncodeToString(storetest.FpA[:]), "password", passwords.HashPassword("x"))
	if d, err := decide2(s, camReq); err != nil || d.Outcome != policy.BadCredentials {
		t.Fatalf("cert-only user given a password: %+v %v", d, err)
	}
}

// TestRefusalsCostAlike (finding 8): concurrent identical attempts for an
// unknown user share one verification exactly as they do for an existing
// user with a wrong password, and a certificate-only user without its
// certificate, a user with neither password nor certs and a user with a
// malformed rule and a wrong password each cost one verification and
// answer bad credentials, like an unknown user.
func TestRefusalsCostAlike(t *testing.T) {
	s, admin, _ := realStore(t, Options{})
	ctx := testenv.Context(t)
	if err := s.SetUser(ctx, "alice", operator.Update{Password: ptr("right")}); err != nil {
		t.Fatal(err)
	}
	admin.HSet(ctx, "mqtt:user:cam", "certs", "sha256:"+hex.EncodeToString(storetest.FpA[:]))
	admin.HSet(ctx, "mqtt:user:empty", "enabled", "true")
	admin.HSet(ctx, "mqtt:user:broken", "password", passwords.HashPassword("right"), "enabled", "maybe")
	for _, user := range []string{"nobody", "alice", "cam", "empty", "broken"} {
		before := s.HashCount()
		var wg sync.WaitGroup
		results := make(chan policy.Decision, 20)
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d, err := s.Authenticate(ctx, storetest.Req(user, "guess"))
				if err != nil {
					t.Error(user, err)
				}
				results <- d
			}()
		}
		wg.Wait()
		close(results)
		for d := range results {
			if d.Outcome != policy.BadCredentials {
				t.Fatalf("%s: %+v, want bad credentials", user, d)
			}
		}
		// One shared computation; a straggler that started after the
		// first finished may compute once more.
		if got := s.HashCount() - before; got < 1 || got > 2 {
			t.Errorf("%s: 20 concurrent identical attempts computed %d hashes, want 1 (shared)", user, got)
		}
	}
}
