package proxy

import "github.com/mqtt-authproxy/mqtt-authproxy/policy"

// benchLimits are every limit but max_sessions, none of which a
// benchmark's PUBLISH reaches: the buckets are taken but never empty, the
// quotas checked, and max_keepalive 30 under the device's 60 s: its
// watch is fed.
func benchLimits() *policy.Limits {
	var ls policy.Limits
	for l, v := range map[policy.Limit]int64{policy.PubRate: 1000000, policy.PubBytes: 1 << 40, policy.MaxPayload: 1 << 20,
		policy.MaxQoS: 2, policy.Retain: 1, policy.MaxSubs: 100, policy.MaxKeepAlive: 30} {
		ls.Set(l, v, "user")
	}
	return &ls
}
