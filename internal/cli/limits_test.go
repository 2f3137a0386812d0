package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/auth/authtest"
)

// issuesAPI serves n issues, 10 a page, with link_header pagination, and
// GitHub's primary rate limit: limit requests per window, told in
// X-RateLimit-* headers on every response, and a 403 with
// X-RateLimit-Remaining: 0 once they are spent.
type issuesAPI struct {
	*httptest.Server
	n      int
	limit  int
	window time.Duration
	// before, when set, may answer a request itself (n counts from 1).
	before func(n int64, w http.ResponseWriter, r *http.Request) bool

	mu       sync.Mutex
	left     int
	reset    time.Time
	requests atomic.Int64
	refused  atomic.Int64
	pages    []string // the page numbers served, in order
}

func newIssuesAPI(t *testing.T, n, limit int, window time.Duration) *issuesAPI {
	a := &issuesAPI{n: n, limit: limit, window: window}
	a.Server = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.Close)
	return a
}

// resetNow starts a new window (the hour passed).
func (a *issuesAPI) resetNow() {
	a.mu.Lock()
	a.reset = time.Time{}
	a.mu.Unlock()
}

func (a *issuesAPI) served() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.pages)
}

func (a *issuesAPI) serve(w http.ResponseWriter, r *http.Request) {
	n := a.requests.Add(1)
	if a.before != nil && a.before(n, w, r) {
		return
	}
	a.mu.Lock()
	now := time.Now()
	if a.reset.IsZero() || !now.Before(a.reset) {
		a.left, a.reset = a.limit, now.Add(a.window)
	}
	left := a.left
	if left > 0 {
		a.left--
	}
	reset := a.reset
	a.mu.Unlock()
	w.Header().Set("X-RateLimit-Limit", strconv.Itoa(a.limit))
	w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(reset.Add(999*time.Millisecond).Unix(), 10))
	w.Header().Set("Content-Type", "application/json")
	if left == 0 {
		a.refused.Add(1)
		w.Header().Set("X-RateLimit-Remaining", "0")
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, `{"message":"API rate limit exceeded for user ID 1.","documentation_url":"https://docs.github.com/rest/overview/resources-in-the-rest-api#rate-limiting"}`)
		return
	}
	w.Header().Set("X-RateLimit-Remaining", strconv.Itoa(left-1))
	page, _ := strconv.Atoi(r.URL.Query().Get("page"))
	page = max(page, 1)
	a.mu.Lock()
	a.pages = append(a.pages, strconv.Itoa(page))
	a.mu.Unlock()
	var out []map[string]any
	for i := (page - 1) * 10; i < min(page*10, a.n); i++ {
		out = append(out, map[string]any{"id": i + 1, "title": fmt.Sprintf("issue %d", i+1)})
	}
	if page*10 < a.n {
		w.Header().Set("Link", fmt.Sprintf(`<http://%s/repos/o/r/issues?page=%d&per_page=10>; rel="next"`, r.Host, page+1))
	}
	json.NewEncoder(w).Encode(out)
}

func issuesConnector(url, http string) string {
	return fmt.Sprintf(`name: gh
base_url: %s
http:
  initial_backoff: 10ms
  max_backoff: 50ms
%s
streams:
  issues:
    path: /repos/o/r/issues
    primary_key: id
    paginate: {type: link_header, size: 10, size_param: per_page}
`, url, http)
}

// ids returns the issue ids stored, and fails on a repeated one.
func (s *site) ids(table string) []int {
	s.t.Helper()
	var out []int
	for _, r := range s.query("SELECT id FROM " + table + " ORDER BY id") {
		n, _ := strconv.Atoi(r)
		if len(out) > 0 && out[len(out)-1] == n {
			s.t.Fatalf("id %d stored twice", n)
		}
		out = append(out, n)
	}
	return out
}

func want(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i + 1
	}
	return out
}

// TestGitHubPrimaryLimitWaits: with the reset within max_wait, the run
// waits for it (slowing down before the limit: the API never refuses a
// request) and ends with every issue.
func TestGitHubPrimaryLimitWaits(t *testing.T) {
	api := newIssuesAPI(t, 45, 3, time.Second)
	s := newSite(t, issuesConnector(api.URL, "  max_wait: 1m"), sqlitePipeline)
	s.run(exitOK)
	if got := s.ids("issues"); !slices.Equal(got, want(45)) {
		t.Fatalf("ids %v", got)
	}
	if api.refused.Load() != 0 {
		t.Fatalf("the API refused %d requests: Ferry should have waited for the reset it was told", api.refused.Load())
	}
}

