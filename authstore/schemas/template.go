package schemas

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// template is an EMQX template: text with ${name} placeholders (${$} is
// a '$').
type template struct{ parts []templatePart }

// templatePart is text, or with name a placeholder.
type templatePart struct{ text, name string }

func parseTemplate(s string) template {
	var t template
	for {
		i := strings.Index(s, "${")
		j := -1
		if i >= 0 {
			j = strings.IndexByte(s[i:], '}')
		}
		if i < 0 || j < 0 {
			if s != "" {
				t.parts = append(t.parts, templatePart{text: s})
			}
			return t
		}
		name := s[i+2 : i+j]
		if i > 0 {
			t.parts = append(t.parts, templatePart{text: s[:i]})
		}
		if name == "$" {
			t.parts = append(t.parts, templatePart{text: "$"})
		} else {
			t.parts = append(t.parts, templatePart{name: name})
		}
		s = s[i+j+1:]
	}
}

// vars are the template's placeholder names.
func (t template) vars() []string {
	var out []string
	for _, p := range t.parts {
		if p.name != "" {
			out = append(out, p.name)
		}
	}
	return out
}

// literalPrefix is the text before the first placeholder (all of it
// without one).
func (t template) literalPrefix() string {
	var b strings.Builder
	for _, p := range t.parts {
		if p.name != "" {
			break
		}
		b.WriteString(p.text)
	}
	return b.String()
}

// only reports whether the template's one placeholder is name, and the
// text around it.
func (t template) only(name string) (prefix, suffix string, ok bool) {
	if v := t.vars(); len(v) != 1 || v[0] != name {
		return "", "", false
	}
	var b strings.Builder
	for _, p := range t.parts {
		if p.name != "" {
			prefix = b.String()
			b.Reset()
			continue
		}
		b.WriteString(p.text)
	}
	return prefix, b.String(), true
}

func (t template) render(value func(name string) string) string {
	var b strings.Builder
	for _, p := range t.parts {
		if p.name != "" {
			b.WriteString(value(p.name))
		} else {
			b.WriteString(p.text)
		}
	}
	return b.String()
}

// splitArgs splits a command line as redis-cli (and EMQX) do: arguments
// separated by white space, "double quotes" with \" \\ \n \r \t \b \a and
// \xHH escapes, 'single quotes' with \'.
func splitArgs(line string) ([]string, error) {
	space := func(c byte) bool { return strings.IndexByte(" \n\r\t\b\v", c) >= 0 }
	var out []string
	for i := 0; ; {
		for i < len(line) && space(line[i]) {
			i++
		}
		if i == len(line) {
			return out, nil
		}
		var cur []byte
		var quote byte
	arg:
		for {
			if i == len(line) {
				if quote != 0 {
					return nil, fmt.Errorf("%q: unbalanced quotes", line)
				}
				break
			}
			c := line[i]
			switch {
			case quote == 0 && space(c):
				break arg
			case quote == 0 && (c == '"' || c == '\''):
				quote = c
				i++
			case quote == 0:
				cur = append(cur, c)
				i++
			case c == quote:
				if i+1 < len(line) && !space(line[i+1]) {
					return nil, fmt.Errorf("%q: a closing quote must be followed by a space", line)
				}
				i++
				break arg
			case c == '\\' && quote == '\'' && i+1 < len(line) && line[i+1] == '\'':
				cur = append(cur, '\'')
				i += 2
			case c == '\\' && quote == '"' && i+3 < len(line) && line[i+1] == 'x' && isHexByte(line[i+2:i+4]):
				n, _ := strconv.ParseUint(line[i+2:i+4], 16, 8)
				cur = append(cur, byte(n))
				i += 4
			case c == '\\' && quote == '"' && i+1 < len(line):
				cur = append(cur, unescape(line[i+1]))
				i += 2
			default:
				cur = append(cur, c)
				i++
			}
		}
		out = append(out, string(cur))
	}
}

// unescape is the character a backslash and c stand for in double quotes.
func unescape(c byte) byte {
	switch c {
	case 'n':
		return '\n'
	case 'r':
		return '\r'
	case 't':
		return '\t'
	case 'b':
		return '\b'
	case 'a':
		return '\a'
	}
	return c
}

// isHexByte reports whether s is two hex digits.
func isHexByte(s string) bool {
	_, err := hex.DecodeString(s)
	return len(s) == 2 && err == nil
}
