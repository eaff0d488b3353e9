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
	d, err := store.Authenticate(ctx, req)
	if err != nil && !errors.Is(err, policy.ErrMalformedRule) {
		return err
	}
	x := newExplanation(req, o.protocol, d, err)
	x.judgeTopics(d, o.publish, o.subscribe)
	if o.asJSON {
		if err := printJSON(io.out, x); err != nil {
			return err
		}
	} else {
		x.print(io)
	}
	if x.refused() {
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

// newExplanation is what explain says of the decision d (err: a malformed
// rule) on req: the steps, the outcome with its reason, the CONNACK.
func newExplanation(req policy.Request, protocol int, d policy.Decision, err error) explanation {
	x := explanation{User: req.Username, ClientID: req.ClientID, Protocol: protocol, Steps: req.Explain.Steps}
	outcome, code := proxy.Answer(d, err)
	x.Outcome, x.Reason, x.Code, x.Allowed = string(outcome), d.Reason, code, err == nil && d.Allowed()
	if err != nil {
		x.Reason = err.Error()
	}
	x.CONNACK = connackFor(x.Code, req.Protocol, x.Allowed)
	return x
}

// judgeTopics adds the verdict of d's topic rules on each topic to
// publish and each filter to subscribe to.
func (x *explanation) judgeTopics(d policy.Decision, publish, subscribe []string) {
	for _, q := range []struct {
		action  string
		topics  []string
		check   func(*policy.TopicRules, string) (policy.Grant, bool)
		allowed string
		denied  string
	}{
		{"publish", publish, (*policy.TopicRules).CanPublish, "allowed by %s (%s)", "refused: no publish rule matches it"},
		{"subscribe", subscribe, (*policy.TopicRules).CanSubscribe, "allowed: covered by %s (%s)", "refused: no subscribe rule covers every topic it can match"},
	} {
		for _, t := range q.topics {
			v := topicVerdict{Action: q.action, Topic: t, Verdict: q.denied}
			if d.Topics == nil {
				v.Verdict = "not checked: topic rules are off (AUTHPROXY_ACL=off) or the CONNECT is refused"
			} else if g, ok := q.check(d.Topics, t); ok {
				v.Allowed, v.Verdict = true, fmt.Sprintf(q.allowed, g.Filter, g.Source)
			}
			x.Topics = append(x.Topics, v)
		}
	}
}

// refused: the CONNECT, or one of the topics, is refused.
func (x explanation) refused() bool {
	if !x.Allowed {
		return true
	}
	for _, t := range x.Topics {
		if !t.Allowed {
			return true
		}
	}
	return false
}

// errRefused: explain's decision is a refusal (exit 1, nothing more said).
var errRefused = &quietError{"refused"}

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
	if x.Reason == "" || x.Reason == x.Outcome { // "refused (disabled)", not "refused (disabled): disabled"
		fmt.Fprintf(io.out, "decision: %s (%s)\n", verdict, x.Outcome)
	} else {
		fmt.Fprintf(io.out, "decision: %s (%s): %s\n", verdict, x.Outcome, x.Reason)
	}
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
