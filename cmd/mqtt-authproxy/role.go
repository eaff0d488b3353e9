package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/operator"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/rules"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

func cmdRole(io stdio) *cobra.Command {
	return group("role", "Create, change, inspect and remove roles (topic rules shared by users)",
		`Operator commands on roles: named publish and subscribe topic filters that
users take with "user set NAME --roles ROLE". The role "default" applies to
every user. A change reaches the live sessions of every proxy within a
second. They use the same Redis as serve (AUTHPROXY_REDIS_URL,
AUTHPROXY_REDIS_KEY_PREFIX). Every subcommand takes --json for output a
script can parse, and --help.`,
		cmdRoleSet(io),
		cmdSimple(io, "show", "Print the role's topic rules", runRoleSimple),
		cmdSimple(io, "delete", "Remove the role (users that name it keep the name: it grants nothing until it exists again)", runRoleSimple),
		cmdSimple(io, "list", "Print all role names (SCAN, never KEYS)", runRoleSimple),
	)
}

func cmdRoleSet(io stdio) *cobra.Command {
	c := &cobra.Command{
		Use:   "set NAME [flags]",
		Short: "Create or update a role's topic rules",
		Long: `Creates or updates a role. --publish and --subscribe are MQTT topic
filters (+ and # fill a whole level, # only the last); %u and %c filling a
whole level stand for the name and the client id of each user that holds
the role: --publish 'devices/%u/#'. Each flag may be repeated and takes
filters separated by white space (not commas: a comma is a legal topic
character); an empty value (--subscribe '') removes the field, and a role
left without rules no longer exists. A flag not given is left as it is.
The role "default" applies to every user. Flags and NAME may come in any
order.`,
		Args: exactArgs(1, "one NAME"),
	}
	var publish, subscribe listFlag
	publish.topics, subscribe.topics = true, true
	fs := c.Flags()
	fs.Var(&publish, "publish", "topic filters the role's users may publish to (%u user name, %c client id)")
	fs.Var(&subscribe, "subscribe", "topic filters the role's users may subscribe to (%u user name, %c client id)")
	var route routeFlags
	route.flags(fs) // --backend, --mountpoint (brokers.go)
	var limits limitFlags
	limits.flags(fs) // --pub-rate, --max-qos, ... (limits.go)
	asJSON := jsonFlag(fs)
	c.RunE = func(_ *cobra.Command, args []string) error {
		return runRoleSet(io, args[0], &publish, &subscribe, &route, &limits, *asJSON)
	}
	return c
}

func runRoleSet(io stdio, name string, publish, subscribe *listFlag, route *routeFlags, limits *limitFlags, asJSON bool) error {
	if !publish.set && !subscribe.set && !route.given() && len(limits.v) == 0 {
		return usagef("role set: nothing to set: give --publish, --subscribe, --backend, --mountpoint or a limit (--pub-rate, --max-qos, ...)")
	}
	if name == "" || strings.ContainsFunc(name, func(r rune) bool { return unicode.IsSpace(r) || r == ',' }) {
		return usagef("role set: role name %q: must be non-empty, without white space or commas (user set --roles separates names at them)", name)
	}
	if err := checkTopics("role set", publish, subscribe); err != nil {
		return err
	}
	if err := route.checkEnv("role set"); err != nil {
		return err
	}
	if err := limits.check("role set"); err != nil {
		return err
	}

	store, ctx, done, err := storeFromEnv("role set")
	if err != nil {
		return err
	}
	defer done()
	before, gerr := store.GetRole(ctx, name)
	exists := gerr == nil || errors.Is(gerr, policy.ErrMalformedRule)
	if gerr != nil && !exists && !errors.Is(gerr, operator.ErrNoSuchRole) {
		return gerr
	}
	// What the role holds once written: a hash left without fields is gone.
	after := func(l *listFlag, old []string) int {
		if l.set {
			return len(l.v)
		}
		return len(old)
	}
	left := after(publish, before.Publish) + after(subscribe, before.Subscribe) + len(before.Extra) + route.left(before.Backend, before.Mountpoint) +
		limits.left(before.Limits)
	if !exists && left == 0 {
		return fmt.Errorf("%w: %q (only empty values given: nothing to remove)", operator.ErrNoSuchRole, name)
	}
	u := operator.RoleUpdate{Publish: publish.ptr(), Subscribe: subscribe.ptr()}
	u.Backend, u.Mountpoint = route.ptrs()
	u.Limits = limits.v
	if err := store.SetRole(ctx, name, u); err != nil {
		if errors.Is(err, policy.ErrMalformedRule) {
			return usagef("role set: %v", err)
		}
		return err
	}
	switch {
	case left == 0:
		if !asJSON {
			fmt.Fprintf(io.out, "role %s deleted: no rules left\n", name)
			return nil
		}
		return reportRole(io, asJSON, name, "deleted")
	case exists:
		return reportRole(io, asJSON, name, "updated")
	}
	return reportRole(io, asJSON, name, "created")
}

// checkTopics refuses a malformed topic filter of --publish or --subscribe
// before anything is read or written: bad usage, naming the flag and the
// filter.
func checkTopics(cmd string, publish, subscribe *listFlag) error {
	for _, f := range []struct {
		flag string
		l    *listFlag
	}{{"publish", publish}, {"subscribe", subscribe}} {
		for _, filter := range f.l.v {
			if err := policy.CheckPattern(filter); err != nil {
				return usagef("%s: --%s: %v", cmd, f.flag, err)
			}
		}
	}
	return nil
}

func runRoleSimple(io stdio, sub string, args []string, asJSON bool) error {
	store, ctx, done, err := storeFromEnv("role " + sub)
	if err != nil {
		return err
	}
	defer done()

	switch sub {
	case "list":
		names, err := store.ListRoles(ctx)
		if err != nil {
			return err
		}
		return printNames(io, names, asJSON)
	case "show":
		r, err := store.GetRole(ctx, args[0])
		slices.Sort(r.Extra)
		return printShown(io, r, err, asJSON, func() { printRole(io, r) })
	}
	if err := store.DeleteRole(ctx, args[0]); err != nil {
		return err
	}
	return reportRole(io, asJSON, args[0], "deleted")
}

func reportRole(io stdio, asJSON bool, name, action string) error {
	if asJSON {
		return printJSON(io.out, map[string]string{"role": name, "action": action})
	}
	fmt.Fprintf(io.out, "role %s %s\n", name, action)
	return nil
}

func printRole(io stdio, r operator.Role) {
	line := func(k, v string) { fmt.Fprintf(io.out, "%-10s %s\n", k+":", v) }
	name := r.Name
	if name == rules.DefaultRole {
		name += " (applies to every user)"
	}
	line("role", name)
	line("publish", none(r.Publish))
	line("subscribe", none(r.Subscribe))
	printRoute(line, r.Backend, r.Mountpoint)
	printLimits(line, r.Limits)
	if len(r.Extra) > 0 {
		line("other", strings.Join(r.Extra, " "))
	}
}
