package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/operator"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/passwords"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

func cmdUser(io stdio) *cobra.Command {
	return group("user", "Create, change, inspect and revoke users",
		`Operator commands on users. They use the same Redis as serve
(AUTHPROXY_REDIS_URL, AUTHPROXY_REDIS_KEY_PREFIX). Every subcommand takes
--json for output a script can parse, and --help.`,
		cmdUserSet(io),
		cmdSimple(io, "enable", "Allow the user again", runUserSimple),
		cmdSimple(io, "disable", "Refuse the user's next CONNECT (0x05 / 0x87) and close its live connections", runUserSimple),
		cmdSimple(io, "delete", "Remove the user (its live connections are closed)", runUserSimple),
		cmdSimple(io, "kick", "Close the user's live connections on every proxy, rules unchanged", runUserSimple),
		cmdSimple(io, "show", "Print the user's rules (never the hash)", runUserSimple),
		cmdSimple(io, "list", "Print all user names (SCAN, never KEYS)", runUserSimple),
		cmdUserRotate(io), cmdUserImport(io), cmdUserExport(io),
	)
}

// cmdSimple is one of the user or role subcommands that take NAME (list:
// nothing) and --json, run by run.
func cmdSimple(io stdio, sub, short string, run func(io stdio, sub string, args []string, asJSON bool) error) *cobra.Command {
	c := &cobra.Command{Use: sub + " NAME", Short: short, Args: exactArgs(1, "one NAME")}
	if sub == "list" {
		c.Use, c.Args = "list", exactArgs(0, "no argument")
	}
	asJSON := jsonFlag(c.Flags())
	c.RunE = func(_ *cobra.Command, args []string) error { return run(io, sub, args, *asJSON) }
	return c
}

// printShown prints what a show subcommand read, as JSON or as text; a
// malformed rule is reported after what could be shown, any other error
// instead of it.
func printShown(io stdio, v any, err error, asJSON bool, text func()) error {
	if err != nil && !errors.Is(err, policy.ErrMalformedRule) {
		return err
	}
	if asJSON {
		if jerr := printJSON(io.out, v); jerr != nil {
			return jerr
		}
	} else {
		text()
	}
	return err
}

// printNames prints the names of a list subcommand: one a line, or a JSON
// array (never null).
func printNames(io stdio, names []string, asJSON bool) error {
	if asJSON {
		if names == nil {
			names = []string{}
		}
		return printJSON(io.out, names)
	}
	for _, n := range names {
		fmt.Fprintln(io.out, n)
	}
	return nil
}

func runUserSimple(io stdio, sub string, args []string, asJSON bool) error {
	store, ctx, done, err := storeFromEnv("user " + sub)
	if err != nil {
		return err
	}
	defer done()

	switch sub {
	case "list":
		names, err := store.ListUsers(ctx)
		if err != nil {
			return err
		}
		return printNames(io, names, asJSON)
	case "show":
		return showUser(ctx, io, store, args[0], asJSON)
	}
	name := args[0]
	switch sub {
	case "enable", "disable":
		err = store.SetEnabled(ctx, name, sub == "enable")
	case "delete":
		err = store.DeleteUser(ctx, name)
	case "kick":
		var n int64
		if n, err = store.Kick(ctx, name); err == nil {
			if asJSON {
				return printJSON(io.out, map[string]any{"user": name, "action": "kicked", "proxies": n})
			}
			fmt.Fprintf(io.out, "user %s kicked (%d proxies listening)\n", name, n)
			return nil
		}
	}
	if err != nil {
		return err
	}
	return report(io, asJSON, name, sub+"d")
}

func report(io stdio, asJSON bool, name, action string) error {
	if asJSON {
		return printJSON(io.out, map[string]string{"user": name, "action": action})
	}
	fmt.Fprintf(io.out, "user %s %s\n", name, action)
	return nil
}

func printUser(io stdio, u operator.User) {
	line := func(k, v string) { fmt.Fprintf(io.out, "%-10s %s\n", k+":", v) }
	line("user", u.Name)
	line("enabled", strconv.FormatBool(u.Enabled))
	pw := "none"
	if u.HasPassword {
		pw = "set (" + u.HashFormat + ")"
	}
	line("password", pw)
	list := func(v []string) string {
		if v == nil {
			return "any"
		}
		return strings.Join(v, " ")
	}
	line("clientids", list(u.ClientIDs))
	certs := "not required"
	if u.Certs != nil {
		certs = strings.Join(u.Certs, " ")
	}
	line("certs", certs)
	line("cidrs", list(u.CIDRs))
	na := "never"
	if u.NotAfter != nil {
		na = u.NotAfter.Format(time.RFC3339)
	}
	line("not_after", na)
	line("publish", none(u.Publish))
	line("subscribe", none(u.Subscribe))
	line("roles", none(u.Roles))
	printRoute(line, u.Backend, u.Mountpoint)
	printLimits(line, u.Limits)
	if len(u.Extra) > 0 {
		line("other", strings.Join(u.Extra, " "))
	}
}

