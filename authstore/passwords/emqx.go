package passwords

import (
	"crypto/md5"
	"crypto/pbkdf2"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash"
	"strconv"
	"strings"
)

// EMQXPrefix starts the form in which the emqx schema hands a user's
// password_hash and salt, with the configured algorithm, to verification:
//
//	$emqx$<algorithm>$<parameters>$<base64url salt>$<password_hash as stored>
//
// algorithm plain, md5, sha, sha256 or sha512 with parameters prefix,
// suffix or disable (the salt's position); pbkdf2 with
// <mac_fun>,<iterations>,<dk_length> (dk_length 0: the MAC's size); bcrypt
// with none (the stored bcrypt string carries its salt). It exists only
// in memory: the native schema refuses it (CheckNativeFormat).
const EMQXPrefix = "$emqx$"

// EMQXHash is that form.
func EMQXHash(algorithm, params, salt, stored string) string {
	return EMQXPrefix + algorithm + "$" + params + "$" + base64.RawURLEncoding.EncodeToString([]byte(salt)) + "$" + stored
}

// emqxDigests are the MACs and digests EMQX names, by its names.
var emqxDigests = map[string]func() hash.Hash{
	"md5": md5.New, "sha": sha1.New, "sha224": sha256.New224, "sha256": sha256.New, "sha384": sha512.New384, "sha512": sha512.New,
}

// EMQXDigestSize is the size in bytes of the digest or MAC EMQX names
// name (md5, sha, sha224, sha256, sha384, sha512); false for another.
func EMQXDigestSize(name string) (int, bool) {
	h, ok := emqxDigests[name]
	if !ok {
		return 0, false
	}
	return h().Size(), true
}

// MaxDKLength bounds a PBKDF2 derived key.
const MaxDKLength = 1024

// verifyEMQX checks password as EMQX's Redis authenticator does: a simple
// hash is the lowercase hex digest of the salted password (plain: the
// salted password itself, compared with case), pbkdf2 the hex of the
// derived key, both compared in constant time and, but for plain, without
// regard to case; bcrypt is the stored bcrypt string's own check.
func verifyEMQX(stored, password string, parseOnly bool) (bool, error) {
	parts := strings.SplitN(stored[len(EMQXPrefix):], "$", 4)
	if len(parts) != 4 {
		return false, fmt.Errorf("%w: emqx: want $emqx$algorithm$parameters$salt$hash", ErrMalformedHash)
	}
	algorithm, params, want := parts[0], parts[1], parts[3]
	salt, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return false, fmt.Errorf("%w: emqx: salt is not base64url", ErrMalformedHash)
	}
	switch algorithm {
	case "bcrypt":
		if !isBcrypt(want) {
			return false, fmt.Errorf("%w: emqx: password_hash is not a bcrypt hash ($2a$, $2b$, $2y$)", ErrMalformedHash)
		}
		return verifyPassword(want, password, parseOnly)
	case "pbkdf2":
		return verifyEMQXPBKDF2(params, salt, want, password, parseOnly)
	}
	return verifyEMQXSalted(algorithm, params, salt, want, password, parseOnly)
}

// verifyEMQXPBKDF2 checks EMQX's pbkdf2: the hex of the derived key.
func verifyEMQXPBKDF2(params string, salt []byte, want, password string, parseOnly bool) (bool, error) {
	mac, iter, dkLen, err := emqxPBKDF2Params(params)
	if err != nil {
		return false, err
	}
	if !isHex(want, 2*dkLen) {
		return false, fmt.Errorf("%w: emqx: password_hash is not %d hex digits (pbkdf2 %s, dk_length %d)", ErrMalformedHash, 2*dkLen, params, dkLen)
	}
	if parseOnly {
		return false, nil
	}
	key, err := pbkdf2.Key(emqxDigests[mac], password, salt, iter, dkLen)
	if err != nil {
		return false, fmt.Errorf("%w: emqx pbkdf2: %v", ErrMalformedHash, err)
	}
	return subtle.ConstantTimeCompare([]byte(hex.EncodeToString(key)), []byte(strings.ToLower(want))) == 1, nil
}

// verifyEMQXSalted checks EMQX's simple hashes: plain, or the digest of
// the password salted at position (prefix, suffix, disable).
func verifyEMQXSalted(algorithm, position string, salt []byte, want, password string, parseOnly bool) (bool, error) {
	var salted string
	switch position {
	case "prefix":
		salted = string(salt) + password
	case "suffix":
		salted = password + string(salt)
	case "disable":
		salted = password
	default:
		return false, fmt.Errorf("%w: emqx: salt position %q (want prefix, suffix or disable)", ErrMalformedHash, position)
	}
	if algorithm == "plain" {
		if parseOnly {
			return false, nil
		}
		return subtle.ConstantTimeCompare([]byte(salted), []byte(want)) == 1, nil
	}
	h, ok := emqxDigests[algorithm]
	if !ok || algorithm == "sha224" || algorithm == "sha384" {
		return false, fmt.Errorf("%w: emqx: algorithm %q", ErrMalformedHash, algorithm)
	}
	d := h()
	if !isHex(want, 2*d.Size()) {
		return false, fmt.Errorf("%w: emqx: password_hash is not a %s hex digest (%d hex digits)", ErrMalformedHash, algorithm, 2*d.Size())
	}
	if parseOnly {
		return false, nil
	}
	d.Write([]byte(salted))
	return subtle.ConstantTimeCompare([]byte(hex.EncodeToString(d.Sum(nil))), []byte(strings.ToLower(want))) == 1, nil
}

// emqxPBKDF2Params reads <mac_fun>,<iterations>,<dk_length>.
func emqxPBKDF2Params(params string) (mac string, iter, dkLen int, err error) {
	f := strings.Split(params, ",")
	if len(f) != 3 {
		return "", 0, 0, fmt.Errorf("%w: emqx pbkdf2 parameters %q", ErrMalformedHash, params)
	}
	mac = f[0]
	h, ok := emqxDigests[mac]
	iter, err1 := strconv.Atoi(f[1])
	dkLen, err2 := strconv.Atoi(f[2])
	if !ok || err1 != nil || err2 != nil || iter < 1 || iter > MaxPBKDF2Iterations || dkLen < 0 || dkLen > MaxDKLength {
		return "", 0, 0, fmt.Errorf("%w: emqx pbkdf2 parameters %q", ErrMalformedHash, params)
	}
	if dkLen == 0 {
		dkLen = h().Size()
	}
	return mac, iter, dkLen, nil
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}
