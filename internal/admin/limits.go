package admin

// Limits are what this replica's limits did, as the status page shows
// them: the sessions a rate holds back now, the time devices were held
// back, and what each quota refused.
type Limits struct {
	// Slowed are the live sessions a rate (pub_rate, pub_bytes) holds
	// back now (or did within the last second), of the user filtered by.
	Slowed []Session `json:"slowed"`
	// ThrottledSeconds is the time devices were held back since the start
	// (authproxy_throttled_seconds_total, every limit).
	ThrottledSeconds float64 `json:"throttled_seconds"`
	// Refusals count what each limit refused since the start, largest
	// first (authproxy_limit_refusals_total by limit: max_payload,
	// max_qos, retain, max_subs, max_sessions).
	Refusals []OutcomeCount `json:"refusals"`
}

// LimitSource is a StatusSource that also reports what its limits did
// (the page shows a Limits section when its source is one). Slowed
// sessions come from Sessions (Session.Slowed).
type LimitSource interface {
	LimitCounts() (throttledSeconds float64, refusals map[string]float64)
}

// limits fills the page's Limits section from src, when it is a
// LimitSource.
func (st *Status) limits(src StatusSource) {
	ls, ok := src.(LimitSource)
	if !ok {
		return
	}
	l := &Limits{Slowed: []Session{}, Refusals: []OutcomeCount{}}
	for _, s := range st.Sessions {
		if s.Slowed {
			l.Slowed = append(l.Slowed, s)
		}
	}
	var refusals map[string]float64
	l.ThrottledSeconds, refusals = ls.LimitCounts()
	for name, n := range refusals {
		l.Refusals = append(l.Refusals, OutcomeCount{Outcome: name, Count: n})
	}
	sortCounts(l.Refusals)
	st.Limits = l
}
