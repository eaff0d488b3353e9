package authstore

import (
	"crypto/md5"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
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
	maxPBKDF2Iter    = 10_000_000
	maxBcryptCost    = 16
)

// ErrMalformedHash marks a stored password hash this package cannot read.
var ErrMalformedHash = errors.New("malformed password hash")

// HashPassword returns an argon2id PHC string for password with the
// package's default parameters and a fresh random salt.
func HashPassword(password string) string {
	return hashArgon2id(password, Argon2Time, Argon2Memory)
}

// Argon2id parameters of machine-generated passwords (HashGenerated): one
// pass over 1 MiB, about 1 ms of a core.
const (
	GeneratedArgon2Memory = 1024 // KiB
	GeneratedArgon2Time   = 1
)

// HashGenerated hashes a password the proxy generated (`user set
// --generate`: 130 random bits) with light argon2id parameters. A slow
// hash protects passwords people choose, which a stolen hash lets an
// attacker guess from a dictionary; a random 130-bit secret has no
// dictionary, and guessing it is out of reach at any hash speed, so 20-40
// ms per verification would only make a cold reconnect storm of such
// devices 20-40 times slower.
func HashGenerated(password string) string {
	return hashArgon2id(password, GeneratedArgon2Time, GeneratedArgon2Memory)
}

