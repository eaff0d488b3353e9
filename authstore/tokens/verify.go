package tokens

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// Bounds of a token.
const (
	// MaxTokenBytes bounds a token: a longer password is not read as one
	// (identity providers' tokens are a few KiB at most).
	MaxTokenBytes = 16 << 10
	// MaxDeviceLifetime bounds a device-signed token's exp - iat.
	MaxDeviceLifetime = 24 * time.Hour
	// DefaultLeeway is how far nbf, iat and exp may be off.
	DefaultLeeway = 30 * time.Second
)

// Causes of a refused token, the label of its metric.
const (
	CauseMalformed   = "malformed"     // not a JWS, base64 or JSON garbage, too large
	CauseHeader      = "header"        // jku, x5u, jwk, x5c, crit: never followed
	CauseAlgorithm   = "algorithm"     // none, an unknown alg, HS256 without a secret, a key of another type
	CauseUnknownKey  = "unknown_key"   // no key of the issuer (or the device) has that kid or fits
	CauseNoKeys      = "no_keys"       // the issuer's keys never loaded; the user's jwt_keys unreadable
	CauseSignature   = "signature"     // the signature does not verify
	CauseExpired     = "expired"       // exp (plus the leeway) passed
	CauseNotYetValid = "not_yet_valid" // nbf or iat in the future (past the leeway)
	CauseAudience    = "audience"      // aud does not hold the audience
	CauseClaims      = "claims"        // a required claim missing or of the wrong shape
	CauseUsername    = "username"      // the CONNECT's user name is not the token's
	CauseRevoked     = "revoked"       // jti or sub revoked (mqtt:revoked)
	CauseDisabled    = "device_tokens_off"
)

// Causes lists every cause, for the metric.
var Causes = []string{CauseMalformed, CauseHeader, CauseAlgorithm, CauseUnknownKey, CauseNoKeys, CauseSignature,
	CauseExpired, CauseNotYetValid, CauseAudience, CauseClaims, CauseUsername, CauseRevoked, CauseDisabled}

// Refusal is why a token is refused: a cause (the metric's label) and a
// line a person reads (the issuer, the key, the claim; never the token).
type Refusal struct {
	Cause  string
	Detail string
}

func (r *Refusal) Error() string { return "token refused (" + r.Cause + "): " + r.Detail }

func refuse(cause, format string, args ...any) *Refusal {
	return &Refusal{Cause: cause, Detail: fmt.Sprintf(format, args...)}
}

// Verified is a verified token: what it said, whose it is, and where its
// user's rules come from.
type Verified struct {
	Token    *policy.Token
	Username string // the username claim (issuer tokens); "" for a device token
	Users    string // UsersRedis or UsersToken (issuer tokens)
}

// LooksLikeJWS reports whether s has the shape of a JWS compact
// serialization: three base64url segments, the first a JSON object, within
// MaxTokenBytes. It reads nothing; a password that looks like one and is
// not is still checked as a password.
func LooksLikeJWS(s string) bool {
	if len(s) > MaxTokenBytes || !strings.HasPrefix(s, "eyJ") || strings.Count(s, ".") != 2 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// peekIssuer is the iss claim of a token's payload, unverified ("" when
// there is none, or the payload cannot be read): what chooses the issuer
// whose keys verify it.
func peekIssuer(token string) string {
	first := strings.IndexByte(token, '.')
	last := strings.LastIndexByte(token, '.')
	if first < 0 || last <= first {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(token[first+1 : last])
	if err != nil {
		return ""
	}
	var c struct {
		Iss any `json:"iss"`
	}
	if json.Unmarshal(payload, &c) != nil {
		return ""
	}
	s, _ := c.Iss.(string)
	return s
}

// checkHeader refuses the header parameters that name keys or
// certificates elsewhere (never followed: the issuer's own keys verify)
// and critical extensions (none is understood).
func checkHeader(h map[string]any) error {
	for _, name := range []string{"jku", "x5u", "jwk", "x5c", "crit", "b64"} {
		if _, ok := h[name]; ok {
			return refuse(CauseHeader, "header %q refused: a token is verified with its issuer's own keys, never with keys or certificates it names", name)
		}
	}
	return nil
}

// kidOf is the token's kid: hasKID false when it names none.
func kidOf(t *jwt.Token) (kid string, hasKID bool, err error) {
	v, ok := t.Header["kid"]
	if !ok {
		return "", false, nil
	}
	s, isString := v.(string)
	if !isString || len(s) > 256 {
		return "", false, refuse(CauseMalformed, "kid is not a string of at most 256 bytes")
	}
	return s, true, nil
}

// verificationKeys turns chosen keys into what jwt.Keyfunc returns.
func verificationKeys(ks []*key) any {
	if len(ks) == 1 {
		return ks[0].pub
	}
	set := jwt.VerificationKeySet{}
	for _, k := range ks {
		set.Keys = append(set.Keys, k.pub)
	}
	return set
}

// refusalOf maps an error of the parser to a Refusal.
func refusalOf(err error, who string) *Refusal {
	var r *Refusal
	switch {
	case errors.As(err, &r):
		return r
	case errors.Is(err, jwt.ErrTokenExpired):
		return refuse(CauseExpired, "%s: exp has passed (leeway included)", who)
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return refuse(CauseNotYetValid, "%s: nbf or iat is in the future (leeway included)", who)
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return refuse(CauseAudience, "%s: aud does not hold the audience", who)
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return refuse(CauseClaims, "%s: a required claim (exp) is missing", who)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid) && strings.Contains(err.Error(), "signing method"):
		return refuse(CauseAlgorithm, "%s: the token's alg is not one accepted", who)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return refuse(CauseSignature, "%s: the signature does not verify", who)
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return refuse(CauseClaims, "%s: iss is not the issuer's", who)
	case errors.Is(err, jwt.ErrInvalidType):
		return refuse(CauseClaims, "%s: a registered claim (exp, nbf, iat, aud, iss) has the wrong type", who)
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return refuse(CauseAlgorithm, "%s: no usable alg", who)
	}
	return refuse(CauseMalformed, "%s: not a well-formed JWS with JSON header and claims", who)
}

// tokenOf is the policy.Token of verified claims.
func tokenOf(kind string, c jwt.MapClaims, kid string, leeway time.Duration) *policy.Token {
	t := &policy.Token{Kind: kind, KeyID: kid, Leeway: leeway}
	t.Issuer, _ = c["iss"].(string)
	t.Subject, _ = c["sub"].(string)
	t.JTI, _ = c["jti"].(string)
	if exp, err := c.GetExpirationTime(); err == nil && exp != nil {
		t.Expiry = exp.Time
	}
	return t
}
