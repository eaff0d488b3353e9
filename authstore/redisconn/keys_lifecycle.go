package redisconn

// Keys of the credential lifecycle: when and from where each credential
// was last used, and the live sessions of every replica. They are kept
// apart from the users' hashes, so that a write of a user never erases
// them.

// LastUseKey is the hash of a user's credentials' last uses: one field
// per credential (its fingerprint), "<unix seconds> <address> <client id>".
func (k Keys) LastUseKey(username string) string { return k.prefix + "lastuse:" + username }

// SeenKey is the sorted set of the client ids that used one credential of
// a user (fingerprint fp), scored by the unix time of their last use.
func (k Keys) SeenKey(username, fp string) string { return k.prefix + "seen:" + fp + ":" + username }

// SessionsKey is the hash of one replica's live sessions.
func (k Keys) SessionsKey(replica string) string { return k.prefix + "sessions:" + replica }

// ReplicasKey is the sorted set of the replicas that publish their live
// sessions, scored by the unix time of their last heartbeat.
func (k Keys) ReplicasKey() string { return k.prefix + "replicas" }
