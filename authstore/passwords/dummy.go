package passwords

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
)

// Dummy is the stored hash an unknown user's password is verified
// against, through the same Checker as a real user's, so that an unknown
// user costs what a wrong password costs. It never matches. It is safe
// for concurrent use.
type Dummy struct {
	p     atomic.Pointer[dummyHash]
	adopt bool
}

// dummyHash is a dummy's hash and its shape (see dummyLike).
type dummyHash struct{ shape, hash string }

// NewDummy is a fixed dummy: an argon2id hash (HashPassword) of a random
// password. It computes one hash, a few tens of milliseconds.
func NewDummy() *Dummy {
	d := &Dummy{}
	d.p.Store(&dummyHash{hash: HashPassword(rand.Text())})
	return d
}

// NewDummyLike is a dummy of stored's shape (its format and cost, with a
// random salt and key; stored itself when its format is not one dummyLike
// knows) that then takes the shape of the hashes it is shown (Adopt), so
// that unknown users cost what a wrong password costs in a fleet whose
// hashes are not argon2id. It computes nothing.
func NewDummyLike(stored string) *Dummy {
	shape, hash, ok := dummyLike(stored, randomBytes)
	if !ok {
		shape, hash = "", stored
	}
	d := &Dummy{adopt: true}
	d.p.Store(&dummyHash{shape: shape, hash: hash})
	return d
}

// Hash is the hash to verify an unknown user's password against.
func (d *Dummy) Hash() string { return d.p.Load().hash }

// Adopt makes a dummy made by NewDummyLike take the shape of stored, a
// hash that CheckHashFormat accepts (its format and cost, with a random
// salt and key). A fixed dummy stays as it is.
func (d *Dummy) Adopt(stored string) {
	if !d.adopt {
		return
	}
	shape, ok := Shape(stored)
	if !ok || d.p.Load().shape == shape {
		return
	}
	if shape, hash, ok := dummyLike(stored, randomBytes); ok {
		d.p.Store(&dummyHash{shape: shape, hash: hash})
	}
}

// Shape names what verifying a password against stored costs: its
// format and cost parameters with the lengths of its salt and key,
// nothing secret. ok is false for a format it does not know.
func Shape(stored string) (shape string, ok bool) {
	shape, _, ok = dummyLike(stored, zeroBytes)
	return shape, ok
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
	case isBcrypt(stored):
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
	case strings.HasPrefix(stored, EMQXPrefix):
		return dummyEMQX(stored, fill)
	}
	return "", "", false
}

// dummyEMQX is dummyLike for the in-memory form of EMQX's hashes: the
// salt's length and the inner hash's shape.
func dummyEMQX(stored string, fill func(n int) []byte) (shape, dummy string, ok bool) {
	p := strings.SplitN(stored[len(EMQXPrefix):], "$", 4)
	if len(p) != 4 {
		return "", "", false
	}
	salt, err := base64.RawURLEncoding.DecodeString(p[2])
	if err != nil {
		return "", "", false
	}
	head := EMQXPrefix + p[0] + "$" + p[1] + "$"
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
	_, _ = rand.Read(b) // never fails (crypto/rand since Go 1.24)
	return b
}
