package main

import (
	"maps"
	"slices"
	"strings"

	"github.com/spf13/pflag"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/rules"
)

// limitFlags are user set's and role set's limit flags, one per limit
// field (docs/limits.md): --pub-rate, --pub-bytes, --max-payload,
// --max-qos, --retain, --max-subs, --max-sessions, --max-keepalive; the
// field names themselves (--pub_rate) are accepted too. An empty value
// removes the field.
type limitFlags struct {
	v map[string]string // field -> value given
}

// limitUsage says what each limit's flag sets.
var limitUsage = map[string]string{
	"pub_rate":      "PUBLISH packets a second from the device, burst as many; past it the device is slowed (not read), nothing dropped",
	"pub_bytes":     "PUBLISH payload bytes a second from the device, burst as many; past it the device is slowed",
	"max_payload":   "payload bytes of one PUBLISH; past it the session ends (MQTT 5: DISCONNECT 0x95)",
	"max_qos":       "highest QoS, 0, 1 or 2: subscriptions are granted at most this; a PUBLISH above it ends the session (0x9B)",
	"retain":        "true or false: false refuses retained PUBLISHes (MQTT 5: DISCONNECT 0x9A; 3.1.1: as a denied publish)",
	"max_subs":      "topic filters one connection holds; past it a filter is refused in the SUBACK (0x97 / 0x80)",
	"max_sessions":  "live sessions of the user on every replica together; past it a CONNECT is refused (0x97 / 0x05)",
	"max_keepalive": "longest keep alive in seconds (a device's 0 counts as infinite): MQTT 5 is told it, silence of 1.5 x it ends the session",
}

// flags adds the limit flags to fs.
func (l *limitFlags) flags(fs *pflag.FlagSet) {
	for _, field := range rules.LimitFields {
		fs.Func(strings.ReplaceAll(field, "_", "-"), limitUsage[field]+"; empty removes it", func(v string) error {
			if l.v == nil {
				l.v = map[string]string{}
			}
			l.v[field] = strings.TrimSpace(v)
			return nil
		})
	}
	prev := fs.GetNormalizeFunc()
	fs.SetNormalizeFunc(func(f *pflag.FlagSet, name string) pflag.NormalizedName {
		if rules.IsLimitField(name) {
			name = strings.ReplaceAll(name, "_", "-")
		}
		return prev(f, name)
	})
}

// check refuses, before Redis is asked, a value that a limit cannot hold,
// naming its flag.
func (l *limitFlags) check(cmd string) error {
	for _, field := range slices.Sorted(maps.Keys(l.v)) {
		if v := l.v[field]; v != "" {
			if err := rules.CheckLimit(field, v); err != nil {
				return usagef("%s: --%s: %v", cmd, strings.ReplaceAll(field, "_", "-"), err)
			}
		}
	}
	return nil
}

// left counts the limit fields a hash holds once written, given those it
// held.
func (l *limitFlags) left(held map[string]string) int {
	n := 0
	for _, field := range rules.LimitFields {
		v, given := l.v[field]
		if given && v != "" || !given && held[field] != "" {
			n++
		}
	}
	return n
}

// printLimits adds show's line of limits, if any.
func printLimits(line func(k, v string), limits map[string]string) {
	if len(limits) == 0 {
		return
	}
	var parts []string
	for _, field := range rules.LimitFields {
		if v, ok := limits[field]; ok {
			parts = append(parts, field+"="+v)
		}
	}
	line("limits", strings.Join(parts, " "))
}
