package passwords

import (
	"testing"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/internal/storetest"
)

// TestDummyLike: a dummy has its model's shape, verifies without error
// and never matches.
func TestDummyLike(t *testing.T) {
	for _, stored := range []string{storetest.Vectors[0].Hash, storetest.Vectors[1].Hash, storetest.Vectors[4].Hash, storetest.GoAuthArgon2id,
		EMQXHash("sha512", "suffix", "s4lt", storetest.EMQXSHA512Suffix), EMQXHash("bcrypt", "", "", storetest.EMQXBcrypt),
		EMQXHash("pbkdf2", "sha,1000,0", "s4lt", storetest.EMQXPBKDF2SHA1), EMQXHash("plain", "prefix", "s", "plain")} {
		shape, dummy, ok := dummyLike(stored, randomBytes)
		again, _, _ := dummyLike(dummy, zeroBytes)
		if !ok || again != shape || dummy == stored {
			t.Errorf("%s: dummy %q of shape %q (%q), %v", stored, dummy, shape, again, ok)
			continue
		}
		if ok, err := verifyPassword(dummy, "", false); ok || err != nil {
			t.Errorf("dummy %s: %v %v", dummy, ok, err)
		}
	}
	if _, _, ok := dummyLike("plaintext", zeroBytes); ok {
		t.Error("a shape for plaintext")
	}
}
