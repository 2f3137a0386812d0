package serve_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/ferry-dev/ferry/internal/metastore"
	"github.com/ferry-dev/ferry/internal/serve"
)

// Every call a test makes to /v1 is checked against the OpenAPI
// document: the request, and the response's status, headers and body.
var (
	docMu    sync.Mutex
	routers_ = map[string]routers.Router{}
	// exercised records the operations the tests called, by status class.
	exercised = map[string]bool{}
)

func loadDoc(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(serve.OpenAPI)
	if err != nil {
		t.Fatalf("the OpenAPI document does not load: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("the OpenAPI document is not valid: %v", err)
	}
	return doc
}

func router(t *testing.T, base string) routers.Router {
	t.Helper()
	docMu.Lock()
	defer docMu.Unlock()
	if r := routers_[base]; r != nil {
		return r
	}
	doc := loadDoc(t)
	doc.Servers = openapi3.Servers{{URL: base + "/v1"}}
	r, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	routers_[base] = r
	return r
}

// checkAPI validates a request made and the response it got.
func checkAPI(t *testing.T, req *http.Request, body []byte, resp *http.Response, raw []byte) {
	t.Helper()
	i := strings.Index(req.URL.String(), "/v1/")
	if i < 0 {
		return
	}
	base := req.URL.String()[:i]
	r := router(t, base)
	route, params, err := r.FindRoute(req)
	if err != nil {
		if resp.StatusCode == http.StatusNotFound {
			return // a path the API does not have: 404 is right
		}
		t.Fatalf("%s %s: not in the OpenAPI document (%v), yet answered %d", req.Method, req.URL.Path, err, resp.StatusCode)
	}
	docMu.Lock()
	exercised[route.Method+" "+route.Path] = true
	docMu.Unlock()
	ctx := context.Background()
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
	if body != nil {
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	// Requests the tests send on purpose wrong are answered 4xx; others
	// must match the document.
	if err := openapi3filter.ValidateRequest(ctx, in); err != nil && resp.StatusCode < 400 {
		t.Fatalf("%s %s: the request does not match the OpenAPI document, yet was answered %d: %v", req.Method, req.URL.Path, resp.StatusCode, err)
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Options: &openapi3filter.Options{IncludeResponseStatus: true}}
	out.SetBodyBytes(raw)
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		t.Fatalf("%s %s: the %d response does not match the OpenAPI document: %v\n%s", req.Method, req.URL.Path, resp.StatusCode, err, raw)
	}
}

// TestOpenAPIDocumentMatchesHandlers: the document is valid, describes
// exactly the routes the server has, and each operation's real responses
// match it (every call of every test in this package is checked; here
// each operation is called at least once).
func TestOpenAPIDocumentMatchesHandlers(t *testing.T) {
	doc := loadDoc(t)
	api := newGatedAPI(t, 2)
	s := startServer(t, serve.Config{Pipelines: []serve.Pipeline{loadPipeline(t, writePipeline(t, t.TempDir(), "shop", api, "full_refresh_append", "schema:\n  policy: discard_row\nschedule:\n  cron: \"@yearly\"\n  jitter: 1s\n"))}})
	var documented []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented = append(documented, method+" /v1"+path)
		}
	}
	slices.Sort(documented)
	if routes := s.APIRoutes(); !slices.Equal(routes, documented) {
		t.Fatalf("the server's routes and the document differ:\nserver   %q\ndocument %q", routes, documented)
	}
	// The served document is the one checked.
	var served map[string]any
	if st := call(t, "GET", s.URL+"/v1/openapi.json", "", nil, &served); st != 200 || served["openapi"] != "3.0.3" {
		t.Fatalf("openapi.json = %d", st)
	}
	var run metastore.Run
	call(t, "POST", s.URL+"/v1/pipelines/shop/runs", "", map[string]any{"streams": []string{"items"}}, &run)
	waitRun(t, s.URL, run.ID)
	api.bad.Store(true) // a new column, refused by discard_row: one reject
	call(t, "POST", s.URL+"/v1/pipelines/shop/runs", "", nil, &run)
	waitRun(t, s.URL, run.ID)
	call(t, "GET", s.URL+"/v1/pipelines", "", nil, nil)
	call(t, "GET", s.URL+"/v1/pipelines/shop", "", nil, nil)
	call(t, "GET", s.URL+"/v1/runs?pipeline=shop&status=partial&limit=5", "", nil, nil)
	call(t, "GET", s.URL+"/v1/runs/"+run.ID+"/logs?after=0&limit=10", "", nil, nil)
	call(t, "POST", s.URL+"/v1/runs/"+run.ID+"/cancel", "", nil, nil) // 409: ended
	call(t, "GET", s.URL+"/v1/pipelines/shop/streams/items/state", "", nil, nil)
	var rl struct {
		Rejected []serve.RejectedView `json:"rejected"`
	}
	call(t, "GET", s.URL+"/v1/pipelines/shop/rejected?stream=items&limit=10", "", nil, &rl)
	if len(rl.Rejected) != 1 {
		t.Fatalf("rejected = %+v", rl)
	}
	call(t, "POST", s.URL+"/v1/pipelines/shop/rejected/replay", "", map[string]any{"ids": []string{rl.Rejected[0].ID}}, nil)
	call(t, "DELETE", s.URL+"/v1/pipelines/shop/streams/items/state", "", nil, nil)
	call(t, "GET", s.URL+"/v1/webhooks?recent=5", "", nil, nil)
	call(t, "GET", s.URL+"/v1/drift?pipeline=shop&limit=5", "", nil, nil)
	call(t, "GET", s.URL+"/v1/throughput?pipeline=shop&minutes=3", "", nil, nil)
	// Errors are documented too.
	call(t, "GET", s.URL+"/v1/pipelines/nope", "", nil, nil)
	call(t, "GET", s.URL+"/v1/runs/nope", "", nil, nil)
	call(t, "GET", s.URL+"/v1/runs?limit=0", "", nil, nil)
	api.Hold()
	call(t, "POST", s.URL+"/v1/pipelines/shop/runs", "", nil, &run)
	eventually(t, "a held run", 20*time.Second, func() bool { return api.waiting.Load() > 0 })
	call(t, "GET", s.URL+"/v1/runs/"+run.ID, "", nil, nil)         // live
	call(t, "POST", s.URL+"/v1/pipelines/shop/runs", "", nil, nil) // 409
	call(t, "POST", s.URL+"/v1/runs/"+run.ID+"/cancel", "", nil, nil)
	waitRun(t, s.URL, run.ID)

	docMu.Lock()
	defer docMu.Unlock()
	for _, op := range documented {
		method, path, _ := strings.Cut(op, " ")
		if !exercised[method+" "+strings.TrimPrefix(path, "/v1")] {
			t.Errorf("%s was not exercised against the document", op)
		}
	}
}
