package redisconn

import (
	"strings"
	"testing"
)

func TestNewClientURLs(t *testing.T) {
	for _, u := range []string{"redis://127.0.0.1:6379/0", "rediss://h:6380/1", "redis://h:1?cluster=false",
		"redis://h:1?cluster=true&addr=h:2", "redis://h:1?master_name=m&addr=h:2"} {
		c, err := NewClient(u)
		if err != nil {
			t.Errorf("%s: %v", u, err)
			continue
		}
		c.Close()
	}
	for _, u := range []string{"http://h", "redis://h:1?cluster=maybe", "redis://h:1?bogus=1"} {
		if c, err := NewClient(u); err == nil {
			c.Close()
			t.Errorf("%s accepted", u)
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
