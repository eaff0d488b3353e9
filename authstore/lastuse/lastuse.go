// Package lastuse records when, from which address and by which client id
// each credential of a user was last used, and reads it back for `user
// show`, explain, the admin API and the status page. A credential is
// named by a fingerprint of its stored hash (Fingerprint), so that a
// rotation never confuses the old password's uses with the new one's.
//
// The records live apart from the users' hashes (redisconn.Keys.LastUseKey
// and SeenKey), so a write of a user never erases them, and they are
// written off the hot path: a Writer takes uses without blocking,
// remembers which it wrote in the last minute (a device reconnecting
// often costs no write), and sends the rest in batches, one pipeline per
// batch, like the decision log. A Redis outage drops uses (counted), never
// delays a decision.
package lastuse

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/redisconn"
)

// Fingerprint names a credential by its stored hash: the first 16 hex
// digits of the SHA-256 of the stored string. It reveals nothing of the
// password (the stored hash is salted) and changes with every rotation.
func Fingerprint(stored string) string {
	sum := sha256.Sum256([]byte(stored))
	return hex.EncodeToString(sum[:8])
}

// Use is one use of a credential: an accepted CONNECT.
type Use struct {
	User        string
	Fingerprint string // Fingerprint of the stored hash that matched
	Addr        string // the device's address
	ClientID    string
	Time        time.Time

	key uint64 // the Writer's hash of the use
}

// SeenWindow is how far back the client ids that used a credential are
// counted ("client ids seen in the last 24 h").
const SeenWindow = 24 * time.Hour

// Retention bounds how long a last use is kept after it happened, and how
// many client ids one credential's set keeps.
const (
	lastUseRetention = 90 * 24 * time.Hour
	maxSeen          = 10000
)

// Last is what is known of one credential's uses.
type Last struct {
	// Time is the last use; zero when none is recorded (within the
	// retention).
	Time     time.Time `json:"time"`
	Addr     string    `json:"address,omitempty"`
	ClientID string    `json:"client_id,omitempty"`
	// ClientIDs24h counts the client ids that used the credential in the
	// last SeenWindow.
	ClientIDs24h int64 `json:"client_ids_24h"`
}

// Used reports whether a use is recorded.
func (l Last) Used() bool { return !l.Time.IsZero() }

// Read returns what is known of the uses of a user's credentials, by
// fingerprint (those without a record are zero), in one round trip.
func Read(ctx context.Context, rdb redis.UniversalClient, keys redisconn.Keys, user string, fps []string, now time.Time) (map[string]Last, error) {
	out := make(map[string]Last, len(fps))
	if len(fps) == 0 {
		return out, nil
	}
	var last *redis.SliceCmd
	counts := make([]*redis.IntCmd, len(fps))
	min := strconv.FormatInt(now.Add(-SeenWindow).Unix(), 10)
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		last = p.HMGet(ctx, keys.LastUseKey(user), fps...)
		for i, fp := range fps {
			counts[i] = p.ZCount(ctx, keys.SeenKey(user, fp), min, "+inf")
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	vals := last.Val()
	for i, fp := range fps {
		var l Last
		if i < len(vals) {
			if s, ok := vals[i].(string); ok {
				l = parseLast(s)
			}
		}
		l.ClientIDs24h = counts[i].Val()
		out[fp] = l
	}
	return out, nil
}

// formatLast is the stored value of a use.
func formatLast(u Use) string {
	return strconv.FormatInt(u.Time.Unix(), 10) + " " + u.Addr + " " + u.ClientID
}

// parseLast reads a stored use; what does not parse is left zero.
func parseLast(s string) Last {
	parts := strings.SplitN(s, " ", 3)
	if len(parts) < 2 {
		return Last{}
	}
	sec, err := strconv.ParseInt(parts[0], 10, 64)
	if err != nil {
		return Last{}
	}
	l := Last{Time: time.Unix(sec, 0).UTC(), Addr: parts[1]}
	if len(parts) == 3 {
		l.ClientID = parts[2]
	}
	return l
}
