package logsafe

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/lmittmann/tint"
)

func TestString(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"admin", "admin"},
		{"sensor-1/ä", "sensor-1/ä"},
		{"", ""},
		{"adm\x1bXin", `"adm\x1bXin"`},
		{"admin\uFFFDxyz", `"admin\ufffdxyz"`},
		{"admin\xff", `"admin\xff"`},
		{"ad\u202Emin", `"ad\u202emin"`},
		{`"admin"`, `"\"admin\""`},
		{"a b", `"a b"`},
		{"a\nusername=root", `"a\nusername=root"`},
	} {
		if got := String(c.in); got != c.want {
			t.Errorf("String(%q) = %s, want %s", c.in, got, c.want)
		}
	}
	long := strings.Repeat("a", 60<<10)
	got := String(long)
	if len(got) > MaxLen+32 || !strings.HasSuffix(got, "...(61440 bytes)") {
		t.Errorf("a 60 KiB name logs as %d bytes: %.60s...", len(got), got)
	}
	// A cut never splits a rune.
	multi := strings.Repeat("é", 100)
	if got := String(multi); !strings.Contains(got, `\u00e9"...(200 bytes)`) {
		t.Errorf("cut inside a rune: %s", got)
	}
}

// TestSpoofedNamesLogApart is the review's finding: through the text
// handler, names that differ must log differently, and a 60 KiB name must
// not write 60 KiB.
func TestSpoofedNamesLogApart(t *testing.T) {
	names := []string{"admin", "adm\x1bXin", "admin\uFFFD...", "admin\xff", "admin ", `"admin"`, "\x1b[31madmin"}
	seen := map[string]string{}
	for _, n := range names {
		var buf bytes.Buffer
		l := slog.New(tint.NewTextHandler(&buf, &tint.Options{NoColor: true}))
		l.Info("connect", "username", String(n))
		line := buf.String()
		field := line[strings.Index(line, "username="):]
		if prev, dup := seen[field]; dup {
			t.Errorf("%q and %q both log as %s", prev, n, field)
		}
		seen[field] = n
	}
	var buf bytes.Buffer
	l := slog.New(tint.NewTextHandler(&buf, &tint.Options{NoColor: true}))
	l.Info("connect", "username", String(strings.Repeat("x", 60<<10)), "client_id", String(strings.Repeat("y", 60<<10)))
	if buf.Len() > 1024 {
		t.Errorf("two 60 KiB fields wrote %d bytes of log", buf.Len())
	}
}

func TestError(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"dial broker 127.0.0.1:1883: connection refused", "dial broker 127.0.0.1:1883: connection refused"},
		{"client id \"a\x1b[2Jb\" bad", `client id "a\x1b[2Jb" bad`},
		{"bad \xff byte", `bad \xff byte`},
		{"line\nbreak", `line\nbreak`},
	} {
		if got := Error(errors.New(c.in)); got != c.want {
			t.Errorf("Error(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	if got := Error(errors.New(strings.Repeat("x", 70000))); len(got) > 600 {
		t.Errorf("a 70 KB error logs as %d bytes", len(got))
	}
}
