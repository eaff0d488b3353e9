package adminapi

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"net/http"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/revoked"
)

// Revoker revokes tokens and certificates: what `token revoke` and `cert
// revoke` call (revoked.Writer), with the client CA file's certificates
// a revoked certificate's CA is found among.
type Revoker interface {
	RevokeJTI(ctx context.Context, jti string, until time.Time) (revoked.Revocation, error)
	RevokeSubject(ctx context.Context, iss, sub string, until time.Time) (revoked.Revocation, error)
	RevokeSerial(ctx context.Context, serial *big.Int, until time.Time) (revoked.Revocation, error)
	RevokeCert(ctx context.Context, cert *x509.Certificate, cas []*x509.Certificate, until time.Time) (revoked.Revocation, error)
	// ClientCAs are the client CA file's certificates (nil without one).
	ClientCAs() []*x509.Certificate
	// Issuers are the token issuers listed (JWT_ISSUERS_FILE).
	Issuers() []string
}

// TokenRevokeRequest is the body of POST /api/v1/tokens/revoke: a jti,
// or a subject of an issuer (every token of it).
type TokenRevokeRequest struct {
	JTI     string `json:"jti,omitempty"`
	Subject string `json:"sub,omitempty"`
	Issuer  string `json:"iss,omitempty"`
	// Until is an RFC 3339 time until which the revocation holds; empty:
	// for ever.
	Until string `json:"until,omitempty"`
}

func (a *API) revokeToken(r *request) (int, any, error) {
	if a.o.Revoker == nil {
		return 0, nil, errorf(http.StatusNotImplemented, "token revocation is not available in this build")
	}
	var t TokenRevokeRequest
	if err := r.readJSON(&t); err != nil {
		return 0, nil, err
	}
	until, err := parseUntil(t.Until)
	if err != nil {
		return 0, nil, err
	}
	var rev revoked.Revocation
	switch {
	case (t.JTI == "") == (t.Subject == ""):
		return 0, nil, errorf(http.StatusBadRequest, `give "jti", or "sub" with "iss": one of them`)
	case t.JTI != "" && t.Issuer != "":
		return 0, nil, errorf(http.StatusBadRequest, `"iss" goes with "sub" (a jti is revoked for every issuer)`)
	case t.JTI != "":
		rev, err = a.o.Revoker.RevokeJTI(r.ctx, t.JTI, until)
	default:
		iss, ierr := a.subjectIssuer(t.Issuer)
		if ierr != nil {
			return 0, nil, ierr
		}
		rev, err = a.o.Revoker.RevokeSubject(r.ctx, iss, t.Subject, until)
	}
	if err != nil {
		return 0, nil, inputOrStore(err)
	}
	r.logChange("token", rev.Field, "revoked", untilDetail(rev.Until))
	return http.StatusCreated, rev, nil
}

// subjectIssuer is the issuer of a subject's revocation: the one given,
// or the one issuer listed.
func (a *API) subjectIssuer(iss string) (string, error) {
	listed := a.o.Revoker.Issuers()
	switch {
	case iss != "":
		return iss, nil
	case len(listed) == 1:
		return listed[0], nil
	}
	return "", errorf(http.StatusBadRequest, `"iss" is required with "sub" unless exactly one issuer is listed (%d are)`, len(listed))
}

// CertRevokeRequest is the body of POST /api/v1/certs/revoke: a serial
// (of any CA), or a PEM certificate (its serial of the CA of the client
// CA file that signed it).
type CertRevokeRequest struct {
	Serial string `json:"serial,omitempty"`
	PEM    string `json:"pem,omitempty"`
	Until  string `json:"until,omitempty"`
}

func (a *API) revokeCert(r *request) (int, any, error) {
	if a.o.Revoker == nil {
		return 0, nil, errorf(http.StatusNotImplemented, "certificate revocation is not available in this build")
	}
	var c CertRevokeRequest
	if err := r.readJSON(&c); err != nil {
		return 0, nil, err
	}
	until, err := parseUntil(c.Until)
	if err != nil {
		return 0, nil, err
	}
	var rev revoked.Revocation
	switch {
	case (c.Serial == "") == (c.PEM == ""):
		return 0, nil, errorf(http.StatusBadRequest, `give "serial" or "pem": one of them`)
	case c.Serial != "":
		serial, perr := revoked.ParseSerial(c.Serial)
		if perr != nil {
			return 0, nil, errorf(http.StatusBadRequest, "%v", perr)
		}
		rev, err = a.o.Revoker.RevokeSerial(r.ctx, serial, until)
	default:
		blk, _ := pem.Decode([]byte(c.PEM))
		if blk == nil || blk.Type != "CERTIFICATE" {
			return 0, nil, errorf(http.StatusBadRequest, `"pem" holds no PEM certificate`)
		}
		cert, perr := x509.ParseCertificate(blk.Bytes)
		if perr != nil {
			return 0, nil, errorf(http.StatusBadRequest, "pem: %v", perr)
		}
		rev, err = a.o.Revoker.RevokeCert(r.ctx, cert, a.o.Revoker.ClientCAs(), until)
	}
	if err != nil {
		return 0, nil, inputOrStore(err)
	}
	r.logChange("certificate", rev.Field, "revoked", untilDetail(rev.Until))
	return http.StatusCreated, rev, nil
}

// parseUntil reads an optional RFC 3339 time.
func parseUntil(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return t, errorf(http.StatusBadRequest, "until %q is not an RFC 3339 time", s)
	}
	return t, nil
}

func untilDetail(t time.Time) string {
	if t.IsZero() {
		return "for ever"
	}
	return "until " + t.UTC().Format(time.RFC3339)
}

// inputOrStore: the revocation writer's errors are its input checks,
// unless Redis failed.
func inputOrStore(err error) error {
	if isRedisDown(err) {
		return err
	}
	return errorf(http.StatusBadRequest, "%v", err)
}
