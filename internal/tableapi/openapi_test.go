package tableapi_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/ferry-dev/ferry/internal/tableapi"
)

// loadOpenAPI fetches and validates the document.
func (e *env) loadOpenAPI(t *testing.T, headers ...string) *openapi3.T {
	t.Helper()
	r := e.do(t, http.MethodGet, "/api/openapi.json", "", headers...)
	if r.status != 200 {
		t.Fatalf("openapi.json: %d %s", r.status, r.body)
	}
	doc, err := openapi3.NewLoader().LoadFromData(r.body)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("the OpenAPI document is not valid: %v\n%s", err, r.body)
	}
	return doc
}

// checkAgainst sends requests and validates each response (status,
// headers, body) against the document's operation.
func (e *env) checkAgainst(t *testing.T, doc *openapi3.T, method, path, body string, headers ...string) response {
	t.Helper()
	doc.Servers = openapi3.Servers{{URL: e.srv.URL + "/api"}}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	route, params, err := router.FindRoute(req)
	if err != nil {
		t.Fatalf("%s %s is not in the OpenAPI document: %v", method, path, err)
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
	if body != "" {
		req.Body = io.NopCloser(strings.NewReader(body))
	}
	if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
		t.Fatalf("%s %s does not fit the document: %v", method, path, err)
	}
	r := e.do(t, method, path, body, headers...)
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: r.status, Header: r.header, Body: io.NopCloser(bytes.NewReader(r.body)), Options: &openapi3filter.Options{IncludeResponseStatus: true}}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		t.Fatalf("the response to %s %s does not fit the document: %v\n%s", method, path, err, r.body)
	}
	return r
}

func (e *env) testOpenAPI(t *testing.T) {
	doc := e.loadOpenAPI(t)
	row := doc.Components.Schemas["Orders"]
	if row == nil || row.Value.Properties["id"] == nil || row.Value.Properties["id"].Value.Format != "int64" || row.Value.Properties["id"].Value.Nullable {
		t.Fatalf("the Orders schema: %+v", row)
	}
	for name, format := range map[string]string{"total": "decimal", "created_at": "date-time", "amount": "double"} {
		p := row.Value.Properties[name]
		if p == nil || p.Value.Format != format || !p.Value.Nullable {
			t.Errorf("column %s: %+v, want nullable format %s", name, p, format)
		}
	}
	for name := range row.Value.Properties {
		if strings.HasPrefix(name, "_ferry") {
			t.Errorf("the document shows %s", name)
		}
	}
	if doc.Paths.Find("/orders") == nil || doc.Paths.Find("/orders/{key}") == nil {
		t.Fatalf("paths: %v", doc.Paths.InMatchingOrder())
	}
	for _, path := range []string{
		"/api/orders?limit=3",
		"/api/orders?limit=3&select=id,note&order=note.desc",
		"/api/orders?expand=line_items&limit=4",
		"/api/orders?id=eq.x",
		"/api/orders/10",
		"/api/orders/10?expand=line_items",
		"/api/orders/11",
	} {
		e.checkAgainst(t, doc, http.MethodGet, path, "")
	}
	e.checkAgainst(t, doc, http.MethodGet, "/api/orders?limit=3", "", "Accept", "text/csv")
}

// testInjection sends SQL through every parameter: each is refused or
// bound as a value, and the tables are intact afterwards.
func (e *env) testInjection(t *testing.T) {
	count := func() int {
		n := 0
		next := "/api/orders?limit=50&select=id"
		for next != "" {
			rows, r := e.rows(t, next)
			n += len(rows)
			next = nextLink(t, r)
		}
		return n
	}
	before := count()
	evil := []string{
		"1; DROP TABLE orders; --",
		"' OR '1'='1",
		`" OR ""="`,
		"1) OR (1=1",
		"x` OR 1=1 -- ",
		"1 UNION SELECT state FROM _ferry_state",
		"\x00",
		"%' --",
		"$1",
		"?",
		`\'; SELECT pg_sleep(5); --`,
	}
	cursor := func(vals ...string) string {
		ptrs := make([]*string, len(vals))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		return tableapi.EncodeCursor("orders", "name,id", ptrs)
	}
	for _, x := range evil {
		q := url.QueryEscape(x)
		paths := map[string][]int{
			"/api/orders?name=eq." + q:                         {200, 400},
			"/api/orders?name=like." + q:                       {200, 400},
			"/api/orders?name=ilike." + q:                      {200, 400},
			"/api/orders?name=in.(" + q + ")":                  {200, 400},
			"/api/orders?id=eq." + q:                           {400},
			"/api/orders?id=in.(1," + q + ")":                  {400},
			"/api/orders?created_at=gt." + q:                   {400},
			"/api/orders?total=gt." + q:                        {400},
			"/api/orders?" + q + "=eq.1":                       {400},
			"/api/orders?select=" + q:                          {400},
			"/api/orders?select=id," + q:                       {400},
			"/api/orders?order=" + q:                           {400},
			"/api/orders?order=id." + q:                        {400},
			"/api/orders?expand=" + q:                          {400},
			"/api/orders?limit=" + q:                           {400},
			"/api/orders?cursor=" + q:                          {400},
			"/api/orders?order=name&cursor=" + cursor(x, "x1"): {400},
			"/api/orders?order=name&cursor=" + cursor(x, "2"):  {200, 400},
			"/api/" + url.PathEscape(x):                        {404},
			"/api/orders/" + url.PathEscape(x):                 {404},
		}
		for p, want := range paths {
			r := e.do(t, http.MethodGet, p, "")
			ok := false
			for _, s := range want {
				ok = ok || r.status == s
			}
			if !ok {
				t.Errorf("%s: %d %.200s, want %v", p, r.status, r.body, want)
			}
			if r.status == 200 && strings.HasPrefix(p, "/api/orders?name=eq.") {
				var rows []any
				r.json(t, &rows)
				if len(rows) != 0 {
					t.Errorf("%s matched %d rows", p, len(rows))
				}
			}
		}
		if strings.ContainsRune(x, 0) {
			continue // not a header value
		}
		if r := e.do(t, http.MethodGet, "/api/orders", "", "Accept", x); r.status != 200 && r.status != 406 {
			t.Errorf("Accept %q: %d", x, r.status)
		}
	}
	if after := count(); after != before {
		t.Fatalf("the table had %d rows, now %d", before, after)
	}
}
