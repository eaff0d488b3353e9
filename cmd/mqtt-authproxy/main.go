// Command mqtt-authproxy is a TLS-terminating MQTT authentication proxy:
// every CONNECT is checked against rules in Redis before a fresh connection
// to the broker is opened. See README.md.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
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

const mainUsage = `mqtt-authproxy: a TLS-terminating MQTT authentication proxy.

Usage:
  mqtt-authproxy [serve]            run the proxy, configured by AUTHPROXY_* variables
  mqtt-authproxy demo               everything embedded: Redis, broker, CA, proxy, one user
  mqtt-authproxy check              validate the configuration, ping Redis and the broker
  mqtt-authproxy user set NAME      create or update a user (password from stdin or a prompt)
  mqtt-authproxy user enable|disable|delete|show|kick NAME
  mqtt-authproxy user list
  mqtt-authproxy hash               read a password on stdin, print an argon2id hash
  mqtt-authproxy healthcheck        query /healthz of a running proxy (for container health checks)
  mqtt-authproxy version

Every command takes --help. Exit codes: 0 ok, 1 runtime failure, 2 bad usage or configuration.
`

func main() {
	os.Exit(run(os.Args[1:], stdio{os.Stdin, os.Stdout, os.Stderr}))
}

func run(args []string, io stdio) int {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "serve":
		err = cmdServe(args, io)
	case "demo":
		err = cmdDemo(args, io)
	case "check":
		err = cmdCheck(args, io)
	case "user":
		err = cmdUser(args, io)
	case "hash":
		err = cmdHash(args, io)
	case "healthcheck":
		err = cmdHealthcheck(args, io)
	case "version":
		fmt.Fprintln(io.out, "mqtt-authproxy", version)
	case "help":
		fmt.Fprint(io.out, mainUsage)
	default:
		fmt.Fprint(io.err, mainUsage)
		err = usagef("unknown command %q", cmd)
	}
	return exitCode(err, io.err)
}

func exitCode(err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	fmt.Fprintln(stderr, "mqtt-authproxy:", err)
	var ue *usageError
	var ce *ConfigError
	if errors.As(err, &ue) || errors.As(err, &ce) {
		return exitUsage
	}
	return exitFailure
}

// newFlags makes a flag set that prints usage to the command's stderr and
// reports errors as usage errors.
func newFlags(name, usage string, io stdio) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.err)
	fs.Usage = func() {
		fmt.Fprint(io.err, usage)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses and turns flag errors into usage errors.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &usageError{err.Error()}
	}
	return nil
}
