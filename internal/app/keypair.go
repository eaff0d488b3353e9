package app

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
)

// LoadKeyPair reads a PEM certificate file and its PEM key file, each once,
// and returns them as a tls.Certificate (chain, key and parsed leaf). Its
// errors are ConfigErrors naming the variable at fault: certVar for an
// unreadable certificate file, one without a PEM certificate or one whose
// certificate does not parse; keyVar for an unreadable key file, one
// without a PEM private key, a key that does not parse and a key whose
// public key is not the certificate's (compared here, not inferred from
// crypto/tls's error text).
func LoadKeyPair(certVar, keyVar, certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, cfgErr(certVar, "cannot read certificate: %v", unwrapAll(err))
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, cfgErr(keyVar, "cannot read key: %v", unwrapAll(err))
	}
	var chain [][]byte
	for rest := certPEM; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			chain = append(chain, b.Bytes)
		}
	}
	if len(chain) == 0 {
		return tls.Certificate{}, cfgErr(certVar, "%s holds no PEM certificate", certFile)
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return tls.Certificate{}, cfgErr(certVar, "%s: the certificate does not parse: %v", certFile, err)
	}
	key, err := parsePrivateKey(keyPEM)
	if err != nil {
		return tls.Certificate{}, cfgErr(keyVar, "%s: %v", keyFile, err)
	}
	pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(key.Public()) {
		return tls.Certificate{}, cfgErr(keyVar, "%s does not match the certificate in %s", keyFile, certFile)
	}
	return tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}, nil
}

// parsePrivateKey finds the first PEM private key block (skipping others,
// such as the EC PARAMETERS that openssl ecparam writes first) and parses
// it as PKCS #8, PKCS #1 or SEC 1, whichever its type says, or each in turn
// for another "... PRIVATE KEY" type. Only key types TLS can sign with are
// accepted: RSA, ECDSA and Ed25519.
func parsePrivateKey(keyPEM []byte) (crypto.Signer, error) {
	var block *pem.Block
	for rest := keyPEM; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type == "PRIVATE KEY" || strings.HasSuffix(b.Type, " PRIVATE KEY") {
			block = b
			break
		}
	}
	if block == nil {
		return nil, errors.New("holds no PEM private key")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "ENCRYPTED PRIVATE KEY":
		return nil, errors.New("the private key is encrypted; the proxy needs it unencrypted")
	default:
		if key, err = x509.ParsePKCS8PrivateKey(block.Bytes); err != nil {
			if key, err = x509.ParsePKCS1PrivateKey(block.Bytes); err != nil {
				key, err = x509.ParseECPrivateKey(block.Bytes)
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("the %s does not parse: %w", strings.ToLower(block.Type), err)
	}
	switch k := key.(type) {
	case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
		return k.(crypto.Signer), nil
	}
	return nil, fmt.Errorf("the private key is a %T, which TLS cannot sign with (RSA, ECDSA or Ed25519)", key)
}
