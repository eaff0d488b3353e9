package admin

import (
	"strings"
	"testing"
)

// limitSource is a StatusSource that reports what its limits did.
type limitSource struct {
	*fakeSource
	throttled float64
	refusals  map[string]float64
}

func (l limitSource) LimitCounts() (float64, map[string]float64) { return l.throttled, l.refusals }

// TestStatusLimits: a source that reports its limits gets the page's
// Limits section: the slowed sessions (of the user filtered by), the time
// held back, the refusals largest first; a source that does not, none.
func TestStatusLimits(t *testing.T) {
	src := sampleSource()
	src.sessions[0].Slowed, src.sessions[0].Limits = true, "pub_rate=20 (user)"
	h := New(Options{Status: &StatusOptions{Source: limitSource{fakeSource: src, throttled: 12.5,
		refusals: map[string]float64{"max_qos": 2, "max_sessions": 7}}, Replica: "r1"}})
	st, m := statusJSON(t, h, "/status.json")
	l := st.Limits
	if l == nil || m["limits"] == nil {
		t.Fatal("no limits section")
	}
	if len(l.Slowed) != 1 || l.Slowed[0].Username != "alice" || l.Slowed[0].Limits != "pub_rate=20 (user)" || l.ThrottledSeconds != 12.5 {
		t.Errorf("limits %+v", l)
	}
	if len(l.Refusals) != 2 || l.Refusals[0].Outcome != "max_sessions" || l.Refusals[0].Count != 7 {
		t.Errorf("refusals %+v, want max_sessions 7 first", l.Refusals)
	}
	if st, _ := statusJSON(t, h, "/status.json?user=bob"); len(st.Limits.Slowed) != 0 {
		t.Errorf("bob's page lists alice's slowed session: %+v", st.Limits.Slowed)
	}
	plain := New(Options{Status: &StatusOptions{Source: sampleSource(), Replica: "r1"}})
	if st, m := statusJSON(t, plain, "/status.json"); st.Limits != nil || m["limits"] != nil {
		t.Error("a limits section from a source that reports none")
	}
	if !strings.Contains(string(statusPage), `id="limits-card"`) {
		t.Error("the page has no Limits card")
	}
}
