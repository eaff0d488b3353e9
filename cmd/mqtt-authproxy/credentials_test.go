package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
)

// opensslCA is a CA run with openssl ca, whose CRLs are real ones
// (openssl ca -gencrl).
type opensslCA struct {
	t   *testing.T
	dir string
}

func (c *opensslCA) run(args ...string) {
	c.t.Helper()
	cmd := exec.Command("openssl", args...)
	cmd.Dir = c.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		c.t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func newOpensslCA(t *testing.T, cn string) *opensslCA {
	c := &opensslCA{t: t, dir: t.TempDir()}
	cnf := "[ ca ]\ndefault_ca = d\n[ d ]\ndir = .\ndatabase = ./index.txt\ncrlnumber = ./crlnumber\ncertificate = ./ca.pem\n" +
		"private_key = ./ca.key\ndefault_md = sha256\ndefault_crl_days = 7\n"
	for name, content := range map[string]string{"ca.cnf": cnf, "index.txt": "", "crlnumber": "01\n"} {
		if err := os.WriteFile(filepath.Join(c.dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c.run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN="+cn, "-days", "30")
	return c
}

func (c *opensslCA) issue(cn, serial string) string {
	c.run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", cn+".key", "-out", cn+".csr", "-subj", "/CN="+cn)
	c.run("x509", "-req", "-in", cn+".csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", "0x"+serial, "-days", "10", "-out", cn+".pem")
	return filepath.Join(c.dir, cn+".pem")
}

func (c *opensslCA) path(name string) string { return filepath.Join(c.dir, name) }

// TestRevocationCommands: token revoke, cert revoke and crl import write
// mqtt:revoked as DESIGN says; a CRL signed by another key writes nothing
// and says why (exit 1); usage errors exit 2.
func TestRevocationCommands(t *testing.T) {
	srv := testenv.Redis(t)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { admin.Close() })
	ca := newOpensslCA(t, "Fleet CA")
	issuers := filepath.Join(t.TempDir(), "issuers.yaml")
	jwks := filepath.Join(t.TempDir(), "jwks.json")
	_ = os.WriteFile(jwks, []byte(`{"keys":[]}`), 0o600)
	_ = os.WriteFile(issuers, []byte(fmt.Sprintf("issuers:\n  - issuer: A\n    jwks_file: %s\n    audience: m\n  - issuer: B\n    jwks_file: %s\n    audience: m\n", jwks, jwks)), 0o600)
	env := map[string]string{"AUTHPROXY_REDIS_URL": testenv.RedisURL(srv), "AUTHPROXY_TLS_CLIENT_CA_FILE": ca.path("ca.pem"),
		"AUTHPROXY_JWT_ISSUERS_FILE": issuers}
	field := func(f string) (string, bool) {
		v, err := admin.HGet(context.Background(), "mqtt:revoked", f).Result()
		return v, err == nil
	}
	if r := runBin(t, env, "", "token", "revoke", "--jti", "t-1"); r.code != 0 || !strings.Contains(r.stdout, "revoked jti:t-1 for ever") {
		t.Fatalf("token revoke --jti: %+v", r)
	}
	if r := runBin(t, env, "", "token", "revoke", "--sub", "alice"); r.code != 2 || !strings.Contains(r.stderr, "--sub needs --iss: AUTHPROXY_JWT_ISSUERS_FILE lists A, B") {
		t.Fatalf("token revoke --sub with two issuers: %+v", r)
	}
	if r := runBin(t, env, "", "token", "revoke", "--sub", "alice", "--iss", "B", "--until", "2999-01-01T00:00:00Z"); r.code != 0 {
		t.Fatalf("token revoke --sub --iss: %+v", r)
	}
	if v, ok := field("sub:B alice"); !ok || v != "2999-01-01T00:00:00Z" {
		t.Fatalf("sub field %q %v", v, ok)
	}
	for _, bad := range [][]string{{"token", "revoke"}, {"token", "revoke", "--jti", "a", "--sub", "b"}, {"token", "revoke", "--jti", "a", "--until", "tomorrow"},
		{"cert", "revoke"}, {"cert", "revoke", "zz-not-hex"}, {"crl", "import"}} {
		if r := runBin(t, env, "", bad...); r.code != 2 {
			t.Errorf("%v: exit %d, want 2: %s", bad, r.code, r.stderr)
		}
	}
	if r := runBin(t, env, "", "cert", "revoke", "0A:1B"); r.code != 0 || !strings.Contains(r.stdout, "revoked cert:a1b ") {
		t.Fatalf("cert revoke SERIAL: %+v", r)
	}
	d1, d2 := ca.issue("dev1", "1001"), ca.issue("dev2", "1002")
	if r := runBin(t, env, "", "cert", "revoke", "--file", d1); r.code != 0 || !strings.Contains(r.stdout, ":1001 for ever") {
		t.Fatalf("cert revoke --file: %+v", r)
	}
	ca.run("ca", "-config", "ca.cnf", "-revoke", d2)
	ca.run("ca", "-config", "ca.cnf", "-gencrl", "-out", "crl.pem")
	r := runBin(t, env, "", "crl", "import", ca.path("crl.pem"), "--json")
	if r.code != 0 || !strings.Contains(r.stdout, `"revoked":1`) || !strings.Contains(r.stdout, `"issuer":"CN=Fleet CA"`) {
		t.Fatalf("crl import: %+v", r)
	}
	before := admin.HLen(context.Background(), "mqtt:revoked").Val()
	impostor := newOpensslCA(t, "Fleet CA")
	impostor.run("ca", "-config", "ca.cnf", "-revoke", impostor.issue("dev9", "99"))
	impostor.run("ca", "-config", "ca.cnf", "-gencrl", "-out", "crl.pem")
	r = runBin(t, env, "", "crl", "import", impostor.path("crl.pem"))
	if r.code != 1 || !strings.Contains(r.stderr, "signature does not verify") || !strings.Contains(r.stderr, "nothing written") {
		t.Fatalf("a CRL of another key: %+v", r)
	}
	if got := admin.HLen(context.Background(), "mqtt:revoked").Val(); got != before || before != 5 {
		t.Fatalf("mqtt:revoked holds %d fields, %d before the refused CRL (want 5)", got, before)
	}
}

// TestExplainToken: explain decides a token read from standard input as a
// CONNECT's password: which issuer and key verified it, or which check
// refused it; never the token, nor its signature.
func TestExplainToken(t *testing.T) {
	srv := testenv.Redis(t)
	key := filepath.Join(t.TempDir(), "k.pem")
	if out, err := exec.Command("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	mint := func(req string) string {
		cmd := exec.Command("/usr/bin/python3", filepath.Join("..", "..", "authstore", "tokens", "testdata", "mint.py"))
		cmd.Stdin = strings.NewReader(req)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("mint.py: %v (Debian's python3-jwt is needed)", err)
		}
		return string(out)
	}
	jwks := filepath.Join(t.TempDir(), "jwks.json")
	_ = os.WriteFile(jwks, []byte(mint(fmt.Sprintf(`{"op":"jwks","keys":[{"pem":%q,"kid":"k-7"}]}`, key))), 0o600)
	issuers := filepath.Join(t.TempDir(), "issuers.yaml")
	_ = os.WriteFile(issuers, []byte("issuers:\n  - issuer: https://idp/\n    jwks_file: "+jwks+"\n    audience: mqtt\n    users: token\n"), 0o600)
	env := map[string]string{"AUTHPROXY_REDIS_URL": testenv.RedisURL(srv), "AUTHPROXY_JWT_ISSUERS_FILE": issuers}
	tok := func(aud string) string {
		return mint(fmt.Sprintf(`{"op":"token","alg":"ES256","key":%q,"headers":{"kid":"k-7"},
			"claims":{"iss":"https://idp/","aud":%q,"sub":"meter-7","exp":4102444800,"jti":"t-7","publish":["m/%%u/#"]}}`, key, aud))
	}
	good := tok("mqtt")
	r := runBin(t, env, good+"\n", "explain", "", "--password-stdin", "--publish", "m/meter-7/power")
	printed := r.stdout + r.stderr
	if r.code != 0 || !strings.Contains(r.stdout, `issuer https://idp/, key "k-7", sub meter-7, jti t-7`) || !strings.Contains(r.stdout, "allowed by m/%u/#") {
		t.Fatalf("explain a good token: %+v", r)
	}
	bad := tok("other")
	r = runBin(t, env, bad+"\n", "explain", "", "--password-stdin")
	if r.code != 1 || !strings.Contains(r.stdout, "aud does not hold the audience") || !strings.Contains(r.stdout, "0x04") {
		t.Fatalf("explain a token for another audience: %+v", r)
	}
	printed += r.stdout + r.stderr
	for _, tk := range []string{good, bad} {
		if sig := tk[strings.LastIndexByte(tk, '.')+1:]; strings.Contains(printed, sig) {
			t.Fatal("explain printed a token's signature")
		}
	}
}

// TestUserSetJWTKeys: user set --jwt-keys stores a device's JWKS in its
// hash's jwt_keys, refuses a file that is not a JWKS (exit 2, nothing
// written) and removes the keys with an empty value.
func TestUserSetJWTKeys(t *testing.T) {
	srv := testenv.Redis(t)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { admin.Close() })
	env := map[string]string{"AUTHPROXY_REDIS_URL": testenv.RedisURL(srv)}
	dir := t.TempDir()
	jwks := `{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","kid":"dev-1"}]}`
	good, bad := filepath.Join(dir, "dev.jwks"), filepath.Join(dir, "bad.jwks")
	_ = os.WriteFile(good, []byte(jwks+"\n"), 0o600)
	_ = os.WriteFile(bad, []byte(`{"kty":"EC"}`), 0o600)
	field := func() string { return admin.HGet(context.Background(), "mqtt:user:meter-1", "jwt_keys").Val() }
	if r := runBin(t, env, "", "user", "set", "meter-1", "--no-password", "--jwt-keys", good); r.code != 0 {
		t.Fatalf("user set --jwt-keys: %+v", r)
	}
	if got := field(); got != jwks {
		t.Fatalf("jwt_keys %q, want the file's JWKS", got)
	}
	if r := runBin(t, env, "", "user", "set", "meter-1", "--jwt-keys", bad); r.code != 2 || !strings.Contains(r.stderr, `jwt_keys: not a JWKS`) {
		t.Fatalf("a file that is not a JWKS: %+v", r)
	}
	if r := runBin(t, env, "", "user", "set", "meter-1", "--jwt-keys", filepath.Join(dir, "missing")); r.code != 2 || !strings.Contains(r.stderr, "--jwt-keys") {
		t.Fatalf("a missing file: %+v", r)
	}
	if got := field(); got != jwks {
		t.Fatalf("a refused --jwt-keys changed jwt_keys to %q", got)
	}
	if r := runBin(t, env, "", "user", "set", "meter-1", "--jwt-keys", ""); r.code != 0 || field() != "" {
		t.Fatalf("--jwt-keys '' kept %q: %+v", field(), r)
	}
}
