package main

import (
	"bufio"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mqtt-authproxy/mqtt-authproxy/packets"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
	"github.com/mqtt-authproxy/mqtt-authproxy/proxy"
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
	clientID := fs.String("client-id", "", "the client id (default: NAME)")
	ip := fs.String("ip", "", "the device's source address")
	certFile := fs.String("cert", "", "a PEM file with the device's client certificate")
	protocol := fs.Int("protocol", 4, "the MQTT protocol level: 3 (3.1), 4 (3.1.1) or 5")
	passwordStdin := fs.Bool("password-stdin", false, "read the password to check from the first line of standard input")
	publish := fs.StringArray("publish", nil, "a topic to publish to (repeatable)")
	subscribe := fs.StringArray("subscribe", nil, "a topic filter to subscribe to (repeatable)")
	will := fs.String("will", "", "the will's topic, if the CONNECT has one")
	asJSON := jsonFlag(fs)
	c.RunE = func(_ *cobra.Command, args []string) error {
		req := policy.Request{Username: args[0], ClientID: args[0], Explain: &policy.Explanation{NoPassword: !*passwordStdin}}
		if fs.Changed("client-id") {
			req.ClientID = *clientID
		}
		switch *protocol {
		case 3, 4, 5:
			req.Protocol = packets.Level(*protocol)
		default:
			return usagef("explain: --protocol %d: want 3, 4 or 5", *protocol)
		}
		if *ip != "" {
			a, err := netip.ParseAddr(*ip)
			if err != nil {
				return usagef("explain: --ip %q is not an address", *ip)
			}
			req.RemoteAddr = a
		}
		if *certFile != "" {
			sum, cn, err := readCert(*certFile)
			if err != nil {
				return usagef("explain: --cert: %v", err)
			}
			req.CertSHA256, req.CertCN = sum, cn
		}
		if *will != "" {
			req.HasWill, req.WillTopic = true, *will
		}
		for _, f := range *subscribe {
			if err := packets.ValidateFilter(f); err != nil {
				return usagef("explain: --subscribe %q: %v", f, err)
			}
		}
		if *passwordStdin {
			line, err := bufio.NewReader(io.in).ReadString('\n')
			if err != nil && line == "" {
				return usagef("explain: --password-stdin: no password on standard input")
			}
			req.HasPassword, req.Password = true, strings.TrimRight(line, "\r\n")
		}
		store, ctx, done, err := storeFromEnv()
		if err != nil {
			return err
		}
		defer done()
		d, err := store.Authenticate(ctx, req)
		x := explanation{User: req.Username, ClientID: req.ClientID, Protocol: *protocol, Steps: req.Explain.Steps}
		if err != nil && !errors.Is(err, policy.ErrMalformedRule) {
			return err
		}
		outcome, code := proxy.Answer(d, err)
		x.Outcome, x.Reason, x.Code, x.Allowed = string(outcome), d.Reason, code, err == nil && d.Allowed()
		if err != nil {
			x.Reason = err.Error()
		}
		x.CONNACK = connackFor(x.Code, req.Protocol, x.Allowed)
		refused := !x.Allowed
		for _, q := range []struct {
			action  string
			topics  []string
			check   func(*policy.TopicRules, string) (policy.Grant, bool)
			allowed string
			denied  string
		}{
			{"publish", *publish, (*policy.TopicRules).CanPublish, "allowed by %s (%s)", "refused: no publish rule matches it"},
			{"subscribe", *subscribe, (*policy.TopicRules).CanSubscribe, "allowed: covered by %s (%s)", "refused: no subscribe rule covers every topic it can match"},
		} {
			for _, t := range q.topics {
				v := topicVerdict{Action: q.action, Topic: t, Verdict: q.denied}
				if d.Topics == nil {
					v.Verdict = "not checked: topic rules are off (AUTHPROXY_ACL=off) or the CONNECT is refused"
				} else if g, ok := q.check(d.Topics, t); ok {
					v.Allowed, v.Verdict = true, fmt.Sprintf(q.allowed, g.Filter, g.Source)
				}
				refused = refused || !v.Allowed
				x.Topics = append(x.Topics, v)
			}
		}
		if *asJSON {
			if err := printJSON(io.out, x); err != nil {
				return err
			}
		} else {
			x.print(io)
		}
		if refused {
			return errRefused
		}
		return nil
	}
	return c
}

// errRefused: explain's decision is a refusal (exit 1, nothing more said).
var errRefused = &quietError{"refused"}

// quietError exits 1 without a message: the output said it all.
type quietError struct{ msg string }

func (e *quietError) Error() string { return e.msg }

type explanation struct {
	User     string             `json:"user"`
	ClientID string             `json:"client_id"`
	Protocol int                `json:"protocol"`
	Steps    []policy.Step      `json:"steps"`
	Allowed  bool               `json:"allowed"`
	Outcome  string             `json:"outcome"`
	Reason   string             `json:"reason"`
	Code     packets.ReasonCode `json:"reason_code"`
	CONNACK  string             `json:"connack"`
	Topics   []topicVerdict     `json:"topics,omitempty"`
}

type topicVerdict struct {
	Action  string `json:"action"`
	Topic   string `json:"topic"`
	Allowed bool   `json:"allowed"`
	Verdict string `json:"verdict"`
}

// connackFor is what the device would read.
func connackFor(code packets.ReasonCode, level packets.Level, allowed bool) string {
	if allowed {
		return "the broker's (the CONNECT goes on to it)"
	}
	if level == packets.V5 {
		return fmt.Sprintf("0x%02X %v (MQTT 5)", byte(code), code)
	}
	if v3, ok := code.V3(); ok {
		return fmt.Sprintf("0x%02X (MQTT %v)", v3, level)
	}
	return "none: the connection is closed"
}

func (x explanation) print(io stdio) {
	fmt.Fprintf(io.out, "explain %s (client id %q, MQTT level %d)\n", x.User, x.ClientID, x.Protocol)
	for _, s := range x.Steps {
		fmt.Fprintf(io.out, "  %-12s %-26s %s\n", s.Verdict, s.Check, s.Detail)
	}
	verdict := "allowed"
	if !x.Allowed {
		verdict = "refused"
	}
	fmt.Fprintf(io.out, "decision: %s (%s): %s\n", verdict, x.Outcome, x.Reason)
	fmt.Fprintf(io.out, "CONNACK:  %s\n", x.CONNACK)
	for _, t := range x.Topics {
		fmt.Fprintf(io.out, "%s %s: %s\n", t.Action, t.Topic, t.Verdict)
	}
}

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
