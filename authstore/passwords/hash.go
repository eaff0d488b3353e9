// Package passwords holds the password hashes of the rule store: the
// formats it reads (argon2id, bcrypt, mosquitto-go-auth's PBKDF2, and the
// in-memory form of EMQX's), the hashes it writes (HashPassword for
// passwords people choose, HashGenerated for generated secrets), the
// Checker that verifies a password with a bounded number of computations
// at once, sharing concurrent identical ones and remembering successes,
// and the Dummy hash an unknown user is verified against.
package passwords

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Argon2id parameters of new hashes (HashPassword): 19 MiB of memory, two
// passes, one lane, a 16-byte salt and a 32-byte key: the OWASP password
// storage baseline. One verification costs about 20-40 ms of one core.
const (
	Argon2Memory  = 19 * 1024 // KiB
	Argon2Time    = 2
	Argon2Threads = 1
	argon2SaltLen = 16
	argon2KeyLen  = 32
)

// Upper bounds on the cost parameters a stored hash may ask for, so that a
// mistyped or hostile hash in Redis cannot make one CONNECT eat the machine.
const (
	maxArgon2Memory  = 1 << 20 // KiB (1 GiB)
	maxArgon2Time    = 64
	maxArgon2Threads = 64
	maxBcryptCost    = 16
	// MaxPBKDF2Iterations bounds a PBKDF2 hash's iterations.
	MaxPBKDF2Iterations = 10_000_000
)

// ErrMalformedHash marks a stored password hash this package cannot read.
var ErrMalformedHash = errors.New("malformed password hash")

// errUnknownFormat is a stored hash of no format this package reads.
var errUnknownFormat = fmt.Errorf("%w: unknown format (want $argon2id$, $2a$/$2b$/$2y$, PBKDF2$ or %s)", ErrMalformedHash, GeneratedPrefix)

// HashPassword returns an argon2id PHC string for password with the
// package's default parameters and a fresh random salt.
func HashPassword(password string) string {
	return hashArgon2id(password, Argon2Time, Argon2Memory)
}

func hashArgon2id(password string, t, m uint32) string {
	salt := make([]byte, argon2SaltLen)
	_, _ = rand.Read(salt) // never fails (crypto/rand since Go 1.24)
	key := argon2.IDKey([]byte(password), salt, t, m, Argon2Threads, argon2KeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, m, t, Argon2Threads,
		b64.EncodeToString(salt), b64.EncodeToString(key))
}

// CheckHashFormat reports whether stored is a hash this package can verify.
func CheckHashFormat(stored string) error {
	_, err := verifyPassword(stored, "", true)
	return err
}

// CheckNativeFormat is CheckHashFormat for a hash stored in the native
// layout, where the in-memory form of EMQX's hashes (EMQXHash) is not
// one: it exists only as another schema hands a hash to verification.
func CheckNativeFormat(stored string) error {
	if err := CheckHashFormat(stored); err != nil {
		return err
	}
	if strings.HasPrefix(stored, EMQXPrefix) {
		return errUnknownFormat
	}
	return nil
}

// Format names a stored hash's format for the operator: argon2id,
// bcrypt, pbkdf2, generated (GeneratedPrefix), unknown, or "" for none.
func Format(stored string) string {
	switch {
	case strings.HasPrefix(stored, "$argon2id$"):
		return "argon2id"
	case strings.HasPrefix(stored, "$2"):
		return "bcrypt"
	case strings.HasPrefix(stored, "PBKDF2$"):
		return "pbkdf2"
	case isGenerated(stored):
		return "generated"
	case stored == "":
		return ""
	}
	return "unknown"
}

// verifyPassword checks password against a stored hash in one of the
// supported formats, comparing in constant time. An empty stored hash never
// matches. With parseOnly it validates the format without hashing.
func verifyPassword(stored, password string, parseOnly bool) (bool, error) {
	switch {
	case stored == "":
		return false, fmt.Errorf("%w: empty", ErrMalformedHash)
	case strings.HasPrefix(stored, "$argon2id$"):
		return verifyArgon2id(stored, password, parseOnly)
	case isBcrypt(stored):
		return verifyBcrypt(stored, password, parseOnly)
	case strings.HasPrefix(stored, "PBKDF2$"):
		return verifyPBKDF2(stored, password, parseOnly)
	case strings.HasPrefix(stored, EMQXPrefix):
		return verifyEMQX(stored, password, parseOnly)
	case isGenerated(stored):
		return verifyGenerated(stored, password, parseOnly)
	}
	return false, errUnknownFormat
}

