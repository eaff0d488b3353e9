package rules

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// Fields of a user's or a role's hash that say where its sessions go (see
// docs/brokers.md): the user's own value wins, else the first of its roles
// that sets it, in the roles field's order, else the default role's.
const (
	// FieldBackend names the broker pool (BACKEND_POOLS) the sessions go
	// to; absent: the default pool (BACKEND_ADDR).
	FieldBackend = "backend"
	// FieldMountpoint is the prefix of every topic of the sessions on the
	// broker's side, ending in '/', %u standing for the user name.
	FieldMountpoint = "mountpoint"
)

// DefaultPool is the name of the pool of BACKEND_ADDR: a backend field
// naming it is the same as none.
const DefaultPool = "default"

// MaxMountpoint is the longest mountpoint, in bytes (once %u is filled).
const MaxMountpoint = 1024

// CheckPoolName checks a backend field's value: one name of letters,
// digits, '-', '_' and '.', at most 64 bytes. Whether a pool of that name
// exists is the proxy's configuration's business (BACKEND_POOLS).
func CheckPoolName(v string) error {
	if v == "" || len(v) > 64 || strings.ContainsFunc(v, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
	}) {
		return fmt.Errorf("%w: backend %q: a pool name is 1 to 64 letters, digits, '-', '_' or '.'", policy.ErrMalformedRule, v)
	}
	return nil
}

// CheckMountpoint checks a mountpoint field's value as written (%u
// unfilled): see checkMountpoint; %u is the only placeholder.
func CheckMountpoint(v string) error {
	rest := v
	for {
		i := strings.IndexByte(rest, '%')
		if i < 0 {
			break
		}
		if !strings.HasPrefix(rest[i:], "%u") {
			return fmt.Errorf("%w: mountpoint %q: %%u is the only placeholder ('%%' alone is not allowed)", policy.ErrMalformedRule, v)
		}
		rest = rest[i+2:]
	}
	return checkMountpoint(strings.ReplaceAll(v, "%u", "u"), v)
}

// checkMountpoint: not empty, ending in '/', UTF-8 without wildcards or
// NUL, not starting with '$' (the broker's own topics), at most
// MaxMountpoint bytes. v is the value as written, for the message.
func checkMountpoint(mp, v string) error {
	bad := ""
	switch {
	case mp == "":
		bad = "is empty"
	case !strings.HasSuffix(mp, "/"):
		bad = "does not end in '/'"
	case strings.ContainsAny(mp, "+#"):
		bad = "holds a wildcard (+ or #)"
	case strings.ContainsRune(mp, 0) || !utf8.ValidString(mp):
		bad = "is not UTF-8 without NUL"
	case strings.HasPrefix(mp, "$"):
		bad = "starts with '$' (the broker's own topics)"
	case len(mp) > MaxMountpoint:
		bad = fmt.Sprintf("is longer than %d bytes", MaxMountpoint)
	default:
		return nil
	}
	return fmt.Errorf("%w: mountpoint %q %s", policy.ErrMalformedRule, v, bad)
}

// ExpandMountpoint fills %u of a mountpoint field (already checked) with
// username. ok is false when the name would reach outside the user's
// place: a name holding '/', '+' or '#', or one that makes the mountpoint
// start with '$' or grow past MaxMountpoint.
func ExpandMountpoint(v, username string) (mp string, ok bool) {
	if !strings.Contains(v, "%u") {
		return v, true
	}
	if username == "" || strings.ContainsAny(username, "/+#") {
		return "", false
	}
	mp = strings.ReplaceAll(v, "%u", username)
	if checkMountpoint(mp, v) != nil {
		return "", false
	}
	return mp, true
}
