package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/decisionlog"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/app"
	"github.com/mqtt-authproxy/mqtt-authproxy/internal/logsafe"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// decisionsFlags are the decisions command's flags.
type decisionsFlags struct {
	user, clientID, outcome, since string
	follow, asJSON                 bool
	limit                          int
}

func cmdDecisions(io stdio) *cobra.Command {
	c := &cobra.Command{
		Use:   "decisions [flags]",
		Short: "Print the recent decisions of every proxy, newest last (the decision log)",
		Long: `Prints the newest entries of the decision log that every proxy sharing this
Redis appends to (the stream <AUTHPROXY_REDIS_KEY_PREFIX>decisions): CONNECTs
accepted and refused, live sessions closed by a re-decision, kicks, bans and
topic denials, each with its replica, the device's address, user name,
client id, TLS version, whether the TLS session was resumed, the outcome and
a one-line reason. Connections refused before a CONNECT (handshake failed,
closed, rate limited, banned address...) appear as entries of kind summary,
one per address and outcome every 10 s, whose reason (and count) says how
many there were. Oldest first, newest last. The filters match exactly and
combine. --since takes a duration back from now (15m, 2h, 7d) or an RFC 3339
time. --follow prints the newest entries, then every new one as it is
logged, until interrupted (Ctrl-C: exit 0). --json prints one object per
line with the decision log's fields (time, replica, kind, remote, username,
client_id, protocol, tls, resumed, cert_sha256, outcome, reason,
duration_ns, and count for a summary). It uses the same Redis as serve
(AUTHPROXY_REDIS_URL, AUTHPROXY_REDIS_KEY_PREFIX). Exit 1 when Redis cannot
be read.`,
		Args: noArgs("decisions takes no arguments, got %q (filter with --user, --client-id, --outcome)"),
	}
	var f decisionsFlags
	fs := c.Flags()
	fs.StringVar(&f.user, "user", "", "only decisions about this user name")
	fs.StringVar(&f.clientID, "client-id", "", "only decisions about this client id")
	fs.StringVar(&f.outcome, "outcome", "", "only this outcome (accepted, bad_credentials, disabled, clientid_not_allowed, ...)")
	fs.StringVar(&f.since, "since", "", "only decisions from this long ago (15m, 2h, 7d) or since an RFC 3339 time")
	fs.BoolVar(&f.follow, "follow", false, "then print new decisions as they are logged, until interrupted")
	fs.IntVar(&f.limit, "limit", decisionlog.DefaultLimit, "print at most the newest N matching decisions (with --follow, 0: only new ones)")
	fs.BoolVar(&f.asJSON, "json", false, "print one JSON object per line, for scripts")
	c.RunE = func(*cobra.Command, []string) error { return runDecisions(io, f) }
	return c
}

// filter is the store's filter for the flags, relative to now.
func (f decisionsFlags) filter(now time.Time) (decisionlog.Filter, error) {
	df := decisionlog.Filter{User: f.user, ClientID: f.clientID, Outcome: f.outcome, Limit: f.limit}
	switch {
	case f.limit < 0:
		return df, usagef("decisions: --limit %d is negative", f.limit)
	case f.limit == 0 && !f.follow:
		return df, usagef("decisions: --limit 0 prints nothing (it means \"only new ones\" with --follow)")
	case f.limit == 0:
		df.Limit = -1 // only entries logged from now on
	}
	since, err := parseSince(f.since, now)
	if err != nil {
		return df, err
	}
	df.Since = since
	return df, nil
}

// parseSince reads --since: a Go duration, a number of days ("7d"), or an
// RFC 3339 time; empty is no bound.
func parseSince(v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, ok := decisionlog.ParseSince(v, now)
	if !ok {
		return time.Time{}, usagef("decisions: --since %q is not a positive duration (15m, 2h, 7d) or an RFC 3339 time (2026-01-02T15:04:05Z)", v)
	}
	return t, nil
}

