package rules

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// BanKind is what a ban names.
type BanKind string

// Ban kinds.
const (
	BanIP       BanKind = "ip"       // an address or a CIDR: refused before any TLS work
	BanUser     BanKind = "user"     // a user name: refused at CONNECT, live sessions closed
	BanClientID BanKind = "clientid" // a client id: likewise
)

// BanKinds are the kinds, in the order the operator lists them.
var BanKinds = []BanKind{BanIP, BanUser, BanClientID}

// Ban is one ban. Bans of a kind are one hash (field: the value; value:
// the JSON of when, until when and why), so that a CONNECT reads its two
// bans in its one round trip, and expiry needs no sweep: an expired ban is
// ignored where it is read and removed by the operator calls.
type Ban struct {
	Kind   BanKind   `json:"kind"`
	Value  string    `json:"value"`
	At     time.Time `json:"at"`
	Until  time.Time `json:"until,omitzero"` // zero: until removed
	Reason string    `json:"reason,omitempty"`
}

// Active reports whether the ban holds at now.
func (b Ban) Active(now time.Time) bool { return b.Until.IsZero() || now.Before(b.Until) }

// ParseBan reads a ban's stored value; "" is no ban. A value that cannot
// be read still bans, until removed: a ban never fails open.
func ParseBan(kind BanKind, value, stored string) (Ban, bool) {
	if stored == "" {
		return Ban{}, false
	}
	b := Ban{Kind: kind, Value: value}
	if err := json.Unmarshal([]byte(stored), &b); err != nil {
		// Unreadable: it still bans (a ban never fails open).
		b.Reason = "unreadable ban entry"
		b.Until = time.Time{}
	}
	return b, true
}

// CheckBanValue validates a ban's value for its kind.
func CheckBanValue(k BanKind, v string) error {
	switch k {
	case BanIP:
		if _, err := ParseCIDRs(v); err != nil || strings.ContainsAny(v, " \t") || v == "" {
			return fmt.Errorf("ban ip %q: not an address or a CIDR", v)
		}
	case BanUser, BanClientID:
		if v == "" {
			return fmt.Errorf("ban %s: empty value", k)
		}
	default:
		return fmt.Errorf("ban kind %q: want ip, user or clientid", k)
	}
	return nil
}
