package policy

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Limits: how much a session may do, beside where (topic rules). Each
// limit is a field of a user's or a role's hash, named as Limit.String
// says; the user's own value wins, else the first of its roles that sets
// it (in the order of its roles field), else the default role, else there
// is none. Everything here is pure: fields in, limits out.

// Limit names one limit.
type Limit uint8

// The limits (see docs/limits.md).
const (
	// PubRate: PUBLISH packets a second from the device, burst as many.
	PubRate Limit = iota
	// PubBytes: PUBLISH payload bytes a second from the device, burst as
	// many.
	PubBytes
	// MaxPayload: payload bytes of one PUBLISH.
	MaxPayload
	// MaxQoS: the highest QoS (0, 1 or 2).
	MaxQoS
	// Retain: retained PUBLISHes allowed (1) or not (0); absent: allowed.
	Retain
	// MaxSubs: topic filters one connection holds subscribed.
	MaxSubs
	// MaxSessions: live sessions of the user across every replica.
	MaxSessions
	// MaxKeepAlive: the keep alive, in seconds, a device may ask for (its
	// 0, no keep alive, counts as infinite).
	MaxKeepAlive
	// NumLimits is the number of limits.
	NumLimits
)

// limitSpecs describe each limit: its field name, the range of its value
// and, for an error, what it counts.
var limitSpecs = [NumLimits]struct {
	name     string
	min, max int64
	unit     string
}{
	PubRate:      {"pub_rate", 1, 1_000_000, "PUBLISH packets a second"},
	PubBytes:     {"pub_bytes", 1, 1 << 40, "payload bytes a second"},
	MaxPayload:   {"max_payload", 0, 268_435_455, "payload bytes"},
	MaxQoS:       {"max_qos", 0, 2, "a QoS"},
	Retain:       {"retain", 0, 1, ""},
	MaxSubs:      {"max_subs", 0, 1_000_000, "topic filters"},
	MaxSessions:  {"max_sessions", 0, 1_000_000, "sessions"},
	MaxKeepAlive: {"max_keepalive", 1, 65535, "seconds"},
}

// String is the limit's field name ("pub_rate").
func (l Limit) String() string {
	if l < NumLimits {
		return limitSpecs[l].name
	}
	return "limit(" + strconv.Itoa(int(l)) + ")"
}

// LimitNamed returns the limit whose field name is name.
func LimitNamed(name string) (Limit, bool) {
	for l := range NumLimits {
		if limitSpecs[l].name == name {
			return l, true
		}
	}
	return 0, false
}

// ParseLimit reads the value of limit l as a hash field holds it: a whole
// number in the limit's range, or for Retain true or false. An error
// wraps ErrMalformedRule and names the field.
func ParseLimit(l Limit, v string) (int64, error) {
	spec := limitSpecs[l]
	v = strings.TrimSpace(v)
	if l == Retain {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return 0, fmt.Errorf("%w: %s %q is not true or false", ErrMalformedRule, spec.name, v)
		}
		if b {
			return 1, nil
		}
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < spec.min || n > spec.max {
		return 0, fmt.Errorf("%w: %s %q is not a whole number of %s from %d to %d", ErrMalformedRule, spec.name, truncate(v), spec.unit, spec.min, spec.max)
	}
	return n, nil
}

// truncate keeps an error about a value short.
func truncate(v string) string {
	if len(v) > 40 {
		return v[:40] + "..."
	}
	return v
}

// Limits are the limits that apply to a session, each with where it came
// from. A nil *Limits has none.
type Limits struct {
	set    uint16 // bit l: limit l is set
	values [NumLimits]int64
	from   [NumLimits]string // "user", "role <name>", "role default"
}

// Get returns limit l's value and whether it is set.
func (ls *Limits) Get(l Limit) (int64, bool) {
	if ls == nil || ls.set&(1<<l) == 0 {
		return 0, false
	}
	return ls.values[l], true
}

// Source says where limit l came from ("user", "role ops", "role
// default"); "" when it is not set.
func (ls *Limits) Source(l Limit) string {
	if ls == nil {
		return ""
	}
	return ls.from[l]
}

// Set sets limit l to v, from source. It is meant for building limits
// (tests, other schemas); MergeLimits reads them from hash fields.
func (ls *Limits) Set(l Limit, v int64, source string) {
	ls.set |= 1 << l
	ls.values[l], ls.from[l] = v, source
}

// Empty reports whether no limit is set.
func (ls *Limits) Empty() bool { return ls == nil || ls.set == 0 }

// RetainAllowed reports whether retained PUBLISHes are allowed: unless
// retain is set to false.
func (ls *Limits) RetainAllowed() bool {
	v, ok := ls.Get(Retain)
	return !ok || v != 0
}

// Equal reports whether ls and o set the same values (sources aside).
func (ls *Limits) Equal(o *Limits) bool {
	if ls.Empty() || o.Empty() {
		return ls.Empty() == o.Empty()
	}
	return ls.set == o.set && ls.values == o.values
}

// String lists the limits set, "pub_rate=20 (user), max_qos=1 (role
// ops)", or "none".
func (ls *Limits) String() string {
	if ls.Empty() {
		return "none"
	}
	var parts []string
	for l := range NumLimits {
		if v, ok := ls.Get(l); ok {
			parts = append(parts, fmt.Sprintf("%s=%s (%s)", l, FormatLimit(l, v), ls.from[l]))
		}
	}
	return strings.Join(parts, ", ")
}

// FormatLimit writes a limit's value as its field holds it.
func FormatLimit(l Limit, v int64) string {
	if l == Retain {
		return strconv.FormatBool(v != 0)
	}
	return strconv.FormatInt(v, 10)
}

// LimitLayer is one hash a session's limits may come from: the user's,
// a role's, the default role's, with its source name.
type LimitLayer struct {
	Source string
	Fields map[string]string
}

// MergeLimits reads the limits of layers, the user's first, then its
// roles in the order of its roles field, then the default role: the first
// layer that sets a limit gives it. It returns nil when none sets any. A
// field that is present but empty sets nothing. A field that does not
// parse, in any layer, is an error wrapping ErrMalformedRule that names
// it (the user is refused, as for any malformed rule), with every such
// field named.
func MergeLimits(layers ...LimitLayer) (*Limits, error) {
	var ls Limits
	var errs []error
	for _, layer := range layers {
		for l := range NumLimits {
			v, ok := layer.Fields[limitSpecs[l].name]
			if !ok || strings.TrimSpace(v) == "" {
				continue
			}
			n, err := ParseLimit(l, v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", layer.Source, err))
				continue
			}
			if ls.set&(1<<l) == 0 {
				ls.Set(l, n, layer.Source)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if ls.set == 0 {
		return nil, nil
	}
	return &ls, nil
}

// TooManySessions is the outcome of a CONNECT refused because its user
// has max_sessions live sessions already (v5 0x97, 3.1.1 0x05).
const TooManySessions Outcome = "too_many_sessions"
