package authstore

import (
	"errors"
	"slices"
	"testing"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/internal/storetest"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/passwords"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/rules"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// TestTopicRulesFromUserAndRoles: a decision carries the union of the
// user's publish/subscribe fields, its roles' and the default role's,
// compiled for its user name and client id; nothing granted is nothing
// allowed.
func TestTopicRulesFromUserAndRoles(t *testing.T) {
	s, admin, _ := realStore(t, Options{})
	ctx := testenv.Context(t)
	pw := passwords.HashPassword("pw")
	admin.HSet(ctx, "mqtt:user:alice", "password", pw, "publish", "devices/%u/#", "subscribe", "devices/%u/#", "roles", "fleet missing")
	admin.HSet(ctx, "mqtt:user:bob", "password", pw)
	admin.HSet(ctx, "mqtt:role:fleet", "publish", "fleet/%c/status", "subscribe", "fleet/+/cmd")
	decide := func(user string) policy.Decision {
		t.Helper()
		d, err := s.Authenticate(ctx, storetest.Req(user, "pw"))
		if err != nil || !d.Allowed() {
			t.Fatalf("%s: %+v %v", user, d, err)
		}
		return d
	}
	d := decide("alice")
	for topic, want := range map[string]string{"devices/alice/t": "user", "fleet/alice:dev-1/status": "role fleet", "devices/bob/t": "", "public/x": ""} {
		g, ok := d.Topics.CanPublish(topic)
		if ok != (want != "") || ok && g.Source != want {
			t.Errorf("alice publish %s: %+v %v, want %q", topic, g, ok, want)
		}
	}
	if _, ok := d.Topics.CanSubscribe("fleet/+/cmd"); !ok {
		t.Error("the role's subscribe rule is missing")
	}
	if !slices.Equal(d.Roles, []string{"fleet", "missing"}) {
		t.Errorf("roles %v", d.Roles)
	}
	// Deny by default: bob has no rules.
	if _, ok := decide("bob").Topics.CanPublish("anything"); ok {
		t.Error("a user with no rules may publish")
	}
	// The default role applies to everyone, at once.
	admin.HSet(ctx, "mqtt:role:default", "publish", "public/#")
	if g, ok := decide("bob").Topics.CanPublish("public/x"); !ok || g.Source != "role default" {
		t.Errorf("the default role does not apply: %+v %v", g, ok)
	}
	// A role created after the user named it applies at the next decision.
	admin.HSet(ctx, "mqtt:role:missing", "subscribe", "late/#")
	if _, ok := decide("alice").Topics.CanSubscribe("late/x"); !ok {
		t.Error("a role created later does not apply")
	}
	// A malformed pattern fails closed, like any rule that cannot be read,
	// and only once the password is verified.
	admin.HSet(ctx, "mqtt:role:fleet", "publish", "fleet/#/x")
	if _, err := s.Authenticate(ctx, storetest.Req("alice", "pw")); !errors.Is(err, policy.ErrMalformedRule) {
		t.Errorf("malformed role pattern: %v", err)
	}
	if d, err := s.Authenticate(ctx, storetest.Req("alice", "wrong")); err != nil || d.Outcome != policy.BadCredentials {
		t.Errorf("malformed role pattern, wrong password: %+v %v", d, err)
	}
}

// TestWillTopicMustBeAllowed: a will whose topic the user may not publish
// to refuses the CONNECT (0x05 / 0x87).
func TestWillTopicMustBeAllowed(t *testing.T) {
	s, admin, _ := realStore(t, Options{})
	ctx := testenv.Context(t)
	admin.HSet(ctx, "mqtt:user:w", "password", passwords.HashPassword("pw"), "publish", "devices/%u/#")
	r := storetest.Req("w", "pw")
	r.HasWill, r.WillTopic = true, "devices/w/lwt"
	if d, err := s.Authenticate(ctx, r); err != nil || !d.Allowed() {
		t.Fatalf("allowed will: %+v %v", d, err)
	}
	r.WillTopic = "devices/other/lwt"
	d, err := s.Authenticate(ctx, r)
	if err != nil || d.Outcome != policy.WillNotAllowed {
		t.Fatalf("denied will: %+v %v", d, err)
	}
}

// TestNoTopicRules: with topic rules off, the store reads the user's hash
// only, and decisions carry no topic rules, whatever the fields hold.
func TestNoTopicRules(t *testing.T) {
	s, admin, _ := realStore(t, Options{NoTopicRules: true})
	ctx := testenv.Context(t)
	admin.HSet(ctx, "mqtt:user:n", "password", passwords.HashPassword("pw"), "publish", "bad/#/pattern")
	r := storetest.Req("n", "pw")
	r.HasWill, r.WillTopic = true, "anything"
	if d, err := s.Authenticate(ctx, r); err != nil || !d.Allowed() || d.Topics != nil {
		t.Fatalf("%+v %v", d, err)
	}
}

// TestCompiledRulesKept: compiled rules are shared by the decisions they
// are the same for (the same user and rules; the same client id too when
// a rule names it) and never by others; a changed rule compiles anew.
func TestCompiledRulesKept(t *testing.T) {
	s, admin, _ := realStore(t, Options{})
	ctx := testenv.Context(t)
	pw := passwords.HashPassword("pw")
	admin.HSet(ctx, "mqtt:user:alice", "password", pw, "publish", "devices/%u/#", "roles", "fleet")
	admin.HSet(ctx, "mqtt:user:bob", "password", pw, "publish", "devices/%u/#", "roles", "fleet")
	admin.HSet(ctx, "mqtt:role:fleet", "subscribe", "fleet/#")
	decide := func(user, clientID string) *policy.TopicRules {
		t.Helper()
		r := storetest.Req(user, "pw")
		r.ClientID = clientID
		d, err := s.Authenticate(ctx, r)
		if err != nil || !d.Allowed() {
			t.Fatalf("%s/%s: %+v %v", user, clientID, d, err)
		}
		return d.Topics
	}
	a1, a2 := decide("alice", "alice:1"), decide("alice", "alice:2")
	if a1 != a2 {
		t.Error("the same user and rules, no client id in them: compiled twice")
	}
	b := decide("bob", "bob:1")
	if b == a1 {
		t.Fatal("bob got alice's compiled rules")
	}
	if _, ok := b.CanPublish("devices/alice/x"); ok {
		t.Fatal("bob may publish to alice's topics")
	}
	// A rule naming the client id: one compiled value per client id.
	admin.HSet(ctx, "mqtt:role:fleet", "subscribe", "fleet/%c/#")
	c1, c2 := decide("alice", "alice:1"), decide("alice", "alice:2")
	if c1 == c2 || c1 == a1 {
		t.Fatal("rules naming the client id shared across client ids, or a changed role served stale")
	}
	if _, ok := c2.CanSubscribe("fleet/alice:1/x"); ok {
		t.Fatal("alice:2 may subscribe to alice:1's topics")
	}
	if _, ok := c1.CanSubscribe("fleet/alice:1/x"); !ok || decide("alice", "alice:1") != c1 {
		t.Fatal("alice:1's own rules, kept")
	}
	// Parts are length-prefixed: moving text from one field to the next
	// is another key.
	k1, _ := compiledKey(userRecord{fields: map[string]string{rules.FieldPublish: "a b", rules.FieldSubscribe: "c"}}, policy.Request{Username: "u"})
	k2, _ := compiledKey(userRecord{fields: map[string]string{rules.FieldPublish: "a", rules.FieldSubscribe: "b c"}}, policy.Request{Username: "u"})
	if k1 == k2 {
		t.Fatal("two rule sets, one key")
	}
}