// TestGitHubPrimaryLimitStopsEarly: with the reset later than max_wait,
// the run commits what it read, ends stopped (exit 4) saying when the
// limit resets, and the next run, after the reset, reads the rest and
// nothing twice.
func TestGitHubPrimaryLimitStopsEarly(t *testing.T) {
	api := newIssuesAPI(t, 45, 3, time.Hour)
	s := newSite(t, issuesConnector(api.URL, "  max_wait: 1m"), sqlitePipeline+"mode: full_refresh_append\n")
	out := s.run(exitStopped)
	for _, w := range []string{"stopped", "X-RateLimit-Remaining: 0", "resets at", "run again after", "30 rows and their state were committed"} {
		if !strings.Contains(out, w) {
			t.Errorf("the summary does not say %q:\n%s", w, out)
		}
	}
	if got := s.ids("issues"); !slices.Equal(got, want(30)) {
		t.Fatalf("after the first run: ids %v", got)
	}
	if api.refused.Load() != 0 {
		t.Fatalf("the API refused %d requests: Ferry knew the limit was spent", api.refused.Load())
	}
	// Before the reset, a new run hears the 403 and stops again, at once.
	before := api.requests.Load()
	out = s.run(exitStopped)
	if api.requests.Load()-before != 1 || api.refused.Load() != 1 || !strings.Contains(out, "API rate limit exceeded for user ID 1.") {
		t.Fatalf("a run before the reset: %d requests, %d refused\n%s", api.requests.Load()-before, api.refused.Load(), out)
	}
	api.resetNow()
	s.run(exitOK)
	if got := s.ids("issues"); !slices.Equal(got, want(45)) {
		t.Fatalf("after the second run: ids %v", got)
	}
	if got := api.served(); !slices.Equal(got, []string{"1", "2", "3", "4", "5"}) {
		t.Fatalf("pages served %v: the run after the reset should resume at page 4", got)
	}
	if got := s.query("SELECT status FROM _ferry_runs ORDER BY started_at"); !slices.Equal(got, []string{"stopped", "stopped", "succeeded"}) {
		t.Fatalf("runs %v", got)
	}
}

// TestSecondaryLimits: GitHub's secondary limits, a 403 with
// Retry-After and a 429 with Retry-After, are waited for; a 403 without
// Retry-After is taken as one by a response rule on its message.
func TestSecondaryLimits(t *testing.T) {
	api := newIssuesAPI(t, 35, 1000, time.Hour)
	api.before = func(n int64, w http.ResponseWriter, r *http.Request) bool {
		w.Header().Set("Content-Type", "application/json")
		switch n {
		case 2:
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, `{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}`)
		case 4:
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
		case 6:
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, `{"message":"You have exceeded a secondary rate limit and have been temporarily blocked from content creation."}`)
		default:
			return false
		}
		return true
	}
	conn := issuesConnector(api.URL, "") + `    rules:
      - name: secondary_limit
        status: [403]
        when: 'body?.message matches "secondary rate limit"'
        action: retry
        wait: 1s
`
	s := newSite(t, conn, sqlitePipeline)
	start := time.Now()
	s.run(exitOK)
	if got := s.ids("issues"); !slices.Equal(got, want(35)) {
		t.Fatalf("ids %v", got)
	}
	if time.Since(start) < 2500*time.Millisecond {
		t.Fatalf("three waits of 1s took %s", time.Since(start))
	}
	// Without the rule, the bare 403 fails the stream with the API's
	// message.
	api.requests.Store(5)
	s = newSite(t, issuesConnector(api.URL, ""), sqlitePipeline)
	_, _, errs := s.ferry("run", "--quiet", "PIPELINE")
	if !strings.Contains(errs, "403 Forbidden (not retried)") || !strings.Contains(errs, "You have exceeded a secondary rate limit and have been temporarily blocked") {
		t.Fatalf("without the rule: %s", errs)
	}
}

