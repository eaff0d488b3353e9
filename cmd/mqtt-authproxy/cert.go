package main

import (
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/revoked"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/app"
)

func cmdCert(io stdio) *cobra.Command {
	return group("cert", "Revoke client certificates",
		`Client certificates revoked in Redis (mqtt:revoked): refused at every
CONNECT, on resumed TLS sessions too, by every proxy, and their live
sessions closed within a second (MQTT 5: DISCONNECT 0x98). See
docs/credentials.md, Certificates; crl import revokes a CRL's serials.`,
		cmdCertRevoke(io))
}

func cmdCertRevoke(io stdio) *cobra.Command {
	c := &cobra.Command{
		Use:   "revoke SERIAL | --file CERT.pem [--until TIME]",
		Short: "Revoke a client certificate, by serial (any CA) or its file (its CA)",
		Long: `Revokes a client certificate. With SERIAL (hex, as openssl x509 -noout
-serial prints it) the serial is revoked for every CA; with --file the
certificate's serial is revoked for the CA of AUTHPROXY_TLS_CLIENT_CA_FILE
that signed it only (private CAs often number serials 1, 2, 3).`,
		Args: cobra.MaximumNArgs(1),
	}
	fs := c.Flags()
	file := fs.String("file", "", "a PEM file with the certificate")
	untilFlag := fs.String("until", "", "RFC 3339 time the revocation holds until (default: for ever)")
	asJSON := jsonFlag(fs)
	c.RunE = func(_ *cobra.Command, args []string) error {
		if (len(args) == 1) == (*file != "") {
			return usagef("cert revoke: give a SERIAL or --file, one of them")
		}
		until, err := parseUntil("cert revoke", *untilFlag)
		if err != nil {
			return err
		}
		var r revoked.Revocation
		if *file != "" {
			r, err = revokeCertFile(*file, until)
		} else {
			r, err = revokeSerial(args[0], until)
		}
		if err != nil {
			return err
		}
		return printRevocation(io, r, *asJSON)
	}
	return c
}

// revokeSerial revokes a serial for every CA.
func revokeSerial(s string, until time.Time) (revoked.Revocation, error) {
	serial, err := revoked.ParseSerial(s)
	if err != nil {
		return revoked.Revocation{}, usagef("cert revoke: %v", err)
	}
	store, ctx, done, err := storeFromEnv("cert revoke")
	if err != nil {
		return revoked.Revocation{}, err
	}
	defer done()
	r, err := store.Revocations().RevokeSerial(ctx, serial, until)
	if err != nil {
		return r, fmt.Errorf("cert revoke: %w", err)
	}
	return r, nil
}

// revokeCertFile revokes a certificate for the CA that signed it.
func revokeCertFile(file string, until time.Time) (revoked.Revocation, error) {
	cert, err := revoked.ReadCert(file)
	if err != nil {
		return revoked.Revocation{}, usagef("cert revoke: --file: %v", err)
	}
	cas, err := clientCAs("cert revoke")
	if err != nil {
		return revoked.Revocation{}, err
	}
	store, ctx, done, err := storeFromEnv("cert revoke")
	if err != nil {
		return revoked.Revocation{}, err
	}
	defer done()
	r, err := store.Revocations().RevokeCert(ctx, cert, cas, until)
	if err != nil {
		return r, fmt.Errorf("cert revoke: %w", err)
	}
	return r, nil
}

// clientCAs reads the certificates of AUTHPROXY_TLS_CLIENT_CA_FILE.
func clientCAs(cmd string) ([]*x509.Certificate, error) {
	cfg, err := app.Load(os.Environ())
	if err != nil {
		return nil, err
	}
	if cfg.TLSClientCAFile == "" {
		return nil, &app.ConfigError{Var: app.EnvPrefix + "TLS_CLIENT_CA_FILE", Msg: "is not set: " + cmd + " finds the issuing CA there"}
	}
	cas, err := revoked.ReadCAs(cfg.TLSClientCAFile)
	if err != nil {
		return nil, &app.ConfigError{Var: app.EnvPrefix + "TLS_CLIENT_CA_FILE", Msg: err.Error()}
	}
	return cas, nil
}

// explainedCert is the certificate explain --cert decides with, and the
// SHA-256 of the CA of AUTHPROXY_TLS_CLIENT_CA_FILE that signed it (nil
// when the file is not set or no CA of it did), as the handshake would
// give them: the certificate identity, ca:sha256 pinning and revocation
// are then explained too.
func explainedCert(file string) (*x509.Certificate, []byte) {
	cert, err := revoked.ReadCert(file)
	if err != nil {
		return nil, nil
	}
	cas, err := clientCAs("explain")
	if err != nil {
		return cert, nil
	}
	for _, ca := range cas {
		if string(ca.RawSubject) == string(cert.RawIssuer) && cert.CheckSignatureFrom(ca) == nil {
			sum := sha256.Sum256(ca.Raw)
			return cert, sum[:]
		}
	}
	return cert, nil
}
