package adminapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/decisionlog"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/sessions"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// Sessions is GET /api/v1/sessions: the live sessions every replica
// whose lease holds publishes (the session registry, a few seconds
// behind; a dead replica's leave when its lease ends).
type Sessions struct {
	Sessions []sessions.Session `json:"sessions"`
}

func (a *API) listSessions(r *request) (int, any, error) {
	limit, err := queryInt(r, "limit", 0)
	if err != nil {
		return 0, nil, err
	}
	ss, err := a.o.Store.Sessions(r.ctx, sessions.Filter{User: r.URL.Query().Get("user"), Limit: limit})
	if ss == nil {
		ss = []sessions.Session{}
	}
	return http.StatusOK, Sessions{ss}, err
}

// KickRequest is the body of POST /api/v1/sessions/kick.
type KickRequest struct {
	User string `json:"user"`
}

// kickSessions closes a user's live sessions on every replica.
func (a *API) kickSessions(r *request) (int, any, error) {
	var k KickRequest
	if err := r.readJSON(&k); err != nil {
		return 0, nil, err
	}
	if k.User == "" {
		return 0, nil, errorf(http.StatusBadRequest, `"user" is required: the user whose sessions to close`)
	}
	return a.kick(r, k.User)
}

// Decisions is GET /api/v1/decisions: the newest entries of the decision
// log that match, oldest first.
type Decisions struct {
	Decisions []policy.Record `json:"decisions"`
}

func (a *API) decisions(r *request) (int, any, error) {
	q := r.URL.Query()
	f := decisionlog.Filter{User: q.Get("user"), ClientID: q.Get("client_id"), Outcome: q.Get("outcome")}
	var err error
	if f.Limit, err = queryInt(r, "limit", decisionlog.DefaultLimit); err != nil {
		return 0, nil, err
	}
	if f.Limit == 0 {
		return 0, nil, errorf(http.StatusBadRequest, "limit must be at least 1")
	}
	if s := q.Get("since"); s != "" {
		if f.Since, err = parseSince(s, time.Now()); err != nil {
			return 0, nil, err
		}
	}
	recs, err := a.o.Store.ReadDecisions(r.ctx, f)
	if recs == nil {
		recs = []policy.Record{}
	}
	return http.StatusOK, Decisions{recs}, err
}

// queryInt reads a non-negative integer query parameter, at most 10000.
func queryInt(r *request, name string, def int) (int, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 10000 {
		return 0, errorf(http.StatusBadRequest, "%s %q is not a number from 0 to 10000", name, s)
	}
	return n, nil
}

// parseSince reads since as `decisions --since` does: a duration back
// from now (15m, 2h, 7d) or an RFC 3339 time.
func parseSince(v string, now time.Time) (time.Time, error) {
	t, ok := decisionlog.ParseSince(v, now)
	if !ok {
		return time.Time{}, errorf(http.StatusBadRequest, "since %q is not a positive duration (15m, 2h, 7d) or an RFC 3339 time", v)
	}
	return t, nil
}
