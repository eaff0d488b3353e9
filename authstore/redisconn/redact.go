package redisconn

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// redacted replaces a password in URLs, errors and logs.
const redacted = "xxxxx"

// passwordParam matches the password parameters go-redis takes in a URL's
// query (password for Sentinel URLs; sentinel_password as some versions
// and tools spell it); group 1 is the value.
var passwordParam = regexp.MustCompile(`(?i)[?&](?:sentinel_)?password=([^&#]*)`)

// RedactURL hides the passwords of a Redis URL: the password of the user
// info becomes xxxxx, as do the password and sentinel_password query
// parameters. It works on the raw string, so that a URL that does not
// parse (a bad port, a bad %-escape, a '/' in the password) is redacted
// too; where the user info cannot be told apart for sure it hides more
// rather than less. The user name, host, port and the other parameters
// stay, so that the URL can still be recognised.
func RedactURL(raw string) string {
	spans := secretSpans(raw)
	for i := len(spans) - 1; i >= 0; i-- {
		raw = raw[:spans[i][0]] + redacted + raw[spans[i][1]:]
	}
	return raw
}

// secretSpans are the byte ranges of the passwords in a raw URL, in order,
// not overlapping, none empty.
func secretSpans(raw string) [][2]int {
	var spans [][2]int
	authority := 0
	if i := strings.Index(raw, "://"); i >= 0 {
		authority = i + 3
	} else if strings.HasPrefix(raw, "//") {
		authority = 2
	}
	rest := raw[authority:]
	// The user info ends at the last '@' before the query or fragment; if
	// there is none, at the last '@' at all (a '?' or '#' in the password).
	at := -1
	if end := strings.IndexAny(rest, "?#"); end >= 0 {
		at = strings.LastIndex(rest[:end], "@")
	}
	if at < 0 {
		at = strings.LastIndex(rest, "@")
	}
	if at >= 0 {
		if colon := strings.Index(rest[:at], ":"); colon >= 0 && colon+1 < at {
			spans = append(spans, [2]int{authority + colon + 1, authority + at})
		}
	}
	for _, m := range passwordParam.FindAllStringSubmatchIndex(raw, -1) {
		if m[3] > m[2] {
			spans = append(spans, [2]int{m[2], m[3]})
		}
	}
	// Overlapping spans (a parameter seen inside what looked like user
	// info) are merged.
	slices.SortFunc(spans, func(a, b [2]int) int { return a[0] - b[0] })
	var merged [][2]int
	for _, sp := range spans {
		if n := len(merged); n > 0 && sp[0] <= merged[n-1][1] {
			merged[n-1][1] = max(merged[n-1][1], sp[1])
			continue
		}
		merged = append(merged, sp)
	}
	return merged
}

// redactError is err without the passwords of rawURL. A url.Error quotes
// the whole URL, and the reason it gives can quote a piece of the password
// (`invalid port ":pa"` when the password holds a '/', `invalid URL escape
// "%zz"`): it is rebuilt from the redacted URL instead, and when that one
// parses, the fault was in the password itself.
func redactError(rawURL string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		safe := RedactURL(rawURL)
		if _, perr := url.Parse(safe); perr != nil {
			return perr // quotes the redacted URL only
		}
		return fmt.Errorf("%s %q: a password is not valid URL syntax (percent-encode / ? # @ %% : and control characters in it)", ue.Op, safe)
	}
	msg := err.Error()
	for _, pw := range urlPasswords(rawURL) {
		msg = strings.ReplaceAll(msg, pw, redacted)
	}
	if msg == err.Error() {
		return err
	}
	return errors.New(msg)
}

// urlPasswords are the passwords RedactURL hides in raw, as written and
// %-decoded.
func urlPasswords(raw string) []string {
	var out []string
	for _, sp := range secretSpans(raw) {
		pw := raw[sp[0]:sp[1]]
		out = append(out, pw)
		if dec, err := url.QueryUnescape(pw); err == nil && dec != pw && dec != "" {
			out = append(out, dec)
		}
	}
	return out
}
