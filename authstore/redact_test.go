package authstore

import (
	"strings"
	"testing"
)

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

// TestNewClientHidesPassword: a URL that does not parse, whatever the
// shape, gives an error without its password or a piece of it.
func TestNewClientHidesPassword(t *testing.T) {
	const pw = "SECRETpart1SECRETpart2"
	for _, c := range []struct {
		url   string
		leaks []string
	}{
		{"redis://user:" + pw + "@127.0.0.1:notaport/0", nil},
		{"redis://user:SECRETpart1%zzSECRETpart2@127.0.0.1:6379/0", []string{"%zz"}},
		{"redis://user:" + pw + "@127.0.0.1:6379/%zz", nil},
		{"redis://user:SECRETpart1/SECRETpart2@127.0.0.1:6379/0", nil},
		{"redis://:" + pw + "@127.0.0.1:6379/0\n", nil},
		{"rediss://user:" + pw + "@[::1:6379/0", nil},
		{"redis://user:" + pw + "@127.0.0.1:6379/0?cluster=true\r", nil},
		{"redis://127.0.0.1:bad/0?master_name=m&password=" + pw, nil},
		{"redis://127.0.0.1:26379/0?master_name=m&sentinel_password=" + pw + "\x7f", nil},
		{"redis://user:" + pw + "@127.0.0.1:6379/0?dial_timeout=soon", nil},
		{"redis://user:" + pw + "@127.0.0.1:6379/0?master_name=m&addr=nohost", nil},
	} {
		rdb, err := NewClient(c.url)
		if err == nil {
			rdb.Close()
			t.Errorf("NewClient(%q) accepted it", c.url)
			continue
		}
		for _, leak := range append([]string{"SECRETpart1", "SECRETpart2"}, c.leaks...) {
			if strings.Contains(err.Error(), leak) {
				t.Errorf("NewClient(%q): error %q shows %q", c.url, err, leak)
			}
		}
		if !strings.HasPrefix(err.Error(), "redis") {
			t.Errorf("NewClient(%q): error %q does not say what is wrong", c.url, err)
		}
	}
}
