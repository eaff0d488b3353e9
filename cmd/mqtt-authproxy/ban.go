package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/rules"
)

func cmdBan(io stdio) *cobra.Command {
	return group("ban", "Ban addresses, user names and client ids",
		`Bans, stored in Redis and applied by every proxy within a second: an IP
ban (an address or a CIDR) refuses connections from it before any TLS work
and closes its live sessions; a user or client id ban refuses its CONNECTs
(0x05 / 0x87) and closes its live sessions. A ban may expire (--for);
expired bans are ignored where they are read and dropped by "ban list".
They use the same Redis as serve (AUTHPROXY_REDIS_URL,
AUTHPROXY_REDIS_KEY_PREFIX).`,
		cmdBanAdd(io), cmdBanRemove(io), cmdBanList(io))
}

func cmdBanAdd(io stdio) *cobra.Command {
	c := &cobra.Command{
		Use:   "add ip|user|clientid VALUE [flags]",
		Short: "Ban an address (or CIDR), a user name or a client id",
		Args:  exactArgs(2, "a kind (ip, user or clientid) and a VALUE"),
	}
	fs := c.Flags()
	d := fs.Duration("for", 0, "how long the ban lasts (e.g. 1h, 30m); 0: until removed")
	reason := fs.String("reason", "", "why, shown by ban list, decisions and the logs")
	asJSON := jsonFlag(fs)
	c.RunE = func(_ *cobra.Command, args []string) error {
		kind := rules.BanKind(args[0])
		if err := rules.CheckBanValue(kind, args[1]); err != nil {
			return usagef("ban add: %v", err)
		}
		if *d < 0 {
			return usagef("ban add: --for %v is negative", *d)
		}
		store, ctx, done, err := storeFromEnv("ban add")
		if err != nil {
			return err
		}
		defer done()
		b, err := store.AddBan(ctx, kind, args[1], *d, *reason)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(io.out, b)
		}
		fmt.Fprintf(io.out, "banned %s %s%s\n", b.Kind, b.Value, until(b))
		return nil
	}
	return c
}

func until(b rules.Ban) string {
	if b.Until.IsZero() {
		return " until removed"
	}
	return " until " + b.Until.Format(time.RFC3339)
}

func cmdBanRemove(io stdio) *cobra.Command {
	c := &cobra.Command{
		Use:   "remove ip|user|clientid VALUE",
		Short: "Lift a ban",
		Args:  exactArgs(2, "a kind (ip, user or clientid) and a VALUE"),
	}
	asJSON := jsonFlag(c.Flags())
	c.RunE = func(_ *cobra.Command, args []string) error {
		kind := rules.BanKind(args[0])
		if err := rules.CheckBanValue(kind, args[1]); err != nil {
			return usagef("ban remove: %v", err)
		}
		store, ctx, done, err := storeFromEnv("ban remove")
		if err != nil {
			return err
		}
		defer done()
		if err := store.RemoveBan(ctx, kind, args[1]); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(io.out, map[string]string{"kind": args[0], "value": args[1], "action": "removed"})
		}
		fmt.Fprintf(io.out, "ban on %s %s lifted\n", args[0], args[1])
		return nil
	}
	return c
}

func cmdBanList(io stdio) *cobra.Command {
	c := &cobra.Command{Use: "list", Short: "Print the active bans", Args: exactArgs(0, "no argument")}
	asJSON := jsonFlag(c.Flags())
	c.RunE = func(_ *cobra.Command, _ []string) error {
		store, ctx, done, err := storeFromEnv("ban list")
		if err != nil {
			return err
		}
		defer done()
		bans, err := store.ListBans(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			if bans == nil {
				bans = []rules.Ban{}
			}
			return printJSON(io.out, bans)
		}
		for _, b := range bans {
			line := fmt.Sprintf("%-8s %-24s since %s%s", b.Kind, b.Value, b.At.Format(time.RFC3339), until(b))
			if b.Reason != "" {
				line += ": " + b.Reason
			}
			fmt.Fprintln(io.out, strings.TrimSpace(line))
		}
		return nil
	}
	return c
}
