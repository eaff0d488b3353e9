// Package adminapi is the admin HTTP API (ADMIN_API=true): JSON under
// /api/v1/ for users, roles, bans, the live sessions of every replica,
// the decision log, explain, rotation and token and certificate
// revocation, with its OpenAPI document at /api/v1/openapi.json. It is a
// second front end to the operations the CLI runs: every handler calls
// the same function the matching command does (authstore/operator for
// users, roles, bans, rotation, records; the store's decision for
// explain; the decision log's reader), and adds only HTTP: bearer tokens
// with two scopes, JSON bodies checked and capped, JSON errors with the
// right status, and every change written to the decision log (which
// token, what changed, never a secret). The admin listener (internal/admin)
// serves it.
package adminapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/operator"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// Prefix is the path every endpoint of the API is under.
const Prefix = "/api/v1/"

// MaxBody bounds a request body: past it the request is answered 413.
const MaxBody = operator.MaxRecordBytes

// Options configure the API.
type Options struct {
	// Store is the rule store the CLI uses too.
	Store *authstore.Store
	// Token (ADMIN_TOKEN) may read and change; ReadToken
	// (ADMIN_READ_TOKEN, optional) may only read. Both are presented as
	// "Authorization: Bearer <token>", never in a URL.
	Token, ReadToken string
	// Recorder takes the decision log entry of every change; nil: none.
	Recorder policy.Recorder
	// Replica is this replica's id, written in those entries.
	Replica string
	// Revoker revokes tokens and certificates; nil: those endpoints
	// answer 501.
	Revoker Revoker
	// Timeout bounds one request's work against Redis, default 30s
	// (an explain, a list of a large fleet).
	Timeout time.Duration
	Logger  *slog.Logger
}

// API is the admin API's handler.
type API struct {
	o         Options
	mux       *http.ServeMux
	token     [sha256.Size]byte
	readToken *[sha256.Size]byte
}

// New returns the API; it refuses options without a Token (the API
// changes the rules: it needs one).
func New(o Options) (*API, error) {
	if o.Token == "" {
		return nil, errors.New("adminapi: the API needs a token (ADMIN_TOKEN)")
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	a := &API{o: o, mux: http.NewServeMux(), token: sha256.Sum256([]byte(o.Token))}
	if o.ReadToken != "" {
		sum := sha256.Sum256([]byte(o.ReadToken))
		a.readToken = &sum
	}
	a.routes()
	return a, nil
}

// scope is what a token may do.
type scope int

const (
	none scope = iota
	read
	change
)

// handler is an endpoint: it returns the status and body to answer, or
// an error (an *httpError, or any other: 500/503).
type handler func(r *request) (int, any, error)

// request is one request to an endpoint, authorized.
type request struct {
	*http.Request
	w     http.ResponseWriter
	ctx   context.Context
	scope scope
	api   *API
}

// handle registers an endpoint that needs at least min.
func (a *API) handle(pattern string, min scope, h handler) {
	a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		a.serve(w, r, min, h)
	})
}

// ServeHTTP serves the API; a path or method the API does not have gets a
// JSON 404 or 405 too.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if a.authorize(r) == none {
		a.refuse(w, r)
		return
	}
	a.mux.ServeHTTP(&jsonMuxErrors{ResponseWriter: w}, r)
}

// serve runs an endpoint: authorization, then the handler under the
// request timeout, then its JSON answer.
func (a *API) serve(w http.ResponseWriter, r *http.Request, min scope, h handler) {
	s := a.authorize(r)
	if s < min {
		writeError(w, http.StatusForbidden, "this token may only read: changes need ADMIN_TOKEN")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.o.Timeout)
	defer cancel()
	status, body, err := h(&request{Request: r, w: w, ctx: ctx, scope: s, api: a})
	if err != nil {
		status, msg := a.status(err)
		if status >= 500 {
			a.o.Logger.Warn("admin API request failed", "method", r.Method, "path", r.URL.Path, "error", err)
		}
		writeError(w, status, msg)
		return
	}
	writeJSON(w, status, body)
}