// isBcrypt reports whether stored starts as a bcrypt hash does.
func isBcrypt(stored string) bool {
	return strings.HasPrefix(stored, "$2a$") || strings.HasPrefix(stored, "$2b$") || strings.HasPrefix(stored, "$2y$")
}

// verifyBcrypt checks a bcrypt hash ($2a$, $2b$, $2y$) whose cost is at
// most maxBcryptCost.
func verifyBcrypt(stored, password string, parseOnly bool) (bool, error) {
	cost, err := bcrypt.Cost([]byte(stored))
	if err != nil {
		return false, fmt.Errorf("%w: bcrypt: %v", ErrMalformedHash, err)
	}
	if cost > maxBcryptCost {
		return false, fmt.Errorf("%w: bcrypt cost %d over %d", ErrMalformedHash, cost, maxBcryptCost)
	}
	if parseOnly {
		return false, nil
	}
	err = bcrypt.CompareHashAndPassword([]byte(stored), []byte(password))
	if err != nil && !errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
		return false, fmt.Errorf("%w: bcrypt: %v", ErrMalformedHash, err)
	}
	return err == nil, nil
}

// verifyArgon2id checks a PHC string $argon2id$v=19$m=..,t=..,p=..$salt$hash.
func verifyArgon2id(stored, password string, parseOnly bool) (bool, error) {
	parts := strings.Split(stored, "$")
	if len(parts) != 6 || parts[2] != "v=19" {
		return false, fmt.Errorf("%w: argon2id: want $argon2id$v=19$m=,t=,p=$salt$hash", ErrMalformedHash)
	}
	var m, t, p uint64
	for _, kv := range strings.Split(parts[3], ",") {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return false, fmt.Errorf("%w: argon2id parameter %q", ErrMalformedHash, kv)
		}
		switch k {
		case "m":
			m = n
		case "t":
			t = n
		case "p":
			p = n
		default:
			return false, fmt.Errorf("%w: argon2id parameter %q", ErrMalformedHash, kv)
		}
	}
	if m == 0 || t == 0 || p == 0 || m > maxArgon2Memory || t > maxArgon2Time || p > maxArgon2Threads || m < 8*p {
		return false, fmt.Errorf("%w: argon2id parameters m=%d,t=%d,p=%d out of range", ErrMalformedHash, m, t, p)
	}
	salt, err1 := decodeB64(parts[4])
	want, err2 := decodeB64(parts[5])
	if err1 != nil || err2 != nil || len(salt) < 8 || len(want) < 16 {
		return false, fmt.Errorf("%w: argon2id salt or hash is not base64 of a usable length", ErrMalformedHash)
	}
	if parseOnly {
		return false, nil
	}
	got := argon2.IDKey([]byte(password), salt, uint32(t), uint32(m), uint8(p), uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// verifyPBKDF2 checks mosquitto-go-auth's format
// PBKDF2$sha256|sha512$<iterations>$<base64 salt>$<base64 hash>, with its
// default (base64) salt encoding; the key length is the stored hash's length.
func verifyPBKDF2(stored, password string, parseOnly bool) (bool, error) {
	parts := strings.Split(stored, "$")
	if len(parts) != 5 {
		return false, fmt.Errorf("%w: PBKDF2: want PBKDF2$sha256|sha512$iterations$salt$hash", ErrMalformedHash)
	}
	var h func() hash.Hash
	switch parts[1] {
	case "sha256":
		h = sha256.New
	case "sha512":
		h = sha512.New
	default:
		return false, fmt.Errorf("%w: PBKDF2 digest %q (want sha256 or sha512)", ErrMalformedHash, parts[1])
	}
	iter, err := strconv.Atoi(parts[2])
	if err != nil || iter < 1 || iter > MaxPBKDF2Iterations {
		return false, fmt.Errorf("%w: PBKDF2 iterations %q", ErrMalformedHash, parts[2])
	}
	salt, err1 := base64.StdEncoding.DecodeString(parts[3])
	want, err2 := base64.StdEncoding.DecodeString(parts[4])
	if err1 != nil || err2 != nil || len(want) < 16 || len(salt) == 0 {
		return false, fmt.Errorf("%w: PBKDF2 salt or hash is not base64 of a usable length", ErrMalformedHash)
	}
	if parseOnly {
		return false, nil
	}
	got, err := pbkdf2.Key(h, password, salt, iter, len(want))
	if err != nil {
		return false, fmt.Errorf("%w: PBKDF2: %v", ErrMalformedHash, err)
	}
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// decodeB64 accepts the PHC string's unpadded base64, and padded too.
func decodeB64(s string) ([]byte, error) {
	return base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
}
