package redisconn

// Keys of revocation: the tokens and certificates refused from now on,
// and what each CRL import wrote.

// RevokedKey is the hash of revoked credentials: fields jti:<jti>,
// sub:<iss> <sub>, cert:<serial> and cert:<ca sha256>:<serial>, each
// valued with the RFC 3339 time until which it holds ("": for ever).
func (k Keys) RevokedKey() string { return k.prefix + "revoked" }

// RevokedChannel is the pub/sub channel a revocation is announced on.
func (k Keys) RevokedChannel() string { return k.prefix + "revoked-changes" }

// CRLKey is the hash of the last CRL imported for a CA (its SHA-256,
// lower-case hex): number, this_update, issuer.
func (k Keys) CRLKey(ca string) string { return k.prefix + "crl:" + ca }

// CRLSerialsKey is the set of the serials the last CRL imported for a CA
// revoked, so that a newer CRL without one lifts that revocation.
func (k Keys) CRLSerialsKey(ca string) string { return k.prefix + "crl:" + ca + ":serials" }
