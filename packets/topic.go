package packets

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Topic names and topic filters [MQTT-4.7], and shared subscriptions
// [MQTT-4.8.2]: the one place that knows their syntax. '/', '+' and '#'
// are ASCII, so they never occur inside a multi-byte UTF-8 sequence and
// the bytes can be scanned one by one.

// topicName checks that b[start:end], a topic name that is not a PUBLISH's
// own (a will topic, a Response Topic), has at least one character
// [MQTT-4.7.3-1] and no wildcard (wild is the rule that says so).
func (w *wire) topicName(field string, start, end int, wild string) {
	switch v := w.b[start:end]; {
	case w.err != nil:
	case len(v) == 0:
		w.fail(ProtocolError, "MQTT-4.7.3-1", "%s is empty", field)
	case bytes.ContainsAny(v, "+#"):
		w.fail(ProtocolError, wild, "%s contains a wildcard", field)
	}
}

const sharePrefix = "$share/"

// SplitShared splits a shared subscription's filter $share/<group>/<filter>
// [MQTT-4.8.2]. ok is false when filter does not start with "$share/" or is
// not well formed after it: the group must be non-empty [MQTT-4.8.2-1]
// without '+', '#' or '/', and followed by '/' and a non-empty filter
// [MQTT-4.8.2-2]. The prefix is case-sensitive, as topics are. Shared
// subscriptions are MQTT 5, but brokers honour them from 3.1.1 clients
// too, so this codec reads $share/ alike at every level.
func SplitShared(filter string) (group, rest string, ok bool) {
	after, ok := strings.CutPrefix(filter, sharePrefix)
	if !ok {
		return "", "", false
	}
	group, rest, ok = strings.Cut(after, "/")
	if !ok || group == "" || rest == "" || strings.ContainsAny(group, "+#") {
		return "", "", false
	}
	return group, rest, true
}

// ValidateFilter reports whether filter is a well-formed topic filter
// (shared or not): nil, or an *Error with the rule it breaks, with Code
// TopicFilterInvalid, or MalformedPacket when filter is not a UTF-8
// encoded string [MQTT-1.5.4] (a packet holding it is malformed).
func ValidateFilter(filter string) error {
	rule, msg := "", ""
	switch {
	case !utf8.ValidString(filter):
		rule, msg = "MQTT-1.5.4-1", "not well-formed UTF-8"
	case strings.IndexByte(filter, 0) >= 0:
		rule, msg = "MQTT-1.5.4-2", "contains U+0000"
	}
	if rule != "" {
		return &Error{Code: MalformedPacket, Rule: rule, Msg: fmt.Sprintf("topic filter %q: %s", filter, msg)}
	}
	if rule, msg = checkFilter(filter); rule != "" {
		return &Error{Code: TopicFilterInvalid, Rule: rule, Msg: fmt.Sprintf("topic filter %q: %s", filter, msg)}
	}
	return nil
}

// filterError checks topic filter i of a packet of type t, already known
// to be UTF-8.
func filterError(t Type, i int, filter string) *Error {
	rule, msg := checkFilter(filter)
	if rule == "" {
		return nil
	}
	return &Error{Code: TopicFilterInvalid, Rule: rule, Msg: fmt.Sprintf("%s topic filter %d is invalid: %s", t, i, msg)}
}

// checkFilter returns the rule the filter f breaks and how, or "".
func checkFilter(f string) (rule, msg string) {
	if f == "" {
		return "MQTT-4.7.3-1", "empty" // at least one character
	}
	if after, ok := strings.CutPrefix(f, sharePrefix); ok {
		group, rest, found := strings.Cut(after, "/")
		switch {
		case group == "":
			return "MQTT-4.8.2-1", "empty share name"
		case strings.ContainsAny(group, "+#"):
			return "MQTT-4.8.2-2", "a wildcard in its share name"
		case !found || rest == "":
			return "MQTT-4.8.2-2", "no topic filter after its share name"
		}
		f = rest
	}
	for i := 0; i < len(f); i++ {
		alone := (i == 0 || f[i-1] == '/') && (i+1 == len(f) || f[i+1] == '/')
		switch {
		case f[i] == '#' && !alone:
			// Alone in the last level [MQTT-4.7.1-1] ([MQTT-4.7.1-2] in 3.1.1).
			return "MQTT-4.7.1-1", "+ and # must fill a whole level"
		case f[i] == '#' && i != len(f)-1:
			return "MQTT-4.7.1-1", "# must be the last level"
		case f[i] == '+' && !alone:
			// Alone in its level [MQTT-4.7.1-2] ([MQTT-4.7.1-3] in 3.1.1).
			return "MQTT-4.7.1-2", "+ and # must fill a whole level"
		}
	}
	return "", ""
}
