package authstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/internal/storetest"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/passwords"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/revoked"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/tokens"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/pki"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// pyMint runs the tokens package's minting script (Debian's python3-jwt).
func pyMint(t *testing.T, req map[string]any) string {
	t.Helper()
	b, _ := json.Marshal(req)
	cmd := exec.Command("/usr/bin/python3", "tokens/testdata/mint.py")
	cmd.Stdin = bytes.NewReader(b)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("mint.py: %v (Debian's python3-jwt is needed)", err)
	}
	return string(out)
}

// ecKey makes a P-256 key with openssl.
func ecKey(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "k.pem")
	if out, err := exec.Command("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", p).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	return p
}

// tokenStore is a store with two issuers, R (users: redis) and T (users:
// token), device tokens on (audience "devices"), and the key every token
// of the test is signed with.
func tokenStore(t *testing.T, o Options) (*Store, *redis.Client, string) {
	t.Helper()
	key := ecKey(t)
	jwks := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(jwks, []byte(pyMint(t, map[string]any{"op": "jwks", "keys": []map[string]any{{"pem": key, "kid": "k1"}}})), 0o600); err != nil {
		t.Fatal(err)
	}
	yaml := fmt.Sprintf("issuers:\n  - issuer: R\n    jwks_file: %s\n    audience: mqtt\n  - issuer: T\n    jwks_file: %s\n    audience: mqtt\n    users: token\n", jwks, jwks)
	file := filepath.Join(t.TempDir(), "issuers.yaml")
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := tokens.New(tokens.Options{File: file, DeviceAudience: "devices"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	testenv.WaitFor(t, 5*time.Second, "the issuers' keys", func() bool { return v.Ready() == nil })
	o.Tokens = v
	s, admin, _ := realStore(t, o)
	return s, admin, key
}

// issued mints a token of issuer iss for sub with the claims given.
func issued(t *testing.T, key, iss, sub string, extra map[string]any) string {
	now := time.Now().Unix()
	c := map[string]any{"iss": iss, "aud": "mqtt", "sub": sub, "iat": now, "exp": now + 600, "jti": "j-" + sub}
	for k, v := range extra {
		c[k] = v
	}
	return pyMint(t, map[string]any{"op": "token", "alg": "ES256", "key": key, "claims": c, "headers": map[string]any{"kid": "k1"}})
}

// tokenReq is a CONNECT with user name user (often empty) and the token as
// its password, the client id the broker assigns.
func tokenReq(user, tok string) policy.Request {
	r := storetest.Req(user, tok)
	r.ClientID = ""
	return r
}

// TestIssuerTokenDecisions: a token names its user (the CONNECT's user
// name empty, or the same); users: redis needs an enabled hash, users:
// token takes its rules from the claims (a hash can still disable the
// user); none costs a password hash; the session ends at exp plus the
// leeway; a revoked token is refused, and a live session's revoked or
// expired token ends it even with Redis down.
func TestIssuerTokenDecisions(t *testing.T) {
	s, admin, key := tokenStore(t, Options{})
	ctx := context.Background()
	storetest.RedisCLI(t, admin, []any{"HSET", "mqtt:user:alice", "password", passwords.HashPassword("pw"), "publish", "a/%u/#"},
		[]any{"HSET", "mqtt:role:fleet", "subscribe", "fleet/#"})
	hashes := s.HashCount()
	d, err := s.Authenticate(ctx, tokenReq("", issued(t, key, "R", "alice", nil)))
	if err != nil || !d.Allowed() || d.Username != "alice" || d.CredentialKind != policy.CredentialToken || d.Token == nil {
		t.Fatalf("R token for alice: %+v %v", d, err)
	}
	if until := time.Until(d.NotAfter); until < 10*time.Minute || until > 11*time.Minute {
		t.Fatalf("the session ends in %v, want exp + 30 s", until)
	}
	if _, ok := d.Topics.CanPublish("a/alice/x"); !ok {
		t.Fatal("alice's hash rules do not apply")
	}
	for name, c := range map[string]struct {
		req  policy.Request
		want policy.Outcome
	}{
		"the same user name":    {tokenReq("alice", issued(t, key, "R", "alice", nil)), policy.Accepted},
		"another user name":     {tokenReq("bob", issued(t, key, "R", "alice", nil)), policy.BadCredentials},
		"no hash, users: redis": {tokenReq("", issued(t, key, "R", "nobody", nil)), policy.BadCredentials},
		"expired":               {tokenReq("", issued(t, key, "R", "alice", map[string]any{"exp": time.Now().Unix() - 120})), policy.BadCredentials},
		"users: token":          {tokenReq("", issued(t, key, "T", "pump-1", map[string]any{"publish": []string{"p/%u"}, "roles": []string{"fleet"}})), policy.Accepted},
	} {
		d, err := s.Authenticate(ctx, c.req)
		if err != nil || d.Outcome != c.want {
			t.Errorf("%s: %+v %v, want %s", name, d, err, c.want)
		}
	}
	if s.HashCount() != hashes {
		t.Fatalf("token decisions computed %d password hashes", s.HashCount()-hashes)
	}
	d, _ = s.Authenticate(ctx, tokenReq("", issued(t, key, "T", "pump-1", map[string]any{"publish": []string{"p/%u"}, "roles": []string{"fleet"}})))
	if _, ok := d.Topics.CanPublish("p/pump-1"); !ok {
		t.Fatal("the publish claim does not apply")
	}
	if _, ok := d.Topics.CanSubscribe("fleet/x"); !ok {
		t.Fatal("the role named by the roles claim does not apply")
	}
	storetest.RedisCLI(t, admin, []any{"HSET", "mqtt:user:pump-1", "enabled", "false"})
	if d, _ := s.Authenticate(ctx, tokenReq("", issued(t, key, "T", "pump-1", nil))); d.Outcome != policy.Disabled {
		t.Fatalf("a disabled token user: %+v", d)
	}
	liveTokenSession(t, s, key)
}

// liveTokenSession: a live session's token revoked, or expired, ends it
// at its next re-decision, Redis or not.
func liveTokenSession(t *testing.T, s *Store, key string) {
	ctx := context.Background()
	req := tokenReq("", issued(t, key, "R", "alice", map[string]any{"jti": "live-1"}))
	d, err := s.Authenticate(ctx, req)
	if err != nil || !d.Allowed() {
		t.Fatal(d, err)
	}
	live := req
	live.Username, live.Password, live.Verified, live.Token = d.Username, "", &d.Credential, d.Token
	if d, err := s.Authenticate(ctx, live); err != nil || !d.Allowed() {
		t.Fatalf("re-decided: %+v %v", d, err)
	}
	if _, err := s.Revocations().RevokeJTI(ctx, "live-1", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Revoked().Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if why := s.RevokedReason(live); !strings.Contains(why, "live-1") {
		t.Fatalf("RevokedReason %q", why)
	}
	if d, _ := s.Authenticate(ctx, live); d.Outcome != policy.BadCredentials {
		t.Fatalf("a revoked token's session: %+v", d)
	}
	if d, _ := s.Authenticate(ctx, req); d.Outcome != policy.BadCredentials || !strings.Contains(d.Reason, "revoked") {
		t.Fatalf("a revoked token's CONNECT: %+v", d)
	}
	expired := *live.Token
	expired.Expiry = time.Now().Add(-time.Minute)
	live.Token = &expired
	if d, err := s.Authenticate(ctx, live); err != nil || d.Outcome != policy.TokenExpired {
		t.Fatalf("an expired token's session: %+v %v", d, err)
	}
}

// TestDeviceTokenDecision: a device signs its own token with a key of its
// user's jwt_keys; no password hash is computed.
func TestDeviceTokenDecision(t *testing.T) {
	s, admin, key := tokenStore(t, Options{})
	ctx := context.Background()
	jwks := pyMint(t, map[string]any{"op": "jwks", "keys": []map[string]any{{"pem": key}}})
	storetest.RedisCLI(t, admin, []any{"HSET", "mqtt:user:dev-9", "jwt_keys", jwks})
	now := time.Now().Unix()
	tok := pyMint(t, map[string]any{"op": "token", "alg": "ES256", "key": key, "claims": map[string]any{"aud": "devices", "iat": now, "exp": now + 3600}})
	d, err := s.Authenticate(ctx, tokenReq("dev-9", tok))
	if err != nil || !d.Allowed() || d.CredentialKind != policy.CredentialDeviceToken || s.HashCount() != 0 {
		t.Fatalf("%+v %v (hashes %d)", d, err, s.HashCount())
	}
	long := pyMint(t, map[string]any{"op": "token", "alg": "ES256", "key": key, "claims": map[string]any{"aud": "devices", "iat": now, "exp": now + 2*86400}})
	if d, _ := s.Authenticate(ctx, tokenReq("dev-9", long)); d.Outcome != policy.BadCredentials || !strings.Contains(d.Reason, "lifetime") {
		t.Fatalf("a 48 h device token: %+v", d)
	}
}

// TestCertificateIdentity: with CERT_USERNAME=cn the certificate names the
// user, who needs no password; a CONNECT naming another user is refused;
// ca:sha256 pins the issuing CA; a revoked serial is refused for every
// kind of user.
func TestCertificateIdentity(t *testing.T) {
	s, admin, _ := tokenStore(t, Options{CertUsername: CertUsernameCN})
	ctx := context.Background()
	ca, _ := pki.NewCA("fleet")
	other, _ := pki.NewCA("other")
	dev, _ := ca.Client("cam-1")
	caSum, otherSum := sha256.Sum256(ca.Cert.Raw), sha256.Sum256(other.Cert.Raw)
	storetest.RedisCLI(t, admin, []any{"HSET", "mqtt:user:cam-1", "certs", fmt.Sprintf("ca:sha256:%x", caSum)})
	req := func(user string, caHash []byte) policy.Request {
		fp := sha256.Sum256(dev.Cert.Raw)
		r := storetest.Req(user, "")
		r.HasPassword, r.ClientID = false, "cam-1"
		r.Cert, r.CertSHA256, r.CertCN, r.CertCASHA256 = dev.Cert, fp[:], "cam-1", caHash
		return r
	}
	d, err := s.Authenticate(ctx, req("", caSum[:]))
	if err != nil || !d.Allowed() || d.Username != "cam-1" || d.CredentialKind != policy.CredentialCertIdentity {
		t.Fatalf("%+v %v", d, err)
	}
	if d, _ := s.Authenticate(ctx, req("cam-2", caSum[:])); d.Outcome != policy.BadCredentials {
		t.Fatalf("another user name: %+v", d)
	}
	if d, _ := s.Authenticate(ctx, req("", otherSum[:])); d.Outcome != policy.CertNotAllowed {
		t.Fatalf("issued by another CA: %+v", d)
	}
	if _, err := s.Revocations().RevokeCert(ctx, dev.Cert, nil, time.Time{}); err == nil {
		t.Fatal("revoked without its CA")
	}
	if _, err := s.Revocations().RevokeSerial(ctx, dev.Cert.SerialNumber, time.Time{}); err != nil {
		t.Fatal(err)
	}
	_ = s.Revoked().Refresh(ctx)
	if d, _ := s.Authenticate(ctx, req("", caSum[:])); d.Outcome != policy.BadCredentials || !strings.Contains(d.Reason, "serial "+revoked.SerialHex(dev.Cert.SerialNumber)) {
		t.Fatalf("a revoked certificate: %+v", d)
	}
}
