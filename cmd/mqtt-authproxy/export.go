package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
)

func cmdUserExport(io stdio) *cobra.Command {
	c := &cobra.Command{
		Use:   "export [--with-hashes] [--output FILE]",
		Short: "Write every role and user as NDJSON, as user import reads it",
		Long: `Writes every role, then every user, one JSON object a line, in the format
"user import" reads (see "mqtt-authproxy user import --help"), to standard
output or --output FILE (created with mode 0600). Without --with-hashes the
password hashes are left out, and importing the file keeps the stored
passwords; with it the stored hashes are written as password_hash (and a
rotation's previous password as password_old_hash and password_old_until):
such a file lets anyone with it try passwords offline, keep it as you keep
the Redis dump. Users and roles are found with SCAN, never KEYS; the count
goes to standard error.`,
		Args: noArgs("user export takes no arguments, got %q (use --output FILE)"),
	}
	withHashes := c.Flags().Bool("with-hashes", false, "include the stored password hashes")
	output := c.Flags().String("output", "", "write to this file instead of standard output")
	asJSON := c.Flags().Bool("json", false, "print the count on standard error as JSON (the records are JSON anyway)")
	c.RunE = func(*cobra.Command, []string) error { return runUserExport(io, *withHashes, *output, *asJSON) }
	return c
}

func runUserExport(io stdio, withHashes bool, output string, asJSON bool) error {
	store, ctx, done, err := storeFromEnvFor("user export", time.Hour)
	if err != nil {
		return err
	}
	defer done()
	w := io.out
	if output != "" {
		f, err := os.OpenFile(output, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return usagef("user export: %v", err)
		}
		defer f.Close()
		w = f
	}
	sum, err := store.Export(ctx, w, withHashes)
	if err != nil {
		return fmt.Errorf("user export: %w", err)
	}
	if asJSON {
		return printJSON(io.err, sum)
	}
	fmt.Fprintf(io.err, "exported %d users and %d roles\n", sum.Users, sum.Roles)
	return nil
}
