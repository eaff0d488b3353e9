package revoked

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/redis/go-redis/v9"
)

// MaxCRLBytes bounds a CRL file.
const MaxCRLBytes = 64 << 20

// CRLImport is what a CRL import did.
type CRLImport struct {
	CA         string    `json:"ca_sha256"` // the issuing CA certificate's SHA-256, hex
	Issuer     string    `json:"issuer"`
	Number     string    `json:"number,omitempty"` // the CRL number, when it has one
	ThisUpdate time.Time `json:"this_update"`
	Revoked    int       `json:"revoked"` // serials the CRL lists
	Added      int       `json:"added"`   // not revoked by the previous import of this CA's CRL
	Lifted     int       `json:"lifted"`  // revoked by the previous import, absent from this CRL
}

// ParseCRL reads a CRL, PEM ("X509 CRL") or DER, and finds the CA of cas
// whose key signed it. A CRL no CA of cas signed is an error naming its
// issuer: nothing of it is to be trusted.
func ParseCRL(b []byte, cas []*x509.Certificate) (*x509.RevocationList, *x509.Certificate, error) {
	if len(b) > MaxCRLBytes {
		return nil, nil, fmt.Errorf("CRL of %d bytes, at most %d", len(b), MaxCRLBytes)
	}
	if blk, _ := pem.Decode(b); blk != nil {
		if blk.Type != "X509 CRL" {
			return nil, nil, fmt.Errorf("the PEM block is %q, not an X509 CRL", blk.Type)
		}
		b = blk.Bytes
	}
	crl, err := x509.ParseRevocationList(b)
	if err != nil {
		return nil, nil, fmt.Errorf("not a CRL: %w", err)
	}
	var tried []error
	for _, ca := range cas {
		if string(ca.RawSubject) != string(crl.RawIssuer) {
			continue
		}
		err := crl.CheckSignatureFrom(ca)
		if err == nil {
			return crl, ca, nil
		}
		tried = append(tried, err)
	}
	if len(tried) > 0 {
		return nil, nil, fmt.Errorf("the CRL's signature does not verify with the client CA %q: %w", crl.Issuer, errors.Join(tried...))
	}
	return nil, nil, fmt.Errorf("no CA of the client CA file is the CRL's issuer %q", crl.Issuer)
}

// ImportCRL revokes every serial of a verified CRL (ParseCRL) for its CA
// (fields cert:<ca sha256>:<serial>, for ever) and lifts the revocations
// the previous import of that CA's CRL made that this one no longer lists
// (a certificate on hold released). A CRL older than the last one
// imported for the CA (a lower CRL number, or an earlier thisUpdate) is
// refused: replaying an old CRL must not lift what a newer one revoked.
// It is one MULTI/EXEC: nothing is written when anything fails.
func (w *Writer) ImportCRL(ctx context.Context, crl *x509.RevocationList, ca *x509.Certificate) (CRLImport, error) {
	sum := sha256.Sum256(ca.Raw)
	caHex := hex.EncodeToString(sum[:])
	r := CRLImport{CA: caHex, Issuer: crl.Issuer.String(), ThisUpdate: crl.ThisUpdate, Revoked: len(crl.RevokedCertificateEntries)}
	if crl.Number != nil {
		r.Number = crl.Number.String()
	}
	if err := w.checkNewer(ctx, caHex, crl); err != nil {
		return r, err
	}
	old, err := w.rdb.SMembers(ctx, w.keys.CRLSerialsKey(caHex)).Result()
	if err != nil {
		return r, err
	}
	serials := make([]string, 0, len(crl.RevokedCertificateEntries))
	listed := make(map[string]bool, len(crl.RevokedCertificateEntries))
	for _, e := range crl.RevokedCertificateEntries {
		h := SerialHex(e.SerialNumber)
		if !listed[h] {
			listed[h] = true
			serials = append(serials, h)
		}
	}
	var lifted []string
	for _, h := range old {
		if !listed[h] {
			lifted = append(lifted, prefixCert+caHex+":"+h)
		}
	}
	r.Lifted, r.Added = len(lifted), len(serials)-(len(old)-len(lifted))
	return r, w.writeCRL(ctx, caHex, crl, r, serials, lifted)
}

// checkNewer refuses a CRL older than the last one imported for the CA.
func (w *Writer) checkNewer(ctx context.Context, caHex string, crl *x509.RevocationList) error {
	last, err := w.rdb.HGetAll(ctx, w.keys.CRLKey(caHex)).Result()
	if err != nil || len(last) == 0 {
		return err
	}
	if n, ok := new(big.Int).SetString(last["number"], 10); ok && crl.Number != nil && crl.Number.Cmp(n) < 0 {
		return fmt.Errorf("this CRL (number %s) is older than the one imported for this CA (number %s): nothing written", crl.Number, n)
	}
	if t, err := time.Parse(time.RFC3339, last["this_update"]); err == nil && crl.ThisUpdate.Before(t) {
		return fmt.Errorf("this CRL (thisUpdate %s) is older than the one imported for this CA (%s): nothing written",
			crl.ThisUpdate.UTC().Format(time.RFC3339), last["this_update"])
	}
	return nil
}

// crlChunk bounds the fields of one HSET or SADD of an import.
const crlChunk = 10000

// writeCRL writes an import in one transaction.
func (w *Writer) writeCRL(ctx context.Context, caHex string, crl *x509.RevocationList, r CRLImport, serials, lifted []string) error {
	revokedKey, setKey := w.keys.RevokedKey(), w.keys.CRLSerialsKey(caHex)
	_, err := w.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for i := 0; i < len(lifted); i += crlChunk {
			p.HDel(ctx, revokedKey, lifted[i:min(i+crlChunk, len(lifted))]...)
		}
		p.Del(ctx, setKey)
		for i := 0; i < len(serials); i += crlChunk {
			chunk := serials[i:min(i+crlChunk, len(serials))]
			fields := make([]any, 0, 2*len(chunk))
			members := make([]any, 0, len(chunk))
			for _, h := range chunk {
				fields = append(fields, prefixCert+caHex+":"+h, "")
				members = append(members, h)
			}
			p.HSet(ctx, revokedKey, fields...)
			p.SAdd(ctx, setKey, members...)
		}
		p.HSet(ctx, w.keys.CRLKey(caHex), "number", r.Number, "this_update", crl.ThisUpdate.UTC().Format(time.RFC3339), "issuer", r.Issuer)
		p.Publish(ctx, w.keys.RevokedChannel(), "crl "+caHex)
		return nil
	})
	return err
}
