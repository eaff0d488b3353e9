package tokens

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// issuerYAML is an issuers file of one issuer with a JWKS file.
func issuerYAML(iss, jwksFile, aud, users string, extra string) string {
	return fmt.Sprintf("issuers:\n  - issuer: %s\n    jwks_file: %s\n    audience: %s\n    users: %s\n%s", iss, jwksFile, aud, users, extra)
}

// refusedFor asserts that err is a Refusal with cause.
func refusedFor(t *testing.T, err error, cause string) *Refusal {
	t.Helper()
	var r *Refusal
	if !errors.As(err, &r) {
		t.Fatalf("want a refusal (%s), got %v", cause, err)
	}
	if r.Cause != cause {
		t.Fatalf("cause %q (%s), want %q", r.Cause, r.Detail, cause)
	}
	return r
}

// TestIssuerTokensOfEveryAlgorithm: tokens PyJWT signs with each accepted
// algorithm verify against a JWKS PyJWT wrote, and say who they are.
func TestIssuerTokensOfEveryAlgorithm(t *testing.T) {
	keys := map[string]string{"rsa": keyFile(t, "rsa"), "p256": keyFile(t, "p256"), "p384": keyFile(t, "p384"), "ed25519": keyFile(t, "ed25519")}
	jwks := jwksOf(t, jwksKey{PEM: keys["rsa"], KID: "rsa"}, jwksKey{PEM: keys["p256"], KID: "p256"},
		jwksKey{PEM: keys["p384"], KID: "p384"}, jwksKey{PEM: keys["ed25519"], KID: "ed"})
	v := newVerifier(t, issuerYAML("https://idp.example", writeFile(t, "jwks.json", jwks), "mqtt", "redis", ""), Options{})
	waitReady(t, v)
	for _, c := range []struct{ alg, key, kid string }{
		{"RS256", "rsa", "rsa"}, {"RS384", "rsa", "rsa"}, {"RS512", "rsa", "rsa"}, {"PS256", "rsa", "rsa"},
		{"ES256", "p256", "p256"}, {"ES384", "p384", "p384"}, {"EdDSA", "ed25519", "ed"},
	} {
		tok := token(t, c.alg, keys[c.key], claims("https://idp.example", "mqtt", "dev-"+c.alg, nil), map[string]any{"kid": c.kid})
		if got := v.IssuerOf(tok); got != "https://idp.example" {
			t.Fatalf("%s: IssuerOf = %q", c.alg, got)
		}
		vf, err := v.VerifyIssued(context.Background(), tok)
		if err != nil {
			t.Fatalf("%s: %v", c.alg, err)
		}
		if vf.Username != "dev-"+c.alg || vf.Token.KeyID != c.kid || vf.Token.JTI != "jti-dev-"+c.alg || vf.Users != UsersRedis ||
			vf.Token.Issuer != "https://idp.example" || time.Until(vf.Token.Expiry) < 9*time.Minute {
			t.Fatalf("%s: %+v %+v", c.alg, vf, vf.Token)
		}
	}
	// Without a kid, the keys that fit the alg are tried.
	tok := token(t, "ES256", keys["p256"], claims("https://idp.example", "mqtt", "nokid", nil), nil)
	if _, err := v.VerifyIssued(context.Background(), tok); err != nil {
		t.Fatalf("no kid: %v", err)
	}
}

