package app

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// selfSigned is a certificate for key's public key, PEM-encoded.
func selfSigned(t *testing.T, key crypto.Signer) []byte {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "t"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// block is one PEM block.
func block(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// pkcs8 is key as a PEM PKCS #8 block.
func pkcs8(t *testing.T, key any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return block("PRIVATE KEY", der)
}

// sec1 is an ECDSA key as a PEM SEC 1 block.
func sec1(t *testing.T, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return block("EC PRIVATE KEY", der)
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// keys are one key of each kind TLS signs with, generated once.
var keys = struct {
	rsa     *rsa.PrivateKey
	ecdsa   *ecdsa.PrivateKey
	ecdsa2  *ecdsa.PrivateKey
	ed25519 ed25519.PrivateKey
}{}

func init() {
	var err error
	if keys.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		panic(err)
	}
	keys.ecdsa, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	keys.ecdsa2, _ = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, keys.ed25519, _ = ed25519.GenerateKey(rand.Reader)
}

// TestLoadKeyPairFormats: every PEM key encoding TLS accepts loads, and
// the result is what crypto/tls makes of the same files.
func TestLoadKeyPairFormats(t *testing.T) {
	ecParams := block("EC PARAMETERS", []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}) // prime256v1
	for _, c := range []struct {
		name string
		cert []byte
		key  []byte
	}{
		{"RSA PKCS #1", selfSigned(t, keys.rsa), block("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(keys.rsa))},
		{"RSA PKCS #8", selfSigned(t, keys.rsa), pkcs8(t, keys.rsa)},
		{"ECDSA SEC 1", selfSigned(t, keys.ecdsa), sec1(t, keys.ecdsa)},
		{"ECDSA SEC 1 after EC PARAMETERS (openssl ecparam)", selfSigned(t, keys.ecdsa), append(ecParams, sec1(t, keys.ecdsa)...)},
		{"ECDSA PKCS #8", selfSigned(t, keys.ecdsa), pkcs8(t, keys.ecdsa)},
		{"Ed25519 PKCS #8", selfSigned(t, keys.ed25519), pkcs8(t, keys.ed25519)},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			certFile, keyFile := writeFile(t, dir, "cert.pem", c.cert), writeFile(t, dir, "key.pem", c.key)
			got, err := LoadKeyPair("TLS_CERT_FILE", "TLS_KEY_FILE", certFile, keyFile)
			if err != nil {
				t.Fatal(err)
			}
			want, err := tls.X509KeyPair(c.cert, c.key)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Certificate, want.Certificate) || !got.Leaf.Equal(want.Leaf) ||
				!got.PrivateKey.(crypto.Signer).Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(want.PrivateKey.(crypto.Signer).Public()) {
				t.Fatalf("LoadKeyPair and tls.X509KeyPair differ")
			}
		})
	}
}

// TestLoadKeyPairNamesTheVariable: each fault is a ConfigError naming the
// variable of the file at fault, in words of its own: a key that does not
// match is found by comparing public keys, and crypto/tls's error text
// appears nowhere.
func TestLoadKeyPairNamesTheVariable(t *testing.T) {
	dir := t.TempDir()
	ecCert := writeFile(t, dir, "ec.pem", selfSigned(t, keys.ecdsa))
	ecKey := writeFile(t, dir, "ec-key.pem", pkcs8(t, keys.ecdsa))
	otherECKey := writeFile(t, dir, "ec2-key.pem", pkcs8(t, keys.ecdsa2))
	rsaKey := writeFile(t, dir, "rsa-key.pem", block("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(keys.rsa)))
	edCert := writeFile(t, dir, "ed.pem", selfSigned(t, keys.ed25519))
	garbage := writeFile(t, dir, "garbage.pem", []byte("not PEM at all\n"))
	badCertDER := writeFile(t, dir, "bad-cert.pem", block("CERTIFICATE", []byte{1, 2, 3}))
	badKeyDER := writeFile(t, dir, "bad-key.pem", block("EC PRIVATE KEY", []byte{1, 2, 3}))
	encrypted := writeFile(t, dir, "enc-key.pem", block("ENCRYPTED PRIVATE KEY", []byte{1, 2, 3}))
	missing := filepath.Join(dir, "missing.pem")

	for _, c := range []struct {
		name              string
		certFile, keyFile string
		wantVar, wantMsg  string
	}{
		{"another key of the same kind", ecCert, otherECKey, "AUTHPROXY_TLS_KEY_FILE", otherECKey + " does not match the certificate in " + ecCert},
		{"a key of another kind", ecCert, rsaKey, "AUTHPROXY_TLS_KEY_FILE", rsaKey + " does not match the certificate in " + ecCert},
		{"an Ed25519 certificate with an ECDSA key", edCert, ecKey, "AUTHPROXY_TLS_KEY_FILE", ecKey + " does not match"},
		{"unreadable certificate", missing, ecKey, "AUTHPROXY_TLS_CERT_FILE", "cannot read certificate: no such file or directory"},
		{"unreadable key", ecCert, missing, "AUTHPROXY_TLS_KEY_FILE", "cannot read key: no such file or directory"},
		{"certificate file without PEM", garbage, ecKey, "AUTHPROXY_TLS_CERT_FILE", garbage + " holds no PEM certificate"},
		{"files swapped", ecKey, ecCert, "AUTHPROXY_TLS_CERT_FILE", ecKey + " holds no PEM certificate"},
		{"key file without PEM", ecCert, garbage, "AUTHPROXY_TLS_KEY_FILE", garbage + ": holds no PEM private key"},
		{"key file holding a certificate", ecCert, edCert, "AUTHPROXY_TLS_KEY_FILE", edCert + ": holds no PEM private key"},
		{"certificate that does not parse", badCertDER, ecKey, "AUTHPROXY_TLS_CERT_FILE", "the certificate does not parse"},
		{"key that does not parse", ecCert, badKeyDER, "AUTHPROXY_TLS_KEY_FILE", "the ec private key does not parse"},
		{"encrypted key", ecCert, encrypted, "AUTHPROXY_TLS_KEY_FILE", "encrypted"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := LoadKeyPair("TLS_CERT_FILE", "TLS_KEY_FILE", c.certFile, c.keyFile)
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Var != c.wantVar || !strings.Contains(ce.Msg, c.wantMsg) {
				t.Fatalf("got %v; want a ConfigError for %s containing %q", err, c.wantVar, c.wantMsg)
			}
			for _, tlsText := range []string{"tls:", "private key does not match public key", "failed to find"} {
				if strings.Contains(err.Error(), tlsText) {
					t.Fatalf("%q carries crypto/tls's text %q", err, tlsText)
				}
			}
		})
	}
}
