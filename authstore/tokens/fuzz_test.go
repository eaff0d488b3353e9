package tokens

import (
	"context"
	"strings"
	"testing"
)

// FuzzVerifyToken feeds arbitrary passwords to the token parsing entry
// points (IssuerOf, VerifyIssued, VerifyDevice): none may panic, accept,
// or repeat the token's signature in its refusal. The seed corpus
// (testdata/fuzz/FuzzVerifyToken) holds tokens PyJWT made and the shapes
// of the attacks.
func FuzzVerifyToken(f *testing.F) {
	k := keyFile(f, "p256")
	jwks := jwksOf(f, jwksKey{PEM: k, KID: "k"})
	v := newVerifier(f, issuerYAML("F", writeFile(f, "j.json", jwks), "mqtt", "token", ""), Options{DeviceAudience: "dev"})
	waitReady(f, v)
	for _, s := range []string{
		"", "eyJ", "a.b.c", "eyJ.eyJ.", "eyJhbGciOiJub25lIn0.eyJpc3MiOiJGIn0.",
		"eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJGIiwiZXhwIjoxfQ.AAAA",
		"eyJhbGciOiJIUzI1NiIsImprdSI6Imh0dHBzOi8veCJ9.eyJpc3MiOiJGIn0.c2ln",
	} {
		f.Add(s)
	}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, s string) {
		_ = LooksLikeJWS(s)
		sig := s[strings.LastIndexByte(s, '.')+1:]
		check := func(err error) {
			if err == nil {
				t.Fatalf("accepted %q", s)
			}
			if len(sig) >= 16 && strings.Contains(err.Error(), sig) {
				t.Fatalf("the refusal repeats the signature: %v", err)
			}
		}
		if v.IssuerOf(s) != "" {
			_, err := v.VerifyIssued(ctx, s)
			check(err)
		}
		_, err := v.VerifyDevice(s, jwks)
		check(err)
	})
}
