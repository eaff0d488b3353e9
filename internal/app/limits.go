package app

// The status page's view of the limits (docs/limits.md): what the proxy
// counted. The limits themselves are user and role fields, read by the
// store; max_sessions' counter is started with the proxy (proxy.go).

// LimitCounts are the proxy's limit counts since it started: the time
// devices were held back by a rate, and what each limit refused.
func (s statusSource) LimitCounts() (float64, map[string]float64) {
	st := s.dev.p.Stats()
	refusals := make(map[string]float64, len(st.LimitRefusals))
	for name, n := range st.LimitRefusals {
		refusals[name] = float64(n)
	}
	return st.Throttled.Seconds(), refusals
}
