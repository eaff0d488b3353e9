package tokens

import (
	"context"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// IssuerOf is the listed issuer whose token password is, "" when it is
// not one: a JWS (LooksLikeJWS) whose unverified iss names a listed
// issuer. It verifies nothing.
func (v *Verifier) IssuerOf(password string) string {
	if !LooksLikeJWS(password) {
		return ""
	}
	if iss := peekIssuer(password); iss != "" && v.Listed(iss) {
		return iss
	}
	return ""
}

// VerifyIssued verifies a token of a listed issuer (IssuerOf named it):
// the signature with the issuer's keys only (a kid the keys do not hold
// makes them be read again, at most every 30 s, waited for up to 0.5 s),
// exp (required), nbf and iat with the leeway, aud, iss; then the
// username claim and, for an issuer whose users come from the token, the
// rules claims. A refusal is a *Refusal, counted under its cause.
func (v *Verifier) VerifyIssued(ctx context.Context, token string) (Verified, error) {
	vf, err := v.verifyIssued(ctx, token)
	if err != nil {
		r := refusalOf(err, "token")
		v.count(r.Cause)
		return Verified{}, r
	}
	return vf, nil
}

func (v *Verifier) verifyIssued(ctx context.Context, token string) (Verified, error) {
	iss := v.IssuerOf(token)
	is := v.set.Load().byIss[iss]
	if is == nil {
		return Verified{}, refuse(CauseMalformed, "not a token of a listed issuer")
	}
	who := "issuer " + iss
	claims := jwt.MapClaims{}
	var kid string
	if _, err := is.parser.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		k, id, err := v.issuerKey(ctx, is, t)
		kid = id
		return k, err
	}); err != nil {
		return Verified{}, refusalOf(err, who)
	}
	tok := tokenOf(policy.CredentialToken, claims, kid, v.o.Leeway)
	name, err := usernameOf(claims, is.cfg.UsernameClaim, is.cfg.Users == UsersToken)
	if err != nil {
		return Verified{}, err
	}
	if is.cfg.Users == UsersToken {
		if tok.Rules, err = rulesOf(claims); err != nil {
			return Verified{}, err
		}
	}
	return Verified{Token: tok, Username: name, Users: is.cfg.Users}, nil
}

// issuerKey is the key that verifies t for issuer is, and its kid: the
// HMAC secret for HS256 (only with an hmac_secret_file), else the keys of
// the issuer's JWKS that fit t's alg and kid.
func (v *Verifier) issuerKey(ctx context.Context, is *issuer, t *jwt.Token) (any, string, error) {
	if err := checkHeader(t.Header); err != nil {
		return nil, "", err
	}
	alg := t.Method.Alg()
	kid, hasKID, err := kidOf(t)
	if err != nil {
		return nil, "", err
	}
	if alg == algHS256 {
		if is.hmac == nil {
			return nil, kid, refuse(CauseAlgorithm, "issuer %s: HS256 without an hmac_secret_file", is.cfg.Issuer)
		}
		return is.hmac, kid, nil
	}
	if !isAlg(alg) {
		return nil, kid, refuse(CauseAlgorithm, "issuer %s: alg %q is not accepted", is.cfg.Issuer, alg)
	}
	if is.src == nil {
		return nil, kid, refuse(CauseUnknownKey, "issuer %s has no JWKS, only an HMAC secret", is.cfg.Issuer)
	}
	if !is.src.loaded() && v.o.Lazy {
		_ = is.src.read(ctx) // a command reads the keys at the first token
	}
	if !is.src.loaded() {
		return nil, kid, refuse(CauseNoKeys, "issuer %s: its JWKS has never loaded", is.cfg.Issuer)
	}
	ks := is.src.current().choose(alg, kid, hasKID)
	if ks == nil && hasKID && !is.src.current().has(kid) {
		is.src.unknownKID(ctx)
		ks = is.src.current().choose(alg, kid, hasKID)
	}
	if ks == nil {
		return nil, kid, unknownKey("issuer "+is.cfg.Issuer, alg, kid, hasKID, is.src.current())
	}
	return verificationKeys(ks), kid, nil
}

// unknownKey says why no key of ks verifies alg and kid.
func unknownKey(who, alg, kid string, hasKID bool, ks *keySet) error {
	switch {
	case hasKID && ks.has(kid):
		return refuse(CauseAlgorithm, "%s: key %q does not verify %s (another key type, or its alg)", who, kid, alg)
	case hasKID:
		return refuse(CauseUnknownKey, "%s: no key has kid %q", who, kid)
	}
	return refuse(CauseUnknownKey, "%s: no key verifies %s (the token names no kid)", who, alg)
}

// DeviceAudience is the aud device tokens must hold; "": they are refused.
func (v *Verifier) DeviceAudience() string { return v.o.DeviceAudience }

// VerifyDevice verifies a token a device signed itself with a key of its
// user's jwt_keys (a JWKS): an asymmetric alg, aud DeviceAudience, exp and
// iat required with exp - iat at most MaxDeviceLifetime, nbf and iat with
// the leeway; kid optional. A refusal is a *Refusal, counted.
func (v *Verifier) VerifyDevice(token, jwtKeys string) (Verified, error) {
	vf, err := v.verifyDevice(token, jwtKeys)
	if err != nil {
		r := refusalOf(err, "device token")
		v.count(r.Cause)
		return Verified{}, r
	}
	return vf, nil
}

func (v *Verifier) verifyDevice(token, jwtKeys string) (Verified, error) {
	if v.o.DeviceAudience == "" {
		return Verified{}, refuse(CauseDisabled, "device tokens need AUTHPROXY_JWT_DEVICE_AUDIENCE")
	}
	ks, err := v.deviceKeys(jwtKeys)
	if err != nil {
		return Verified{}, refuse(CauseNoKeys, "the user's jwt_keys cannot be read: %v", err)
	}
	p := jwt.NewParser(jwt.WithValidMethods(asymmetricAlgs), jwt.WithLeeway(v.o.Leeway), jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(), jwt.WithAudience(v.o.DeviceAudience), jwt.WithStrictDecoding(), jwt.WithTimeFunc(v.o.Now))
	claims := jwt.MapClaims{}
	var kid string
	if _, err := p.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		if err := checkHeader(t.Header); err != nil {
			return nil, err
		}
		id, hasKID, err := kidOf(t)
		kid = id
		if err != nil {
			return nil, err
		}
		chosen := ks.choose(t.Method.Alg(), id, hasKID)
		if chosen == nil {
			return nil, unknownKey("the user's jwt_keys", t.Method.Alg(), id, hasKID, ks)
		}
		return verificationKeys(chosen), nil
	}); err != nil {
		return Verified{}, refusalOf(err, "device token")
	}
	return v.deviceLifetime(claims, kid)
}

// deviceLifetime checks a verified device token's iat and lifetime.
func (v *Verifier) deviceLifetime(claims jwt.MapClaims, kid string) (Verified, error) {
	iat, err := claims.GetIssuedAt()
	if err != nil || iat == nil {
		return Verified{}, refuse(CauseClaims, "device token: iat is required")
	}
	tok := tokenOf(policy.CredentialDeviceToken, claims, kid, v.o.Leeway)
	if life := tok.Expiry.Sub(iat.Time); life > MaxDeviceLifetime {
		return Verified{}, refuse(CauseClaims, "device token: lifetime exp - iat is %v, at most %v", life, MaxDeviceLifetime)
	}
	return Verified{Token: tok}, nil
}
