package app

import (
	"crypto/tls"
	"errors"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/transport"
)

// LoadKeyPair loads a key pair with transport's parser (the listener's
// own) and names the variable at fault in its ConfigError: certVar for
// the certificate file, keyVar for the key file.
func LoadKeyPair(certVar, keyVar, certFile, keyFile string) (tls.Certificate, error) {
	cert, err := transport.LoadKeyPair(certFile, keyFile)
	var ke *transport.KeyPairError
	switch {
	case err == nil:
		return *cert, nil
	case errors.As(err, &ke) && ke.Key:
		return tls.Certificate{}, cfgErr(keyVar, "%v", ke.Err)
	case errors.As(err, &ke):
		return tls.Certificate{}, cfgErr(certVar, "%v", ke.Err)
	}
	return tls.Certificate{}, err
}
