package rules

import (
	"crypto/subtle"
	"net/netip"
	"strings"
	"unicode/utf8"
)

// CertMatches reports whether the presented certificate satisfies any rule
// (its issuing CA unknown: see CertAllowed).
func CertMatches(rs []Cert, fingerprint []byte, cn string, present bool) bool {
	if !present {
		return false
	}
	return CertAllowed(rs, fingerprint, cn, nil)
}

// CertAllowed reports whether a presented certificate (fingerprint, cn, and
// ca, its issuing CA certificate's SHA-256, nil when unknown) satisfies the
// certs rules: one of the sha256 and cn entries, when there are some, and
// one of the ca entries, when there are some (a CA pins who issued a name,
// for fleets with several CAs issuing the same names). No entry at all
// allows nothing.
func CertAllowed(rs []Cert, fingerprint []byte, cn string, ca []byte) bool {
	if fingerprint == nil || len(rs) == 0 {
		return false
	}
	id, ids, byCA, cas := 0, 0, 0, 0
	for _, r := range rs {
		switch {
		case r.CA != nil:
			cas++
			if ca != nil {
				byCA |= subtle.ConstantTimeCompare(r.CA, ca)
			}
		case r.SHA256 != nil:
			ids++
			id |= subtle.ConstantTimeCompare(r.SHA256, fingerprint)
		default:
			ids++
			if r.CN == cn {
				id = 1
			}
		}
	}
	return (ids == 0 || id == 1) && (cas == 0 || byCA == 1)
}

// AddrAllowed reports whether a (an IPv4-mapped address as IPv4) is in
// any of ps.
func AddrAllowed(ps []netip.Prefix, a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ClientIDAllowed matches id against globs where * is any run of characters,
// ? is one character, and %u stands for the username, matched literally.
func ClientIDAllowed(globs []string, id, username string) bool {
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
