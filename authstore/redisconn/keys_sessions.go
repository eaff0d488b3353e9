package redisconn

// Keys of max_sessions' counts (authstore/sessions). They share the hash
// tag {sessions}, so that on a Redis Cluster they live in one slot and
// one script reads a user's count and the replicas' leases together.

// SessionLeaseKey is the sorted set of the replicas that count sessions,
// each scored by the time (Redis's clock, unix ms) its lease ends.
func (k Keys) SessionLeaseKey() string { return k.prefix + "{sessions}:lease" }

// SessionCountKey is the hash of a user's live sessions: one field per
// replica (its lease's member), the number of the user's sessions there.
func (k Keys) SessionCountKey(username string) string {
	return k.prefix + "{sessions}:count:" + username
}
