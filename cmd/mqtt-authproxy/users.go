package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore"
)

const checkUsage = `Usage: mqtt-authproxy check

Validates the AUTHPROXY_* configuration (loading the certificates), pings
Redis and connects to the broker (a real CONNECT when backend credentials
are set). Prints one line per check. Exit 0 when all pass, 1 when Redis or
the broker fails, 2 when the configuration is bad.
`

func cmdCheck(args []string, io stdio) error {
	fs := newFlags("check", checkUsage, io)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, settings, err := serveConfigFromEnv()
	if err != nil {
		return err
	}
	fmt.Fprintln(io.out, "ok    configuration")
	if settings.tls != nil {
		fmt.Fprintf(io.out, "ok    TLS certificate %s\n", cfg.TLSCertFile)
	}
	store, closeStore, err := openStore(cfg)
	if err != nil {
		return err
	}
	defer closeStore()
	ctx := context.Background()
	failed := false
	if err := store.Ping(ctx); err != nil {
		fmt.Fprintf(io.out, "FAIL  redis %s: %v\n", authstore.RedactURL(cfg.RedisURL), err)
		failed = true
	} else {
		fmt.Fprintf(io.out, "ok    redis %s\n", authstore.RedactURL(cfg.RedisURL))
	}
	if err := settings.backend.Probe(ctx); err != nil {
		fmt.Fprintf(io.out, "FAIL  backend %s: %v\n", cfg.BackendAddr, err)
		failed = true
	} else {
		fmt.Fprintf(io.out, "ok    backend %s\n", cfg.BackendAddr)
	}
	if failed {
		return errCheckFailed
	}
	return nil
}

// storeFromEnv opens the Redis store of the AUTHPROXY_* configuration for
// an operator command, with a context that bounds the command; done closes
// both.
func storeFromEnv() (*authstore.Store, context.Context, func(), error) {
	cfg, err := loadConfig()
	if err != nil {
		return nil, nil, nil, err
	}
	store, closeStore, err := openStore(cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	return store, ctx, func() { cancel(); closeStore() }, nil
}

// openStore opens the Redis store of the configuration.
func openStore(cfg Config) (*authstore.Store, func(), error) {
	if err := cfg.validateCommon(); err != nil {
		return nil, nil, err
	}
	rdb, err := authstore.NewClient(cfg.RedisURL)
	if err != nil {
		return nil, nil, cfgErr("REDIS_URL", "%v", err)
	}
	store := authstore.New(rdb, authstore.Options{Prefix: cfg.RedisKeyPrefix, Timeout: cfg.RedisTimeout, ClientIDsDefault: strings.Fields(cfg.ClientIDsDefault)})
	return store, func() { rdb.Close() }, nil
}

const userUsage = `Usage:
  mqtt-authproxy user set NAME [flags]   create or update a user
  mqtt-authproxy user enable NAME        allow the user again
  mqtt-authproxy user disable NAME       refuse the user's next CONNECT (0x05 / 0x87)
  mqtt-authproxy user delete NAME        remove the user
  mqtt-authproxy user kick NAME          close the user's live connections, rules unchanged
  mqtt-authproxy user show NAME          print the user's rules (never the hash)
  mqtt-authproxy user list               print all user names

They use the same Redis as serve (AUTHPROXY_REDIS_URL, AUTHPROXY_REDIS_KEY_PREFIX).
Every subcommand takes --json for output a script can parse, and --help.
`

const userSetUsage = `Usage: mqtt-authproxy user set NAME [flags]

Creates or updates a user. The password is never taken from the command
line: it is read from standard input (first line) when that is not a
terminal, or asked for twice without echo. A new user gets a password unless
--no-password (certificate-only users) or --password-hash is given; an
existing user keeps theirs unless --password or --generate is given.
List flags take space- or comma-separated values; an empty value removes
the rule.

Flags:
`

func cmdUser(args []string, io stdio) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(io.err, userUsage)
		if len(args) == 0 {
			return usagef("user: missing subcommand")
		}
		return flag.ErrHelp
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "set":
		return cmdUserSet(args, io)
	case "enable", "disable", "delete", "show", "list", "kick":
		return cmdUserSimple(sub, args, io)
	}
	fmt.Fprint(io.err, userUsage)
	return usagef("user: unknown subcommand %q", sub)
}