func runDecisions(io stdio, f decisionsFlags) error {
	filter, err := f.filter(time.Now())
	if err != nil {
		return err
	}
	cfg, err := app.Load(os.Environ())
	if err != nil {
		return err
	}
	s, err := cfg.ValidateStore()
	if err != nil {
		return err
	}
	quietRedisLogs()
	store, closeStore, err := app.OpenStore(s, nil)
	if err != nil {
		return err
	}
	defer func() { _ = closeStore() }()
	unreachable := func(err error) error { return redisUnreachable("decisions", s.RedisURL, err) }
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	out := newDecisionPrinter(io.out, f.asJSON)
	if f.follow {
		err := store.FollowDecisions(ctx, filter, out.print)
		if err == nil || errors.Is(err, context.Canceled) {
			return nil // interrupted
		}
		return unreachable(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	recs, err := store.ReadDecisions(rctx, filter)
	if err != nil {
		return unreachable(err)
	}
	if len(recs) == 0 && !f.asJSON {
		fmt.Fprintf(io.err, "decisions: no decision in %s matches\n", store.DecisionsKey())
		return nil
	}
	out.fit(recs)
	for _, r := range recs {
		out.print(r)
	}
	return nil
}

// decisionColumns are the table's columns, with the widths a followed
// table starts with (a static one fits its rows).
var decisionColumns = []struct {
	name   string
	follow int
}{
	{"TIME", 24}, {"REPLICA", 20}, {"KIND", 10}, {"USER", 16}, {"CLIENT ID", 16}, {"REMOTE", 21}, {"TLS", 15}, {"OUTCOME", 20}, {"REASON", 0},
}

// decisionPrinter writes records as a table a person reads or as JSON
// lines.
type decisionPrinter struct {
	w       io.Writer
	asJSON  bool
	widths  []int
	started bool // the header is written
}

func newDecisionPrinter(w io.Writer, asJSON bool) *decisionPrinter {
	p := &decisionPrinter{w: w, asJSON: asJSON}
	for _, c := range decisionColumns {
		p.widths = append(p.widths, max(c.follow, utf8.RuneCountInString(c.name)))
	}
	return p
}

// fit sizes the columns to the header and recs.
func (p *decisionPrinter) fit(recs []policy.Record) {
	for i, c := range decisionColumns {
		p.widths[i] = utf8.RuneCountInString(c.name)
	}
	for _, r := range recs {
		for i, cell := range decisionCells(r) {
			p.widths[i] = max(p.widths[i], utf8.RuneCountInString(cell))
		}
	}
}

// print writes one record (the table's header first).
func (p *decisionPrinter) print(r policy.Record) {
	if p.asJSON {
		_ = printJSON(p.w, r)
		return
	}
	if !p.started {
		p.started = true
		var names []string
		for _, c := range decisionColumns {
			names = append(names, c.name)
		}
		p.row(names)
	}
	p.row(decisionCells(r))
}

func (p *decisionPrinter) row(cells []string) {
	var b strings.Builder
	for i, c := range cells {
		if i == len(cells)-1 {
			b.WriteString(c)
			break
		}
		b.WriteString(c)
		b.WriteString(strings.Repeat(" ", max(p.widths[i]-utf8.RuneCountInString(c), 0)+2))
	}
	b.WriteByte('\n')
	_, _ = io.WriteString(p.w, b.String())
}

// decisionCells are a record's cells, in decisionColumns' order. What a
// device sent (user name, client id), and anything else read from Redis,
// is shown safely: quoted when it holds spaces, quotes or unprintable
// characters, and cut when long.
func decisionCells(r policy.Record) []string {
	cell := func(s string) string { // one word
		if s == "" {
			return "-"
		}
		return logsafe.String(s)
	}
	text := func(s string) string { // words: spaces kept, the rest escaped
		if s == "" {
			return "-"
		}
		return logsafe.Error(errors.New(s))
	}
	tls := r.TLS
	if r.Resumed {
		tls = strings.TrimSpace(tls + " resumed")
	}
	return []string{r.Time.UTC().Format("2006-01-02T15:04:05.000Z"), cell(r.Replica), cell(r.Kind), cell(r.Username),
		cell(r.ClientID), cell(r.Remote), text(tls), cell(r.Outcome), text(r.Reason)}
}
