// Command mqtt-authproxy is a TLS-terminating MQTT authentication proxy:
// every CONNECT is checked against rules in Redis before a fresh connection
// to the broker is opened. See README.md.
//
// This file is the dispatcher: the command tree (github.com/spf13/cobra),
// exit codes, and version. Each command has a file of its own.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/app"
)

// version is stamped at build time: -ldflags "-X main.version=..."
var version = "dev"

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // runtime failure
	exitUsage   = 2 // bad usage or bad configuration
)

// usageError is bad usage of the command line: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// stdio is where a command reads and writes; tests replace it.
type stdio struct {
	in       io.Reader
	out, err io.Writer
}

func main() {
	os.Exit(run(os.Args[1:], stdio{os.Stdin, os.Stdout, os.Stderr}))
}

// run runs the command line args and returns the exit code.
func run(args []string, io stdio) int {
	root := newRoot(io)
	root.SetArgs(longFlags(root, args))
	cmd, err := root.ExecuteC()
	return exitCode(err, cmd, io.err)
}

// newRoot is the command tree. The root runs serve.
func newRoot(io stdio) *cobra.Command {
	root := &cobra.Command{
		Use:   "mqtt-authproxy",
		Short: "A TLS-terminating MQTT authentication proxy",
		Long: `mqtt-authproxy: a TLS-terminating MQTT authentication proxy.

Without a command it runs serve. The CLI commands use the same AUTHPROXY_*
environment as serve. Every command takes --help.
Exit codes: 0 ok, 1 runtime failure, 2 bad usage or configuration.`,
		Args:          noArgs("unknown command %q"),
		RunE:          func(*cobra.Command, []string) error { return runServe(io) },
		SilenceErrors: true, // exitCode prints them
		SilenceUsage:  true, // and points to --help for usage errors only
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetOut(io.err) // --help and usage go to stderr, as with Go's flag package
	root.SetErr(io.err)
	root.SetIn(io.in)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usagef("%s%v", prefix(c), err) })
	root.AddCommand(cmdServe(io), cmdDemo(io), cmdCheck(io), cmdUser(io), cmdRole(io), cmdBan(io), cmdToken(io), cmdCert(io), cmdCRL(io), cmdExplain(io), cmdDecisions(io), cmdHash(io), cmdHealthcheck(io), cmdVersion(io))
	root.SetHelpCommand(&cobra.Command{
		Use:   "help [command]",
		Short: "Help about any command (on standard output)",
		RunE: func(_ *cobra.Command, args []string) error {
			target, rest, err := root.Find(args)
			if err != nil || len(rest) > 0 {
				return usagef("help: unknown command %q", strings.Join(args, " "))
			}
			target.SetOut(io.out)
			return target.Help()
		},
	})
	return root
}

// exitCode prints err and maps it to the exit code: 2 for bad usage or
// configuration (with a pointer to the command's --help for usage), 1 for
// any other failure.
func exitCode(err error, cmd *cobra.Command, stderr io.Writer) int {
	if err == nil {
		return exitOK
	}
	var quiet *quietError
	if errors.As(err, &quiet) {
		return exitFailure // the command's output said why
	}
	fmt.Fprintln(stderr, "mqtt-authproxy:", err)
	var ue *usageError
	var ce *app.ConfigError
	switch {
	case errors.As(err, &ue):
		if cmd != nil {
			fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		}
		return exitUsage
	case errors.As(err, &ce):
		return exitUsage
	}
	return exitFailure
}

// prefix is "user set: " for mqtt-authproxy user set, "" for the root: what
// messages about the command start with.
func prefix(c *cobra.Command) string {
	if !c.HasParent() {
		return ""
	}
	return strings.TrimPrefix(c.CommandPath(), c.Root().Name()+" ") + ": "
}

// noArgs accepts no positional argument; msg formats the first one.
func noArgs(msg string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usagef(msg, args[0])
		}
		return nil
	}
}

// exactArgs wants n positional arguments, named what in the error.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%swant %s, got %d argument(s)", prefix(c), what, len(args))
		}
		return nil
	}
}

// group is a command that only holds subcommands: without one, or with an
// unknown one, it is bad usage.
func group(use, short, long string, subs ...*cobra.Command) *cobra.Command {
	c := &cobra.Command{Use: use, Short: short, Long: long, Args: cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("%smissing subcommand", prefix(c))
			}
			return usagef("%sunknown subcommand %q", prefix(c), args[0])
		}}
	c.AddCommand(subs...)
	// Cobra's usage would offer the group itself as runnable. Its
	// subcommands, which inherit this function, keep cobra's.
	g, cobraUsage := c, (&cobra.Command{}).UsageFunc()
	c.SetUsageFunc(func(c *cobra.Command) error {
		if c != g {
			return cobraUsage(c)
		}
		w := c.OutOrStderr()
		fmt.Fprintf(w, "Usage:\n  %s COMMAND [flags]\n\nCommands:\n", c.CommandPath())
		for _, sub := range c.Commands() {
			if sub.IsAvailableCommand() {
				fmt.Fprintf(w, "  %-*s %s\n", sub.NamePadding(), sub.Name(), sub.Short)
			}
		}
		fmt.Fprintf(w, "\nFlags:\n%s\nUse \"%s COMMAND --help\" for more about a command.\n", c.LocalFlags().FlagUsages(), c.CommandPath())
		return nil
	})
	return c
}

// longFlags rewrites -name and -name=value to --name... for the long flags
// of the command args select: Go's flag package, which the CLI used
// before, accepted one dash, and scripts may rely on it. Arguments after
// "--" and anything that is not a known long flag are left alone.
func longFlags(root *cobra.Command, args []string) []string {
	target, _, err := root.Find(args)
	if err != nil {
		return args
	}
	target.InitDefaultHelpFlag()
	known := func(name string) bool {
		return len(name) > 1 && (target.Flags().Lookup(name) != nil || target.InheritedFlags().Lookup(name) != nil)
	}
	out := make([]string, 0, len(args))
	for i, a := range args {
		if a == "--" {
			return append(out, args[i:]...)
		}
		if len(a) > 2 && a[0] == '-' && a[1] != '-' {
			if name, _, _ := strings.Cut(a[1:], "="); known(name) {
				a = "-" + a
			}
		}
		out = append(out, a)
	}
	return out
}

// jsonFlag adds --json to fs.
func jsonFlag(fs *pflag.FlagSet) *bool {
	return fs.Bool("json", false, "print JSON, for scripts")
}

// printJSON writes v as one line of JSON.
func printJSON(w io.Writer, v any) error { return json.NewEncoder(w).Encode(v) }

func cmdVersion(io stdio) *cobra.Command {
	c := &cobra.Command{Use: "version", Short: "Print the version", Args: noArgs("version takes no arguments, got %q")}
	asJSON := jsonFlag(c.Flags())
	c.RunE = func(*cobra.Command, []string) error {
		if *asJSON {
			return printJSON(io.out, map[string]string{"version": version})
		}
		fmt.Fprintln(io.out, "mqtt-authproxy", version)
		return nil
	}
	return c
}
