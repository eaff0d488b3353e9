package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/revoked"
)

func cmdCRL(io stdio) *cobra.Command {
	return group("crl", "Import certificate revocation lists",
		`A CRL's serials revoked for the CA that signed it (see docs/credentials.md,
Certificates).`, cmdCRLImport(io))
}

func cmdCRLImport(io stdio) *cobra.Command {
	c := &cobra.Command{
		Use:   "import FILE",
		Short: "Revoke every serial of a CRL (its signature checked against the client CA file)",
		Long: `Reads a CRL (PEM or DER), checks its signature against the CAs of
AUTHPROXY_TLS_CLIENT_CA_FILE, and revokes each serial it lists for the CA
that signed it, on every proxy within a second (live sessions closed, MQTT
5 with DISCONNECT 0x98). A serial the previous import of that CA's CRL
revoked and this one no longer lists (a hold released) is revoked no
more. A CRL that does not verify, or is older than the last one imported
for its CA, writes nothing and says why (exit 1).`,
		Args: exactArgs(1, "a CRL FILE"),
	}
	asJSON := jsonFlag(c.Flags())
	c.RunE = func(_ *cobra.Command, args []string) error {
		b, err := readCRLFile(args[0])
		if err != nil {
			return usagef("crl import: %v", err)
		}
		cas, err := clientCAs("crl import")
		if err != nil {
			return err
		}
		crl, ca, err := revoked.ParseCRL(b, cas)
		if err != nil {
			return fmt.Errorf("crl import: %s: %w; nothing written", args[0], err)
		}
		store, ctx, done, err := storeFromEnv("crl import")
		if err != nil {
			return err
		}
		defer done()
		r, err := store.Revocations().ImportCRL(ctx, crl, ca)
		if err != nil {
			return fmt.Errorf("crl import: %s: %w", args[0], err)
		}
		if *asJSON {
			return printJSON(io.out, r)
		}
		fmt.Fprintf(io.out, "imported the CRL of %s (number %s, thisUpdate %s): %d serials revoked, %d of them new, %d lifted\n",
			r.Issuer, orNone(r.Number), r.ThisUpdate.UTC().Format(time.RFC3339), r.Revoked, r.Added, r.Lifted)
		return nil
	}
	return c
}

// readCRLFile reads a CRL file of at most revoked.MaxCRLBytes.
func readCRLFile(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Size() > revoked.MaxCRLBytes {
		return nil, fmt.Errorf("%s: %d bytes, at most %d", path, st.Size(), revoked.MaxCRLBytes)
	}
	return os.ReadFile(path)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