// TestIETFRateLimitHeaders: an API that tells its limit in the IETF
// RateLimit and RateLimit-Policy fields is never pushed past it.
func TestIETFRateLimitHeaders(t *testing.T) {
	var mu sync.Mutex
	left, reset := 0, time.Time{}
	var refused atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		now := time.Now()
		if reset.IsZero() || !now.Before(reset) {
			left, reset = 2, now.Add(time.Second)
		}
		l := left
		if l > 0 {
			left--
		}
		secs := int(time.Until(reset).Seconds() + 0.999)
		mu.Unlock()
		w.Header().Set("RateLimit-Policy", `"default";q=2;w=1`)
		if l == 0 {
			refused.Add(1)
			w.Header().Set("RateLimit", fmt.Sprintf(`"default";r=0;t=%d`, secs))
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.Header().Set("RateLimit", fmt.Sprintf(`"default";r=%d;t=%d`, l-1, secs))
		page, _ := strconv.Atoi(r.URL.Query().Get("page"))
		var out []map[string]any
		for i := (page - 1) * 5; i < min(page*5, 23); i++ {
			out = append(out, map[string]any{"id": i + 1})
		}
		json.NewEncoder(w).Encode(map[string]any{"data": out})
	}))
	defer srv.Close()
	conn := fmt.Sprintf("name: ietf\nbase_url: %s\nstreams:\n  items:\n    path: /items\n    records: data\n    primary_key: id\n    paginate: {type: page_number, size: 5, size_param: limit, stop_on_short_page: true}\n", srv.URL)
	s := newSite(t, conn, sqlitePipeline)
	s.run(exitOK)
	if got := s.ids("items"); !slices.Equal(got, want(23)) || refused.Load() != 0 {
		t.Fatalf("ids %v, refused %d", got, refused.Load())
	}
}

// TestBudgetStopsThenResumes: a budget of 2 requests per run stops each
// run early with status stopped; the runs that follow resume where the
// last stopped, and the last one ends with every issue, none twice.
func TestBudgetStopsThenResumes(t *testing.T) {
	for _, mode := range []string{"full_refresh_append", "full_refresh_overwrite"} {
		t.Run(mode, func(t *testing.T) {
			api := newIssuesAPI(t, 45, 1000, time.Hour)
			s := newSite(t, issuesConnector(api.URL, "  budget: {requests: 2}"), sqlitePipeline+"mode: "+mode+"\n")
			for run, rows := range []int{20, 40} {
				out := s.run(exitStopped)
				if !strings.Contains(out, "http.budget: 2 requests per run") || !strings.Contains(out, "run again to go on") {
					t.Fatalf("run %d: %s", run+1, out)
				}
				if mode == "full_refresh_append" {
					if got := s.ids("issues"); !slices.Equal(got, want(rows)) {
						t.Fatalf("run %d: ids %v", run+1, got)
					}
				}
			}
			s.run(exitOK)
			if got := s.ids("issues"); !slices.Equal(got, want(45)) {
				t.Fatalf("ids %v", got)
			}
			if api.requests.Load() != 5 {
				t.Fatalf("%d requests for 5 pages", api.requests.Load())
			}
		})
	}
}

// TestBudgetWindowWaits: a budget per a window within max_wait is waited
// for, and the run ends exact.
func TestBudgetWindowWaits(t *testing.T) {
	api := newIssuesAPI(t, 25, 1000, time.Hour)
	s := newSite(t, issuesConnector(api.URL, "  budget: {requests: 2, per: 500ms, window: sliding}"), sqlitePipeline)
	start := time.Now()
	s.run(exitOK)
	if got := s.ids("issues"); !slices.Equal(got, want(25)) || time.Since(start) < 450*time.Millisecond {
		t.Fatalf("ids %v after %s", got, time.Since(start))
	}
}

