package transport

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

// KeyPairError says which of a key pair's files is at fault, so that a
// program can name the setting that points at it.
type KeyPairError struct {
	Key  bool   // the key file (else the certificate file)
	File string // the file
	Err  error
}

func (e *KeyPairError) Error() string { return e.Err.Error() }
func (e *KeyPairError) Unwrap() error { return e.Err }

// LoadKeyPair reads a PEM certificate file and its PEM key file, each once,
// and returns them as a tls.Certificate (chain, key and parsed leaf): the
// one parser of key pairs, for the listener (at start and every reload)
// and for a program's validation of its settings. Its errors are
// *KeyPairError: the certificate's for an unreadable certificate file,
// one without a PEM certificate or one whose certificate does not parse;
// the key's for an unreadable key file, one without a PEM private key, a
// key that does not parse and a key whose public key is not the
// certificate's (compared here, not inferred from crypto/tls's error text).
func LoadKeyPair(certFile, keyFile string) (*tls.Certificate, error) {
	certErr := func(format string, args ...any) error {
		return &KeyPairError{File: certFile, Err: fmt.Errorf(format, args...)}
	}
	keyErr := func(format string, args ...any) error {
		return &KeyPairError{Key: true, File: keyFile, Err: fmt.Errorf(format, args...)}
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, certErr("cannot read certificate: %v", innermost(err))
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, keyErr("cannot read key: %v", innermost(err))
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
		return nil, certErr("%s holds no PEM certificate", certFile)
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return nil, certErr("%s: the certificate does not parse: %v", certFile, err)
	}
	key, err := parsePrivateKey(keyPEM)
	if err != nil {
		return nil, keyErr("%s: %v", keyFile, err)
	}
	pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(key.Public()) {
		return nil, keyErr("%s does not match the certificate in %s", keyFile, certFile)
	}
	return &tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}, nil
}

// innermost is the innermost error of a chain: the reason without the
// operation and file name around it.
func innermost(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
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
