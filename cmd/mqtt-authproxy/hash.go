package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/passwords"
)

func cmdHash(io stdio) *cobra.Command {
	return &cobra.Command{
		Use:   "hash < password",
		Short: "Read a password on stdin, print its argon2id hash",
		Long: `Reads a password (first line of standard input, or a no-echo prompt) and
prints its argon2id hash, for operators who write users with redis-cli:

  redis-cli HSET mqtt:user:alice password "$(mqtt-authproxy hash < pw.txt)"`,
		// The error never repeats the argument: it may be a password.
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("hash takes no arguments: the password is read from standard input, never from the command line")
			}
			return nil
		},
		RunE: func(*cobra.Command, []string) error {
			pw, err := readPassword(io)
			if err != nil {
				return err
			}
			fmt.Fprintln(io.out, passwords.HashPassword(pw))
			return nil
		},
	}
}