// splitArgs separates the positional NAME from flags in any order.
func splitArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func cmdUserSimple(sub string, args []string, io stdio) error {
	usage := fmt.Sprintf("Usage: mqtt-authproxy user %s NAME [--json]\n\n", sub)
	if sub == "list" {
		usage = "Usage: mqtt-authproxy user list [--json]\n\n"
	}
	fs := newFlags("user "+sub, usage, io)
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := splitArgs(fs, args)
	if err != nil {
		return err
	}
	want := 1
	if sub == "list" {
		want = 0
	}
	if len(pos) != want {
		fs.Usage()
		return usagef("user %s: want %d argument(s), got %d", sub, want, len(pos))
	}
	store, ctx, done, err := storeFromEnv()
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
		if *asJSON {
			if names == nil {
				names = []string{}
			}
			return json.NewEncoder(io.out).Encode(names)
		}
		for _, n := range names {
			fmt.Fprintln(io.out, n)
		}
		return nil
	case "show":
		u, err := store.GetUser(ctx, pos[0])
		if err != nil && !errors.Is(err, authstore.ErrMalformedRule) {
			return err
		}
		if *asJSON {
			if jerr := json.NewEncoder(io.out).Encode(u); jerr != nil {
				return jerr
			}
		} else {
			printUser(io, u)
		}
		return err // a malformed rule is reported after what could be shown
	}
	name := pos[0]
	switch sub {
	case "enable", "disable":
		err = store.SetEnabled(ctx, name, sub == "enable")
	case "delete":
		err = store.DeleteUser(ctx, name)
	case "kick":
		var n int64
		if n, err = store.Kick(ctx, name); err == nil {
			if *asJSON {
				return json.NewEncoder(io.out).Encode(map[string]any{"user": name, "action": "kicked", "proxies": n})
			}
			fmt.Fprintf(io.out, "user %s kicked (%d proxies listening)\n", name, n)
			return nil
		}
	}
	if err != nil {
		return err
	}
	return report(io, *asJSON, name, sub+"d")
}

func report(io stdio, asJSON bool, name, action string) error {
	if asJSON {
		return json.NewEncoder(io.out).Encode(map[string]string{"user": name, "action": action})
	}
	fmt.Fprintf(io.out, "user %s %s\n", name, action)
	return nil
}

func printUser(io stdio, u authstore.User) {
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
	if len(u.Extra) > 0 {
		line("other", strings.Join(u.Extra, " "))
	}
}

// listFlag is a flag holding a list; set means it was given at all.
type listFlag struct {
	set bool
	v   []string
}

func (l *listFlag) String() string { return strings.Join(l.v, " ") }
func (l *listFlag) Set(s string) error {
	l.set = true
	l.v = strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ',' || r == '\t' || r == '\n' })
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

type optBool struct {
	set bool
	v   bool
}

func (b *optBool) String() string   { return strconv.FormatBool(b.v) }
func (b *optBool) IsBoolFlag() bool { return true }
func (b *optBool) Set(s string) error {
	v, err := strconv.ParseBool(s)
	b.set, b.v = true, v
	return err
}

