package sessions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/redisconn"
)

// Session is a live session as the list keeps it.
type Session struct {
	Replica  string    `json:"replica"`
	Username string    `json:"username"`
	ClientID string    `json:"client_id"`
	Remote   string    `json:"remote"`
	Since    time.Time `json:"since"`
	Protocol int       `json:"protocol"`
	TLS      string    `json:"tls"`
	Resumed  bool      `json:"resumed"`
	// Credential is the kind of credential the session was accepted with
	// ("password", "certificate", "token"...; "" when unknown).
	Credential string `json:"credential,omitempty"`
	// OldPassword: accepted with a rotation's previous password.
	OldPassword bool `json:"old_password,omitempty"`
}

// field is the session's field in its replica's hash: user, client id and
// remote address (one TCP connection) apart by NUL bytes, so that a user's
// sessions are found with HSCAN MATCH "<user>\x00*".
func (s Session) field() string { return s.Username + "\x00" + s.ClientID + "\x00" + s.Remote }

// Filter selects the sessions List returns.
type Filter struct {
	User  string // exact user name; "" every user
	Limit int    // at most this many (0: no limit)
}

// leasedScript: KEYS leases. The members whose lease holds by Redis's
// clock, as the counting scripts judge them (an end at now still holds).
var leasedScript = redis.NewScript(now + `
return redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')
`)

// liveReplicas are the replicas whose lease holds, by Redis's clock,
// each once (a replica claiming a new lease briefly holds two), sorted:
// a member is "<replica>#<epoch>", and a replica id may hold '#'.
func liveReplicas(ctx context.Context, rdb redis.UniversalClient, keys redisconn.Keys) ([]string, error) {
	members, err := leasedScript.Run(ctx, rdb, []string{keys.SessionLeaseKey()}).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("sessions: %w", err)
	}
	out := make([]string, 0, len(members))
	for _, m := range members {
		if i := strings.LastIndexByte(m, '#'); i > 0 {
			out = append(out, m[:i])
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// List reads the published sessions of every replica whose lease holds
// (the replicas max_sessions counts), oldest first. A replica that
// counts but does not publish (SESSION_REGISTRY=off) has none listed.
func List(ctx context.Context, rdb redis.UniversalClient, keys redisconn.Keys, f Filter) ([]Session, error) {
	replicas, err := liveReplicas(ctx, rdb, keys)
	if err != nil {
		return nil, err
	}
	var out []Session
	for _, r := range replicas {
		ss, err := replicaSessions(ctx, rdb, keys.SessionsKey(r), f.User)
		if err != nil {
			return nil, err
		}
		for _, s := range ss {
			s.Replica = r
			out = append(out, s)
		}
	}
	slices.SortStableFunc(out, func(a, b Session) int { return a.Since.Compare(b.Since) })
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[len(out)-f.Limit:]
	}
	return out, nil
}

// replicaSessions reads one replica's sessions (a user's, when user is
// set) with HSCAN.
func replicaSessions(ctx context.Context, rdb redis.UniversalClient, key, user string) ([]Session, error) {
	match := "*"
	if user != "" {
		match = redisconn.EscapeGlob(user) + "\x00*"
	}
	var out []Session
	it := rdb.HScan(ctx, key, 0, match, 1000).Iterator()
	for i := 0; it.Next(ctx); i++ {
		if i%2 == 0 {
			continue // the field; its value follows
		}
		var s Session
		if json.Unmarshal([]byte(it.Val()), &s) == nil && (user == "" || s.Username == user) {
			out = append(out, s)
		}
	}
	if err := it.Err(); err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	return out, nil
}

// Count is how many live sessions of user List finds, and how many of
// them hold a rotation's previous password.
func Count(ctx context.Context, rdb redis.UniversalClient, keys redisconn.Keys, user string) (all, oldPassword int, err error) {
	ss, err := List(ctx, rdb, keys, Filter{User: user})
	for _, s := range ss {
		all++
		if s.OldPassword {
			oldPassword++
		}
	}
	return all, oldPassword, err
}

// validReplica reports whether a replica id can name a key.
func validReplica(id string) bool { return id != "" && !strings.ContainsAny(id, "\x00\n") }
