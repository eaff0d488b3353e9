package rules

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// Which name of a verified client certificate is the user's
// (AUTHPROXY_CERT_USERNAME).
const (
	CertNameOff      = "off"
	CertNameCN       = "cn"
	CertNameSANDNS   = "san-dns"
	CertNameSANEmail = "san-email"
	CertNameSANURI   = "san-uri"
)

// CheckCertName validates a CERT_USERNAME mode.
func CheckCertName(mode string) error {
	switch mode {
	case CertNameOff, CertNameCN, CertNameSANDNS, CertNameSANEmail, CertNameSANURI:
		return nil
	}
	return fmt.Errorf("%q is not off, cn, san-dns, san-email or san-uri", mode)
}

// CertName is the user name a verified client certificate gives in mode:
// its subject CN, or its first SAN of the kind; ok false when it has none.
func CertName(mode string, c *x509.Certificate) (name string, ok bool) {
	if c == nil {
		return "", false
	}
	switch mode {
	case CertNameCN:
		name = c.Subject.CommonName
	case CertNameSANDNS:
		if len(c.DNSNames) > 0 {
			name = c.DNSNames[0]
		}
	case CertNameSANEmail:
		if len(c.EmailAddresses) > 0 {
			name = c.EmailAddresses[0]
		}
	case CertNameSANURI:
		if len(c.URIs) > 0 {
			name = c.URIs[0].String()
		}
	}
	return name, name != ""
}

// WithClaims is a user's fields as a decision reads them when its rules
// come from a token's claims (an issuer with users: token): the claims
// publish, subscribe, clientids and roles in place of the hash's fields of
// those names (a claim absent: the field absent), the hash's other fields
// (enabled, not_after, cidrs, certs) still applying; its password and
// jwt_keys are not read. A user without a hash is an enabled user with
// the claims' rules. r nil: the fields as they are.
func WithClaims(fields map[string]string, r *policy.TokenRules) map[string]string {
	if r == nil {
		return fields
	}
	out := make(map[string]string, len(fields)+4)
	for k, v := range fields {
		switch k {
		case FieldPublish, FieldSubscribe, FieldClientIDs, FieldRoles, FieldPassword, FieldJWTKeys:
		default:
			out[k] = v
		}
	}
	for _, c := range []struct {
		field string
		v     []string
	}{{FieldPublish, r.Publish}, {FieldSubscribe, r.Subscribe}, {FieldClientIDs, r.ClientIDs}, {FieldRoles, r.Roles}} {
		if c.v != nil {
			out[c.field] = strings.Join(c.v, " ")
		}
	}
	if _, ok := out[FieldEnabled]; !ok {
		out[FieldEnabled] = "true"
	}
	return out
}

// CheckJWTKeys checks that a jwt_keys value is a JWKS: a JSON object with
// a "keys" array (the keys themselves are read where a device's token is
// verified).
func CheckJWTKeys(v string) error {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal([]byte(v), &set); err != nil || set.Keys == nil {
		return fmt.Errorf(`%w: jwt_keys: not a JWKS (a JSON object with a "keys" array)`, policy.ErrMalformedRule)
	}
	return nil
}
