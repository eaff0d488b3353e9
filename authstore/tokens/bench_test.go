package tokens

import (
	"context"
	"testing"
)

// BenchmarkVerifyIssued is the cost of one issuer token's verification
// (the CONNECT path's part of it: IssuerOf, then VerifyIssued), ES256 and
// RS256, tokens made by python3-jwt.
func BenchmarkVerifyIssued(b *testing.B) {
	es, rs := keyFile(b, "p256"), keyFile(b, "rsa")
	jwks := jwksOf(b, jwksKey{PEM: es, KID: "es"}, jwksKey{PEM: rs, KID: "rs"})
	v := newVerifier(b, issuerYAML("https://idp/", writeFile(b, "j.json", jwks), "mqtt", "token", ""), Options{})
	waitReady(b, v)
	for _, c := range []struct{ alg, key, kid string }{{"ES256", es, "es"}, {"RS256", rs, "rs"}} {
		tok := token(b, c.alg, c.key, claims("https://idp/", "mqtt", "meter-1", map[string]any{"publish": []string{"m/%u/#"}}), map[string]any{"kid": c.kid})
		b.Run(c.alg, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if v.IssuerOf(tok) == "" {
					b.Fatal("not an issuer's")
				}
				if _, err := v.VerifyIssued(context.Background(), tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
