package redisconn

import (
	"strconv"
	"strings"
	"time"
)

// DefaultPrefix is the key prefix when none is configured.
const DefaultPrefix = "mqtt:"

// Keys names the keys and pub/sub channels of the rule store under one
// key prefix. The zero Keys has the prefix "".
type Keys struct{ prefix string }

// NewKeys names the keys under prefix; "" takes DefaultPrefix.
func NewKeys(prefix string) Keys {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return Keys{prefix: prefix}
}

// Prefix is the key prefix.
func (k Keys) Prefix() string { return k.prefix }

// UserKey is the Redis key of a user's hash.
func (k Keys) UserKey(username string) string { return k.prefix + "user:" + username }

// RoleKey is the Redis key of a role's hash.
func (k Keys) RoleKey(name string) string { return k.prefix + "role:" + name }

// BanKey is the hash of a kind's bans (ip, user, clientid).
func (k Keys) BanKey(kind string) string { return k.prefix + "ban:" + kind }

// FailUserKey counts a user name's failed attempts.
func (k Keys) FailUserKey(username string) string { return k.prefix + "fail:user:" + username }

// FailIPKey counts an address's failed attempts (addr: the address, or
// an IPv6 address's /64).
func (k Keys) FailIPKey(addr string) string { return k.prefix + "fail:ip:" + addr }

// KnownKey is the sorted set of the addresses a user authenticated from.
func (k Keys) KnownKey(username string) string { return k.prefix + "known:" + username }

// DecisionsKey is the Redis stream of the decision log.
func (k Keys) DecisionsKey() string { return k.prefix + "decisions" }

// TicketSaltKey is the Redis key of the ticket key salt of epoch (unix time
// divided by period): <prefix>tls-ticket-salt:<period in ms>:<epoch>. The
// period is part of the key so that replicas configured with different
// periods never mix their epochs.
func (k Keys) TicketSaltKey(period time.Duration, epoch int64) string {
	return k.prefix + "tls-ticket-salt:" + strconv.FormatInt(period.Milliseconds(), 10) + ":" + strconv.FormatInt(epoch, 10)
}

// ChangesChannel is the pub/sub channel the operator calls publish each
// changed username to.
func (k Keys) ChangesChannel() string { return k.prefix + "changes" }

// RoleChangesChannel is the pub/sub channel the operator calls publish
// each changed role name to.
func (k Keys) RoleChangesChannel() string { return k.prefix + "role-changes" }

// BanChangesChannel is the pub/sub channel ban changes are published on
// ("kind value").
func (k Keys) BanChangesChannel() string { return k.prefix + "ban-changes" }

// KickChannel is the pub/sub channel kick requests publish usernames to.
func (k Keys) KickChannel() string { return k.prefix + "kick" }

// EscapeGlob escapes Redis MATCH pattern characters in a literal prefix.
func EscapeGlob(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
