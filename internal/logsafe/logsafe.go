// Package logsafe makes strings that come from devices safe to log: short,
// printable and unambiguous, whatever the log handler does with them.
package logsafe

import (
	"strconv"
	"unicode"
	"unicode/utf8"
)

// MaxLen is the most bytes of a device's string that a log line carries.
const MaxLen = 128

// String returns s as it should appear in a log line. The empty string and a short string of
// printable characters without quotes, backslashes or spaces is returned as
// is; any other is returned Go-quoted in ASCII (so an escape sequence, an
// invalid byte, U+FFFD or a bidi control shows as its escape, and two
// different names never log alike), cut to MaxLen bytes with the full
// length appended. A plain result never starts with a quote, so the two
// forms cannot be confused.
func String(s string) string {
	if s == "" || len(s) <= MaxLen && plain(s) {
		return s
	}
	if len(s) <= MaxLen {
		return strconv.QuoteToASCII(s)
	}
	cut := MaxLen
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.QuoteToASCII(s[:cut]) + "...(" + strconv.Itoa(len(s)) + " bytes)"
}

func plain(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r == utf8.RuneError || r == '"' || r == '\\' || unicode.IsSpace(r) || !unicode.IsGraphic(r) {
			return false
		}
	}
	return true
}

// maxErrLen is the most bytes of an error message a log line carries.
const maxErrLen = 512

// Error returns err's message as it should appear in a log line: runes
// that are not printable (escape sequences, invalid bytes, U+FFFD, bidi
// controls) as their escapes, cut to a bounded length. Errors can quote
// what a device sent.
func Error(err error) string {
	if err == nil {
		return ""
	}
	s := err.Error()
	clean := len(s) <= maxErrLen
	for _, r := range s {
		if r == utf8.RuneError || (!unicode.IsGraphic(r) && r != ' ') {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b []byte
	for i, r := range s {
		if len(b) >= maxErrLen {
			return string(b) + "...(" + strconv.Itoa(len(s)) + " bytes)"
		}
		if r == utf8.RuneError || (!unicode.IsGraphic(r) && r != ' ') {
			q := strconv.QuoteRuneToASCII(r)
			if r == utf8.RuneError {
				_, size := utf8.DecodeRuneInString(s[i:])
				if size == 1 {
					q = `'\x` + strconv.FormatUint(uint64(s[i]), 16) + `'`
				}
			}
			b = append(b, q[1:len(q)-1]...)
			continue
		}
		b = utf8.AppendRune(b, r)
	}
	return string(b)
}
