package operator

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/passwords"
)

// DefaultOverlap is how long a rotated user's previous password keeps
// working when no overlap is given.
const DefaultOverlap = 24 * time.Hour

// MaxOverlap bounds a rotation's overlap.
const MaxOverlap = 366 * 24 * time.Hour

// ErrNoPassword is a rotation of a user that has no password (a
// certificate-only user): there is nothing to rotate.
var ErrNoPassword = errors.New("the user has no password to rotate")

// rotateScript moves a user's password to password_old, valid until
// ARGV[2] (empty: no overlap, the previous password goes), stores the new
// one, and publishes the name, in one step.
//
//	KEYS[1] the user's hash
//	ARGV[1] the new password's stored hash, ARGV[2] password_old_until or "",
//	ARGV[3] the changes channel, ARGV[4] the name
var rotateScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], 'password')
if not cur or cur == '' then
  if redis.call('EXISTS', KEYS[1]) == 0 then
    return redis.error_reply('AUTHPROXY_NO_USER')
  end
  return redis.error_reply('AUTHPROXY_NO_PASSWORD')
end
redis.call('HSET', KEYS[1], 'password', ARGV[1])
if ARGV[2] == '' then
  redis.call('HDEL', KEYS[1], 'password_old', 'password_old_until')
else
  redis.call('HSET', KEYS[1], 'password_old', cur, 'password_old_until', ARGV[2])
end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
`)

// Rotated is what a rotation did.
type Rotated struct {
	User string `json:"user"`
	// Password is the new generated secret (130 random bits), shown once:
	// only its salted SHA-256 is stored (passwords.HashGenerated).
	Password string `json:"password"`
	// OldUntil is when the previous password stops working; zero when
	// the rotation had no overlap.
	OldUntil time.Time `json:"password_old_until,omitzero"`
}

// Rotate gives the user a new generated password, and keeps the current
// one working for overlap (0: it stops at once; at most MaxOverlap). A
// rotation during another's overlap ends that overlap: only the password
// it replaces is kept. Live sessions accepted with the previous password
// stay until the overlap ends, and are then closed.
func (e *Editor) Rotate(ctx context.Context, name string, overlap time.Duration) (Rotated, error) {
	if overlap < 0 || overlap > MaxOverlap {
		return Rotated{}, invalidf("overlap %v: want 0 to %v", overlap, MaxOverlap)
	}
	secret := rand.Text() // 26 base32 characters, 130 bits
	until := ""
	r := Rotated{User: name, Password: secret}
	if overlap > 0 {
		r.OldUntil = e.now().Add(overlap).UTC().Truncate(time.Second)
		until = r.OldUntil.Format(time.RFC3339)
	}
	err := rotateScript.Run(ctx, e.rdb, []string{e.keys.UserKey(name)},
		passwords.HashGenerated(secret), until, e.keys.ChangesChannel(), name).Err()
	switch {
	case err == nil:
		return r, nil
	case strings.Contains(err.Error(), "AUTHPROXY_NO_USER"):
		return Rotated{}, fmt.Errorf("%w: %q", ErrNoSuchUser, name)
	case strings.Contains(err.Error(), "AUTHPROXY_NO_PASSWORD"):
		return Rotated{}, fmt.Errorf("user %q: %w (it authenticates by certificate: give it a password with user set --generate)", name, ErrNoPassword)
	}
	return Rotated{}, err
}