// graphqlAPI serves a GitHub-style GraphQL connection of n issues, and
// throttles as Shopify does: the request numbered throttle answers 200
// with a THROTTLED error and the cost extension.
func graphqlAPI(t *testing.T, n int, answer func(k int64) string) (*httptest.Server, *atomic.Int64) {
	var k atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Query     string         `json:"query"`
			Variables map[string]any `json:"variables"`
		}
		if r.Method != http.MethodPost || json.NewDecoder(r.Body).Decode(&req) != nil || !strings.Contains(req.Query, "issues(") {
			w.WriteHeader(400)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if a := answer(k.Add(1)); a != "" {
			fmt.Fprint(w, a)
			return
		}
		after := 0
		if c, ok := req.Variables["after"].(string); ok {
			after, _ = strconv.Atoi(c)
		}
		first := int(req.Variables["first"].(float64))
		var nodes []map[string]any
		for i := after; i < min(after+first, n); i++ {
			nodes = append(nodes, map[string]any{"id": i + 1, "title": fmt.Sprintf("issue %d", i+1)})
		}
		json.NewEncoder(w).Encode(map[string]any{"data": map[string]any{"repository": map[string]any{"issues": map[string]any{
			"nodes":    nodes,
			"pageInfo": map[string]any{"hasNextPage": after+first < n, "endCursor": strconv.Itoa(after + first)},
		}}}})
	}))
	t.Cleanup(srv.Close)
	return srv, &k
}

func graphqlConnector(url, extra string) string {
	return fmt.Sprintf(`name: gql
base_url: %s
config:
  owner: {default: golang}
http: {initial_backoff: 10ms, max_backoff: 50ms}
streams:
  issues:
    path: /graphql
    primary_key: id
    graphql:
      query: |
        query($owner: String!, $after: String, $first: Int!) {
          repository(owner: $owner, name: "go") {
            issues(first: $first, after: $after) {
              nodes { id title }
              pageInfo { hasNextPage endCursor }
            }
          }
        }
      variables: {owner: "{{ config.owner }}"}
      connection: repository.issues
      page_size: 10
%s`, url, extra)
}

// TestGraphQLThrottledIn200: a throttling error in a 200 is retried
// after the wait its cost extension gives, and the run ends with every
// record.
func TestGraphQLThrottledIn200(t *testing.T) {
	srv, k := graphqlAPI(t, 25, func(k int64) string {
		if k == 2 {
			return `{"errors":[{"message":"Throttled","extensions":{"code":"THROTTLED","documentation":"https://shopify.dev/api/usage/rate-limits"}}],` +
				`"extensions":{"cost":{"requestedQueryCost":60,"actualQueryCost":null,"throttleStatus":{"maximumAvailable":1000,"currentlyAvailable":10,"restoreRate":50}}}}`
		}
		return ""
	})
	s := newSite(t, graphqlConnector(srv.URL, ""), sqlitePipeline)
	start := time.Now()
	s.run(exitOK)
	if got := s.ids("issues"); !slices.Equal(got, want(25)) {
		t.Fatalf("ids %v", got)
	}
	if k.Load() != 4 || time.Since(start) < time.Second {
		t.Fatalf("%d requests in %s: the throttled one should be retried once, after 1s", k.Load(), time.Since(start))
	}
}

// TestGraphQLErrorsIn200: other errors in a 200 fail the stream with
// the API's message and the rule's name; partial data is refused unless
// a rule accepts it.
func TestGraphQLErrorsIn200(t *testing.T) {
	partial := `{"data":{"repository":{"issues":{"nodes":[{"id":1}],"pageInfo":{"hasNextPage":false,"endCursor":"1"}}}},` +
		`"errors":[{"type":"FORBIDDEN","path":["repository","issues","nodes",1],"message":"Resource not accessible by integration"}]}`
	srv, _ := graphqlAPI(t, 5, func(int64) string { return partial })
	s := newSite(t, graphqlConnector(srv.URL, ""), sqlitePipeline)
	code, _, errs := s.ferry("run", "--quiet", "PIPELINE")
	if code != exitFailed || !strings.Contains(errs, "graphql errors") || !strings.Contains(errs, "Resource not accessible by integration") ||
		!strings.Contains(errs, "partial data") {
		t.Fatalf("exit %d: %s", code, errs)
	}
	s = newSite(t, graphqlConnector(srv.URL, `    rules:
      - {name: keep_partial, when: 'body.errors != nil && body.data != nil', action: accept}
`), sqlitePipeline)
	s.run(exitOK)
	if got := s.ids("issues"); !slices.Equal(got, []int{1}) {
		t.Fatalf("ids %v", got)
	}
}

