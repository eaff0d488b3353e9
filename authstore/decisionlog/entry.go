package decisionlog

import (
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// Fields are the fields of every entry of the decision stream, in
// the order they are written: policy.Record's, never a password. time is
// RFC 3339 in UTC with milliseconds, protocol the MQTT protocol level
// ("" when unknown), resumed "true" or "false", duration a Go duration
// ("12.5ms"), count the connections a summary stands for ("" in an entry
// about one; entries written before it existed lack it); credential the
// kind of credential an accepted CONNECT proved itself with ("password",
// "token", "cert", ...), issuer and jti its token's issuer and id, never
// the token ("" when none; entries written before them lack them).
var Fields = []string{"time", "replica", "kind", "remote", "username", "client_id", "protocol", "tls", "resumed",
	"cert_sha256", "outcome", "reason", "duration", "count", "credential", "issuer", "jti"}

// timeLayout is RFC 3339 with milliseconds.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// A field of an entry is cut to these many bytes (with its length
// appended), so that a device sending a 60 KiB user name cannot make the
// stream's memory 60 KiB per entry.
const (
	maxField  = 256
	maxReason = 512
)

// encode is r as the stream entry's field/value pairs, in
// Fields' order (the same fields in every entry, which Redis
// stores once per stream node).
func encode(r policy.Record) []string {
	protocol, count := "", ""
	if r.Protocol != 0 {
		protocol = strconv.Itoa(r.Protocol)
	}
	if r.Count != 0 {
		count = strconv.Itoa(r.Count)
	}
	return []string{
		"time", r.Time.UTC().Format(timeLayout),
		"replica", capField(r.Replica, maxField),
		"kind", capField(r.Kind, maxField),
		"remote", capField(r.Remote, maxField),
		"username", capField(r.Username, maxField),
		"client_id", capField(r.ClientID, maxField),
		"protocol", protocol,
		"tls", capField(r.TLS, maxField),
		"resumed", strconv.FormatBool(r.Resumed),
		"cert_sha256", capField(r.CertSHA256, maxField),
		"outcome", capField(r.Outcome, maxField),
		"reason", capField(r.Reason, maxReason),
		"duration", r.Duration.String(),
		"count", count,
		"credential", capField(r.Credential, maxField),
		"issuer", capField(r.Issuer, maxField),
		"jti", capField(r.JTI, maxField),
	}
}

// capField cuts s to at most max bytes, at a rune boundary, with
// its full length appended.
func capField(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "...(" + strconv.Itoa(len(s)) + " bytes)"
}

// decode is a stream entry as a Record. A field that is missing
// or does not parse is left zero; an entry without a readable time takes
// the time of its stream ID.
func decode(m redis.XMessage) policy.Record {
	str := func(k string) string {
		v, _ := m.Values[k].(string)
		return v
	}
	r := policy.Record{Replica: str("replica"), Kind: str("kind"), Remote: str("remote"), Username: str("username"),
		ClientID: str("client_id"), TLS: str("tls"), CertSHA256: str("cert_sha256"), Outcome: str("outcome"), Reason: str("reason"),
		Credential: str("credential"), Issuer: str("issuer"), JTI: str("jti")}
	r.Protocol, _ = strconv.Atoi(str("protocol"))
	r.Resumed, _ = strconv.ParseBool(str("resumed"))
	r.Duration, _ = time.ParseDuration(str("duration"))
	r.Count, _ = strconv.Atoi(str("count"))
	if t, err := time.Parse(time.RFC3339Nano, str("time")); err == nil {
		r.Time = t
	} else if ms, _, ok := strings.Cut(m.ID, "-"); ok {
		if n, err := strconv.ParseInt(ms, 10, 64); err == nil {
			r.Time = time.UnixMilli(n).UTC()
		}
	}
	return r
}
