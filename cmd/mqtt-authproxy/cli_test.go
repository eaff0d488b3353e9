package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/spf13/cobra"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/operator"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/testenv"
)

// commandPaths is every command of the tree, as the words that select it.
func commandPaths() [][]string {
	var out [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		out = append(out, path)
		for _, sub := range c.Commands() {
			walk(sub, append(slices.Clone(path), sub.Name()))
		}
	}
	walk(newRoot(stdio{}), nil)
	return out
}

// runIn runs the command line in this process.
func runIn(args ...string) result {
	var out, errb bytes.Buffer
	code := run(args, stdio{strings.NewReader(""), &out, &errb})
	return result{code, out.String(), errb.String()}
}

// TestEveryCommandHelpAndUnknownFlags: for every command, --help and -h
// print its usage on stderr and exit 0, and an unknown flag exits 2 naming
// it, before anything runs.
func TestEveryCommandHelpAndUnknownFlags(t *testing.T) {
	paths := commandPaths()
	if len(paths) < 15 {
		t.Fatalf("only %d commands found: %v", len(paths), paths)
	}
	for _, p := range paths {
		for _, help := range []string{"--help", "-h", "-help"} {
			r := runIn(append(slices.Clone(p), help)...)
			if r.code != 0 || !strings.Contains(r.stderr, "Usage:") {
				t.Errorf("%v %s: exit %d, stderr %q", p, help, r.code, r.stderr)
			}
		}
		r := runIn(append(slices.Clone(p), "--no-such-flag")...)
		if r.code != 2 || (!slices.Equal(p, []string{"demo"}) && !strings.Contains(r.stderr, "unknown flag: --no-such-flag")) {
			t.Errorf("%v --no-such-flag: exit %d, stderr %q", p, r.code, r.stderr)
		}
	}
	if r := runIn("help", "user", "set"); r.code != 0 || !strings.Contains(r.stdout, "Usage:") {
		t.Errorf("help user set: %+v", r)
	}
}

// TestJSONWhereThereIsOutput: every command that prints data takes
// --json; the exceptions print for people (serve, demo), for a shell
// ($(... hash)) or only exit (healthcheck).
func TestJSONWhereThereIsOutput(t *testing.T) {
	exempt := map[string]bool{"": true, "serve": true, "demo": true, "hash": true, "healthcheck": true, "help": true, "user": true, "role": true, "ban": true, "token": true, "cert": true, "crl": true}
	for _, p := range commandPaths() {
		c, _, err := newRoot(stdio{}).Find(p)
		if err != nil {
			t.Fatal(err)
		}
		if !exempt[strings.Join(p, " ")] && c.Flags().Lookup("json") == nil {
			t.Errorf("%v has no --json", p)
		}
	}
	var v map[string]string
	if r := runIn("version", "--json"); r.code != 0 || json.Unmarshal([]byte(r.stdout), &v) != nil || v["version"] != version {
		t.Errorf("version --json: %+v", r)
	}
}

// TestFlagsInAnyOrder: flags may come before or after NAME, with one dash
// or two (Go's flag package took both), and --enabled alone means true.
func TestFlagsInAnyOrder(t *testing.T) {
	m := miniredis.RunT(t)
	env := map[string]string{"AUTHPROXY_REDIS_URL": "redis://" + m.Addr() + "/0"}
	show := func(name string, args ...string) operator.User {
		t.Helper()
		r := runBin(t, env, "", append([]string{"user", "show"}, append(args, name)...)...)
		var u operator.User
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &u) != nil {
			t.Fatalf("user show %v %s: %+v", args, name, r)
		}
		return u
	}
	for _, args := range [][]string{
		{"user", "set", "alice", "--clientids", "a,b", "--enabled=false"},
		{"user", "set", "--clientids", "a,b", "bob", "--enabled=false"},
		{"user", "set", "-clientids", "a,b", "-enabled=false", "carol"},
		{"user", "set", "-clientids=a b", "--enabled", "false", "dave"}, // "false" is a second argument, as before
	} {
		r := runBin(t, env, "pw\n", args...)
		if args[len(args)-1] == "dave" {
			if r.code != 2 || !strings.Contains(r.stderr, "want one NAME, got 2") {
				t.Errorf("%v: %+v", args, r)
			}
			continue
		}
		if r.code != 0 {
			t.Fatalf("%v: %+v", args, r)
		}
		name := args[slices.IndexFunc(args, func(a string) bool { return a == "alice" || a == "bob" || a == "carol" })]
		if u := show(name, "--json"); u.Enabled || !slices.Equal(u.ClientIDs, []string{"a", "b"}) || !u.HasPassword {
			t.Errorf("%v made %+v", args, u)
		}
	}
	if r := runBin(t, env, "", "user", "set", "alice", "--enabled"); r.code != 0 {
		t.Fatalf("--enabled alone: %+v", r)
	}
	if u := show("alice", "-json"); !u.Enabled {
		t.Errorf("--enabled alone left alice disabled")
	}
	if r := runBin(t, env, "", "user", "--json", "list"); r.code != 2 {
		t.Errorf("a subcommand's flag before the subcommand: %+v", r)
	}
}

