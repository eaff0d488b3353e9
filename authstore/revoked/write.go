package revoked

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/redisconn"
)

// Writer writes revocations: what `token revoke`, `cert revoke` and `crl
// import` call. Every write also announces itself, so that every replica
// refreshes its set and closes the sessions it names within a second.
type Writer struct {
	rdb  redis.UniversalClient
	keys redisconn.Keys
	now  func() time.Time
}

// NewWriter returns the Writer of the revocations under prefix in rdb.
func NewWriter(rdb redis.UniversalClient, prefix string, now func() time.Time) *Writer {
	if now == nil {
		now = time.Now
	}
	return &Writer{rdb: rdb, keys: redisconn.NewKeys(prefix), now: now}
}

// Revocation is one field written.
type Revocation struct {
	Field string    `json:"field"`
	Until time.Time `json:"until,omitzero"` // zero: for ever
}

// value is a Revocation's stored value.
func (r Revocation) value() string {
	if r.Until.IsZero() {
		return ""
	}
	return r.Until.UTC().Format(time.RFC3339)
}

// check refuses a revocation that would hold nothing.
func (w *Writer) check(until time.Time) error {
	if !until.IsZero() && !until.After(w.now()) {
		return fmt.Errorf("--until %s is not in the future", until.UTC().Format(time.RFC3339))
	}
	return nil
}

// RevokeJTI revokes the token with that jti, until a time (zero: for ever).
func (w *Writer) RevokeJTI(ctx context.Context, jti string, until time.Time) (Revocation, error) {
	if jti == "" || strings.ContainsAny(jti, "\r\n") {
		return Revocation{}, errors.New("a jti must be non-empty, on one line")
	}
	return w.write(ctx, Revocation{Field: JTIField(jti), Until: until})
}

// RevokeSubject revokes every token of a subject of an issuer.
func (w *Writer) RevokeSubject(ctx context.Context, iss, sub string, until time.Time) (Revocation, error) {
	if sub == "" || strings.ContainsAny(sub+iss, "\r\n") {
		return Revocation{}, errors.New("a subject must be non-empty, on one line")
	}
	return w.write(ctx, Revocation{Field: SubField(iss, sub), Until: until})
}

// RevokeSerial revokes a certificate serial of any CA.
func (w *Writer) RevokeSerial(ctx context.Context, serial *big.Int, until time.Time) (Revocation, error) {
	return w.write(ctx, Revocation{Field: CertField(nil, serial), Until: until})
}

// RevokeCert revokes a certificate: its serial of its issuing CA, found
// among cas (the client CA file's certificates) by the certificate's
// signature. A serial revoked so is no longer a CRL's: a newer CRL without
// it does not lift it.
func (w *Writer) RevokeCert(ctx context.Context, cert *x509.Certificate, cas []*x509.Certificate, until time.Time) (Revocation, error) {
	ca := issuerOf(cert, cas)
	if ca == nil {
		return Revocation{}, errors.New("no CA of the client CA file signed this certificate (give its serial to revoke it for every CA)")
	}
	sum := sha256.Sum256(ca.Raw)
	if err := w.check(until); err != nil {
		return Revocation{}, err
	}
	r := Revocation{Field: CertField(sum[:], cert.SerialNumber), Until: until}
	_, err := w.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, w.keys.RevokedKey(), r.Field, r.value())
		p.SRem(ctx, w.keys.CRLSerialsKey(fmt.Sprintf("%x", sum)), SerialHex(cert.SerialNumber))
		p.Publish(ctx, w.keys.RevokedChannel(), r.Field)
		return nil
	})
	return r, err
}

// write stores one revocation and announces it.
func (w *Writer) write(ctx context.Context, r Revocation) (Revocation, error) {
	if err := w.check(r.Until); err != nil {
		return Revocation{}, err
	}
	_, err := w.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, w.keys.RevokedKey(), r.Field, r.value())
		p.Publish(ctx, w.keys.RevokedChannel(), r.Field)
		return nil
	})
	return r, err
}

// issuerOf is the CA of cas that signed cert, nil when none did.
func issuerOf(cert *x509.Certificate, cas []*x509.Certificate) *x509.Certificate {
	for _, ca := range cas {
		if string(ca.RawSubject) == string(cert.RawIssuer) && cert.CheckSignatureFrom(ca) == nil {
			return ca
		}
	}
	return nil
}

// ParseSerial reads a certificate serial as an operator gives it: hex,
// with or without 0x and colons (openssl x509 -serial prints
// serial=1F2A...).
func ParseSerial(s string) (*big.Int, error) {
	h := strings.ToLower(strings.TrimSpace(s))
	h = strings.TrimPrefix(strings.TrimPrefix(h, "serial="), "0x")
	h = strings.ReplaceAll(h, ":", "")
	n, ok := new(big.Int).SetString(h, 16)
	if !ok || h == "" || len(h) > 64 {
		return nil, fmt.Errorf("serial %q is not hexadecimal (as openssl x509 -noout -serial prints it)", s)
	}
	return n, nil
}

// ReadCAs reads the certificates of a PEM file (the client CA file): the
// CAs a certificate's or a CRL's issuer is found among.
func ReadCAs(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no PEM certificate found", path)
	}
	return out, nil
}

// ReadCert reads the first certificate of a PEM (or DER) file.
func ReadCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if blk, _ := pem.Decode(b); blk != nil {
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%s: the PEM block is %q, not a CERTIFICATE", path, blk.Type)
		}
		b = blk.Bytes
	}
	c, err := x509.ParseCertificate(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}
