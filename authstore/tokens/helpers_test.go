package tokens

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
)

// Keys and tokens of the tests come from independent tools: openssl makes
// the keys, Debian's python3-jwt (PyJWT) signs the tokens and writes the
// JWKS (testdata/mint.py), and openssl signs by hand what PyJWT refuses
// to make (an RSA public key used as an HMAC secret).

// pyjwt is Debian's python with python3-jwt (.ci/run installs it).
const pyjwt = "/usr/bin/python3"

// keyFile makes a private key with openssl: "rsa" (2048 bits), "rsa1024",
// "p256", "p384", "ed25519". It returns the PEM file's path.
func keyFile(t testing.TB, kind string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), kind+".pem")
	args := map[string][]string{
		"rsa":     {"-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"},
		"rsa1024": {"-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"},
		"p256":    {"-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"},
		"p384":    {"-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"},
		"ed25519": {"-algorithm", "ed25519"},
	}[kind]
	out, err := exec.Command("openssl", append(append([]string{"genpkey"}, args...), "-out", path)...).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl genpkey %s: %v\n%s", kind, err, out)
	}
	return path
}

// mint runs testdata/mint.py with req and returns its output.
func mint(t testing.TB, req map[string]any) string {
	t.Helper()
	b, _ := json.Marshal(req)
	cmd := exec.Command(pyjwt, "testdata/mint.py")
	cmd.Stdin = bytes.NewReader(b)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("mint.py %s: %v\n%s(Debian's python3-jwt is needed: apt-get install python3-jwt)", req["op"], err, stderr.String())
	}
	return string(out)
}

// token mints a token signed with the private key file.
func token(t testing.TB, alg, keyPath string, claims map[string]any, headers map[string]any) string {
	t.Helper()
	return mint(t, map[string]any{"op": "token", "alg": alg, "key": keyPath, "claims": claims, "headers": headers})
}

// jwksKey is one key of a JWKS to write.
type jwksKey struct {
	PEM string `json:"pem"`
	KID string `json:"kid,omitempty"`
	Alg string `json:"alg,omitempty"`
}

// jwksOf writes the JWKS of the public keys of the key files.
func jwksOf(t testing.TB, keys ...jwksKey) string {
	t.Helper()
	return mint(t, map[string]any{"op": "jwks", "keys": keys})
}

// writeFile writes content to a new file of the test and returns its path.
func writeFile(t testing.TB, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// claims are a token's claims valid now for the issuer and audience.
func claims(iss, aud, sub string, extra map[string]any) map[string]any {
	now := time.Now().Unix()
	c := map[string]any{"iss": iss, "aud": aud, "sub": sub, "iat": now, "exp": now + 600, "jti": "jti-" + sub}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

// b64 is base64url without padding.
func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// unsigned builds a JWS with the header and claims given and sig as its
// signature, by hand.
func unsigned(header, claims map[string]any, sig []byte) string {
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	return b64(h) + "." + b64(c) + "." + b64(sig)
}

// hmacByHand signs the JWS input of header and claims with HMAC-SHA256
// under secret, with openssl.
func hmacByHand(t testing.TB, header, claims map[string]any, secret []byte) string {
	t.Helper()
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	input := b64(h) + "." + b64(c)
	cmd := exec.Command("openssl", "dgst", "-sha256", "-binary", "-mac", "HMAC", "-macopt", "hexkey:"+hexOf(secret))
	cmd.Stdin = strings.NewReader(input)
	sig, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl dgst -mac HMAC: %v", err)
	}
	return input + "." + b64(sig)
}

func hexOf(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

// publicPEM is the public key of a private key file, PEM, by openssl.
func publicPEM(t testing.TB, keyPath string) []byte {
	t.Helper()
	out, err := exec.Command("openssl", "pkey", "-in", keyPath, "-pubout").Output()
	if err != nil {
		t.Fatalf("openssl pkey -pubout: %v", err)
	}
	return out
}

// quiet is a logger that discards.
func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newVerifier makes a Verifier of an issuers file with the content given.
func newVerifier(t testing.TB, issuersYAML string, o Options) *Verifier {
	t.Helper()
	if issuersYAML != "" {
		o.File = writeFile(t, "issuers.yaml", issuersYAML)
	}
	if o.Logger == nil {
		o.Logger = quiet()
	}
	v, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

// waitReady waits until every issuer's keys loaded.
func waitReady(t testing.TB, v *Verifier) {
	t.Helper()
	testenv.WaitFor(t, 10*time.Second, "every issuer's keys", func() bool { return v.Ready() == nil })
}
