package main

import (
	"os"
	"slices"
	"strings"

	"github.com/spf13/pflag"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/rules"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/app"
)

// routeFlags are user set's and role set's --backend and --mountpoint:
// where the sessions go (docs/brokers.md).
type routeFlags struct {
	backend, mountpoint       string
	backendSet, mountpointSet bool
}

// flags adds --backend and --mountpoint to fs.
func (r *routeFlags) flags(fs *pflag.FlagSet) {
	fs.Func("backend", "the broker pool (AUTHPROXY_BACKEND_POOLS) the sessions go to; empty removes it (the default pool)", func(v string) error {
		r.backend, r.backendSet = v, true
		return nil
	})
	fs.Func("mountpoint", "prefix of every topic on the broker's side, ending in / (%u: the user name); empty removes it", func(v string) error {
		r.mountpoint, r.mountpointSet = v, true
		return nil
	})
}

// given reports whether either flag was given.
func (r *routeFlags) given() bool { return r.backendSet || r.mountpointSet }

// ptrs are the values for an operator update (nil: not given).
func (r *routeFlags) ptrs() (backend, mountpoint *string) {
	if r.backendSet {
		backend = &r.backend
	}
	if r.mountpointSet {
		mountpoint = &r.mountpoint
	}
	return backend, mountpoint
}

// left counts the fields the hash holds once written, given what it held.
func (r *routeFlags) left(backend, mountpoint string) int {
	n := 0
	for _, f := range []struct {
		set    bool
		v, old string
	}{{r.backendSet, r.backend, backend}, {r.mountpointSet, r.mountpoint, mountpoint}} {
		if f.set && strings.TrimSpace(f.v) != "" || !f.set && f.old != "" {
			n++
		}
	}
	return n
}

// check refuses, before Redis is asked, a mountpoint that cannot be one
// and a pool name that cannot be one, or that AUTHPROXY_BACKEND_POOLS
// does not define where it is set in this environment (where it is not,
// an operator's shell without the proxy's variables, the name is kept as
// given: a CONNECT naming a pool the proxy lacks is refused, and shown on
// its status page).
func (r *routeFlags) check(cmd string, environ []string) error {
	if v := strings.TrimSpace(r.mountpoint); r.mountpointSet && v != "" {
		if err := rules.CheckMountpoint(v); err != nil {
			return usagef("%s: --mountpoint: %v", cmd, err)
		}
	}
	v := strings.TrimSpace(r.backend)
	if !r.backendSet || v == "" {
		return nil
	}
	if err := rules.CheckPoolName(v); err != nil {
		return usagef("%s: --backend: %v", cmd, err)
	}
	names, set, err := app.PoolNames(environ)
	switch {
	case err != nil:
		return usagef("%s: --backend: %v", cmd, err)
	case set && !names[v]:
		return usagef("%s: --backend %q: no such pool in %sBACKEND_POOLS (it has %s)", cmd, v, app.EnvPrefix, poolList(names))
	}
	return nil
}

func poolList(names map[string]bool) string {
	var out []string
	for n := range names {
		out = append(out, n)
	}
	if len(out) == 0 {
		return "none"
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

// checkEnv is check in the process's environment.
func (r *routeFlags) checkEnv(cmd string) error { return r.check(cmd, os.Environ()) }

// printRoute prints a user's or a role's backend and mountpoint, when set.
func printRoute(line func(k, v string), backend, mountpoint string) {
	if backend != "" {
		line("backend", backend)
	}
	if mountpoint != "" {
		line("mountpoint", mountpoint)
	}
}
