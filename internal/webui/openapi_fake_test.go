package webui_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/ferry-dev/ferry/internal/serve"
)

// contractCheck wraps the fake API and checks every request the UI makes,
// and every answer the fake gives, against serve's OpenAPI document, so
// the fake cannot drift from the real server: a UI that works against
// the fake asks what the server understands and reads what it answers.
type contractCheck struct {
	next http.Handler

	mu       sync.Mutex
	router   routers.Router
	problems []string
	checked  map[string]bool // operations seen
}

func newContractCheck(next http.Handler) *contractCheck {
	return &contractCheck{next: next, checked: map[string]bool{}}
}

func (c *contractCheck) routerFor(r *http.Request) (routers.Router, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.router != nil {
		return c.router, nil
	}
	doc, err := openapi3.NewLoader().LoadFromData(serve.OpenAPI)
	if err != nil {
		return nil, err
	}
	doc.Servers = openapi3.Servers{{URL: "http://" + r.Host + "/v1"}}
	c.router, err = legacy.NewRouter(doc)
	return c.router, err
}

func (c *contractCheck) fail(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.problems = append(c.problems, fmt.Sprintf(format, args...))
}

func (c *contractCheck) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	rec := httptest.NewRecorder()
	c.next.ServeHTTP(rec, r)
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes())

	router, err := c.routerFor(r)
	if err != nil {
		c.fail("serve's OpenAPI document: %v", err)
		return
	}
	// The router matches on the full URL.
	req := r.Clone(context.Background())
	req.URL.Scheme, req.URL.Host = "http", r.Host
	req.Body = io.NopCloser(bytes.NewReader(body))
	route, params, err := router.FindRoute(req)
	if err != nil {
		c.fail("%s %s: the UI calls what serve's OpenAPI document does not have (%v)", r.Method, r.URL.Path, err)
		return
	}
	c.mu.Lock()
	c.checked[route.Method+" "+route.Path] = true
	c.mu.Unlock()
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
	if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
		c.fail("%s %s: the UI's request does not match serve's OpenAPI document: %s", r.Method, r.URL, firstLine(err))
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: rec.Code, Header: rec.Header(),
		Options: &openapi3filter.Options{IncludeResponseStatus: true}}
	out.SetBodyBytes(rec.Body.Bytes())
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		c.fail("%s %s: the fake's %d answer does not match serve's OpenAPI document: %s", r.Method, r.URL, rec.Code, firstLine(err))
	}
}

// report returns the problems found and the operations checked.
func (c *contractCheck) report() (problems []string, checked int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.problems...), len(c.checked)
}

func firstLine(err error) string {
	msg, _, _ := strings.Cut(err.Error(), "\n")
	return msg
}