// TestClassicAttacksRefused: alg none, an RSA public key used as an HMAC
// secret, a kid of another issuer's key, a token for another audience,
// jku and x5u headers, a token whose iss names one issuer and whose key is
// another's, and each of the time claims.
func TestClassicAttacksRefused(t *testing.T) {
	rsaA, ecB := keyFile(t, "rsa"), keyFile(t, "p256")
	fileA := writeFile(t, "a.json", jwksOf(t, jwksKey{PEM: rsaA, KID: "a1"}))
	fileB := writeFile(t, "b.json", jwksOf(t, jwksKey{PEM: ecB, KID: "b1"}))
	yaml := issuerYAML("A", fileA, "mqtt", "redis", "") + fmt.Sprintf("  - issuer: B\n    jwks_file: %s\n    audience: mqtt\n", fileB)
	v := newVerifier(t, yaml, Options{})
	waitReady(t, v)
	ctx := context.Background()
	now := time.Now().Unix()
	verify := func(tok string) error { _, err := v.VerifyIssued(ctx, tok); return err }

	none := unsigned(map[string]any{"alg": "none", "typ": "JWT"}, claims("A", "mqtt", "x", nil), nil)
	refusedFor(t, verify(none), CauseAlgorithm)
	noneUpper := unsigned(map[string]any{"alg": "None", "kid": "a1"}, claims("A", "mqtt", "x", nil), []byte("sig"))
	refusedFor(t, verify(noneUpper), CauseAlgorithm)

	// HS256 keyed with the issuer's RSA public key, as it is published.
	confused := hmacByHand(t, map[string]any{"alg": "HS256", "kid": "a1"}, claims("A", "mqtt", "x", nil), publicPEM(t, rsaA))
	refusedFor(t, verify(confused), CauseAlgorithm)

	// Signed with B's key, naming B's kid, claiming to be A's.
	crossKID := token(t, "ES256", ecB, claims("A", "mqtt", "x", nil), map[string]any{"kid": "b1"})
	refusedFor(t, verify(crossKID), CauseUnknownKey)
	// And A's kid on B's signature.
	forged := token(t, "ES256", ecB, claims("A", "mqtt", "x", nil), map[string]any{"kid": "a1"})
	refusedFor(t, verify(forged), CauseAlgorithm)

	refusedFor(t, verify(token(t, "RS256", rsaA, claims("A", "other", "x", nil), map[string]any{"kid": "a1"})), CauseAudience)
	for _, h := range []string{"jku", "x5u", "jwk", "x5c", "crit"} {
		tok := token(t, "RS256", rsaA, claims("A", "mqtt", "x", nil), map[string]any{"kid": "a1", h: "https://attacker.example/keys"})
		refusedFor(t, verify(tok), CauseHeader)
	}
	refusedFor(t, verify(token(t, "RS256", rsaA, claims("A", "mqtt", "x", map[string]any{"exp": now - 60}), map[string]any{"kid": "a1"})), CauseExpired)
	refusedFor(t, verify(token(t, "RS256", rsaA, claims("A", "mqtt", "x", map[string]any{"nbf": now + 600}), map[string]any{"kid": "a1"})), CauseNotYetValid)
	refusedFor(t, verify(token(t, "RS256", rsaA, claims("A", "mqtt", "x", map[string]any{"iat": now + 600}), map[string]any{"kid": "a1"})), CauseNotYetValid)
	refusedFor(t, verify(token(t, "RS256", rsaA, claims("A", "mqtt", "x", map[string]any{"exp": nil}), map[string]any{"kid": "a1"})), CauseClaims)
	refusedFor(t, verify(token(t, "RS256", rsaA, claims("A", "mqtt", "", map[string]any{"sub": nil}), map[string]any{"kid": "a1"})), CauseClaims)
	// Within the leeway (30 s) an exp just passed still holds.
	if err := verify(token(t, "RS256", rsaA, claims("A", "mqtt", "x", map[string]any{"exp": now - 5}), map[string]any{"kid": "a1"})); err != nil {
		t.Fatalf("exp 5 s ago, within the leeway: %v", err)
	}
	// A signature of another token's.
	good := token(t, "RS256", rsaA, claims("A", "mqtt", "x", nil), map[string]any{"kid": "a1"})
	other := token(t, "RS256", rsaA, claims("A", "mqtt", "y", nil), map[string]any{"kid": "a1"})
	spliced := good[:strings.LastIndexByte(good, '.')] + other[strings.LastIndexByte(other, '.'):]
	refusedFor(t, verify(spliced), CauseSignature)
	if v.Refused(CauseHeader) != 5 || v.Refused(CauseAlgorithm) < 3 {
		t.Fatalf("refusals counted: header %d algorithm %d", v.Refused(CauseHeader), v.Refused(CauseAlgorithm))
	}
}

// TestHMACOnlyWithASecretFile: HS256 verifies with the issuer's
// hmac_secret_file, and never for an issuer without one.
func TestHMACOnlyWithASecretFile(t *testing.T) {
	secret := writeFile(t, "secret", strings.Repeat("s3cr3t-", 8)+"\n")
	ec := keyFile(t, "p256")
	jwks := writeFile(t, "jwks.json", jwksOf(t, jwksKey{PEM: ec, KID: "e"}))
	yaml := "issuers:\n  - issuer: H\n    hmac_secret_file: " + secret + "\n    audience: mqtt\n" +
		"  - issuer: E\n    jwks_file: " + jwks + "\n    audience: mqtt\n"
	v := newVerifier(t, yaml, Options{})
	waitReady(t, v)
	keyOnly := writeFile(t, "key", strings.Repeat("s3cr3t-", 8)) // the secret without the newline
	if _, err := v.VerifyIssued(context.Background(), token(t, "HS256", keyOnly, claims("H", "mqtt", "h", nil), nil)); err != nil {
		t.Fatalf("HS256 with the issuer's secret: %v", err)
	}
	_, err := v.VerifyIssued(context.Background(), token(t, "HS256", keyOnly, claims("E", "mqtt", "h", nil), nil))
	refusedFor(t, err, CauseAlgorithm)
	_, err = v.VerifyIssued(context.Background(), token(t, "HS384", keyOnly, claims("H", "mqtt", "h", nil), nil))
	refusedFor(t, err, CauseAlgorithm)
}

