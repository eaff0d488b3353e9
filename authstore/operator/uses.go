package operator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/lastuse"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/rules"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/sessions"
)

// Uses is what is known of the uses of a user's passwords: when, from
// where and by which client id each was last used, and, during a
// rotation's overlap, what still uses the previous one. `user show`,
// explain, the admin API and the status page all say it from here.
type Uses struct {
	// Password is the current password's last use; nil without one.
	Password *lastuse.Last `json:"password,omitempty"`
	// Old is the rotation's previous password; nil without one.
	Old *OldUses `json:"password_old,omitempty"`
}

// OldUses is what still uses a rotation's previous password.
type OldUses struct {
	lastuse.Last
	Until time.Time `json:"until"`
	// Active: the previous password is accepted now (until Until).
	Active bool `json:"active"`
	// LiveSessions counts the live sessions of every replica accepted
	// with it (from the session registry).
	LiveSessions int `json:"live_sessions"`
}

// Sentence says it the one way every front end prints it: "12 live
// sessions and 40 client ids seen in the last 24 h still use the old
// password (accepted until ...)".
func (o *OldUses) Sentence() string {
	when := "accepted until " + o.Until.UTC().Format(time.RFC3339)
	if !o.Active {
		when = "no longer accepted since " + o.Until.UTC().Format(time.RFC3339)
	}
	return fmt.Sprintf("%s and %s seen in the last 24 h still use the old password (%s)",
		plural(o.LiveSessions, "live session"), plural(int(o.ClientIDs24h), "client id"), when)
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// Uses reads what is known of the uses of the user's passwords: its
// stored hashes' fingerprints, their last uses, and the live sessions of
// every replica that hold the previous one.
func (e *Editor) Uses(ctx context.Context, name string) (Uses, error) {
	vals, err := e.rdb.HMGet(ctx, e.keys.UserKey(name), rules.FieldPassword, rules.FieldPasswordOld, rules.FieldPasswordOldUntil).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return Uses{}, err
	}
	h := map[string]string{}
	for i, f := range []string{rules.FieldPassword, rules.FieldPasswordOld, rules.FieldPasswordOldUntil} {
		if s, ok := vals[i].(string); ok {
			h[f] = s
		}
	}
	var fps []string
	if h[rules.FieldPassword] != "" {
		fps = append(fps, lastuse.Fingerprint(h[rules.FieldPassword]))
	}
	rot := rules.ParseRotation(h)
	if rot.Old != "" {
		fps = append(fps, lastuse.Fingerprint(rot.Old))
	}
	last, err := lastuse.Read(ctx, e.rdb, e.keys, name, fps, e.now())
	if err != nil {
		return Uses{}, err
	}
	var u Uses
	if h[rules.FieldPassword] != "" {
		l := last[fps[0]]
		u.Password = &l
	}
	if rot.Old == "" {
		return u, nil
	}
	u.Old = &OldUses{Last: last[lastuse.Fingerprint(rot.Old)], Until: rot.Until, Active: rot.Active(e.now())}
	_, u.Old.LiveSessions, err = sessions.Count(ctx, e.rdb, e.keys, name)
	return u, err
}

// Sessions lists the live sessions that every replica whose lease holds
// publishes (the session registry), oldest first.
func (e *Editor) Sessions(ctx context.Context, f sessions.Filter) ([]sessions.Session, error) {
	return sessions.List(ctx, e.rdb, e.keys, f)
}