func cmdUserSet(args []string, io stdio) error {
	fs := newFlags("user set", userSetUsage, io)
	var clientIDs, certs, cidrs listFlag
	var enabled optBool
	fs.Var(&clientIDs, "clientids", "client id globs (* and ?; %u is the user name)")
	fs.Var(&certs, "certs", "sha256:<hex> or cn:<name> entries; a TLS client certificate must match one")
	fs.Var(&cidrs, "cidrs", "source address CIDRs")
	fs.Var(&enabled, "enabled", "true or false")
	notAfter := fs.String("not-after", "\x00", "RFC 3339 time after which the user is refused; empty removes it")
	askPassword := fs.Bool("password", false, "read a new password (stdin or prompt)")
	generate := fs.Bool("generate", false, "generate a strong random password and print it once")
	hash := fs.String("password-hash", "", "store this ready hash (argon2id, bcrypt or PBKDF2) instead of a password")
	noPassword := fs.Bool("no-password", false, "create the user without a password (certificate-only: requires --certs)")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := splitArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return usagef("user set: want one NAME, got %d arguments", len(pos))
	}
	name := pos[0]
	n := 0
	for _, b := range []bool{*askPassword, *generate, *hash != "", *noPassword} {
		if b {
			n++
		}
	}
	if n > 1 {
		return usagef("user set: give at most one of --password, --generate, --password-hash, --no-password")
	}
	u := authstore.Update{ClientIDs: clientIDs.ptr(), Certs: certs.ptr(), CIDRs: cidrs.ptr()}
	if enabled.set {
		u.Enabled = &enabled.v
	}
	if *notAfter != "\x00" {
		var t time.Time
		if *notAfter != "" {
			if t, err = time.Parse(time.RFC3339, *notAfter); err != nil {
				return usagef("user set: --not-after %q is not an RFC 3339 time (2026-12-31T23:59:59Z)", *notAfter)
			}
		}
		u.NotAfter = &t
	}
	if *hash != "" {
		u.PasswordHash = hash
	}
	if *noPassword && !certs.set {
		return usagef("user set: --no-password needs --certs: a user without a password authenticates by certificate")
	}

	store, ctx, done, err := storeFromEnv()
	if err != nil {
		return err
	}
	defer done()
	_, gerr := store.GetUser(ctx, name)
	exists := gerr == nil || errors.Is(gerr, authstore.ErrMalformedRule)
	if gerr != nil && !exists && !errors.Is(gerr, authstore.ErrNoSuchUser) {
		return gerr
	}

	var generated string
	switch {
	case *generate:
		generated = rand.Text() // 26 base32 characters, 130 bits
		u.Password = &generated
	case *askPassword || (!exists && !*noPassword && *hash == ""):
		pw, err := readPassword(io)
		if err != nil {
			return err
		}
		u.Password = &pw
	}
	if err := store.SetUser(ctx, name, u); err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) {
			return err
		}
		if errors.Is(err, authstore.ErrMalformedRule) || errors.Is(err, authstore.ErrMalformedHash) {
			return usagef("user set: %v", err)
		}
		return err
	}
	action := "updated"
	if !exists {
		action = "created"
	}
	if *asJSON {
		out := map[string]string{"user": name, "action": action}
		if generated != "" {
			out["password"] = generated
		}
		return json.NewEncoder(io.out).Encode(out)
	}
	fmt.Fprintf(io.out, "user %s %s\n", name, action)
	if generated != "" {
		fmt.Fprintf(io.out, "password: %s\n(shown once; it is stored only as an argon2id hash)\n", generated)
	}
	return nil
}

// readPassword reads a password: the first line of stdin when it is not a
// terminal, else a no-echo prompt, asked twice.
func readPassword(io stdio) (string, error) {
	if f, ok := io.in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(io.err, "Password: ")
		a, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(io.err)
		if err != nil {
			return "", err
		}
		fmt.Fprint(io.err, "Again: ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(io.err)
		if err != nil {
			return "", err
		}
		if string(a) != string(b) {
			return "", usagef("the passwords do not match")
		}
		if len(a) == 0 {
			return "", usagef("empty password")
		}
		return string(a), nil
	}
	line, err := bufio.NewReader(io.in).ReadString('\n')
	if err != nil && line == "" {
		return "", usagef("no password on standard input (pipe one in, or use --generate)")
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", usagef("empty password on standard input")
	}
	return line, nil
}

const hashUsage = `Usage: mqtt-authproxy hash < password

Reads a password (first line of standard input, or a no-echo prompt) and
prints its argon2id hash, for operators who write users with redis-cli:

  redis-cli HSET mqtt:user:alice password "$(mqtt-authproxy hash < pw.txt)"
`

func cmdHash(args []string, io stdio) error {
	fs := newFlags("hash", hashUsage, io)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("hash takes no arguments: the password is read from standard input, never from the command line")
	}
	pw, err := readPassword(io)
	if err != nil {
		return err
	}
	fmt.Fprintln(io.out, authstore.HashPassword(pw))
	return nil
}
