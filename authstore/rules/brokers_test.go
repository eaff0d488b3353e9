package rules

import (
	"errors"
	"strings"
	"testing"

	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// TestMountpointSyntax: a mountpoint ends in '/', holds no wildcard, no
// NUL, does not start with '$', is at most MaxMountpoint bytes, and %u is
// its only placeholder; each refusal names what is wrong and wraps
// policy.ErrMalformedRule.
func TestMountpointSyntax(t *testing.T) {
	for _, ok := range []string{"acme/", "tenants/%u/", "%u/", "a-%u-b/", "a//", "ünï/"} {
		if err := CheckMountpoint(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for bad, why := range map[string]string{
		"acme": "does not end in '/'", "a/+/": "wildcard", "a/#/": "wildcard", "$SYS/": "starts with '$'", "a\x00/": "NUL",
		"%c/": "only placeholder", "100%/": "only placeholder", "": "is empty", strings.Repeat("a", MaxMountpoint) + "/": "longer than",
		"\xff/": "UTF-8",
	} {
		err := CheckMountpoint(bad)
		if err == nil || !strings.Contains(err.Error(), why) || !errors.Is(err, policy.ErrMalformedRule) {
			t.Errorf("%q: %v, want %q", bad, err, why)
		}
	}
}

// TestExpandMountpoint: %u is the user name; a name holding '/', '+' or
// '#', or one that makes the mountpoint start with '$', gets none.
func TestExpandMountpoint(t *testing.T) {
	for _, c := range []struct {
		v, user, want string
		ok            bool
	}{
		{"t/%u/", "alice", "t/alice/", true}, {"acme/", "a/b", "acme/", true}, {"%u/", "alice", "alice/", true},
		{"t/%u/", "a/b", "", false}, {"t/%u/", "a+b", "", false}, {"t/%u/", "a#", "", false}, {"%u/", "$SYS", "", false},
		{"%u/", "", "", false},
	} {
		if got, ok := ExpandMountpoint(c.v, c.user); got != c.want || ok != c.ok {
			t.Errorf("ExpandMountpoint(%q, %q) = %q %v", c.v, c.user, got, ok)
		}
	}
}

// TestPoolName: letters, digits, '-', '_', '.', 1 to 64.
func TestPoolName(t *testing.T) {
	for _, ok := range []string{"acme", "tenant-b_2.eu"} {
		if err := CheckPoolName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a b", "a/b", "a;b", "a=b", strings.Repeat("x", 65)} {
		if err := CheckPoolName(bad); err == nil || !errors.Is(err, policy.ErrMalformedRule) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}
