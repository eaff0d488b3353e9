package operator

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/internal/storetest"
)

// miniStore is an Editor over miniredis, for fast unit tests.
func miniStore(t *testing.T) (*Editor, *miniredis.Miniredis) {
	t.Helper()
	m := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { rdb.Close() })
	return New(rdb, Options{}), m
}

func ptr[T any](v T) *T { return &v }

func TestOperatorCalls(t *testing.T) {
	s, m := miniStore(t)
	ctx := context.Background()
	sub := s.rdb.Subscribe(ctx, s.keys.ChangesChannel())
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}

	na := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	err := s.SetUser(ctx, "alice", Update{Password: ptr("pw"), ClientIDs: &[]string{"a-*", "%u"},
		Certs: &[]string{storetest.FpAHex, "cn:alice"}, CIDRs: &[]string{"10.0.0.0/8"}, NotAfter: &na})
	if err != nil {
		t.Fatal(err)
	}
	if msg, err := sub.ReceiveMessage(ctx); err != nil || msg.Payload != "alice" {
		t.Fatalf("change notification: %v %v", msg, err)
	}
	u, err := s.GetUser(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if !u.HasPassword || u.HashFormat != "argon2id" || !u.Enabled || !slices.Equal(u.ClientIDs, []string{"a-*", "%u"}) ||
		len(u.Certs) != 2 || !slices.Equal(u.CIDRs, []string{"10.0.0.0/8"}) || !u.NotAfter.Equal(na) {
		t.Fatalf("GetUser = %+v", u)
	}
	if m.HGet("mqtt:user:alice", "not_after") != "2030-01-02T03:04:05Z" {
		t.Fatalf("not_after stored as %q", m.HGet("mqtt:user:alice", "not_after"))
	}

	// Clearing fields removes them.
	if err := s.SetUser(ctx, "alice", Update{ClientIDs: &[]string{}, NotAfter: &time.Time{}}); err != nil {
		t.Fatal(err)
	}
	if m.HGet("mqtt:user:alice", "clientids") != "" || m.HGet("mqtt:user:alice", "not_after") != "" {
		t.Fatal("fields not removed")
	}

	if err := s.SetEnabled(ctx, "alice", false); err != nil {
		t.Fatal(err)
	}
	if m.HGet("mqtt:user:alice", "enabled") != "false" {
		t.Fatal("not disabled")
	}
	if err := s.SetEnabled(ctx, "nobody", true); !errors.Is(err, ErrNoSuchUser) {
		t.Fatalf("enable unknown user: %v", err)
	}

	// Invalid values are refused before anything is written.
	for _, u := range []Update{{CIDRs: &[]string{"300.1.1.1"}}, {Certs: &[]string{"sha1:abc"}},
		{PasswordHash: ptr("plain")}, {Password: ptr("a"), PasswordHash: ptr("$2b$04$x")}} {
		if err := s.SetUser(ctx, "bob", u); err == nil {
			t.Errorf("SetUser(%+v) accepted", u)
		}
	}
	if m.Exists("mqtt:user:bob") {
		t.Fatal("a refused update wrote something")
	}
	if err := s.SetUser(ctx, "bad name", Update{Password: ptr("x")}); err == nil {
		t.Fatal("name with a space accepted")
	}

	for i := range 30 {
		if err := s.SetUser(ctx, "user"+string(rune('a'+i%26))+string(rune('a'+i/26)), Update{Enabled: ptr(true)}); err != nil {
			t.Fatal(err)
		}
	}
	m.Set("mqtt:other", "x")
	m.Set("mqtt:userx", "x")
	names, err := s.ListUsers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 31 || names[0] != "alice" {
		t.Fatalf("ListUsers = %v", names)
	}
	if err := s.DeleteUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteUser(ctx, "alice"); !errors.Is(err, ErrNoSuchUser) {
		t.Fatalf("second delete: %v", err)
	}
}

// A new user name with ':' is refused (it would match another user's
// default client ids, %u:*); an existing one (made before the rule, or by
// redis-cli) can still be changed, and disabled.
func TestColonRefusedInNewUserNames(t *testing.T) {
	s, m := miniStore(t)
	ctx := context.Background()
	err := s.SetUser(ctx, "site1:gw", Update{Password: ptr("pw")})
	if err == nil || !strings.Contains(err.Error(), "':' is not allowed") {
		t.Fatalf("new user with ':': %v", err)
	}
	if m.Exists("mqtt:user:site1:gw") {
		t.Fatal("written anyway")
	}
	m.HSet("mqtt:user:old:name", "password", "x")
	if err := s.SetUser(ctx, "old:name", Update{Password: ptr("pw")}); err != nil {
		t.Fatalf("existing user with ':': %v", err)
	}
	if err := s.SetEnabled(ctx, "old:name", false); err != nil {
		t.Fatalf("disable an existing user with ':': %v", err)
	}
	if m.HGet("mqtt:user:old:name", "enabled") != "false" {
		t.Fatal("not disabled")
	}
}
