//go:build nodemo

// Built with -tags nodemo (as the Dockerfile builds the image), the binary
// leaves out the demo's embedded Redis (miniredis, with a Lua interpreter)
// and broker (mochi-mqtt); demo then says where to run it.

package main

import "github.com/spf13/cobra"

// demoMissing is demo's answer in a binary built without it.
const demoMissing = "demo is not in this binary: it was built with -tags nodemo (as the container image is), " +
	"which leaves out the embedded Redis and broker. Run the demo from the source tree: go run ./cmd/mqtt-authproxy demo"

func cmdDemo(stdio) *cobra.Command {
	return &cobra.Command{
		Use:   "demo",
		Short: "Not in this build (-tags nodemo): run go run ./cmd/mqtt-authproxy demo",
		Long: `The demo runs the whole product with nothing installed: an embedded Redis,
broker and CA, the proxy, and one user. This binary was built without it
(-tags nodemo, as the container image is). From the source tree, run:

  go run ./cmd/mqtt-authproxy demo`,
		// Whatever the demo's flags, the answer is the same.
		FParseErrWhitelist: cobra.FParseErrWhitelist{UnknownFlags: true},
		Args:               cobra.ArbitraryArgs,
		RunE:               func(*cobra.Command, []string) error { return usagef("%s", demoMissing) },
	}
}
