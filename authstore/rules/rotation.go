package rules

import (
	"fmt"
	"strings"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/logsafe"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// Fields of a rotation's overlap (`user rotate`): the previous password's
// stored hash and the RFC 3339 time until which it is still accepted.
const (
	FieldPasswordOld      = "password_old"
	FieldPasswordOldUntil = "password_old_until"
)

// Rotation is the previous password of a user kept through a rotation's
// overlap. It only ever grants (a second password, for a while), so a
// field that cannot be read takes nothing away from the user: the old
// password is then simply not accepted, and Err says why (user show and
// explain report it).
type Rotation struct {
	Old   string    // the previous password's stored hash; "" none
	Until time.Time // accepted before this time
	Err   error     // why the fields present cannot be used; nil when they can (or are absent)
}

// Active reports whether the old password is accepted at now.
func (r Rotation) Active(now time.Time) bool {
	return r.Old != "" && r.Err == nil && now.Before(r.Until)
}

// ParseRotation reads the rotation fields of a user's hash.
func ParseRotation(h map[string]string) Rotation {
	old, hasOld := h[FieldPasswordOld]
	until, hasUntil := h[FieldPasswordOldUntil]
	if !hasOld && !hasUntil {
		return Rotation{}
	}
	r := Rotation{Old: old}
	switch {
	case !hasOld || old == "":
		r.Err = fmt.Errorf("%w: %s without %s", policy.ErrMalformedRule, FieldPasswordOldUntil, FieldPasswordOld)
	case !hasUntil:
		r.Err = fmt.Errorf("%w: %s without %s: the old password is not accepted", policy.ErrMalformedRule, FieldPasswordOld, FieldPasswordOldUntil)
	default:
		t, err := time.Parse(time.RFC3339, strings.TrimSpace(until))
		if err != nil {
			r.Err = fmt.Errorf("%w: %s %s is not an RFC 3339 time: the old password is not accepted", policy.ErrMalformedRule, FieldPasswordOldUntil, logsafe.String(until))
		}
		r.Until = t
	}
	return r
}
