package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/app"
)

var errCheckFailed = errors.New("check failed")

func cmdCheck(io stdio) *cobra.Command {
	c := &cobra.Command{
		Use:   "check",
		Short: "Validate the configuration, load the certificates, ping Redis and the broker",
		Long: `Validates the AUTHPROXY_* configuration (loading the certificates), pings
Redis and connects to the broker (a real CONNECT when backend credentials
are set). Prints one line per check (--json: one object). Exit 0 when all
pass, 1 when Redis or the broker fails, 2 when the configuration is bad.`,
		Args: noArgs("check takes no arguments, got %q"),
	}
	asJSON := jsonFlag(c.Flags())
	c.RunE = func(*cobra.Command, []string) error { return runCheck(io, *asJSON) }
	return c
}

// checkResult is one line of check's output.
type checkResult struct {
	Name   string `json:"name"`
	Target string `json:"target,omitempty"`
	OK     bool   `json:"ok"`
	Error  string `json:"error,omitempty"`
}

func runCheck(io stdio, asJSON bool) error {
	cfg, err := app.Load(os.Environ())
	if err != nil {
		return err
	}
	settings, err := cfg.Validate()
	if err != nil {
		return err
	}
	var results []checkResult
	report := func(r checkResult) { // each line as soon as it is known
		results = append(results, r)
		if asJSON {
			return
		}
		line := "ok    " + r.Name
		if !r.OK {
			line = "FAIL  " + r.Name
		}
		if r.Target != "" {
			line += " " + r.Target
		}
		if r.Error != "" {
			line += ": " + r.Error
		}
		fmt.Fprintln(io.out, line)
	}
	report(checkResult{Name: "configuration", OK: true})
	if settings.TLS != nil {
		report(checkResult{Name: "TLS certificate", Target: settings.TLS.CertFile, OK: true})
	}
	store, closeStore, err := app.OpenStore(settings.Store, nil)
	if err != nil {
		return err
	}
	defer closeStore()
	ctx := context.Background()
	failed := false
	for _, c := range []struct {
		name, target string
		probe        func(context.Context) error
	}{
		{"redis", authstore.RedactURL(settings.Store.RedisURL), store.Ping},
		{"backend", settings.Backend.Addr, func(ctx context.Context) error { return app.ProbeBackend(ctx, settings.Backend) }},
	} {
		r := checkResult{Name: c.name, Target: c.target, OK: true}
		if err := c.probe(ctx); err != nil {
			r.OK, r.Error, failed = false, err.Error(), true
		}
		report(r)
	}
	if asJSON {
		if err := printJSON(io.out, map[string]any{"ok": !failed, "checks": results}); err != nil {
			return err
		}
	}
	if failed {
		return errCheckFailed
	}
	return nil
}
