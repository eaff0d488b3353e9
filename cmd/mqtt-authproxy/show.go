package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/lastuse"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/operator"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// shownUser is what user show prints: the user's rules, and the uses of
// its passwords (when they could be read).
type shownUser struct {
	operator.User
	Uses *operator.Uses `json:"uses,omitempty"`
}

// showUser prints the user's rules and, per password, its last use and,
// during a rotation, what still uses the old one.
func showUser(ctx context.Context, io stdio, store *authstore.Store, name string, asJSON bool) error {
	u, err := store.GetUser(ctx, name)
	if err != nil && !errors.Is(err, policy.ErrMalformedRule) {
		return err
	}
	shown := shownUser{User: u}
	if uses, uerr := store.Uses(ctx, name); uerr == nil {
		shown.Uses = &uses
	}
	return printShown(io, shown, err, asJSON, func() {
		printUser(io, u)
		printUses(io, u, shown.Uses)
	})
}

// printUses adds user show's lines on the passwords' uses.
func printUses(io stdio, u operator.User, uses *operator.Uses) {
	line := func(k, v string) { fmt.Fprintf(io.out, "%-10s %s\n", k+":", v) }
	if uses != nil && uses.Password != nil {
		line("last use", lastUse(*uses.Password))
	}
	if u.PasswordOld == nil {
		return
	}
	old := "set (" + u.PasswordOld.HashFormat + ") until " + u.PasswordOld.Until.Format(time.RFC3339)
	if u.PasswordOld.Problem != "" {
		old = "present but not accepted: " + u.PasswordOld.Problem
	}
	line("old pw", old)
	if uses != nil && uses.Old != nil {
		line("old used", lastUse(uses.Old.Last))
		line("old still", uses.Old.Sentence())
	}
}

// lastUse says when, from where and by which client id a password was
// last used, and by how many client ids in the last 24 h.
func lastUse(l lastuse.Last) string {
	if !l.Used() {
		return "never (none recorded)"
	}
	return fmt.Sprintf("%s from %s by client id %q (%d client ids in the last 24 h)", l.Time.Format(time.RFC3339), l.Addr, l.ClientID, l.ClientIDs24h)
}
