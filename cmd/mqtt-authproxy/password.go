package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"golang.org/x/term"
)

// readPassword reads a password, never from the command line: the first
// line of stdin when it is not a terminal, else a no-echo prompt, asked
// twice.
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
	return readPasswordLine(io)
}

// readPasswordLine reads a password from the first line of stdin, a
// terminal or not (--password-stdin).
func readPasswordLine(io stdio) (string, error) {
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
