// Package apitest is test support for the admin API: every answer a test
// records is checked against the API's OpenAPI document with a validator
// library (github.com/getkin/kin-openapi), and the status codes seen are
// counted, so that a test can require every status of the API's table.
package apitest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

// Checker validates recorded answers against an OpenAPI document.
type Checker struct {
	t      testing.TB
	doc    *openapi3.T
	router routers.Router
	mu     sync.Mutex
	seen   map[int]int // status -> answers
}

// New loads and validates the document (the API's openapi.json).
func New(t testing.TB, document []byte) *Checker {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(document)
	if err != nil {
		t.Fatalf("openapi.json does not load: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.json is not a valid OpenAPI document: %v", err)
	}
	r, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &Checker{t: t, doc: doc, router: r, seen: map[int]int{}}
}

// Check validates one answer (status, header, body) to a request whose
// path is under the document's paths: the status must be documented for
// the operation, and the body must match its schema. An answer to a path
// or method the document does not have (404, 405) must be an Error.
func (c *Checker) Check(method, rawURL string, status int, header http.Header, body []byte) {
	c.t.Helper()
	c.mu.Lock()
	c.seen[status]++
	c.mu.Unlock()
	u, err := url.Parse(rawURL)
	if err != nil {
		c.t.Fatal(err)
	}
	req := &http.Request{Method: method, URL: &url.URL{Path: u.Path, RawPath: u.RawPath, RawQuery: u.RawQuery}, Header: http.Header{}}
	route, params, err := c.router.FindRoute(req)
	if err != nil {
		if status != http.StatusNotFound && status != http.StatusMethodNotAllowed {
			c.t.Errorf("%s %s answered %d but the document has no such operation: %v", method, u.Path, status, err)
		}
		c.checkSchema("Error", method, u.Path, status, body)
		return
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: status, Header: header,
		Body: io.NopCloser(bytes.NewReader(body)), Options: &openapi3filter.Options{IncludeResponseStatus: true}}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		c.t.Errorf("%s %s answered %d, which the OpenAPI document does not allow: %v\nbody: %s", method, u.Path, status, err, body)
	}
}

// checkSchema validates body against a component schema.
func (c *Checker) checkSchema(name, method, path string, status int, body []byte) {
	c.t.Helper()
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		c.t.Errorf("%s %s answered %d with a body that is not JSON: %q", method, path, status, body)
		return
	}
	if err := c.doc.Components.Schemas[name].Value.VisitJSON(v); err != nil {
		c.t.Errorf("%s %s answered %d with a body that is not an %s: %v", method, path, status, name, err)
	}
}

// Seen is every status recorded, sorted.
func (c *Checker) Seen() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []int
	for s := range c.seen {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// Require fails the test unless every status of want was recorded.
func (c *Checker) Require(want ...int) {
	c.t.Helper()
	seen := c.Seen()
	for _, s := range want {
		if !slices.Contains(seen, s) {
			c.t.Errorf("no answer with status %d was recorded (seen %v)", s, seen)
		}
	}
}

// Statuses are the statuses the document gives any operation, sorted.
func (c *Checker) Statuses() []int {
	set := map[int]bool{}
	for _, p := range c.doc.Paths.Map() {
		for _, op := range p.Operations() {
			for code := range op.Responses.Map() {
				var n int
				if _, err := fmt.Sscan(code, &n); err == nil {
					set[n] = true
				}
			}
		}
	}
	var out []int
	for n := range set {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}
