package tokens

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/MicahParks/jwkset"
)

// Bounds of a JWKS.
const (
	// MaxJWKSBytes bounds a JWKS, fetched or read, and a user's jwt_keys.
	MaxJWKSBytes = 1 << 20
	// MaxKeys bounds the keys of one JWKS that are kept.
	MaxKeys = 64
	// minRSABits is the smallest RSA modulus accepted.
	minRSABits = 2048
)

// key is one public key of a JWKS, as a token's alg and kid choose it.
type key struct {
	kid string
	alg string // the JWK's alg; "" when it names none
	pub any    // *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
}

// keySet is the usable public keys of one JWKS. Read-only once made.
type keySet struct {
	byKID map[string]*key
	all   []*key
}

// jwks is a JWKS as JSON: only its keys, each kept raw until read.
type jwks struct {
	Keys []json.RawMessage `json:"keys"`
}

// parseJWKS reads a JWKS (RFC 7517): the signing keys it can use (RSA of
// 2048 bits or more, EC P-256 and P-384, Ed25519), at most MaxKeys. A key
// that cannot be used (another type, use "enc", too short, a symmetric
// "oct" key: secrets never come from a JWKS) is left out, and said so in
// skipped; a set without a usable key, or that does not parse, is an
// error. A private key's private part is never read.
func parseJWKS(raw []byte) (set *keySet, skipped []string, err error) {
	if len(raw) > MaxJWKSBytes {
		return nil, nil, fmt.Errorf("JWKS of %d bytes, at most %d", len(raw), MaxJWKSBytes)
	}
	var j jwks
	if err := json.Unmarshal(raw, &j); err != nil {
		return nil, nil, fmt.Errorf("JWKS is not JSON with a keys array: %w", err)
	}
	set = &keySet{byKID: map[string]*key{}}
	for i, r := range j.Keys {
		if len(set.all) == MaxKeys {
			skipped = append(skipped, fmt.Sprintf("keys past the first %d", MaxKeys))
			break
		}
		k, err := parseKey(r)
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("key %d: %v", i+1, err))
			continue
		}
		if _, dup := set.byKID[k.kid]; dup && k.kid != "" {
			skipped = append(skipped, fmt.Sprintf("key %d: kid %q is already taken by an earlier key", i+1, k.kid))
			continue
		}
		if k.kid != "" {
			set.byKID[k.kid] = k
		}
		set.all = append(set.all, k)
	}
	if len(set.all) == 0 {
		return nil, skipped, errors.New("JWKS holds no usable signing key")
	}
	return set, skipped, nil
}

// parseKey reads one JWK's public key.
func parseKey(raw json.RawMessage) (*key, error) {
	var m jwkset.JWKMarshal
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("not a JWK: %w", err)
	}
	if m.USE != "" && m.USE != jwkset.UseSig {
		return nil, fmt.Errorf("use %q is not sig", m.USE)
	}
	switch m.KTY {
	case jwkset.KtyRSA, jwkset.KtyEC, jwkset.KtyOKP:
	default:
		return nil, fmt.Errorf("key type %q is not RSA, EC or OKP", m.KTY)
	}
	// Only the public key is read: no private part, no certificate chain,
	// and no URL is ever followed.
	m.D, m.P, m.Q, m.DP, m.DQ, m.QI, m.OTH = "", "", "", "", "", "", nil
	m.X5C, m.X5U, m.X5T, m.X5TS256 = nil, "", "", ""
	m.KEYOPS = nil
	j, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{SkipMetadata: true, SkipKeyOps: true})
	if err != nil {
		return nil, err
	}
	k := &key{kid: m.KID, alg: string(m.ALG), pub: j.Key()}
	if err := usable(k.pub); err != nil {
		return nil, err
	}
	if k.alg != "" && !isAlg(k.alg) {
		return nil, fmt.Errorf("alg %q is not one the proxy accepts", k.alg)
	}
	if k.alg != "" && !fits(k.alg, k.pub) {
		return nil, fmt.Errorf("alg %q does not fit a key of type %s", k.alg, m.KTY)
	}
	return k, nil
}

// usable refuses public keys the proxy does not verify with.
func usable(pub any) error {
	switch p := pub.(type) {
	case *rsa.PublicKey:
		if p.N.BitLen() < minRSABits {
			return fmt.Errorf("RSA key of %d bits, at least %d", p.N.BitLen(), minRSABits)
		}
		if p.E < 3 || p.E%2 == 0 {
			return fmt.Errorf("RSA exponent %d", p.E)
		}
	case *ecdsa.PublicKey:
		if p.Curve != elliptic.P256() && p.Curve != elliptic.P384() {
			return fmt.Errorf("EC curve %s: P-256 and P-384 are accepted", p.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	default:
		return fmt.Errorf("a %T key is not used to verify", pub)
	}
	return nil
}

// Algorithms: the asymmetric ones every issuer and device may sign with,
// and HS256, only for an issuer with an hmac_secret_file.
var asymmetricAlgs = []string{"RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"}

const algHS256 = "HS256"

func isAlg(alg string) bool {
	for _, a := range asymmetricAlgs {
		if a == alg {
			return true
		}
	}
	return false
}

// fits reports whether a key of pub's type (and curve) verifies alg.
func fits(alg string, pub any) bool {
	switch p := pub.(type) {
	case *rsa.PublicKey:
		return alg == "RS256" || alg == "RS384" || alg == "RS512" || alg == "PS256"
	case *ecdsa.PublicKey:
		return alg == "ES256" && p.Curve == elliptic.P256() || alg == "ES384" && p.Curve == elliptic.P384()
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

// choose returns the keys of the set that may verify a token with alg and
// kid (hasKID: the token names a kid): the key of that kid, when it fits;
// without a kid, every key that fits. nil: none.
func (s *keySet) choose(alg, kid string, hasKID bool) []*key {
	if s == nil {
		return nil
	}
	ok := func(k *key) bool { return (k.alg == "" || k.alg == alg) && fits(alg, k.pub) }
	if hasKID {
		if k := s.byKID[kid]; k != nil && ok(k) {
			return []*key{k}
		}
		return nil
	}
	var out []*key
	for _, k := range s.all {
		if ok(k) {
			out = append(out, k)
		}
	}
	return out
}

// has reports whether the set holds a key of that kid, of any type.
func (s *keySet) has(kid string) bool {
	if s == nil {
		return false
	}
	_, ok := s.byKID[kid]
	return ok
}
