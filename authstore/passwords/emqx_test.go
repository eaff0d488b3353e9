package passwords

import (
	"errors"
	"strings"
	"testing"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/internal/storetest"
)

// TestEMQXHashForm: the $emqx$ form verifies as EMQX does and says what
// is wrong with a password_hash that cannot be one of the configured
// algorithm.
func TestEMQXHashForm(t *testing.T) {
	for _, c := range []struct {
		stored   string
		password string
		ok       bool
	}{
		{EMQXHash("sha256", "prefix", "s4lt", storetest.EMQXSHA256Prefix), "sha256-pass", true},
		{EMQXHash("sha256", "suffix", "s4lt", storetest.EMQXSHA256Prefix), "sha256-pass", false},
		{EMQXHash("plain", "suffix", "$", "pw$"), "pw", true},
		{EMQXHash("plain", "disable", "", "Pw"), "pw", false}, // plain compares with case
		{EMQXHash("bcrypt", "", "ignored", storetest.EMQXBcrypt), "bcrypt-pass", true},
		{EMQXHash("pbkdf2", "sha256,4096,32", "s4lt", strings.ToUpper(storetest.EMQXPBKDF2SHA256)), "pbkdf2-pass", true},
	} {
		if ok, err := verifyPassword(c.stored, c.password, false); ok != c.ok || err != nil {
			t.Errorf("%s with %q: %v %v, want %v", c.stored, c.password, ok, err, c.ok)
		}
	}
	for stored, says := range map[string]string{
		EMQXHash("sha256", "prefix", "s", "abc"):                            "sha256 hex digest",
		EMQXHash("md5", "prefix", "s", storetest.EMQXSHA256Prefix):          "md5 hex digest",
		EMQXHash("bcrypt", "", "", storetest.EMQXSHA256Prefix):              "not a bcrypt hash",
		EMQXHash("pbkdf2", "sha256,4096,32", "s", storetest.EMQXPBKDF2SHA1): "64 hex digits",
		EMQXHash("pbkdf2", "md4,1,0", "s", "00"):                            "parameters",
		EMQXHash("sha256", "middle", "s", storetest.EMQXSHA256Prefix):       "salt position",
		EMQXHash("sha224", "prefix", "s", storetest.EMQXSHA256Prefix[:56]):  "algorithm",
		"$emqx$sha256$prefix$!!$" + storetest.EMQXSHA256Prefix:              "base64url",
		"$emqx$sha256$prefix": "want $emqx$",
		EMQXHash("pbkdf2", "sha256,99999999,32", "s", storetest.EMQXPBKDF2SHA256): "parameters",
	} {
		if err := CheckHashFormat(stored); !errors.Is(err, ErrMalformedHash) || !strings.Contains(err.Error(), says) {
			t.Errorf("%s: %v, want ErrMalformedHash saying %q", stored, err, says)
		}
	}
}