func hashArgon2id(password string, t, m uint32) string {
	salt := make([]byte, argon2SaltLen)
	if _, err := rand.Read(salt); err != nil {
		panic("authstore: no randomness: " + err.Error())
	}
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

// verifyPassword checks password against a stored hash in one of the
// supported formats, comparing in constant time. An empty stored hash never
// matches. With parseOnly it validates the format without hashing.
func verifyPassword(stored, password string, parseOnly bool) (bool, error) {
	switch {
	case stored == "":
		return false, fmt.Errorf("%w: empty", ErrMalformedHash)
	case strings.HasPrefix(stored, "$argon2id$"):
		return verifyArgon2id(stored, password, parseOnly)
	case strings.HasPrefix(stored, "$2a$"), strings.HasPrefix(stored, "$2b$"), strings.HasPrefix(stored, "$2y$"):
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
	case strings.HasPrefix(stored, "PBKDF2$"):
		return verifyPBKDF2(stored, password, parseOnly)
	case strings.HasPrefix(stored, emqxHashPrefix):
		return verifyEMQX(stored, password, parseOnly)
	}
	return false, fmt.Errorf("%w: unknown format (want $argon2id$, $2a$/$2b$/$2y$ or PBKDF2$)", ErrMalformedHash)
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
	if err != nil || iter < 1 || iter > maxPBKDF2Iter {
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

// emqxHashPrefix starts the form in which the emqx schema hands a user's
// password_hash and salt, with the configured algorithm, to verifyPassword:
//
//	$emqx$<algorithm>$<parameters>$<base64url salt>$<password_hash as stored>
//
// algorithm plain, md5, sha, sha256 or sha512 with parameters prefix,
// suffix or disable (the salt's position); pbkdf2 with
// <mac_fun>,<iterations>,<dk_length> (dk_length 0: the MAC's size); bcrypt
// with none (the stored bcrypt string carries its salt). It exists only
// in memory: the native schema refuses it (Store.checkStoredPassword).
const emqxHashPrefix = "$emqx$"

// emqxHash is that form.
func emqxHash(algorithm, params, salt, stored string) string {
	return emqxHashPrefix + algorithm + "$" + params + "$" + base64.RawURLEncoding.EncodeToString([]byte(salt)) + "$" + stored
}

// emqxDigests are the MACs and digests EMQX names, by its names.
var emqxDigests = map[string]func() hash.Hash{
	"md5": md5.New, "sha": sha1.New, "sha224": sha256.New224, "sha256": sha256.New, "sha384": sha512.New384, "sha512": sha512.New,
}

// maxDKLength bounds a PBKDF2 derived key.
const maxDKLength = 1024

// verifyEMQX checks password as EMQX's Redis authenticator does: a simple
// hash is the lowercase hex digest of the salted password (plain: the
// salted password itself, compared with case), pbkdf2 the hex of the
// derived key, both compared in constant time and, but for plain, without
// regard to case; bcrypt is the stored bcrypt string's own check.
func verifyEMQX(stored, password string, parseOnly bool) (bool, error) {
	parts := strings.SplitN(stored[len(emqxHashPrefix):], "$", 4)
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
		if !strings.HasPrefix(want, "$2a$") && !strings.HasPrefix(want, "$2b$") && !strings.HasPrefix(want, "$2y$") {
			return false, fmt.Errorf("%w: emqx: password_hash is not a bcrypt hash ($2a$, $2b$, $2y$)", ErrMalformedHash)
		}
		return verifyPassword(want, password, parseOnly)
	case "pbkdf2":
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
	var salted string
	switch params {
	case "prefix":
		salted = string(salt) + password
	case "suffix":
		salted = password + string(salt)
	case "disable":
		salted = password
	default:
		return false, fmt.Errorf("%w: emqx: salt position %q (want prefix, suffix or disable)", ErrMalformedHash, params)
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
	if !ok || err1 != nil || err2 != nil || iter < 1 || iter > maxPBKDF2Iter || dkLen < 0 || dkLen > maxDKLength {
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

// dummyLike names what a stored hash's verification costs, its shape (its
// format and cost parameters with the lengths of its salt and key,
// nothing secret), and makes a hash of that shape with a salt and key of
// fill's bytes (randomBytes: it never matches) without computing
// anything: verifying a password against it costs what verifying against
// stored costs. ok is false for a format it does not know.
func dummyLike(stored string, fill func(n int) []byte) (shape, dummy string, ok bool) {
	switch {
	case strings.HasPrefix(stored, "$argon2id$"):
		return dummySaltKey(stored, 6, base64.RawStdEncoding, fill)
	case strings.HasPrefix(stored, "$2a$"), strings.HasPrefix(stored, "$2b$"), strings.HasPrefix(stored, "$2y$"):
		if len(stored) != 60 {
			return "", "", false
		}
		const alphabet = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
		b := fill(53)
		for i := range b {
			b[i] = alphabet[int(b[i])%len(alphabet)]
		}
		return stored[:7], stored[:7] + string(b), true // $2b$NN$: the cost
	case strings.HasPrefix(stored, "PBKDF2$"):
		return dummySaltKey(stored, 5, base64.StdEncoding, fill)
	case strings.HasPrefix(stored, emqxHashPrefix):
		p := strings.SplitN(stored[len(emqxHashPrefix):], "$", 4)
		if len(p) != 4 {
			return "", "", false
		}
		salt, err := base64.RawURLEncoding.DecodeString(p[2])
		if err != nil {
			return "", "", false
		}
		head := emqxHashPrefix + p[0] + "$" + p[1] + "$"
		var innerShape, inner string
		switch p[0] {
		case "bcrypt":
			if innerShape, inner, ok = dummyLike(p[3], fill); !ok {
				return "", "", false
			}
		case "plain":
			innerShape, inner = strconv.Itoa(len(p[3])), base64.RawURLEncoding.EncodeToString(fill(len(p[3])))[:len(p[3])]
		default:
			innerShape, inner = strconv.Itoa(len(p[3])), hex.EncodeToString(fill(len(p[3])/2))
		}
		return fmt.Sprintf("%s%d,%s", head, len(salt), innerShape), head + base64.RawURLEncoding.EncodeToString(fill(len(salt))) + "$" + inner, true
	}
	return "", "", false
}

// dummySaltKey is dummyLike for the formats whose last two '$'-separated
// fields, of n, are the salt and the key in enc.
func dummySaltKey(stored string, n int, enc *base64.Encoding, fill func(int) []byte) (shape, dummy string, ok bool) {
	p := strings.Split(stored, "$")
	if len(p) != n {
		return "", "", false
	}
	decode := func(s string) ([]byte, error) {
		if enc == base64.RawStdEncoding {
			s = strings.TrimRight(s, "=") // the PHC string's padding, accepted as decodeB64 does
		}
		return enc.DecodeString(s)
	}
	salt, err1 := decode(p[n-2])
	key, err2 := decode(p[n-1])
	if err1 != nil || err2 != nil {
		return "", "", false
	}
	head := strings.Join(p[:n-2], "$") + "$"
	return fmt.Sprintf("%s%d,%d", head, len(salt), len(key)), head + enc.EncodeToString(fill(len(salt))) + "$" + enc.EncodeToString(fill(len(key))), true
}

// zeroBytes fills nothing: dummyLike for the shape alone.
func zeroBytes(n int) []byte { return make([]byte, n) }

func randomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("authstore: no randomness: " + err.Error())
	}
	return b
}
