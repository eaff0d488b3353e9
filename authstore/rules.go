package authstore

import (
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mqtt-authproxy/mqtt-authproxy/policy"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/logsafe"
)

// Field names of a user's hash (see README "Redis rules").
const (
	FieldPassword  = "password"
	FieldEnabled   = "enabled"
	FieldClientIDs = "clientids"
	FieldCerts     = "certs"
	FieldNotAfter  = "not_after"
	FieldCIDRs     = "cidrs"
	FieldPublish   = "publish"
	FieldSubscribe = "subscribe"
	FieldRoles     = "roles"
)

// rules is one user's hash, parsed. A nil slice means "field absent".
type rules struct {
	password    string
	hasPassword bool
	enabled     bool
	clientIDs   []string
	certs       []certRule
	hasCerts    bool
	notAfter    time.Time
	cidrs       []netip.Prefix
	hasCIDRs    bool
}

type certRule struct {
	sha256 []byte // 32 bytes, or nil for a CN rule
	cn     string
}

// parseRules reads a user's hash. Unknown fields are ignored, so that
// operators can keep notes beside the rules. Every field is read even when
// another cannot be: the error (wrapping policy.ErrMalformedRule) names each field
// that could not, and the fields that could are set.
func parseRules(h map[string]string) (rules, error) {
	r := rules{enabled: true}
	var errs []error
	if v, ok := h[FieldPassword]; ok {
		r.password, r.hasPassword = v, true
	}
	if v, ok := h[FieldEnabled]; ok {
		var err error
		if r.enabled, err = strconv.ParseBool(strings.TrimSpace(v)); err != nil {
			r.enabled = false
			errs = append(errs, fmt.Errorf("%w: %s %s is not true or false", policy.ErrMalformedRule, FieldEnabled, logsafe.String(v)))
		}
	}
	if v, ok := h[FieldClientIDs]; ok {
		r.clientIDs = strings.Fields(v)
		if r.clientIDs == nil {
			r.clientIDs = []string{} // present but empty: no client id is allowed
		}
	}
	if v, ok := h[FieldCerts]; ok {
		r.hasCerts = true
		var err error
		if r.certs, err = ParseCerts(v); err != nil {
			errs = append(errs, err)
		}
	}
	if v, ok := h[FieldNotAfter]; ok && strings.TrimSpace(v) != "" {
		var err error
		if r.notAfter, err = time.Parse(time.RFC3339, strings.TrimSpace(v)); err != nil {
			errs = append(errs, fmt.Errorf("%w: %s %s is not an RFC 3339 time", policy.ErrMalformedRule, FieldNotAfter, logsafe.String(v)))
		}
	}
	if v, ok := h[FieldCIDRs]; ok {
		r.hasCIDRs = true
		var err error
		if r.cidrs, err = ParseCIDRs(v); err != nil {
			errs = append(errs, err)
		}
	}
	return r, errors.Join(errs...)
}

// ParseCerts parses a certs field: space-separated sha256:<hex> (colons
// allowed, any case) and cn:<CommonName> entries.
func ParseCerts(v string) ([]certRule, error) {
	var out []certRule
	for _, f := range strings.Fields(v) {
		kind, val, _ := strings.Cut(f, ":")
		switch strings.ToLower(kind) {
		case "sha256":
			b, err := hex.DecodeString(strings.ReplaceAll(val, ":", ""))
			if err != nil || len(b) != 32 {
				return nil, fmt.Errorf("%w: %s entry %s: want sha256:<64 hex digits>", policy.ErrMalformedRule, FieldCerts, logsafe.String(f))
			}
			out = append(out, certRule{sha256: b})
		case "cn":
			if val == "" {
				return nil, fmt.Errorf("%w: %s entry %s: empty common name", policy.ErrMalformedRule, FieldCerts, logsafe.String(f))
			}
			out = append(out, certRule{cn: val})
		default:
			return nil, fmt.Errorf("%w: %s entry %s: want sha256:<hex> or cn:<name>", policy.ErrMalformedRule, FieldCerts, logsafe.String(f))
		}
	}
	return out, nil
}

