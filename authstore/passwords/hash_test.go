package passwords

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/internal/storetest"
)

func TestVectorsVerify(t *testing.T) {
	for _, v := range storetest.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			ok, err := verifyPassword(v.Hash, v.Password, false)
			if err != nil || !ok {
				t.Fatalf("right password: %v %v", ok, err)
			}
			ok, err = verifyPassword(v.Hash, v.Password+"x", false)
			if err != nil || ok {
				t.Fatalf("wrong password: %v %v", ok, err)
			}
		})
	}
	for _, bad := range []string{"", "plaintext", "$argon2id$v=19$m=1,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", "$argon2i$v=19$m=64,t=1,p=1$c2FsdA$aGFzaA",
		"PBKDF2$md5$1000$c2FsdA==$aGFzaGhhc2hoYXNoaGFzaA==", "PBKDF2$sha256$0$c2FsdA==$aGFzaGhhc2hoYXNoaGFzaA==",
		"PBKDF2$sha256$1000$c2FsdA==", "$2b$31$.MyMYYEjToFnNHnw3bpEqeesH5ElAsqBHvBxHoVFgBFxhAGLw8lwy"} {
		if ok, err := verifyPassword(bad, "", false); ok || !errors.Is(err, ErrMalformedHash) {
			t.Errorf("%q: %v %v, want ErrMalformedHash", bad, ok, err)
		}
	}
	h := HashPassword("new-pass")
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("HashPassword = %q", h)
	}
	if ok, err := verifyPassword(h, "new-pass", false); !ok || err != nil {
		t.Fatalf("own hash does not verify: %v", err)
	}
}

// Machine-generated passwords get light argon2id parameters; they verify,
// a wrong password does not, and the PHC string says what was used, so a
// later verification needs no configuration.
func TestHashGenerated(t *testing.T) {
	h := HashGenerated("RANDOMRANDOMRANDOMRANDOM12")
	want := fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=1$", GeneratedArgon2Memory, GeneratedArgon2Time)
	if !strings.HasPrefix(h, want) {
		t.Fatalf("hash %q, want prefix %q", h, want)
	}
	if ok, err := verifyPassword(h, "RANDOMRANDOMRANDOMRANDOM12", false); !ok || err != nil {
		t.Fatalf("right password: %v %v", ok, err)
	}
	if ok, err := verifyPassword(h, "RANDOMRANDOMRANDOMRANDOM13", false); ok || err != nil {
		t.Fatalf("wrong password: %v %v", ok, err)
	}
	if a, b := HashGenerated("x"), HashGenerated("x"); a == b {
		t.Fatal("no fresh salt")
	}
}

// BenchmarkVerifyArgon2id is the cost of one decision that is not remembered.
func BenchmarkVerifyArgon2id(b *testing.B) {
	h := HashPassword("pw")
	for b.Loop() {
		if ok, err := verifyPassword(h, "pw", false); !ok || err != nil {
			b.Fatal(err)
		}
	}
}