// authorize is the scope of the request's bearer token: none when it
// carries no token, or one the API does not know. Tokens are compared in
// constant time (both sides hashed first, so lengths too).
func (a *API) authorize(r *http.Request) scope {
	h := r.Header.Get("Authorization")
	if len(h) <= len("Bearer ") || !strings.EqualFold(h[:len("Bearer ")], "Bearer ") {
		return none
	}
	given := sha256.Sum256([]byte(h[len("Bearer "):]))
	switch {
	case subtle.ConstantTimeCompare(given[:], a.token[:]) == 1:
		return change
	case a.readToken != nil && subtle.ConstantTimeCompare(given[:], a.readToken[:]) == 1:
		return read
	}
	return none
}

// refuse answers 401 to a request without a known token.
func (a *API) refuse(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="mqtt-authproxy admin API"`)
	msg := "no token: send Authorization: Bearer <ADMIN_TOKEN> (or ADMIN_READ_TOKEN to read)"
	switch {
	case r.URL.Query().Has("token"):
		msg = "the API takes its token in the Authorization header only (Authorization: Bearer <token>), never in the URL"
	case r.Header.Get("Authorization") != "":
		msg = "unknown token"
	}
	writeError(w, http.StatusUnauthorized, msg)
}

// httpError is an answer other than 200 an endpoint chose.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func errorf(status int, format string, args ...any) error {
	return &httpError{status, fmt.Sprintf(format, args...)}
}

// status maps an error to its answer: the endpoint's own, bad input 400,
// a missing user, role or ban 404, a role that does not exist or a
// rotation without a password 422, Redis unavailable 503, else 500.
func (a *API) status(err error) (int, string) {
	var he *httpError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &he):
		return he.status, he.msg
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", mbe.Limit)
	case errors.Is(err, operator.ErrNoSuchUser), errors.Is(err, operator.ErrNoSuchRole), errors.Is(err, operator.ErrNoSuchBan):
		return http.StatusNotFound, err.Error()
	case errors.Is(err, operator.ErrNoSuchRoles), errors.Is(err, operator.ErrNoPassword):
		return http.StatusUnprocessableEntity, err.Error()
	case isInvalid(err):
		return http.StatusBadRequest, err.Error()
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, policy.ErrUnavailable), isRedisDown(err):
		return http.StatusServiceUnavailable, "the rule store (Redis) did not answer: " + err.Error()
	}
	return http.StatusInternalServerError, "internal error (see the proxy's log)"
}

// isRedisDown: a network error talking to Redis.
func isRedisDown(err error) bool {
	s := err.Error()
	return strings.Contains(s, "connection refused") || strings.Contains(s, "i/o timeout") || strings.Contains(s, "EOF")
}

// readJSON decodes the request's JSON body into v: the media type must be
// JSON, the body at most MaxBody, one value, no unknown field when v is a
// struct.
func (r *request) readJSON(v any) error {
	body, err := r.body()
	if err != nil {
		return err
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errorf(http.StatusBadRequest, "the body is not the JSON this endpoint takes: %v", err)
	}
	if dec.More() {
		return errorf(http.StatusBadRequest, "the body holds more than one JSON value")
	}
	return nil
}

// body reads the request's JSON body, capped at MaxBody.
func (r *request) body() ([]byte, error) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return nil, errorf(http.StatusUnsupportedMediaType, "send the body as JSON (Content-Type: application/json)")
	}
	b, err := io.ReadAll(http.MaxBytesReader(r.w, r.Body, MaxBody))
	if err != nil {
		return nil, err
	}
	return b, nil
}

// writeJSON answers status with v as JSON (204 and nil: no body).
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if v != nil {
		_ = json.NewEncoder(w).Encode(v)
	}
}

// Error is the body of every error answer.
type Error struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, Error{msg})
}

// jsonMuxErrors turns the mux's own plain-text 404 and 405 into JSON
// errors.
type jsonMuxErrors struct {
	http.ResponseWriter
	swallow bool
}

func (j *jsonMuxErrors) WriteHeader(code int) {
	if (code == http.StatusNotFound || code == http.StatusMethodNotAllowed) && strings.HasPrefix(j.Header().Get("Content-Type"), "text/plain") {
		j.swallow = true
		msg := "no such endpoint (see /api/v1/openapi.json)"
		if code == http.StatusMethodNotAllowed {
			msg = "method not allowed here (allowed: " + j.Header().Get("Allow") + ")"
		}
		writeError(j.ResponseWriter, code, msg)
		return
	}
	j.ResponseWriter.WriteHeader(code)
}

func (j *jsonMuxErrors) Write(b []byte) (int, error) {
	if j.swallow {
		return len(b), nil
	}
	return j.ResponseWriter.Write(b)
}