// TestClaimsToRules: an issuer whose users come from the token reads
// publish, subscribe, clientids and roles as arrays; an entry that would
// be two rules, a bad pattern or a name with ':' refuses the token.
func TestClaimsToRules(t *testing.T) {
	ec := keyFile(t, "p256")
	v := newVerifier(t, issuerYAML("T", writeFile(t, "j.json", jwksOf(t, jwksKey{PEM: ec, KID: "k"})), "mqtt", "token",
		"    username_claim: device\n"), Options{})
	waitReady(t, v)
	mk := func(extra map[string]any) string {
		return token(t, "ES256", ec, claims("T", "mqtt", "s", extra), map[string]any{"kid": "k"})
	}
	vf, err := v.VerifyIssued(context.Background(), mk(map[string]any{"device": "pump-7",
		"publish": []string{"devices/%u/#"}, "subscribe": []string{"cmd/%u/+", "$share/g/all/#"}, "roles": []string{"fleet"}}))
	if err != nil {
		t.Fatal(err)
	}
	r := vf.Token.Rules
	if vf.Username != "pump-7" || vf.Users != UsersToken || r == nil || len(r.Publish) != 1 || len(r.Subscribe) != 2 || r.ClientIDs != nil || r.Roles[0] != "fleet" {
		t.Fatalf("%+v %+v", vf, r)
	}
	for name, extra := range map[string]map[string]any{
		"space in an entry":   {"device": "d", "publish": []string{"a/# b/#"}},
		"a string, no array":  {"device": "d", "publish": "a/#"},
		"a number entry":      {"device": "d", "subscribe": []any{1}},
		"a bad filter":        {"device": "d", "subscribe": []string{"a/#/b"}},
		"%u inside a level":   {"device": "d", "publish": []string{"a/x%u/b"}},
		"':' in a new user":   {"device": "a:b"},
		"no username claim":   {},
		"33 roles":            {"device": "d", "roles": strings.Split(strings.Repeat("r,", 32)+"r", ",")},
		"a newline in a name": {"device": "a\nb"},
	} {
		_, err := v.VerifyIssued(context.Background(), mk(extra))
		if refusedFor(t, err, CauseClaims); err == nil {
			t.Fatalf("%s: accepted", name)
		}
	}
}

// TestDeviceTokens: a device signs its own token with a key of its user's
// jwt_keys; the device audience, iat and a lifetime of at most 24 h are
// required, kid optional.
func TestDeviceTokens(t *testing.T) {
	ec, other := keyFile(t, "p256"), keyFile(t, "rsa")
	keys := jwksOf(t, jwksKey{PEM: ec})
	v := newVerifier(t, "", Options{DeviceAudience: "proj/registry"})
	now := time.Now().Unix()
	dev := func(key, alg string, c map[string]any) string { return token(t, alg, key, c, nil) }
	base := map[string]any{"aud": "proj/registry", "iat": now, "exp": now + 3600}
	vf, err := v.VerifyDevice(dev(ec, "ES256", base), keys)
	if err != nil {
		t.Fatal(err)
	}
	if vf.Token.Kind != "device token" || vf.Token.Issuer != "" {
		t.Fatalf("%+v", vf.Token)
	}
	with := func(k string, val any) map[string]any {
		c := map[string]any{}
		for a, b := range base {
			c[a] = b
		}
		if val == nil {
			delete(c, k)
		} else {
			c[k] = val
		}
		return c
	}
	_, err = v.VerifyDevice(dev(ec, "ES256", with("exp", now+25*3600)), keys)
	refusedFor(t, err, CauseClaims)
	_, err = v.VerifyDevice(dev(ec, "ES256", with("iat", nil)), keys)
	refusedFor(t, err, CauseClaims)
	_, err = v.VerifyDevice(dev(ec, "ES256", with("aud", "other")), keys)
	refusedFor(t, err, CauseAudience)
	_, err = v.VerifyDevice(dev(other, "RS256", base), keys)
	refusedFor(t, err, CauseUnknownKey)
	_, err = v.VerifyDevice(dev(ec, "ES256", base), `{"keys": "nope"}`)
	refusedFor(t, err, CauseNoKeys)
	off := newVerifier(t, "", Options{})
	_, err = off.VerifyDevice(dev(ec, "ES256", base), keys)
	refusedFor(t, err, CauseDisabled)
}

// TestIssuersFileErrors: every problem of an issuers file is named.
func TestIssuersFileErrors(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"issuers: []\n", "no issuer"},
		{"issuers:\n  - issuer: a\n    audience: x\n", "no keys"},
		{"issuers:\n  - issuer: a\n    jwks_url: http://idp/jwks\n    audience: x\n", "https"},
		{"issuers:\n  - issuer: a\n    jwks_file: f\n", "audience is required"},
		{"issuers:\n  - issuer: a\n    jwks_file: f\n    audience: x\n    users: ldap\n", "not redis or token"},
		{"issuers:\n  - issuer: a\n    jwks_file: f\n    audience: x\n    refresh: 1s\n", "shorter than"},
		{"issuers:\n  - issuer: a\n    jwks_file: f\n    audience: x\n    audiance: y\n", "audiance"},
		{"issuers:\n  - issuer: a\n    jwks_file: f\n    audience: x\n  - issuer: a\n    jwks_file: f\n    audience: x\n", "twice"},
		{"issuers:\n  - issuer: a\n    jwks_file: f\n    jwks_url: https://x/\n    audience: x\n", "exclude"},
	} {
		_, err := Parse([]byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.yaml, err, c.want)
		}
	}
}
