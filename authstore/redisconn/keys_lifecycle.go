package redisconn

// Keys of the credential lifecycle: when and from where each credential
// was last used. They are kept apart from the users' hashes, so that a
// write of a user never erases them. (The live sessions of every replica
// are in keys_sessions.go.)

// LastUseKey is the hash of a user's credentials' last uses: one field
// per credential (its fingerprint), "<unix seconds> <address> <client id>".
func (k Keys) LastUseKey(username string) string { return k.prefix + "lastuse:" + username }

// SeenKey is the sorted set of the client ids that used one credential of
// a user (fingerprint fp), scored by the unix time of their last use.
func (k Keys) SeenKey(username, fp string) string { return k.prefix + "seen:" + fp + ":" + username }