// TestUserSetPasswordStdin: user set --password-stdin reads the new
// password from the first line of standard input, as explain's flag does,
// and is one of the password choices, exclusive of the others.
func TestUserSetPasswordStdin(t *testing.T) {
	m := miniredis.RunT(t)
	env := map[string]string{"AUTHPROXY_REDIS_URL": "redis://" + m.Addr() + "/0"}
	if r := runBin(t, env, "s3cret\n", "user", "set", "dora", "--password-stdin"); r.code != 0 || r.stdout != "user dora created\n" {
		t.Fatalf("create: %+v", r)
	}
	if r := runBin(t, env, "n3w\n", "user", "set", "dora", "--password-stdin"); r.code != 0 || r.stdout != "user dora updated\n" {
		t.Fatalf("rotate: %+v", r)
	}
	for pw, code := range map[string]int{"n3w": 0, "s3cret": 1} {
		if r := runBin(t, env, pw+"\n", "explain", "dora", "--password-stdin"); r.code != code {
			t.Errorf("explain with password %q: exit %d, want %d: %+v", pw, r.code, code, r)
		}
	}
	for _, other := range [][]string{{"--generate"}, {"--no-password", "--certs", "cn:dora"}, {"--password-hash", "$2b$04$.MyMYYEjToFnNHnw3bpEqeesH5ElAsqBHvBxHoVFgBFxhAGLw8lwy"}} {
		if r := runBin(t, env, "pw\n", append([]string{"user", "set", "dora", "--password-stdin"}, other...)...); r.code != 2 {
			t.Errorf("--password-stdin with %v: %+v, want exit 2", other, r)
		}
	}
	if r := runBin(t, env, "", "user", "set", "erin", "--password-stdin"); r.code != 2 || !strings.Contains(r.stderr, "no password on standard input") {
		t.Errorf("--password-stdin with nothing on standard input: %+v", r)
	}
}

// TestCommandsWithRedisDown: with Redis unreachable an operator command
// fails (exit 1) with one line in the product's words: the command, the
// Redis URL without its password, the cause; none of go-redis's own log
// lines.
func TestCommandsWithRedisDown(t *testing.T) {
	down := map[string]string{"AUTHPROXY_REDIS_URL": fmt.Sprintf("redis://:secret@127.0.0.1:%d/0", testenv.FreePort(t))}
	for _, c := range []struct {
		command string
		args    []string
	}{
		{"user set", []string{"user", "set", "x", "--generate"}},
		{"ban list", []string{"ban", "list"}},
		{"explain", []string{"explain", "x"}},
	} {
		t.Run(c.command, func(t *testing.T) {
			t.Parallel()
			r := runBin(t, down, "", c.args...)
			if r.code != 1 || !strings.HasPrefix(r.stderr, "mqtt-authproxy: "+c.command+": Redis at redis://:xxxxx@127.0.0.1:") ||
				!strings.Contains(r.stderr, "connection refused") || strings.Count(r.stderr, "\n") != 1 || strings.Contains(r.stderr, "secret") {
				t.Errorf("%v with Redis down: %+v", c.args, r)
			}
		})
	}
}
