package redisconn

import "testing"

func TestRedactURL(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"redis://user:pw@host:6379/0", "redis://user:xxxxx@host:6379/0"},
		{"rediss://:pw@host", "rediss://:xxxxx@host"},
		{"redis://host:6379/0", "redis://host:6379/0"},
		{"redis://user@host:6379/0", "redis://user@host:6379/0"},
		{"redis://user:@host", "redis://user:@host"},
		{"", ""},
		// Unparsable: bad port, bad escape, a slash or a question mark in the password.
		{"redis://u:p%zz@h:bad/0", "redis://u:xxxxx@h:bad/0"},
		{"redis://u:pa/ss@h:6379/0", "redis://u:xxxxx@h:6379/0"},
		{"redis://u:pa?ss@h:6379/0", "redis://u:xxxxx@h:6379/0"},
		{"redis://u:pa@ss@h:6379/0", "redis://u:xxxxx@h:6379/0"},
		{"u:pw@h:6379", "u:xxxxx@h:6379"},
		// go-redis's password parameters (Sentinel).
		{"redis://h:26379/0?master_name=m&password=pw&sentinel_password=spw&addr=h2:26379",
			"redis://h:26379/0?master_name=m&password=xxxxx&sentinel_password=xxxxx&addr=h2:26379"},
		{"redis://h:26379/0?PASSWORD=pw#frag", "redis://h:26379/0?PASSWORD=xxxxx#frag"},
		{"redis://h:6379/0?client_name=a", "redis://h:6379/0?client_name=a"},
		{"redis://h/0?password=p@ss", "redis://h/0?password=xxxxx"},
		{"redis://u:p?password=x@h/0", "redis://u:xxxxx"}, // ambiguous: more is hidden
	} {
		if got := RedactURL(c.in); got != c.want {
			t.Errorf("RedactURL(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
