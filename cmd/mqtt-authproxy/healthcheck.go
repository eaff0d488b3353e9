package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/app"
)

func cmdHealthcheck(io stdio) *cobra.Command {
	c := &cobra.Command{
		Use:   "healthcheck [--url URL]",
		Short: "Query /healthz of a running proxy (for container health checks)",
		Long: `Queries the health endpoint of a running proxy and exits 0 when it answers
200, 1 otherwise. Meant for container health checks in images without a
shell. The default URL is built from AUTHPROXY_METRICS_LISTEN (https when
AUTHPROXY_ADMIN_TLS_CERT_FILE is set).`,
		Args: noArgs("healthcheck takes no arguments, got %q"),
	}
	url := c.Flags().String("url", "", "URL to query (default http://127.0.0.1:<port of AUTHPROXY_METRICS_LISTEN>/healthz)")
	timeout := c.Flags().Duration("timeout", 3*time.Second, "how long to wait for the answer")
	c.RunE = func(*cobra.Command, []string) error { return runHealthcheck(io, *url, *timeout) }
	return c
}

func runHealthcheck(io stdio, url string, timeout time.Duration) error {
	if url == "" {
		cfg, err := app.Load(os.Environ())
		if err != nil {
			return err
		}
		host, port, err := net.SplitHostPort(cfg.MetricsListen)
		if err != nil {
			return &app.ConfigError{Var: app.EnvPrefix + "METRICS_LISTEN", Msg: fmt.Sprintf("%q is not host:port", cfg.MetricsListen)}
		}
		if host == "" || host == "0.0.0.0" || host == "::" {
			host = "127.0.0.1"
		}
		scheme := "http"
		if cfg.AdminTLSCertFile != "" {
			scheme = "https"
		}
		url = scheme + "://" + net.JoinHostPort(host, port) + "/healthz"
	}
	// The admin listener's certificate (ADMIN_TLS_CERT_FILE) names the
	// host the operator reaches it by, not 127.0.0.1: this probe of the
	// local /healthz sends nothing secret and reads "ok", so it does not
	// verify it.
	c := &http.Client{Timeout: timeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // #nosec G402
	resp, err := c.Get(url)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s answered %s", url, resp.Status)
	}
	fmt.Fprintln(io.out, "ok")
	return nil
}
