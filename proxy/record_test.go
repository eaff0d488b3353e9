package proxy

import (
	"crypto/tls"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/operator"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/mqtttest"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// records is a Recorder that keeps what it is given.
type records struct {
	mu  sync.Mutex
	all []policy.Record
}

func (r *records) Record(x policy.Record) {
	r.mu.Lock()
	r.all = append(r.all, x)
	r.mu.Unlock()
}

func (r *records) find(f func(policy.Record) bool) (policy.Record, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, x := range r.all {
		if f(x) {
			return x, true
		}
	}
	return policy.Record{}, false
}

// TestDecisionRecords: every CONNECT, a revocation, a kick and a session's
// topic denials reach the decision log's recorder, with the replica id,
// the outcome and a reason a person reads; never a password.
func TestDecisionRecords(t *testing.T) {
	h := newHarness(t, harnessOptions{strictTopics: true})
	rec := &records{}
	addr := h.proxyWith(func(c *Config) { c.Recorder, c.ReplicaID = rec, "replica-a" })
	h.setUser("dl", operator.Update{Password: ptr("secret-pw"), Publish: &[]string{"devices/%u/#"}})
	cfg := h.clientTLS(tls.VersionTLS12)
	if _, ack, _ := h.connectRawTo(addr, cfg, mqtttest.Creds(packets.V311, "dl", "dl", "wrong")); ack.Code != 0x04 {
		t.Fatalf("wrong password: 0x%02X", ack.Code)
	}
	c, ack, resumed := h.connectRawTo(addr, cfg, mqtttest.Creds(packets.V5, "dl:1", "dl", "secret-pw"))
	if ack.Code != 0 || !resumed {
		t.Fatalf("right password: 0x%02X resumed %v", ack.Code, resumed)
	}
	for range 3 {
		publishAck(t, c, 7, "devices/other/x", 1, nil)
	}
	testenv.WaitFor(t, 5*time.Second, "the connect records", func() bool {
		_, ok := rec.find(func(r policy.Record) bool { return r.Outcome == "accepted" })
		return ok
	})
	refused, _ := rec.find(func(r policy.Record) bool { return r.Outcome == "bad_credentials" })
	if refused.Replica != "replica-a" || refused.Username != "dl" || refused.Reason != "password does not match" || refused.Kind != "connect" {
		t.Fatalf("refusal record %+v", refused)
	}
	accepted, _ := rec.find(func(r policy.Record) bool { return r.Outcome == "accepted" })
	if !accepted.Resumed || !strings.Contains(accepted.Reason, "resumed TLS session, decided afresh") || accepted.TLS != "TLS 1.2" || accepted.ClientID != "dl:1" {
		t.Fatalf("accepted record %+v", accepted)
	}
	// The topic denials of a session are summarised once, at its end.
	if err := h.store.SetEnabled(t.Context(), "dl", false); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, c, revocationBound)
	testenv.WaitFor(t, 5*time.Second, "the revocation and denial records", func() bool {
		_, r1 := rec.find(func(r policy.Record) bool { return r.Kind == "revalidate" && r.Outcome == "disabled" })
		_, r2 := rec.find(func(r policy.Record) bool { return r.Kind == "acl" })
		return r1 && r2
	})
	acl, _ := rec.find(func(r policy.Record) bool { return r.Kind == "acl" })
	if !strings.HasPrefix(acl.Reason, `3 PUBLISH and 0 SUBSCRIBE filters refused by the topic rules ("devices/other/x"`) {
		t.Fatalf("denial summary %+v", acl)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, r := range rec.all {
		if strings.Contains(r.Reason+r.Username+r.ClientID, "secret-pw") {
			t.Fatalf("a password in the decision log: %+v", r)
		}
	}
}
