package passwords

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strings"
)

// GeneratedPrefix starts the stored form of a generated secret: the
// format HashGenerated writes,
//
//	$authproxy-sha256$<salt>$<hash>
//
// salt 16 random bytes and hash SHA-256(salt || secret), both in unpadded
// standard base64. It is for secrets the proxy generated, 128 random bits
// or more (`user set --generate`, `user rotate`): a slow, memory-hard hash
// protects passwords people choose, which a stolen hash lets an attacker
// guess from a dictionary; a random 128-bit secret has no dictionary and
// is out of reach at any hash speed, so one SHA-256 (well under 10 us)
// verifies it, and a fleet of such devices comes back from an outage at
// the speed of TLS. The CLI never writes it for a password an operator
// chose; a hash given with --password-hash or in an import is accepted in
// this format as in the others, and is the operator's word that it stands
// for such a secret.
const GeneratedPrefix = "$authproxy-sha256$"

// Bounds of the generated-secret format.
const (
	generatedSaltLen = 16
	// MinGeneratedBits is the least randomness HashGenerated accepts in a
	// secret: 128 bits.
	MinGeneratedBits = 128
)

// minGeneratedLen is the shortest text of MinGeneratedBits random bits
// (base64: 22 characters).
const minGeneratedLen = (MinGeneratedBits + 5) / 6

// HashGenerated returns the stored form of a secret the proxy generated
// (GeneratedPrefix). It panics on a secret too short to carry
// MinGeneratedBits bits in any text encoding, which no generator of the
// proxy makes: the format is for generated secrets only.
func HashGenerated(secret string) string {
	if len(secret) < minGeneratedLen {
		panic(fmt.Sprintf("passwords: HashGenerated of a %d-character secret: generated secrets carry %d random bits or more", len(secret), MinGeneratedBits))
	}
	salt := make([]byte, generatedSaltLen)
	_, _ = rand.Read(salt) // never fails (crypto/rand since Go 1.24)
	sum := generatedSum(salt, secret)
	b64 := base64.RawStdEncoding
	return GeneratedPrefix + b64.EncodeToString(salt) + "$" + b64.EncodeToString(sum[:])
}

func generatedSum(salt []byte, secret string) [sha256.Size]byte {
	h := sha256.New()
	h.Write(salt)
	h.Write([]byte(secret))
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// isGenerated reports whether stored is in the generated-secret format.
func isGenerated(stored string) bool { return strings.HasPrefix(stored, GeneratedPrefix) }

// verifyGenerated checks a secret against the generated-secret format,
// comparing in constant time.
func verifyGenerated(stored, secret string, parseOnly bool) (bool, error) {
	salt64, hash64, ok := strings.Cut(strings.TrimPrefix(stored, GeneratedPrefix), "$")
	b64 := base64.RawStdEncoding
	salt, err1 := b64.DecodeString(salt64)
	want, err2 := b64.DecodeString(hash64)
	if !ok || err1 != nil || err2 != nil || len(salt) < 8 || len(want) != sha256.Size {
		return false, fmt.Errorf("%w: generated secret: want %s<base64 salt>$<base64 SHA-256>", ErrMalformedHash, GeneratedPrefix)
	}
	if parseOnly {
		return false, nil
	}
	got := generatedSum(salt, secret)
	return subtle.ConstantTimeCompare(got[:], want) == 1, nil
}