// ParseCIDRs parses a cidrs field: space-separated prefixes; a bare address
// stands for itself.
func ParseCIDRs(v string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Fields(v) {
		p, err := netip.ParsePrefix(f)
		if err != nil {
			a, aerr := netip.ParseAddr(f)
			if aerr != nil {
				return nil, fmt.Errorf("%w: %s entry %s is not a CIDR or address", policy.ErrMalformedRule, FieldCIDRs, logsafe.String(f))
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// certMatches reports whether the presented certificate satisfies any rule.
func certMatches(rs []certRule, fingerprint []byte, cn string, present bool) bool {
	if !present {
		return false
	}
	match := 0
	for _, r := range rs {
		if r.sha256 != nil {
			match |= subtle.ConstantTimeCompare(r.sha256, fingerprint)
		} else if r.cn == cn {
			match = 1
		}
	}
	return match == 1
}

func addrAllowed(ps []netip.Prefix, a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientIDAllowed matches id against globs where * is any run of characters,
// ? is one character, and %u stands for the username, matched literally.
func clientIDAllowed(globs []string, id, username string) bool {
	for _, g := range globs {
		if globMatch(g, id, username) {
			return true
		}
	}
	return false
}

func globMatch(pattern, s, username string) bool {
	// Expand the pattern into tokens: literal runes, '*' and '?'. %u is the
	// username as literal runes, so a username with * or ? stays literal.
	type tok struct {
		r    rune
		kind byte // 'l' literal, '*', '?'
	}
	var toks []tok
	for i := 0; i < len(pattern); {
		if strings.HasPrefix(pattern[i:], "%u") {
			for _, r := range username {
				toks = append(toks, tok{r, 'l'})
			}
			i += 2
			continue
		}
		r, size := utf8.DecodeRuneInString(pattern[i:])
		switch r {
		case '*', '?':
			toks = append(toks, tok{r, byte(r)})
		default:
			toks = append(toks, tok{r, 'l'})
		}
		i += size
	}
	rs := []rune(s)
	// Iterative matcher with single-star backtracking.
	ti, si, starT, starS := 0, 0, -1, 0
	for si < len(rs) {
		switch {
		case ti < len(toks) && (toks[ti].kind == '?' || toks[ti].kind == 'l' && toks[ti].r == rs[si]):
			ti++
			si++
		case ti < len(toks) && toks[ti].kind == '*':
			starT, starS = ti, si
			ti++
		case starT >= 0:
			starS++
			ti, si = starT+1, starS
		default:
			return false
		}
	}
	for ti < len(toks) && toks[ti].kind == '*' {
		ti++
	}
	return ti == len(toks)
}

// compileTopics compiles the topic rules of a user's record for req: the
// patterns of the user's hash, of the default role and of the roles it
// names. It returns the role names a change to which must decide the
// session again (the named ones, existing or not; the default role
// concerns everyone).
//
// Compiled rules are kept, keyed by everything they are made of (the
// rules' text with their sources, the user name, and the client id when a
// pattern uses %c), so a device connecting again, or the sessions of a
// user whose rules do not name the client id, share one compiled value
// (read-only once made) instead of compiling 2 x N patterns per CONNECT.
// A changed rule is another key: nothing is ever served stale.
func (s *Store) compileTopics(rec userRecord, req policy.Request) (*policy.TopicRules, []string, error) {
	roles := roleNames(rec.fields[FieldRoles])
	key, ok := compiledKey(rec, req)
	if ok {
		if t, hit := s.compiled.Get(key); hit {
			return t, roles, nil
		}
	}
	var pub, sub []policy.Pattern
	add := func(dst []policy.Pattern, field, source string) []policy.Pattern {
		for _, f := range strings.Fields(field) {
			dst = append(dst, policy.Pattern{Filter: f, Source: source})
		}
		return dst
	}
	pub = add(pub, rec.fields[FieldPublish], "user")
	sub = add(sub, rec.fields[FieldSubscribe], "user")
	for _, r := range rec.roles {
		pub = add(pub, r.fields[FieldPublish], "role "+r.name)
		sub = add(sub, r.fields[FieldSubscribe], "role "+r.name)
	}
	t, err := policy.CompileTopics(pub, sub, req.Username, req.ClientID)
	if err != nil {
		return nil, nil, err
	}
	if ok {
		s.compiled.Add(key, t)
	}
	return t, roles, nil
}

// compiledRulesCacheSize bounds the compiled rules kept; maxCompiledKey
// the size of what one is keyed by (past it, rules are compiled each
// time).
const (
	compiledRulesCacheSize = 4096
	maxCompiledKey         = 8 << 10
)

// compiledKey is everything compiled rules depend on, each part
// length-prefixed so that no two inputs give the same key.
func compiledKey(rec userRecord, req policy.Request) (string, bool) {
	parts := []string{rec.fields[FieldPublish], rec.fields[FieldSubscribe]}
	for _, r := range rec.roles {
		parts = append(parts, r.name, r.fields[FieldPublish], r.fields[FieldSubscribe])
	}
	clientID, size := "", len(req.Username)
	for _, p := range parts {
		if strings.Contains(p, "%c") {
			clientID = "c" + req.ClientID
		}
		size += len(p) + 8
	}
	if size += len(clientID); size > maxCompiledKey {
		return "", false
	}
	b := make([]byte, 0, size+16)
	for _, p := range append([]string{req.Username, clientID}, parts...) {
		b = strconv.AppendInt(b, int64(len(p)), 10)
		b = append(b, ':')
		b = append(b, p...)
	}
	return string(b), true
}
