package redisconn

// Keys of the live sessions (authstore/sessions). The leases and the
// counts of max_sessions share the hash tag {sessions}, so that on a Redis
// Cluster they live in one slot and one script reads a user's count and
// the replicas' leases together. The lease says which replicas are alive
// for both views: the counts, and the sessions each replica publishes.

// SessionLeaseKey is the sorted set of the replicas that count sessions,
// each scored by the time (Redis's clock, unix ms) its lease ends.
func (k Keys) SessionLeaseKey() string { return k.prefix + "{sessions}:lease" }

// SessionCountKey is the hash of a user's live sessions: one field per
// replica (its lease's member), the number of the user's sessions there.
func (k Keys) SessionCountKey(username string) string {
	return k.prefix + "{sessions}:count:" + username
}

// SessionsKey is the hash of one replica's live sessions as it publishes
// them, one field per session, listed while the replica's lease holds.
// It is outside the {sessions} tag on purpose: no script reads it with
// the leases, and a Cluster spreads the replicas' hashes over its slots
// instead of piling every session on the leases' one. Its name is the
// one it had before the lease said which replicas are alive.
func (k Keys) SessionsKey(replica string) string { return k.prefix + "sessions:" + replica }
