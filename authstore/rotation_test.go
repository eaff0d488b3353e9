package authstore

import (
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/internal/storetest"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/lastuse"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/operator"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/sessions"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// TestRotationOverlap: after a rotation either password is accepted
// until password_old_until (the old one marked OldPassword, its session
// decided again at the overlap's end), and only the new one after; a
// live session accepted with the old password survives a re-decision
// during the overlap and is refused after it; each accepted CONNECT's use
// is recorded per password (apart from the user's hash: a write of the
// user keeps it), and Uses says what still uses the old one.
func TestRotationOverlap(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	s, admin, _ := realStore(t, Options{Now: clock})
	ctx := testenv.Context(t)
	w := s.LastUse(lastuse.Options{Linger: time.Millisecond})
	t.Cleanup(w.Close)
	if err := s.SetUser(ctx, "dev", operator.Update{Password: ptr("old-secret")}); err != nil {
		t.Fatal(err)
	}
	rot, err := s.Rotate(ctx, "dev", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	req := func(pw, client, addr string) policy.Request {
		r := storetest.Req("dev", pw)
		r.ClientID, r.RemoteAddr = client, netip.MustParseAddr(addr)
		return r
	}
	oldD, err := s.Authenticate(ctx, req("old-secret", "dev:a", "10.0.0.1"))
	if err != nil || !oldD.Allowed() || !oldD.OldPassword || !oldD.NotAfter.Equal(rot.OldUntil) {
		t.Fatalf("old password during the overlap: %+v %v", oldD, err)
	}
	newD, err := s.Authenticate(ctx, req(rot.Password, "dev:b", "10.0.0.2"))
	if err != nil || !newD.Allowed() || newD.OldPassword || !newD.NotAfter.IsZero() {
		t.Fatalf("new password: %+v %v", newD, err)
	}
	if d, _ := s.Authenticate(ctx, req("wrong", "dev:c", "10.0.0.3")); d.Outcome != policy.BadCredentials {
		t.Fatalf("wrong password during the overlap: %+v", d)
	}
	live := policy.Request{Username: "dev", ClientID: "dev:a", Verified: &oldD.Credential}
	if d, err := s.Authenticate(ctx, live); err != nil || !d.Allowed() || !d.OldPassword {
		t.Fatalf("the old password's live session decided again during the overlap: %+v %v", d, err)
	}
	x := &policy.Explanation{}
	r := req("old-secret", "dev:a", "10.0.0.1")
	r.Explain = x
	if d, _ := s.Authenticate(ctx, r); !d.Allowed() || !strings.Contains(stepDetail(x, "password"), "previous password matches") {
		t.Fatalf("explain of the old password: %+v", x.Steps)
	}

	testenv.WaitFor(t, 5*time.Second, "both uses recorded", func() bool { return w.Stored() >= 2 })
	if err := s.SetUser(ctx, "dev", operator.Update{Publish: &[]string{"x/#"}}); err != nil { // a write of the user keeps the uses
		t.Fatal(err)
	}
	if err := admin.HSet(ctx, "mqtt:sessions:r1", "dev\x00dev:a\x00x", `{"username":"dev","client_id":"dev:a","old_password":true}`).Err(); err != nil {
		t.Fatal(err)
	}
	startCounter(t, s, "r1") // r1 is alive: its published sessions are listed
	u, err := s.Uses(ctx, "dev")
	if err != nil || u.Password == nil || u.Password.Addr != "10.0.0.2" || u.Password.ClientID != "dev:b" || u.Old == nil ||
		u.Old.Addr != "10.0.0.1" || u.Old.ClientIDs24h != 1 || u.Old.LiveSessions != 1 || !u.Old.Active {
		t.Fatalf("Uses: %+v %+v %v", u.Password, u.Old, err)
	}
	if got := u.Old.Sentence(); !strings.HasPrefix(got, "1 live session and 1 client id seen in the last 24 h still use the old password (accepted until ") {
		t.Fatalf("sentence: %q", got)
	}

	now = rot.OldUntil.Add(time.Second)
	if d, _ := s.Authenticate(ctx, req("old-secret", "dev:a", "10.0.0.1")); d.Outcome != policy.BadCredentials {
		t.Fatalf("old password after the overlap: %+v", d)
	}
	if d, _ := s.Authenticate(ctx, live); d.Outcome != policy.BadCredentials {
		t.Fatalf("the old password's live session after the overlap: %+v", d)
	}
	if d, _ := s.Authenticate(ctx, req(rot.Password, "dev:b", "10.0.0.2")); !d.Allowed() {
		t.Fatalf("new password after the overlap: %+v", d)
	}
	if u, _ := s.Uses(ctx, "dev"); u.Old == nil || u.Old.Active || !strings.Contains(u.Old.Sentence(), "no longer accepted since") {
		t.Fatalf("Uses after the overlap: %+v", u.Old)
	}
}

func stepDetail(x *policy.Explanation, check string) string {
	for _, s := range x.Steps {
		if s.Check == check {
			return s.Detail
		}
	}
	return ""
}

// TestRegistryPublishes: a replica's sessions reach the registry within a
// round while its lease holds, ended ones leave it, and a closed
// publisher's are gone.
func TestRegistryPublishes(t *testing.T) {
	s, _, _ := realStore(t, Options{})
	ctx := testenv.Context(t)
	var live atomicSessions
	live.set([]sessions.Session{{Username: "a", ClientID: "a", Remote: "1.1.1.1:1", Since: time.Now()}, {Username: "b", ClientID: "b:1", Remote: "1.1.1.1:2", Since: time.Now(), OldPassword: true}})
	startCounter(t, s, "r-1")
	p, err := s.PublishSessions(sessions.PublisherOptions{Replica: "r-1", Interval: 50 * time.Millisecond, Snapshot: live.get})
	if err != nil {
		t.Fatal(err)
	}
	list := func(user string) []sessions.Session {
		ss, err := s.Sessions(ctx, sessions.Filter{User: user})
		if err != nil {
			t.Fatal(err)
		}
		return ss
	}
	testenv.WaitFor(t, 5*time.Second, "both sessions listed", func() bool { return len(list("")) == 2 })
	if ss := list("b"); len(ss) != 1 || ss[0].Replica != "r-1" || !ss[0].OldPassword || ss[0].ClientID != "b:1" {
		t.Fatalf("b's sessions: %+v", ss)
	}
	live.set(live.get()[:1])
	testenv.WaitFor(t, 5*time.Second, "b's session gone", func() bool { return len(list("b")) == 0 && len(list("a")) == 1 })
	p.Close()
	if ss := list(""); len(ss) != 0 {
		t.Fatalf("after Close: %+v", ss)
	}
}

// atomicSessions is a snapshot the test changes under a publisher.
type atomicSessions struct {
	mu sync.Mutex
	ss []sessions.Session
}

func (a *atomicSessions) set(ss []sessions.Session) {
	a.mu.Lock()
	a.ss = ss
	a.mu.Unlock()
}

func (a *atomicSessions) get() []sessions.Session {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]sessions.Session(nil), a.ss...)
}

// startCounter starts the max_sessions counter of replica, whose lease
// says the replica is alive, as the App always does.
func startCounter(t *testing.T, s *Store, replica string) {
	t.Helper()
	c, err := s.SessionCounter(replica)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
}
