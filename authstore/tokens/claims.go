package tokens

import (
	"fmt"
	"strings"
	"unicode"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// Bounds of the claims read as rules.
const (
	maxClaimEntries = 256  // entries of one rules claim
	maxEntryBytes   = 1024 // bytes of one entry, and of the user name
	maxRoles        = 32   // as a user hash's roles field
)

// Claims read as a user's rules (users: token), in the syntax of the
// user hash's fields of the same names.
const (
	ClaimPublish   = "publish"
	ClaimSubscribe = "subscribe"
	ClaimClientIDs = "clientids"
	ClaimRoles     = "roles"
)

// usernameOf is the username claim's value: a non-empty string of at most
// maxEntryBytes without white space or control characters; newUser: a
// user that needs no hash (users: token), whose name must not hold ':'
// either (it separates a user name from a client id's suffix in the
// default client ids %u:*, as in a new user hash's name).
func usernameOf(c jwt.MapClaims, claim string, newUser bool) (string, error) {
	v, ok := c[claim]
	if !ok {
		return "", refuse(CauseClaims, "the username claim %q is missing", claim)
	}
	s, isString := v.(string)
	if !isString || s == "" {
		return "", refuse(CauseClaims, "the username claim %q is not a non-empty string", claim)
	}
	if err := checkEntry(s); err != nil {
		return "", refuse(CauseClaims, "the username claim %q %v", claim, err)
	}
	if newUser && strings.Contains(s, ":") {
		return "", refuse(CauseClaims, "the username claim %q holds ':', which a user name without a hash may not (it separates a user name from a client id suffix, %%u:*)", claim)
	}
	return s, nil
}

// checkEntry refuses what one entry of a rules claim, or a user name,
// must not hold.
func checkEntry(s string) error {
	if len(s) > maxEntryBytes {
		return fmt.Errorf("is longer than %d bytes", maxEntryBytes)
	}
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r == unicode.ReplacementChar {
			return fmt.Errorf("holds white space, a control character or invalid UTF-8")
		}
	}
	return nil
}

// rulesOf reads the rules claims of a token whose issuer's users come
// from it: each an array of strings (absent: the field is absent), every
// entry checked as the hash's field would be (topic patterns, role
// names). A claim of another shape refuses the token: an entry never
// becomes two rules, nor a rule the syntax does not allow.
func rulesOf(c jwt.MapClaims) (*policy.TokenRules, error) {
	r := &policy.TokenRules{}
	for _, f := range []struct {
		claim string
		dst   *[]string
		check func(string) error
	}{
		{ClaimPublish, &r.Publish, policy.CheckPattern},
		{ClaimSubscribe, &r.Subscribe, policy.CheckPattern},
		{ClaimClientIDs, &r.ClientIDs, nil},
		{ClaimRoles, &r.Roles, nil},
	} {
		v, ok := c[f.claim]
		if !ok {
			continue
		}
		list, err := stringsOf(v, f.claim, f.check)
		if err != nil {
			return nil, err
		}
		*f.dst = list
	}
	if len(r.Roles) > maxRoles {
		return nil, refuse(CauseClaims, "claim roles: %d roles, at most %d", len(r.Roles), maxRoles)
	}
	return r, nil
}

// stringsOf reads one rules claim: an array of checked strings.
func stringsOf(v any, claim string, check func(string) error) ([]string, error) {
	arr, ok := v.([]any)
	if !ok {
		return nil, refuse(CauseClaims, "claim %s is not an array of strings", claim)
	}
	if len(arr) > maxClaimEntries {
		return nil, refuse(CauseClaims, "claim %s: %d entries, at most %d", claim, len(arr), maxClaimEntries)
	}
	out := make([]string, 0, len(arr))
	for i, e := range arr {
		s, ok := e.(string)
		if !ok || s == "" {
			return nil, refuse(CauseClaims, "claim %s entry %d is not a non-empty string", claim, i+1)
		}
		if err := checkEntry(s); err != nil {
			return nil, refuse(CauseClaims, "claim %s entry %d %v", claim, i+1, err)
		}
		if check != nil {
			if err := check(s); err != nil {
				return nil, refuse(CauseClaims, "claim %s entry %d: %v", claim, i+1, err)
			}
		}
		out = append(out, s)
	}
	return out, nil
}
