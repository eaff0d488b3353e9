package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/app"
)

func cmdServe(io stdio) *cobra.Command {
	return &cobra.Command{
		Use:   "serve",
		Short: "Run the proxy, configured by AUTHPROXY_* variables (the default command)",
		Long: `Runs the proxy. All configuration comes from AUTHPROXY_* environment
variables (see README.md). SIGTERM or SIGINT shuts down gracefully
(AUTHPROXY_SHUTDOWN_GRACE); SIGHUP reloads the TLS certificate, key and
client CA files.`,
		Args: noArgs("serve takes no arguments, got %q"),
		RunE: func(*cobra.Command, []string) error { return runServe(io) },
	}
}

// runServe runs the proxy from the environment until SIGTERM or SIGINT.
func runServe(io stdio) error {
	cfg, err := app.Load(os.Environ())
	if err != nil {
		return err
	}
	settings, err := cfg.Validate()
	if err != nil {
		return err
	}
	log := newLogger(io.err, settings.Log)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// A signal during the start is handled once it is up, as before.
	a, err := app.Start(context.Background(), settings, log)
	if err != nil {
		return err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-hup:
			if err := a.ReloadCertificates(); err != nil {
				log.Error("SIGHUP: certificates not reloaded; keeping the previous ones", "error", err)
			} else {
				log.Info("SIGHUP: certificates reloaded")
			}
		case <-ctx.Done():
			log.Info("shutting down", "grace", a.ShutdownGrace())
			a.Stop()
			log.Info("stopped")
			return nil
		}
	}
}
