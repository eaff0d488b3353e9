package authstore

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// miniStore is a Store over miniredis, for fast unit tests of the operator side.
func miniStore(t *testing.T) (*Store, *miniredis.Miniredis) {
	t.Helper()
	m := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { rdb.Close() })
	return New(rdb, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}), m
}

func TestOperatorCalls(t *testing.T) {
	s, m := miniStore(t)
	ctx := context.Background()
	sub := s.rdb.Subscribe(ctx, s.ChangesChannel())
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}

	na := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	err := s.SetUser(ctx, "alice", Update{Password: ptr("pw"), ClientIDs: &[]string{"a-*", "%u"},
		Certs: &[]string{fpAHex, "cn:alice"}, CIDRs: &[]string{"10.0.0.0/8"}, NotAfter: &na})
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

func TestGlob(t *testing.T) {
	cases := []struct {
		pattern, s, user string
		want             bool
	}{
		{"*", "", "u", true},
		{"*", "anything", "u", true},
		{"dev-?", "dev-1", "u", true},
		{"dev-?", "dev-12", "u", false},
		{"dev-*-x", "dev-a-b-x", "u", true},
		{"dev-*-x", "dev-a-b-y", "u", false},
		{"%u", "alice", "alice", true},
		{"%u-*", "alice-1", "alice", true},
		{"%u:*", "alice:1", "alice", true},
		{"%u:*", "alice-bob", "alice", false},
		{"%u", "a*", "a*", true},
		{"%u", "abc", "a*", false},
		{"é?", "éü", "u", true},
		{"*%u*", "xxbobxx", "bob", true},
		{"", "", "u", true},
		{"", "x", "u", false},
	}
	for _, c := range cases {
		if got := globMatch(c.pattern, c.s, c.user); got != c.want {
			t.Errorf("globMatch(%q, %q, %q) = %v", c.pattern, c.s, c.user, got)
		}
	}
}

func TestNewClientURLs(t *testing.T) {
	for _, u := range []string{"redis://127.0.0.1:6379/0", "rediss://h:6380/1", "redis://h:1?cluster=false",
		"redis://h:1?cluster=true&addr=h:2", "redis://h:1?master_name=m&addr=h:2"} {
		c, err := NewClient(u)
		if err != nil {
			t.Errorf("%s: %v", u, err)
			continue
		}
		c.Close()
	}
	for _, u := range []string{"http://h", "redis://h:1?cluster=maybe", "redis://h:1?bogus=1"} {
		if c, err := NewClient(u); err == nil {
			c.Close()
			t.Errorf("%s accepted", u)
		}
	}
}