// TestMutualTLS: a connector with a CA bundle and a client certificate
// reaches an API that requires one; without the CA the API's
// certificate is refused at once, without the certificate the API
// refuses the connection.
func TestMutualTLS(t *testing.T) {
	ca := authtest.NewCA(t)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) == 0 {
			w.WriteHeader(401)
			return
		}
		fmt.Fprintf(w, `{"data":[{"id":1,"client":%q}]}`, r.TLS.PeerCertificates[0].Subject.CommonName)
	}))
	srv.TLS = ca.ServerTLS(t, true)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes below
	srv.StartTLS()
	defer srv.Close()
	cert, key := ca.Issue(t, "ferry-client", true)
	conn := fmt.Sprintf(`name: mtls
base_url: %s
config:
  ca: {}
  cert: {}
  key: {secret: true}
http:
  max_attempts: 2
  initial_backoff: 10ms
  tls: {ca: "{{ config.ca }}", cert: "{{ config.cert }}", key: "{{ config.key }}"}
streams:
  things: {path: /things, records: data, primary_key: id}
`, srv.URL)
	s := newSite(t, conn, sqlitePipeline+"config:\n  ca: {file: ca.pem}\n  cert: {file: client.pem}\n  key: {file: client.key}\n")
	s.write("ca.pem", string(ca.CertPEM))
	s.write("client.pem", string(cert))
	s.write("client.key", string(key))
	s.run(exitOK)
	if got := s.query("SELECT client FROM things"); !slices.Equal(got, []string{"ferry-client"}) {
		t.Fatalf("rows %v", got)
	}
	// Without the CA: the system's CAs do not know the API's.
	noCA := strings.Replace(conn, `ca: "{{ config.ca }}", `, "", 1)
	s2 := newSite(t, noCA, sqlitePipeline+"config:\n  ca: x\n  cert: {file: client.pem}\n  key: {file: client.key}\n")
	s2.write("client.pem", string(cert))
	s2.write("client.key", string(key))
	code, _, errs := s2.ferry("run", "--quiet", "PIPELINE")
	if code != exitFailed || !strings.Contains(errs, "certificate signed by unknown authority") || strings.Contains(errs, "after 2 attempts") {
		t.Fatalf("without the CA: exit %d: %s", code, errs)
	}
	// Without a client certificate the server ends the handshake.
	noCert := strings.Replace(conn, `, cert: "{{ config.cert }}", key: "{{ config.key }}"`, "", 1)
	s3 := newSite(t, noCert, sqlitePipeline+"config:\n  ca: {file: ca.pem}\n  cert: x\n  key: {file: ca.pem}\n")
	s3.write("ca.pem", string(ca.CertPEM))
	if code, _, errs := s3.ferry("run", "--quiet", "PIPELINE"); code != exitFailed || !strings.Contains(errs, "certificate") {
		t.Fatalf("without a client certificate: exit %d: %s", code, errs)
	}
	os.Remove(s.path("client.key"))
}

// TestCircuitBreaker: an API that is down fails the child stream after
// circuit_breaker attempts in a row, naming the last failure, instead of
// every partition making its own attempts.
func TestCircuitBreaker(t *testing.T) {
	var kids atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/parents" {
			var out []string
			for i := 1; i <= 50; i++ {
				out = append(out, fmt.Sprintf(`{"id":%d}`, i))
			}
			fmt.Fprintf(w, "[%s]", strings.Join(out, ","))
			return
		}
		kids.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, `{"message":"upstream is down"}`)
	}))
	defer srv.Close()
	conn := fmt.Sprintf(`name: down
base_url: %s
http: {circuit_breaker: 8, initial_backoff: 1ms, max_backoff: 2ms}
streams:
  parents: {path: /parents, primary_key: id}
  kids: {path: "/parents/{{ parent.id }}/kids", parent: {stream: parents, concurrency: 2}}
`, srv.URL)
	s := newSite(t, conn, sqlitePipeline+"streams:\n  kids:\n")
	code, _, errs := s.ferry("run", "--quiet", "PIPELINE")
	if code != exitFailed || !strings.Contains(errs, "circuit breaker open: 8 attempts in a row failed") || !strings.Contains(errs, "503") {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if n := kids.Load(); n > 10 {
		t.Fatalf("%d requests to an API that is down", n)
	}
}
