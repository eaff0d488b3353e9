package main

import (
	"bufio"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mqtt-authproxy/mqtt-authproxy/internal/explain"
	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

func cmdExplain(io stdio) *cobra.Command {
	c := &cobra.Command{
		Use:   "explain NAME [flags]",
		Short: "Explain the decision a CONNECT (or a publish, a subscribe) would get now",
		Long: `Decides a CONNECT of user NAME against the current rules in Redis with the
same code as the proxy's (nothing is counted or remembered), and prints
each check's verdict in order, the decision with its reason, and the
CONNACK code the device would get. With --publish and --subscribe it also
says which topic rule allows each, or that none does.

Without --password-stdin the password is not checked (the checks after it
are made as if it matched), without --ip the source address is not, and
without --cert the device presents no client certificate.

Exit codes: 0 allowed (and every topic given allowed), 1 refused, 2 bad usage.`,
		Args: exactArgs(1, "one NAME"),
	}
	fs := c.Flags()
	var o explainOptions
	fs.StringVar(&o.clientID, "client-id", "", "the client id (default: NAME)")
	fs.StringVar(&o.ip, "ip", "", "the device's source address")
	fs.StringVar(&o.certFile, "cert", "", "a PEM file with the device's client certificate")
	fs.IntVar(&o.protocol, "protocol", 4, "the MQTT protocol level: 3 (3.1), 4 (3.1.1) or 5")
	fs.BoolVar(&o.passwordStdin, "password-stdin", false, "read the password to check from the first line of standard input")
	fs.StringArrayVar(&o.publish, "publish", nil, "a topic to publish to (repeatable)")
	fs.StringArrayVar(&o.subscribe, "subscribe", nil, "a topic filter to subscribe to (repeatable)")
	fs.StringVar(&o.will, "will", "", "the will's topic, if the CONNECT has one")
	asJSON := jsonFlag(fs)
	c.RunE = func(_ *cobra.Command, args []string) error {
		o.clientIDSet, o.asJSON = fs.Changed("client-id"), *asJSON
		return runExplain(io, args[0], o)
	}
	return c
}

// explainOptions are explain's flags.
type explainOptions struct {
	clientID, ip, certFile, will string
	clientIDSet                  bool
	protocol                     int
	passwordStdin, asJSON        bool
	publish, subscribe           []string
}

func runExplain(io stdio, user string, o explainOptions) error {
	req, err := o.request(io, user)
	if err != nil {
		return err
	}
	store, ctx, done, err := storeFromEnv("explain")
	if err != nil {
		return err
	}
	defer done()
	x, err := explain.Decide(ctx, store, req, o.publish, o.subscribe)
	if err != nil {
		return err
	}
	if o.asJSON {
		if err := printJSON(io.out, x); err != nil {
			return err
		}
	} else {
		x.Print(io.out)
	}
	if x.Refused() {
		return errRefused
	}
	return nil
}

// request is the CONNECT the flags describe, as the proxy would decide it:
// the password from standard input with --password-stdin.
func (o explainOptions) request(io stdio, user string) (policy.Request, error) {
	req := policy.Request{Username: user, ClientID: user, Explain: &policy.Explanation{NoPassword: !o.passwordStdin}}
	if o.clientIDSet {
		req.ClientID = o.clientID
	}
	switch o.protocol {
	case 3, 4, 5:
		req.Protocol = packets.Level(o.protocol)
	default:
		return req, usagef("explain: --protocol %d: want 3, 4 or 5", o.protocol)
	}
	if o.ip != "" {
		a, err := netip.ParseAddr(o.ip)
		if err != nil {
			return req, usagef("explain: --ip %q is not an address", o.ip)
		}
		req.RemoteAddr = a
	}
	if o.certFile != "" {
		sum, cn, err := readCert(o.certFile)
		if err != nil {
			return req, usagef("explain: --cert: %v", err)
		}
		req.CertSHA256, req.CertCN = sum, cn
		req.Cert, req.CertCASHA256 = explainedCert(o.certFile)
	}
	if o.will != "" {
		req.HasWill, req.WillTopic = true, o.will
	}
	for _, f := range o.subscribe {
		if err := packets.ValidateFilter(f); err != nil {
			return req, usagef("explain: --subscribe %q: %v", f, err)
		}
	}
	if o.passwordStdin {
		line, err := bufio.NewReader(io.in).ReadString('\n')
		if err != nil && line == "" {
			return req, usagef("explain: --password-stdin: no password on standard input")
		}
		req.HasPassword, req.Password = true, strings.TrimRight(line, "\r\n")
	}
	return req, nil
}

// errRefused: explain's decision is a refusal (exit 1, nothing more said).
var errRefused = &quietError{"refused"}

// readCert reads the first certificate of a PEM file: its SHA-256 and CN.
func readCert(file string) ([]byte, string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, "", err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, "", fmt.Errorf("%s holds no PEM certificate", file)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, "", err
	}
	sum := sha256.Sum256(blk.Bytes)
	return sum[:], c.Subject.CommonName, nil
}
