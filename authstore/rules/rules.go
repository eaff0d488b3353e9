// Package rules reads the native layout of a user's rules in Redis (see
// docs/redis-rules.md): the fields of a user's and a role's hash, parsed
// and checked, how a certificate, an address and a client id are matched
// against them, and the bans. The decision (authstore) and the operator
// calls (authstore/operator) read and check the same values through it.
package rules

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/logsafe"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// Field names of a user's hash (see docs/redis-rules.md).
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
	// FieldJWTKeys holds a JWKS whose keys the device signs its own
	// tokens with (see docs/credentials.md, Tokens).
	FieldJWTKeys = "jwt_keys"
)

// User is one user's hash, parsed. A nil slice means "field absent".
type User struct {
	Password    string
	HasPassword bool
	Enabled     bool
	ClientIDs   []string
	Certs       []Cert
	HasCerts    bool
	NotAfter    time.Time
	CIDRs       []netip.Prefix
	HasCIDRs    bool
	// Rotation is the previous password kept through a rotation's overlap
	// (password_old, password_old_until; see rotation.go).
	Rotation Rotation
	// JWTKeys is the jwt_keys field (a JWKS), "" when absent.
	JWTKeys string
}

// Cert is one entry of a certs field: a certificate's SHA-256, a common
// name, or the SHA-256 of the CA certificate that must have signed it.
type Cert struct {
	SHA256 []byte // 32 bytes, or nil for a CN rule
	CN     string
	// CA, for a ca:sha256:<hex> entry, is the issuing CA certificate's
	// SHA-256 (SHA256 and CN are then empty).
	CA []byte
}

// Parse reads a user's hash. Unknown fields are ignored, so that
// operators can keep notes beside the rules. Every field is read even when
// another cannot be: the error (wrapping policy.ErrMalformedRule) names each field
// that could not, and the fields that could are set.
func Parse(h map[string]string) (User, error) {
	r := User{Enabled: true}
	var errs []error
	if v, ok := h[FieldPassword]; ok {
		r.Password, r.HasPassword = v, true
	}
	if v, ok := h[FieldEnabled]; ok {
		var err error
		if r.Enabled, err = strconv.ParseBool(strings.TrimSpace(v)); err != nil {
			r.Enabled = false
			errs = append(errs, fmt.Errorf("%w: %s %s is not true or false", policy.ErrMalformedRule, FieldEnabled, logsafe.String(v)))
		}
	}
	if v, ok := h[FieldClientIDs]; ok {
		r.ClientIDs = strings.Fields(v)
		if r.ClientIDs == nil {
			r.ClientIDs = []string{} // present but empty: no client id is allowed
		}
	}
	if v, ok := h[FieldCerts]; ok {
		r.HasCerts = true
		var err error
		if r.Certs, err = ParseCerts(v); err != nil {
			errs = append(errs, err)
		}
	}
	if v, ok := h[FieldNotAfter]; ok && strings.TrimSpace(v) != "" {
		var err error
		if r.NotAfter, err = time.Parse(time.RFC3339, strings.TrimSpace(v)); err != nil {
			errs = append(errs, fmt.Errorf("%w: %s %s is not an RFC 3339 time", policy.ErrMalformedRule, FieldNotAfter, logsafe.String(v)))
		}
	}
	if v, ok := h[FieldCIDRs]; ok {
		r.HasCIDRs = true
		var err error
		if r.CIDRs, err = ParseCIDRs(v); err != nil {
			errs = append(errs, err)
		}
	}
	r.Rotation = ParseRotation(h)
	r.JWTKeys = h[FieldJWTKeys]
	return r, errors.Join(errs...)
}

// ParseCerts parses a certs field: space-separated sha256:<hex> (colons
// allowed, any case), cn:<CommonName> and ca:sha256:<hex> entries.
func ParseCerts(v string) ([]Cert, error) {
	var out []Cert
	for _, f := range strings.Fields(v) {
		kind, val, _ := strings.Cut(f, ":")
		switch strings.ToLower(kind) {
		case "sha256":
			b, err := hex.DecodeString(strings.ReplaceAll(val, ":", ""))
			if err != nil || len(b) != 32 {
				return nil, fmt.Errorf("%w: %s entry %s: want sha256:<64 hex digits>", policy.ErrMalformedRule, FieldCerts, logsafe.String(f))
			}
			out = append(out, Cert{SHA256: b})
		case "ca":
			h, ok := strings.CutPrefix(strings.ToLower(val), "sha256:")
			b, err := hex.DecodeString(strings.ReplaceAll(h, ":", ""))
			if !ok || err != nil || len(b) != 32 {
				return nil, fmt.Errorf("%w: %s entry %s: want ca:sha256:<64 hex digits>", policy.ErrMalformedRule, FieldCerts, logsafe.String(f))
			}
			out = append(out, Cert{CA: b})
		case "cn":
			if val == "" {
				return nil, fmt.Errorf("%w: %s entry %s: empty common name", policy.ErrMalformedRule, FieldCerts, logsafe.String(f))
			}
			out = append(out, Cert{CN: val})
		default:
			return nil, fmt.Errorf("%w: %s entry %s: want sha256:<hex>, cn:<name> or ca:sha256:<hex>", policy.ErrMalformedRule, FieldCerts, logsafe.String(f))
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
