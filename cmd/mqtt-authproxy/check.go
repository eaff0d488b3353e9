package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/redisconn"
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
	r := &checkReport{io: io, asJSON: asJSON}
	r.add(checkResult{Name: "configuration", OK: true})
	if settings.TLS != nil {
		r.add(checkResult{Name: "TLS certificate", Target: settings.TLS.CertFile, OK: true})
	}
	quietRedisLogs() // the redis line says why
	store, closeStore, err := app.OpenStore(settings.Store, nil)
	if err != nil {
		return err
	}
	defer closeStore()
	ctx := context.Background()
	for _, c := range []struct {
		name, target string
		probe        func(context.Context) error
	}{
		{"redis", redisconn.RedactURL(settings.Store.RedisURL), store.Ping},
		{"backend", settings.Backend.Addr, func(ctx context.Context) error { return app.ProbeBackend(ctx, settings.Backend) }},
	} {
		res := checkResult{Name: c.name, Target: c.target, OK: true}
		if err := c.probe(ctx); err != nil {
			res.OK, res.Error = false, err.Error()
		}
		r.add(res)
	}
	return r.finish()
}

// checkReport gathers check's results, printing each line as soon as it
// is known (--json: one object at the end).
type checkReport struct {
	io      stdio
	asJSON  bool
	results []checkResult
	failed  bool
}

func (r *checkReport) add(c checkResult) {
	r.results = append(r.results, c)
	r.failed = r.failed || !c.OK
	if r.asJSON {
		return
	}
	line := "ok    " + c.Name
	if !c.OK {
		line = "FAIL  " + c.Name
	}
	if c.Target != "" {
		line += " " + c.Target
	}
	if c.Error != "" {
		line += ": " + c.Error
	}
	fmt.Fprintln(r.io.out, line)
}

// finish prints the JSON object, and fails when a check did.
func (r *checkReport) finish() error {
	if r.asJSON {
		if err := printJSON(r.io.out, map[string]any{"ok": !r.failed, "checks": r.results}); err != nil {
			return err
		}
	}
	if r.failed {
		return errCheckFailed
	}
	return nil
}