// none is a list of topic filters or role names as printed: "none" when
// there is none.
func none(v []string) string {
	if len(v) == 0 {
		return "none"
	}
	return strings.Join(v, " ")
}

// listFlag is a flag holding a list: its values are separated by white
// space or commas, and the flag may be repeated, each value adding to the
// list. set means it was given at all: given only empty values, it removes
// the rule. A list of topic filters (topics) is separated by white space
// only, as a comma is a legal character of a topic.
type listFlag struct {
	set    bool
	topics bool
	v      []string
}

func (l *listFlag) String() string { return strings.Join(l.v, " ") }
func (l *listFlag) Type() string   { return "list" }
func (l *listFlag) Set(s string) error {
	l.set = true
	l.v = append(l.v, strings.FieldsFunc(s, func(r rune) bool {
		return unicode.IsSpace(r) || (r == ',' && !l.topics) // the store splits at white space as strings.Fields does
	})...)
	return nil
}
func (l *listFlag) ptr() *[]string {
	if !l.set {
		return nil
	}
	v := l.v
	if v == nil {
		v = []string{}
	}
	return &v
}

// optBool is a boolean flag that remembers whether it was given.
type optBool struct {
	set bool
	v   bool
}

func (b *optBool) String() string { return strconv.FormatBool(b.v) }
func (b *optBool) Type() string   { return "bool" }
func (b *optBool) Set(s string) error {
	v, err := strconv.ParseBool(s)
	b.set, b.v = true, v
	return err
}

func cmdUserSet(io stdio) *cobra.Command {
	c := &cobra.Command{
		Use:   "set NAME [flags]",
		Short: "Create or update a user (password from stdin or a prompt, never argv)",
		Long: `Creates or updates a user. The password is never taken from the command
line: it is read from standard input (first line) when that is not a
terminal, or asked for twice without echo; with --password-stdin it is read
from the first line of standard input in any case, as explain's. A new user
gets a password unless --no-password (users of a certificate, or of tokens
their device signs: --jwt-keys) or --password-hash is given; an existing
user keeps theirs unless --password, --password-stdin or --generate is
given.
List flags may be repeated and take values separated by white space or
commas; --publish and --subscribe by white space only (a comma is a legal
topic character). An empty value (--publish '') removes the rule. Flags and
NAME may come in any order.

--publish and --subscribe are MQTT topic filters (+ and # fill a whole
level, # only the last); %u and %c filling a whole level stand for the user
name and the client id: --publish 'devices/%u/#'. --roles names roles (see
"mqtt-authproxy role --help"); the role "default" applies to every user
anyway. With topic rules on (the default) a user may publish and subscribe
only where its own filters, its roles and the default role allow.`,
		Args: exactArgs(1, "one NAME"),
	}
	fs := c.Flags()
	var o userSetOptions
	fs.Var(&o.clientIDs, "clientids", "client id globs (* and ?; %u is the user name)")
	fs.Var(&o.certs, "certs", "sha256:<hex> or cn:<name> entries; a TLS client certificate must match one")
	fs.Var(&o.cidrs, "cidrs", "source address CIDRs")
	o.publish.topics, o.subscribe.topics = true, true
	fs.Var(&o.publish, "publish", "topic filters the user may publish to (%u user name, %c client id)")
	fs.Var(&o.subscribe, "subscribe", "topic filters the user may subscribe to (%u user name, %c client id)")
	fs.Var(&o.roles, "roles", "role names whose topic rules the user gets")
	o.route.flags(fs) // --backend, --mountpoint (brokers.go)
	// --pub-rate, --max-qos, ... (limits.go)
	o.limits.flags(fs)
	fs.Var(&o.enabled, "enabled", "true or false (--enabled alone: true)")
	fs.Lookup("enabled").NoOptDefVal = "true"
	fs.StringVar(&o.notAfter, "not-after", "", "RFC 3339 time after which the user is refused; empty removes it")
	fs.StringVar(&o.jwtKeys, "jwt-keys", "", "a JWKS file: the public keys the user's device signs its tokens with (see docs/credentials.md); empty removes them")
	fs.BoolVar(&o.askPassword, "password", false, "read a new password (stdin or prompt)")
	fs.BoolVar(&o.passwordStdin, "password-stdin", false, "read a new password from the first line of standard input, never a prompt")
	fs.BoolVar(&o.generate, "generate", false, "generate a strong random password and print it once")
	fs.StringVar(&o.hash, "password-hash", "", "store this ready hash (argon2id, bcrypt or PBKDF2) instead of a password")
	fs.BoolVar(&o.noPassword, "no-password", false, "create the user without a password (certificate or device tokens only: requires --certs or --jwt-keys)")
	asJSON := jsonFlag(fs)
	c.RunE = func(c *cobra.Command, args []string) error {
		o.notAfterSet = c.Flags().Changed("not-after")
		o.jwtKeysSet = c.Flags().Changed("jwt-keys")
		o.asJSON = *asJSON
		return runUserSet(io, args[0], o)
	}
	return c
}

