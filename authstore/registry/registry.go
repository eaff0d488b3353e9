// Package registry is the live sessions of every replica, in Redis: each
// replica publishes its own (a Publisher, from the proxy's snapshot, off
// the hot path: what changed since the last round, every few seconds) to
// the hash redisconn.Keys.SessionsKey(replica), which expires when the
// replica stops renewing it, and List reads every replica's. The admin
// API lists them, and `user show`, explain and the status page count the
// sessions a rotation's previous password still holds.
package registry

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/redisconn"
)

// Session is a live session as the registry keeps it.
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

// DefaultInterval is how often a Publisher publishes what changed; a
// replica's sessions are forgotten 3 intervals after its last round.
const DefaultInterval = 5 * time.Second

// Filter selects the sessions List returns.
type Filter struct {
	User  string // exact user name; "" every user
	Limit int    // at most this many (0: no limit)
}

// List reads the live sessions of every replica that published within
// the last ttl (3 x interval; 0: 3 x DefaultInterval), oldest first.
func List(ctx context.Context, rdb redis.UniversalClient, keys redisconn.Keys, f Filter, ttl time.Duration) ([]Session, error) {
	if ttl <= 0 {
		ttl = 3 * DefaultInterval
	}
	min := strconv.FormatInt(time.Now().Add(-ttl).UnixMilli(), 10)
	replicas, err := rdb.ZRangeByScore(ctx, keys.ReplicasKey(), &redis.ZRangeBy{Min: min, Max: "+inf"}).Result()
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
func Count(ctx context.Context, rdb redis.UniversalClient, keys redisconn.Keys, user string, ttl time.Duration) (all, oldPassword int, err error) {
	ss, err := List(ctx, rdb, keys, Filter{User: user}, ttl)
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
