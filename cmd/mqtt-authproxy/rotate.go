package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/operator"
)

func cmdUserRotate(io stdio) *cobra.Command {
	c := &cobra.Command{
		Use:   "rotate NAME [--overlap DURATION]",
		Short: "Give the user a new generated password; the old one keeps working for the overlap",
		Long: `Generates a new password for user NAME (130 random bits, stored as a salted
SHA-256: a generated secret needs no slow hash) and prints it once, alone on
the last line of the output. The current password keeps working until the
overlap ends (--overlap, default 24h; 0: it stops at once), so devices can
be re-provisioned one by one without an outage. "user show NAME" says which
devices still use the old password: when each password was last used, from
where, and how many live sessions and client ids seen in the last 24 h use
the old one. Live sessions accepted with the old password are closed when
the overlap ends. A second rotation during an overlap ends the first's: only
the password it replaces is kept. "user set NAME --password" (or
--generate) ends an overlap too.

A user without a password (certificate-only) cannot be rotated (exit 2).`,
		Args: exactArgs(1, "one NAME"),
	}
	overlap := c.Flags().Duration("overlap", operator.DefaultOverlap, "how long the current password keeps working (0: not at all)")
	asJSON := jsonFlag(c.Flags())
	c.RunE = func(_ *cobra.Command, args []string) error { return runUserRotate(io, args[0], *overlap, *asJSON) }
	return c
}

func runUserRotate(io stdio, name string, overlap time.Duration, asJSON bool) error {
	if overlap < 0 || overlap > operator.MaxOverlap {
		return usagef("user rotate: --overlap %v: want 0 to %v", overlap, operator.MaxOverlap)
	}
	store, ctx, done, err := storeFromEnv("user rotate")
	if err != nil {
		return err
	}
	defer done()
	r, err := store.Rotate(ctx, name, overlap)
	if errors.Is(err, operator.ErrNoPassword) || errors.Is(err, operator.ErrInvalid) {
		return usagef("user rotate: %v", err)
	}
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(io.out, r)
	}
	if r.OldUntil.IsZero() {
		fmt.Fprintf(io.out, "user %s rotated; the old password no longer works\n", name)
	} else {
		fmt.Fprintf(io.out, "user %s rotated; the old password works until %s\n", name, r.OldUntil.Format(time.RFC3339))
	}
	fmt.Fprintf(io.out, "(the new password is shown once, on the next line; see who still uses the old one with: mqtt-authproxy user show %s)\n", name)
	fmt.Fprintln(io.out, r.Password)
	return nil
}