type userSetOptions struct {
	clientIDs, certs, cidrs   listFlag
	publish, subscribe, roles listFlag
	enabled                   optBool
	notAfter                  string
	notAfterSet               bool
	jwtKeys                   string
	jwtKeysSet                bool
	askPassword, generate     bool
	passwordStdin             bool
	hash                      string
	noPassword, asJSON        bool
	route                     routeFlags
	limits                    limitFlags
}

func runUserSet(io stdio, name string, o userSetOptions) error {
	u, err := o.update()
	if err != nil {
		return err
	}
	store, ctx, done, err := storeFromEnv("user set")
	if err != nil {
		return err
	}
	defer done()
	_, gerr := store.GetUser(ctx, name)
	exists := gerr == nil || errors.Is(gerr, policy.ErrMalformedRule)
	if gerr != nil && !exists && !errors.Is(gerr, operator.ErrNoSuchUser) {
		return gerr
	}

	var generated string
	switch {
	case o.generate:
		generated = rand.Text() // 26 base32 characters, 130 bits
		h := passwords.HashGenerated(generated)
		u.PasswordHash = &h
	case o.passwordStdin:
		pw, err := readPasswordLine(io)
		if err != nil {
			return err
		}
		u.Password = &pw
	case o.askPassword || (!exists && !o.noPassword && o.hash == ""):
		pw, err := readPassword(io)
		if err != nil {
			return err
		}
		u.Password = &pw
	}
	if err := store.SetUser(ctx, name, u); err != nil {
		if errors.Is(err, policy.ErrMalformedRule) || errors.Is(err, passwords.ErrMalformedHash) {
			return usagef("user set: %v", err)
		}
		return err
	}
	action := "updated"
	if !exists {
		action = "created"
	}
	return printUserSet(io, name, action, generated, o.asJSON)
}

// update is the change the flags make, checked before Redis is asked.
func (o userSetOptions) update() (operator.Update, error) {
	n := 0
	for _, b := range []bool{o.askPassword || o.passwordStdin, o.generate, o.hash != "", o.noPassword} {
		if b {
			n++
		}
	}
	if n > 1 {
		return operator.Update{}, usagef("user set: give at most one of --password (or --password-stdin), --generate, --password-hash, --no-password")
	}
	if err := checkTopics("user set", &o.publish, &o.subscribe); err != nil {
		return operator.Update{}, err
	}
	u := operator.Update{ClientIDs: o.clientIDs.ptr(), Certs: o.certs.ptr(), CIDRs: o.cidrs.ptr(),
		Publish: o.publish.ptr(), Subscribe: o.subscribe.ptr(), Roles: o.roles.ptr()}
	if err := o.route.checkEnv("user set"); err != nil {
		return u, err
	}
	u.Backend, u.Mountpoint = o.route.ptrs()
	if err := o.limits.check("user set"); err != nil {
		return u, err
	}
	u.Limits = o.limits.v
	if o.enabled.set {
		u.Enabled = &o.enabled.v
	}
	if o.notAfterSet {
		var t time.Time
		if o.notAfter != "" {
			var err error
			if t, err = time.Parse(time.RFC3339, o.notAfter); err != nil {
				return u, usagef("user set: --not-after %q is not an RFC 3339 time (2026-12-31T23:59:59Z)", o.notAfter)
			}
		}
		u.NotAfter = &t
	}
	if o.hash != "" {
		u.PasswordHash = &o.hash
	}
	if o.jwtKeysSet {
		keys, err := readJWKSFile(o.jwtKeys)
		if err != nil {
			return u, err
		}
		u.JWTKeys = &keys
	}
	if o.noPassword && !o.certs.set && (!o.jwtKeysSet || o.jwtKeys == "") {
		return u, usagef("user set: --no-password needs --certs or --jwt-keys: a user without a password authenticates by certificate or with tokens its device signs")
	}
	return u, nil
}

// maxJWKSFile bounds the JWKS file --jwt-keys reads (the proxy reads at
// most 64 keys of a user's jwt_keys).
const maxJWKSFile = 64 << 10

// readJWKSFile is the JWKS file --jwt-keys names ("" for none: remove
// the keys), read whole and bounded; operator.SetUser checks its form.
func readJWKSFile(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", usagef("user set: --jwt-keys: %v", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxJWKSFile+1))
	switch {
	case err != nil:
		return "", usagef("user set: --jwt-keys %s: %v", path, err)
	case len(b) > maxJWKSFile:
		return "", usagef("user set: --jwt-keys %s: over %d KiB; a device's JWKS holds a few public keys", path, maxJWKSFile>>10)
	}
	return strings.TrimSpace(string(b)), nil
}

// printUserSet says what user set did, and the generated password once.
func printUserSet(io stdio, name, action, generated string, asJSON bool) error {
	if asJSON {
		out := map[string]string{"user": name, "action": action}
		if generated != "" {
			out["password"] = generated
		}
		return printJSON(io.out, out)
	}
	fmt.Fprintf(io.out, "user %s %s\n", name, action)
	if generated != "" {
		fmt.Fprintf(io.out, "password: %s\n(shown once; it is stored only as a salted SHA-256: a random secret of this length needs no slow hash)\n", generated)
	}
	return nil
}
