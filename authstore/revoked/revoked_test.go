package revoked

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/internal/storetest"
)

// ca is a certificate authority run with openssl ca: its key, certificate
// and database, from which real CRLs are made with openssl ca -gencrl.
type ca struct {
	t   testing.TB
	dir string
}

func openssl(t testing.TB, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("openssl", args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func newCA(t testing.TB, cn string) *ca {
	dir := t.TempDir()
	c := &ca{t: t, dir: dir}
	cnf := fmt.Sprintf(`[ ca ]
default_ca = CA_default
[ CA_default ]
dir = %s
database = $dir/index.txt
crlnumber = $dir/crlnumber
certificate = $dir/ca.pem
private_key = $dir/ca.key
new_certs_dir = $dir
default_md = sha256
default_crl_days = 7
policy = policy_any
[ policy_any ]
commonName = supplied
`, dir)
	for name, content := range map[string]string{"ca.cnf": cnf, "index.txt": "", "crlnumber": "1000\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	openssl(t, dir, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key",
		"-out", "ca.pem", "-subj", "/CN="+cn, "-days", "30")
	return c
}

// issue makes a device certificate with that serial (hex).
func (c *ca) issue(cn, serial string) string {
	key, csr, crt := cn+".key", cn+".csr", cn+".pem"
	openssl(c.t, c.dir, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN="+cn)
	openssl(c.t, c.dir, "x509", "-req", "-in", csr, "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", "0x"+serial, "-days", "10", "-out", crt)
	return filepath.Join(c.dir, crt)
}

func (c *ca) revoke(certFile string) {
	openssl(c.t, c.dir, "ca", "-config", "ca.cnf", "-revoke", certFile)
}

// crl makes a CRL of the database as it is now, with openssl ca -gencrl.
func (c *ca) crl() []byte {
	openssl(c.t, c.dir, "ca", "-config", "ca.cnf", "-gencrl", "-out", "crl.pem")
	b, err := os.ReadFile(filepath.Join(c.dir, "crl.pem"))
	if err != nil {
		c.t.Fatal(err)
	}
	return b
}

// unrevoke drops a serial from the database (a hold released).
func (c *ca) unrevoke(serial string) {
	p := filepath.Join(c.dir, "index.txt")
	b, _ := os.ReadFile(p)
	var keep strings.Builder
	serial = strings.TrimLeft(strings.ToUpper(serial), "0")
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l != "" && !strings.Contains(strings.ToUpper(l), "\t"+serial+"\t") {
			keep.WriteString(l + "\n")
		}
	}
	if err := os.WriteFile(p, []byte(keep.String()), 0o600); err != nil {
		c.t.Fatal(err)
	}
}

func (c *ca) cert() *x509.Certificate { return readCert(c.t, filepath.Join(c.dir, "ca.pem")) }

func readCert(t testing.TB, file string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func serial(t testing.TB, h string) *big.Int {
	n, err := ParseSerial(h)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestCRLImport: a real CRL revokes its serials for its CA; a newer CRL
// without one lifts it, an older one is refused, and a CRL that does not
// verify against the client CA file writes nothing and says why.
func TestCRLImport(t *testing.T) {
	rdb, admin, _ := storetest.Redis(t)
	ctx := context.Background()
	w, set := NewWriter(rdb, "mqtt:", nil), NewSet(rdb, "mqtt:", nil, nil)
	a := newCA(t, "Fleet CA")
	d1, d2 := a.issue("dev1", "1001"), a.issue("dev2", "00A2")
	a.revoke(d1)
	a.revoke(d2)
	crl1 := a.crl()
	cas := []*x509.Certificate{newCA(t, "Other CA").cert(), a.cert()}
	list, signer, err := ParseCRL(crl1, cas)
	if err != nil {
		t.Fatal(err)
	}
	r, err := w.ImportCRL(ctx, list, signer)
	if err != nil || r.Revoked != 2 || r.Added != 2 || r.Lifted != 0 || r.Number != "4096" {
		t.Fatalf("first import: %+v %v", r, err)
	}
	if err := set.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	caSum := sha256.Sum256(a.cert().Raw)
	for _, s := range []string{"1001", "a2"} {
		if set.Cert(caSum[:], serial(t, s)) == "" {
			t.Fatalf("serial %s not revoked for its CA", s)
		}
	}
	other := sha256.Sum256(cas[0].Raw)
	if set.Cert(other[:], serial(t, "1001")) != "" || set.Cert(nil, serial(t, "1001")) != "" {
		t.Fatal("a CA's serial revoked for another CA")
	}
	// A hold released: the newer CRL no longer lists a2.
	a.unrevoke("00A2")
	list2, signer2, err := ParseCRL(a.crl(), cas)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := w.ImportCRL(ctx, list2, signer2); err != nil || r.Lifted != 1 || r.Added != 0 || r.Revoked != 1 {
		t.Fatalf("newer import: %+v %v", r, err)
	}
	_ = set.Refresh(ctx)
	if set.Cert(caSum[:], serial(t, "a2")) != "" || set.Cert(caSum[:], serial(t, "1001")) == "" {
		t.Fatal("the newer CRL did not lift a2 and keep 1001")
	}
	// Replaying the older CRL would revoke a2 again: refused.
	if _, err := w.ImportCRL(ctx, list, signer); err == nil || !strings.Contains(err.Error(), "older") {
		t.Fatalf("older CRL: %v", err)
	}
	before := admin.HLen(ctx, "mqtt:revoked").Val()
	// A CRL of a CA of the same name but another key: its signature fails.
	impostor := newCA(t, "Fleet CA")
	impostor.revoke(impostor.issue("dev9", "9999"))
	if _, _, err := ParseCRL(impostor.crl(), cas); err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Fatalf("impostor CRL: %v", err)
	}
	blk, _ := pem.Decode(crl1) // a byte of its signature flipped
	blk.Bytes[len(blk.Bytes)-3] ^= 0x55
	if _, _, err := ParseCRL(pem.EncodeToMemory(blk), cas); err == nil {
		t.Fatal("a tampered CRL verified")
	}
	if _, _, err := ParseCRL([]byte("not a crl"), cas); err == nil || !strings.Contains(err.Error(), "not a CRL") {
		t.Fatalf("garbage: %v", err)
	}
	if got := admin.HLen(ctx, "mqtt:revoked").Val(); got != before {
		t.Fatalf("refused CRLs wrote: %d fields, %d before", got, before)
	}
}

// TestRevokedCertSurvivesCRL: a certificate revoked by hand (cert revoke
// --file) stays revoked when a newer CRL of its CA does not list it.
func TestRevokedCertSurvivesCRL(t *testing.T) {
	rdb, _, _ := storetest.Redis(t)
	ctx := context.Background()
	w, set := NewWriter(rdb, "mqtt:", nil), NewSet(rdb, "mqtt:", nil, nil)
	a := newCA(t, "Fleet CA")
	d := a.issue("dev1", "77")
	a.revoke(d)
	list, signer, _ := ParseCRL(a.crl(), []*x509.Certificate{a.cert()})
	if _, err := w.ImportCRL(ctx, list, signer); err != nil {
		t.Fatal(err)
	}
	if _, err := w.RevokeCert(ctx, readCert(t, d), []*x509.Certificate{a.cert()}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	a.unrevoke("77")
	list2, signer2, _ := ParseCRL(a.crl(), []*x509.Certificate{a.cert()})
	if r, err := w.ImportCRL(ctx, list2, signer2); err != nil || r.Lifted != 0 {
		t.Fatalf("%+v %v", r, err)
	}
	_ = set.Refresh(ctx)
	sum := sha256.Sum256(a.cert().Raw)
	if set.Cert(sum[:], serial(t, "77")) == "" {
		t.Fatal("a certificate revoked by hand was lifted by a CRL")
	}
}

// TestTokensRevokedAndPruned: jti and subject revocations hold until
// their time; an expired field is pruned from Redis when the set is read.
func TestTokensRevokedAndPruned(t *testing.T) {
	rdb, admin, _ := storetest.Redis(t)
	ctx := context.Background()
	now := time.Now()
	clock := func() time.Time { return now }
	w, set := NewWriter(rdb, "mqtt:", clock), NewSet(rdb, "mqtt:", nil, clock)
	if set.Loaded() || set.Token("i", "s", "j") != "" {
		t.Fatal("an unread set names something")
	}
	if _, err := w.RevokeJTI(ctx, "j1", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.RevokeSubject(ctx, "https://idp", "alice", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := w.RevokeJTI(ctx, "old", now.Add(-time.Hour)); err == nil {
		t.Fatal("a revocation until a past time was written")
	}
	storetest.RedisCLI(t, admin, []any{"HSET", "mqtt:revoked", "jti:gone", now.Add(-time.Minute).Format(time.RFC3339)})
	if err := set.Refresh(ctx); err != nil || !set.Loaded() {
		t.Fatal(err)
	}
	if !strings.Contains(set.Token("x", "y", "j1"), "jti j1 revoked") || !strings.Contains(set.Token("https://idp", "alice", "j2"), "until") {
		t.Fatalf("%q %q", set.Token("x", "y", "j1"), set.Token("https://idp", "alice", "j2"))
	}
	if set.Token("https://other", "alice", "j2") != "" || set.Token("x", "y", "gone") != "" {
		t.Fatal("revoked for another issuer, or past its time")
	}
	if admin.HExists(ctx, "mqtt:revoked", "jti:gone").Val() {
		t.Fatal("the expired field was not pruned")
	}
	later := now.Add(2 * time.Hour)
	set.now = func() time.Time { return later }
	if set.Token("https://idp", "alice", "j2") != "" {
		t.Fatal("a subject revocation held past its time")
	}
}

// TestLargeCRLSize measures the revoked set after a CRL of 100,000
// serials (docs/credentials.md quotes it): the import's and a refresh's
// time, and the memory the set holds.
func TestLargeCRLSize(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000 serials")
	}
	rdb, _, _ := storetest.Redis(t)
	ctx := context.Background()
	a := newCA(t, "Big CA")
	var idx strings.Builder
	exp := time.Now().Add(240 * time.Hour).UTC().Format("060102150405Z")
	rev := time.Now().UTC().Format("060102150405Z")
	for i := range 100000 {
		fmt.Fprintf(&idx, "R\t%s\t%s\t%X\tunknown\t/CN=d%d\n", exp, rev, 0x100000+i, i)
	}
	if err := os.WriteFile(filepath.Join(a.dir, "index.txt"), []byte(idx.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	list, signer, err := ParseCRL(a.crl(), []*x509.Certificate{a.cert()})
	if err != nil || len(list.RevokedCertificateEntries) != 100000 {
		t.Fatalf("%v", err)
	}
	start := time.Now()
	w := NewWriter(rdb, "mqtt:", nil)
	if _, err := w.ImportCRL(ctx, list, signer); err != nil {
		t.Fatal(err)
	}
	imported := time.Since(start)
	var m1, m2 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m1)
	set := NewSet(rdb, "mqtt:", nil, nil)
	start = time.Now()
	if err := set.Refresh(ctx); err != nil || set.Size() != 100000 {
		t.Fatalf("%v %d", err, set.Size())
	}
	refreshed := time.Since(start)
	runtime.GC()
	runtime.ReadMemStats(&m2)
	held := int64(m2.HeapAlloc) - int64(m1.HeapAlloc)
	t.Logf("100,000 serials: import %v, refresh %v, set held %.1f MiB (%d bytes a serial)", imported, refreshed, float64(held)/(1<<20), held/100000)
	if held > 32<<20 {
		t.Fatalf("the set holds %d bytes", held)
	}
	runtime.KeepAlive(set)
}

// TestFirstLoadShared: CONNECTs that need the set before it was ever read
// share one read of it.
func TestFirstLoadShared(t *testing.T) {
	rdb, admin, _ := storetest.Redis(t)
	set := NewSet(rdb, "mqtt:", nil, nil)
	storetest.RedisCLI(t, admin, []any{"HSET", "mqtt:revoked", "jti:x", ""})
	before := admin.Info(context.Background(), "commandstats").Val()
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if err := set.EnsureLoaded(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	after := admin.Info(context.Background(), "commandstats").Val()
	if calls := hscanCalls(after) - hscanCalls(before); calls != 1 || set.Token("", "", "x") == "" {
		t.Fatalf("%d HSCANs for 50 CONNECTs at once", calls)
	}
}

// hscanCalls reads the calls of HSCAN from INFO commandstats.
func hscanCalls(info string) int {
	for _, l := range strings.Split(info, "\n") {
		if rest, ok := strings.CutPrefix(l, "cmdstat_hscan:calls="); ok {
			n, _ := strconv.Atoi(strings.SplitN(rest, ",", 2)[0])
			return n
		}
	}
	return 0
}
