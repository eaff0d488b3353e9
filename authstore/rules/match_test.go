package rules

import "testing"

func TestGlob(t *testing.T) {
	cases := []struct {
		pattern, s, user string
		want             bool
	}{
		{"*", "", "u", true},
		{"*", "anything", "u", true},
		{"dev-?", "dev-1", "u", true},
		{"dev-?", "dev-12", "u", false},
		{"dev-*-x", "dev-a-b-x", "u", true},
		{"dev-*-x", "dev-a-b-y", "u", false},
		{"%u", "alice", "alice", true},
		{"%u-*", "alice-1", "alice", true},
		{"%u:*", "alice:1", "alice", true},
		{"%u:*", "alice-bob", "alice", false},
		{"%u", "a*", "a*", true},
		{"%u", "abc", "a*", false},
		{"é?", "éü", "u", true},
		{"*%u*", "xxbobxx", "bob", true},
		{"", "", "u", true},
		{"", "x", "u", false},
	}
	for _, c := range cases {
		if got := globMatch(c.pattern, c.s, c.user); got != c.want {
			t.Errorf("globMatch(%q, %q, %q) = %v", c.pattern, c.s, c.user, got)
		}
	}
}
