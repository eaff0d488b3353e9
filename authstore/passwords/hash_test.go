package passwords

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

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

// Generated secrets are stored as one salted SHA-256: they verify, a
// wrong one does not, a fresh salt makes every hash differ, the format is
// named and checked, a short (chosen-looking) secret is refused, and the
// Checker verifies them without a slot, even with every slot taken.
func TestHashGenerated(t *testing.T) {
	const secret = "RANDOMRANDOMRANDOMRANDOM12"
	h := HashGenerated(secret)
	if !strings.HasPrefix(h, GeneratedPrefix) || Format(h) != "generated" || CheckHashFormat(h) != nil {
		t.Fatalf("hash %q (format %q, %v)", h, Format(h), CheckHashFormat(h))
	}
	if ok, err := verifyPassword(h, secret, false); !ok || err != nil {
		t.Fatalf("right secret: %v %v", ok, err)
	}
	if ok, err := verifyPassword(h, secret+"x", false); ok || err != nil {
		t.Fatalf("wrong secret: %v %v", ok, err)
	}
	if HashGenerated(secret) == h {
		t.Fatal("no fresh salt")
	}
	for _, bad := range []string{GeneratedPrefix, GeneratedPrefix + "c2FsdA$", GeneratedPrefix + "!!!$" + strings.Repeat("A", 43), GeneratedPrefix + "c2FsdHNhbHQ$c2hvcnQ"} {
		if err := CheckHashFormat(bad); !errors.Is(err, ErrMalformedHash) {
			t.Errorf("%q: %v", bad, err)
		}
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("HashGenerated of a short secret did not refuse it")
			}
		}()
		HashGenerated("short")
	}()
	c := NewChecker(Options{MaxHashes: 1, MaxHashQueue: 1})
	if err := c.Slots().Acquire(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	defer c.Slots().Release()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if ok, _, err := c.Check(ctx, h, secret, false); !ok || err != nil {
		t.Fatalf("with every slot taken: %v %v", ok, err)
	}
}

// BenchmarkVerifyGenerated is the cost of one generated secret's
// verification: well under 10 us.
func BenchmarkVerifyGenerated(b *testing.B) {
	h := HashGenerated("RANDOMRANDOMRANDOMRANDOM12")
	for b.Loop() {
		if ok, err := verifyPassword(h, "RANDOMRANDOMRANDOMRANDOM12", false); !ok || err != nil {
			b.Fatal(err)
		}
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
