package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/normalize"
	"github.com/ferry-dev/ferry/internal/redact"

	"github.com/ferry-dev/ferry/internal/apitest"
	_ "github.com/ferry-dev/ferry/internal/components/all"
	"github.com/ferry-dev/ferry/internal/engine"
	"github.com/ferry-dev/ferry/internal/enginetest"
	"github.com/ferry-dev/ferry/internal/source"
	"github.com/ferry-dev/ferry/internal/spec"
)

// env is a test pipeline run through enginetest: files in a temp dir, a
// SQLite file, and an environment for secrets.
type env struct {
	*enginetest.Pipeline
	t *testing.T
}

func newEnv(t *testing.T, connector, pipeline string) *env {
	t.Helper()
	p := enginetest.New(t, enginetest.Config{Connector: connector, Pipeline: pipeline, Env: map[string]string{"API_TOKEN": "s3cret-token"}})
	return &env{Pipeline: p, t: t}
}

// run loads the pipeline and syncs it.
func (e *env) run(streams ...string) (*engine.Summary, error) {
	e.t.Helper()
	return e.runWith(engine.Options{Streams: streams})
}

// runWith syncs with extra options; a pipeline that does not load fails
// the test.
func (e *env) runWith(opts engine.Options) (*engine.Summary, error) {
	e.t.Helper()
	return e.result(e.RunWith(enginetest.Options{Engine: opts}))
}

func (e *env) result(res *enginetest.Result) (*engine.Summary, error) {
	e.t.Helper()
	if res.Stage == enginetest.StageLoad {
		e.t.Fatalf("load pipeline: %v", res.Err)
	}
	return res.Summary, res.Err
}

// query returns rows of a query on the SQLite file, each joined by "|".
func (e *env) query(q string) []string {
	e.t.Helper()
	return e.Query(q)
}

func (e *env) count(table string) int {
	e.t.Helper()
	return int(e.Count(table))
}

func connector(url, stream string) string {
	return fmt.Sprintf(`name: test
base_url: %s
config:
  token: {secret: true}
auth: {type: bearer, token: "{{ config.token }}"}
http: {initial_backoff: 10ms, max_backoff: 50ms, max_attempts: 4, timeout: 5s}
streams:
%s`, url, stream)
}

const pipelineSQLite = `connector: connector.yaml
config: {token: "${API_TOKEN}"}
destination: {type: sqlite, path: out.db}
`

// idsOf lists the ids of records as strings.
func idsOf(recs []map[string]any) []string {
	var out []string
	for _, r := range recs {
		out = append(out, fmt.Sprint(r["id"]))
	}
	slices.Sort(out)
	return out
}

func sorted(s []string) []string { slices.Sort(s); return s }

// childConnector is a connector without auth for customers (page numbers,
// perPage a page) and their orders: a child stream whose parent setting
// is parent, read with Link headers two at a time, plus extra settings.
func childConnector(url string, perPage int, parent, extra string) string {
	return strings.Replace(connector(url, fmt.Sprintf(`  customers:
    path: /customers
    records: data
    primary_key: id
    paginate: {type: page_number, size: %d, size_param: per_page}
  orders:
    parent: %s
    path: /customers/{{ parent.id }}/orders
    primary_key: id
    cursor: updated_at
%s    paginate: {type: link_header, size: 2, size_param: limit}
`, perPage, parent, extra)), "auth: {type: bearer, token: \"{{ config.token }}\"}\n", "", 1)
}

func TestPaginationStyles(t *testing.T) {
	users := apitest.Users(237)
	styles := map[string]string{
		apitest.PageNumber: `{type: page_number, size: 50, size_param: per_page, total_pages_path: meta.total_pages}`,
		apitest.Offset:     `{type: offset, size: 50, total_path: total}`,
		apitest.Cursor:     `{type: cursor, cursor_path: paging.next.after, param: cursor, size: 50, size_param: limit}`,
		apitest.LastRecord: `{type: last_record, size: 50, size_param: limit, has_more_path: has_more}`,
		apitest.NextURL:    `{type: next_url, next_path: next, size: 50, size_param: limit}`,
		apitest.Link:       `{type: link_header, size: 50, size_param: limit}`,
	}
	for style, paginate := range styles {
		t.Run(style, func(t *testing.T) {
			t.Parallel()
			api := apitest.New(t, users, style, 50)
			api.Token = "s3cret-token"
			records := "data"
			if style == apitest.Link {
				records = `""`
			}
			e := newEnv(t, connector(api.URL, fmt.Sprintf(`  users:
    path: /users
    records: %s
    primary_key: id
    paginate: %s
`, records, paginate)), pipelineSQLite)
			sum, err := e.run()
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			if got := sum.Streams[0].Records; got != 237 {
				t.Fatalf("records = %d", got)
			}
			got := sorted(e.query("SELECT id FROM users"))
			if !slices.Equal(got, idsOf(users)) {
				t.Fatalf("ids = %v", got)
			}
			// Exact values, nested objects as JSON.
			row := e.query("SELECT email, score, active, updated_at, profile FROM users WHERE id = 8")
			want := `user8@example.com|7.5|1|2024-01-01T00:07:00.000000Z|{"plan":"pro","seats":0}`
			if row[0] != want {
				t.Fatalf("row 8 = %q, want %q", row[0], want)
			}
			// Five pages of 50 (the last short); no request beyond the end
			// for styles that can tell.
			if n := api.Requests(); n < 5 || n > 6 {
				t.Fatalf("requests = %d (%v)", n, api.URLs())
			}
		})
	}
}

func TestAuthRejected(t *testing.T) {
	api := apitest.New(t, apitest.Users(10), apitest.PageNumber, 5)
	api.Token = "the-right-token"
	e := newEnv(t, connector(api.URL, "  users: {path: /users, records: data, primary_key: id, paginate: {type: page_number}}\n"), pipelineSQLite)
	_, err := e.run()
	if err == nil {
		t.Fatal("run succeeded with a wrong token")
	}
	msg := err.Error()
	for _, want := range []string{"stream users", "401", api.URL + "/users?page=1"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not mention %q", msg, want)
		}
	}
	if api.Requests() != 1 {
		t.Fatalf("a 401 was retried: %d requests", api.Requests())
	}
	if strings.Contains(msg, "s3cret-token") || strings.Contains(e.Logs(), "s3cret-token") {
		t.Fatal("the token leaked into the error or the logs")
	}
}

func TestRetriesRateLimitsAndServerErrors(t *testing.T) {
	users := apitest.Users(60)
	api := apitest.New(t, users, apitest.PageNumber, 20)
	api.Token = "s3cret-token"
	api.Fault = func(n int64, _ *http.Request) apitest.Fault {
		switch n {
		case 1:
			return apitest.TooMany
		case 2, 3:
			return apitest.ServerError
		case 5:
			return apitest.Truncated
		case 6:
			return apitest.BadGateway
		}
		return apitest.OK
	}
	e := newEnv(t, connector(api.URL, "  users: {path: /users, records: data, primary_key: id, paginate: {type: page_number, size: 20, size_param: per_page, total_pages_path: meta.total_pages}}\n"), pipelineSQLite)
	start := time.Now()
	sum, err := e.run()
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(start) < time.Second {
		t.Fatalf("Retry-After: 1 was not honoured (%s)", time.Since(start))
	}
	if sum.Retries != 5 || e.count("users") != 60 {
		t.Fatalf("retries = %d, rows = %d", sum.Retries, e.count("users"))
	}
}

func TestFailureKeepsCommittedRowsAndResumes(t *testing.T) {
	users := apitest.Users(100)
	api := apitest.New(t, users, apitest.PageNumber, 10)
	api.Token = "s3cret-token"
	var broken atomic.Bool
	broken.Store(true)
	api.Fault = func(_ int64, r *http.Request) apitest.Fault {
		if broken.Load() && r.URL.Query().Get("page") == "4" {
			return apitest.ServerError
		}
		return apitest.OK
	}
	e := newEnv(t, connector(api.URL, `  users:
    path: /users
    records: data
    primary_key: id
    cursor: updated_at
    incremental: {param: updated_since}
    paginate: {type: page_number, size: 10, size_param: per_page}
`), pipelineSQLite)
	_, err := e.run()
	if err == nil || !strings.Contains(err.Error(), "500") || !strings.Contains(err.Error(), "page=4") {
		t.Fatalf("error = %v", err)
	}
	// Pages 1–3 are committed, with a resume position and no new cursor.
	if n := e.count("users"); n != 30 {
		t.Fatalf("rows after failure = %d, want 30", n)
	}
	st := e.query("SELECT state FROM _ferry_state WHERE stream = 'users'")
	if len(st) != 1 || !strings.Contains(st[0], `"pass"`) || strings.Contains(st[0], `"cursor"`) {
		t.Fatalf("state after failure = %v", st)
	}
	broken.Store(false)
	before := len(api.URLs())
	if _, err := e.run(); err != nil {
		t.Fatal(err)
	}
	first := api.URLs()[before]
	if !strings.Contains(first, "page=4") {
		t.Fatalf("the rerun started at %s, not page 4", first)
	}
	if got := sorted(e.query("SELECT id FROM users")); !slices.Equal(got, idsOf(users)) {
		t.Fatalf("final ids = %v", got)
	}
	st = e.query("SELECT state FROM _ferry_state WHERE stream = 'users'")
	if !strings.Contains(st[0], `"cursor":"`+users[99]["updated_at"].(string)+`"`) || strings.Contains(st[0], `"pass"`) {
		t.Fatalf("final state = %v", st)
	}
}

func TestBadBodies(t *testing.T) {
	tests := []struct {
		fault apitest.Fault
		want  []string
	}{
		{apitest.HTML, []string{"stream users", "not JSON", "(HTML page)", "Maintenance", "after 4 attempts"}},
		{apitest.Truncated, []string{"stream users", "not JSON", "truncated", `"{\"data\":[{\"id\":1,\"name\":\"tru"`}},
		{apitest.BadGateway, []string{"stream users", "502 Bad Gateway", "(HTML page)", "after 4 attempts"}},
	}
	for _, tt := range tests {
		api := apitest.New(t, apitest.Users(5), apitest.PageNumber, 5)
		api.Token = "s3cret-token"
		api.Fault = func(int64, *http.Request) apitest.Fault { return tt.fault }
		e := newEnv(t, connector(api.URL, "  users: {path: /users, records: data, primary_key: id}\n"), pipelineSQLite)
		_, err := e.run()
		if err == nil {
			t.Fatalf("fault %d: run succeeded", tt.fault)
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("fault %d: error %q lacks %q", tt.fault, err, w)
			}
		}
		if n := e.query("SELECT COUNT(*) FROM _ferry_state"); n[0] != "0" {
			t.Errorf("fault %d: state advanced: %v", tt.fault, n)
		}
	}
}

// A page whose JSON is broken inside one record keeps its other records;
// the broken one is rejected with the reason.
func TestBrokenRecordRejectedAlone(t *testing.T) {
	api := apitest.New(t, nil, apitest.None, 0)
	api.Token = "s3cret-token"
	api.Fault = func(int64, *http.Request) apitest.Fault { return apitest.BrokenRecord }
	e := newEnv(t, connector(api.URL, "  items: {path: /items, records: data, primary_key: id}\n"), pipelineSQLite)
	sum, err := e.run()
	if err != nil {
		t.Fatal(err)
	}
	if got := e.query("SELECT id FROM items ORDER BY id"); !slices.Equal(got, []string{"1", "3"}) || sum.Streams[0].Rejected != 1 {
		t.Fatalf("rows %v, summary %+v", got, sum.Streams[0])
	}
	rej := e.query("SELECT reason, record FROM _ferry_rejected")
	if len(rej) != 1 || !strings.Contains(rej[0], "record is not valid JSON") || !strings.Contains(rej[0], `{"id":2,"note":tru}`) {
		t.Fatalf("rejected = %v", rej)
	}
}

func TestIncrementalDedup(t *testing.T) {
	users := apitest.Users(50)
	api := apitest.New(t, users, apitest.PageNumber, 20)
	api.Token = "s3cret-token"
	e := newEnv(t, connector(api.URL, `  users:
    path: /users
    records: data
    primary_key: id
    cursor: updated_at
    incremental: {param: updated_since, start: "2024-01-01T00:10:00Z"}
    paginate: {type: page_number, size: 20, size_param: per_page}
`), pipelineSQLite)
	if _, err := e.run(); err != nil {
		t.Fatal(err)
	}
	// The start value filtered on the server: ids 11..50.
	if n := e.count("users"); n != 40 {
		t.Fatalf("first sync rows = %d, want 40", n)
	}
	// Nothing changed: the second sync writes nothing, even though the
	// API returns the boundary record again (updated_since is inclusive).
	sum, err := e.run()
	if err != nil {
		t.Fatal(err)
	}
	if sum.Streams[0].Records != 0 || sum.Streams[0].Filtered != 1 {
		t.Fatalf("second sync: %+v", sum.Streams[0])
	}
	// Two records change, one with the same timestamp as the boundary.
	last := users[49]["updated_at"].(string)
	users[20]["email"], users[20]["updated_at"] = "changed@example.com", "2024-02-01T00:00:00Z"
	api.Records = append(api.Records, map[string]any{"id": 51, "email": "same-second@example.com", "updated_at": last})
	sum, err = e.run()
	if err != nil {
		t.Fatal(err)
	}
	if sum.Streams[0].Records != 2 {
		t.Fatalf("third sync wrote %d rows, want 2 (%+v)", sum.Streams[0].Records, sum.Streams[0])
	}
	if got := e.query("SELECT email FROM users WHERE id = 21"); got[0] != "changed@example.com" {
		t.Fatalf("update lost: %v", got)
	}
	if n := e.count("users"); n != 41 {
		t.Fatalf("rows = %d, want 41", n)
	}
}

func TestIncrementalAppendClientFilter(t *testing.T) {
	events := []map[string]any{}
	for i := 1; i <= 30; i++ {
		events = append(events, map[string]any{"id": i, "seq": i / 2}) // pairs share a cursor value
	}
	api := apitest.New(t, events, apitest.Offset, 10)
	api.Token = "s3cret-token"
	e := newEnv(t, connector(api.URL, `  events:
    path: /events
    records: data
    cursor: seq
    paginate: {type: offset, size: 10}
`), pipelineSQLite+"streams: {events: {mode: incremental_append}}\n")
	if _, err := e.run(); err != nil {
		t.Fatal(err)
	}
	// The API cannot filter; a second run over the same data appends
	// nothing, and new records — one sharing the last cursor value — are
	// appended exactly once.
	if _, err := e.run(); err != nil {
		t.Fatal(err)
	}
	if n := e.count("events"); n != 30 {
		t.Fatalf("rows after rerun = %d, want 30", n)
	}
	api.Records = append(api.Records, map[string]any{"id": 31, "seq": 15}, map[string]any{"id": 32, "seq": 16})
	if _, err := e.run(); err != nil {
		t.Fatal(err)
	}
	got := e.query("SELECT id FROM events ORDER BY id")
	if len(got) != 32 || got[31] != "32" {
		t.Fatalf("ids = %v", got)
	}
	if dup := e.query("SELECT id FROM events GROUP BY id HAVING COUNT(*) > 1"); len(dup) > 0 {
		t.Fatalf("duplicates: %v", dup)
	}
}

func TestChildStreams(t *testing.T) {
	customers := apitest.Users(7)
	orders := map[string]*apitest.API{}
	mux := http.NewServeMux()
	parent := apitest.New(t, customers, apitest.PageNumber, 3)
	mux.Handle("/customers", parent)
	for _, c := range customers {
		id := fmt.Sprint(c["id"])
		var recs []map[string]any
		for j := 0; j < int(c["id"].(int))%4; j++ { // 0..3 orders each
			recs = append(recs, map[string]any{"id": id + "-" + fmt.Sprint(j), "total": fmt.Sprintf("%d.50", j), "updated_at": "2024-05-01T00:00:00Z"})
		}
		orders[id] = apitest.New(t, recs, apitest.Link, 2)
		mux.Handle("/customers/"+id+"/orders", orders[id])
	}
	srv := apitest.New(t, nil, apitest.None, 0)
	srv.Config.Handler = mux
	e := newEnv(t, childConnector(srv.URL, 3, "customers", "    columns: {total: decimal}\n"), pipelineSQLite)
	if _, err := e.run(); err != nil {
		t.Fatal(err)
	}
	got := e.query("SELECT customers_id, id, total FROM orders ORDER BY id")
	want := []string{"1|1-0|0.50", "2|2-0|0.50", "2|2-1|1.50", "3|3-0|0.50", "3|3-1|1.50", "3|3-2|2.50", "5|5-0|0.50", "6|6-0|0.50", "6|6-1|1.50", "7|7-0|0.50", "7|7-1|1.50", "7|7-2|2.50"}
	if !slices.Equal(got, want) {
		t.Fatalf("orders:\n got %v\nwant %v", got, want)
	}
	// One state row per customer partition, plus the stream's.
	if n := e.query("SELECT COUNT(*) FROM _ferry_state WHERE stream = 'orders'"); n[0] != "8" {
		t.Fatalf("orders state rows = %v", n)
	}
	// Again: every partition reads from its own cursor, nothing is added.
	sum, err := e.run("orders")
	if err != nil {
		t.Fatal(err)
	}
	if sum.Streams[0].Records != 0 || e.count("orders") != 12 {
		t.Fatalf("second run: %+v, rows %d", sum.Streams[0], e.count("orders"))
	}
}

// TestChildPartitions reads a child stream's partitions one at a time and
// four at a time: the concurrency is honoured, failed partitions leave the
// others' rows committed, and the next run reads only what is missing.
func TestChildPartitions(t *testing.T) {
	for _, workers := range []int{1, 4} {
		t.Run(fmt.Sprintf("concurrency_%d", workers), func(t *testing.T) {
			t.Parallel()
			customers := apitest.Users(30)
			var inFlight, peak atomic.Int64
			var broken atomic.Bool
			broken.Store(true)
			var mu sync.Mutex
			var firstPages []int // customers in the order their first page was asked for
			mux := http.NewServeMux()
			mux.Handle("/customers", apitest.New(t, customers, apitest.PageNumber, 7))
			orders := map[int]*apitest.API{}
			var want []string
			for _, c := range customers {
				id := c["id"].(int)
				var recs []map[string]any
				for j := range id % 5 {
					recs = append(recs, map[string]any{"id": fmt.Sprintf("%d-%d", id, j), "updated_at": "2024-05-01T00:00:00Z"})
					want = append(want, fmt.Sprintf("%d|%d-%d", id, id, j))
				}
				api := apitest.New(t, recs, apitest.Link, 2)
				if id == 5 || id == 17 {
					api.Fault = func(int64, *http.Request) apitest.Fault {
						if broken.Load() {
							return apitest.ServerError
						}
						return apitest.OK
					}
				}
				orders[id] = api
				mux.Handle(fmt.Sprintf("/customers/%d/orders", id), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					n := inFlight.Add(1)
					defer inFlight.Add(-1)
					for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
					}
					if !strings.Contains(r.URL.RawQuery, "after") {
						mu.Lock()
						firstPages = append(firstPages, id)
						mu.Unlock()
					}
					time.Sleep(3 * time.Millisecond)
					api.ServeHTTP(w, r)
				}))
			}
			srv := apitest.New(t, nil, apitest.None, 0)
			srv.Config.Handler = mux
			e := newEnv(t, childConnector(srv.URL, 7, fmt.Sprintf("{stream: customers, concurrency: %d}", workers), ""), pipelineSQLite)
			sum, err := e.run("orders")
			if err == nil || sum.Streams[0].Status != "failed" {
				t.Fatalf("a run with two broken partitions: %v, %+v", err, sum)
			}
			// The failed partitions are typed through Execute's error.
			var pe *source.PartitionErrors
			if !errors.As(err, &pe) || len(pe.Errs) != 2 {
				t.Fatalf("Execute's error does not carry the partitions' errors: %T %v", err, err)
			}
			msg := sum.Streams[0].Error
			if !strings.Contains(msg, `2 partitions failed ({"id":5}, {"id":17}); first, partition {"id":5}: GET `) || !strings.Contains(msg, "500") {
				t.Fatalf("the error should name partitions 5 and 17, in parent order: %s", msg)
			}
			var wantNow []string
			for _, w := range want {
				if !strings.HasPrefix(w, "5|") && !strings.HasPrefix(w, "17|") {
					wantNow = append(wantNow, w)
				}
			}
			got := e.query("SELECT customers_id, id FROM orders")
			if !slices.Equal(sorted(got), sorted(wantNow)) {
				t.Fatalf("rows after the failed run:\n got %v\nwant %v", sorted(got), sorted(wantNow))
			}
			switch p := peak.Load(); {
			case workers == 1 && p != 1:
				t.Fatalf("concurrency 1: %d partition requests were in flight at once", p)
			case workers > 1 && (p < 2 || p > int64(workers)):
				t.Fatalf("concurrency %d: peak of %d partition requests in flight", workers, p)
			}
			if workers == 1 {
				var okOrder []int
				for _, id := range firstPages {
					if len(okOrder) == 0 || okOrder[len(okOrder)-1] != id {
						okOrder = append(okOrder, id)
					}
				}
				if !slices.IsSorted(okOrder) {
					t.Fatalf("concurrency 1 should read partitions in parent order: %v", okOrder)
				}
			}
			// The API recovers: the next run resumes the pass and asks only
			// the two partitions that failed.
			broken.Store(false)
			before := map[int]int64{}
			for id, api := range orders {
				before[id] = api.Requests()
			}
			if _, err := e.run("orders"); err != nil {
				t.Fatal(err)
			}
			got = e.query("SELECT customers_id, id FROM orders")
			if !slices.Equal(sorted(got), sorted(want)) {
				t.Fatalf("rows after the second run:\n got %v\nwant %v", sorted(got), sorted(want))
			}
			for id, api := range orders {
				if asked := api.Requests() - before[id]; (id == 5 || id == 17) != (asked > 0) {
					t.Errorf("customer %d's orders were asked %d more times in the resumed run", id, asked)
				}
			}
		})
	}
}

// TestChildPartitionsDuplicateParent: a parent record listed twice (as
// pagination over changing data does) is read as one partition, once:
// whether the first read is still going, finished but not committed
// (default checkpoints), or committed (a commit after every page).
func TestChildPartitionsDuplicateParent(t *testing.T) {
	for _, sync := range []string{"", "sync: {checkpoint_rows: 1}\n"} {
		t.Run(fmt.Sprintf("checkpoint_rows_%v", sync != ""), func(t *testing.T) { duplicateParent(t, sync) })
	}
}

func duplicateParent(t *testing.T, sync string) {
	customers := apitest.Users(12)
	customers = append(customers[:9:9], append([]map[string]any{customers[2], customers[5]}, customers[9:]...)...)
	mux := http.NewServeMux()
	mux.Handle("/customers", apitest.New(t, customers, apitest.PageNumber, 3))
	orders := map[int]*apitest.API{}
	var want []string
	for _, c := range apitest.Users(12) {
		id := c["id"].(int)
		var recs []map[string]any
		for j := range 1 + id%3 {
			recs = append(recs, map[string]any{"id": fmt.Sprintf("%d-%d", id, j), "updated_at": "2024-05-01T00:00:00Z"})
			want = append(want, fmt.Sprintf("%d|%d-%d", id, id, j))
		}
		orders[id] = apitest.New(t, recs, apitest.Link, 2)
		api := orders[id]
		mux.Handle(fmt.Sprintf("/customers/%d/orders", id), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(2 * time.Millisecond)
			api.ServeHTTP(w, r)
		}))
	}
	srv := apitest.New(t, nil, apitest.None, 0)
	srv.Config.Handler = mux
	e := newEnv(t, childConnector(srv.URL, 3, "{stream: customers, concurrency: 4}", ""), pipelineSQLite+sync+"streams: {orders: {mode: incremental_append}}\n")
	if _, err := e.run("orders"); err != nil {
		t.Fatal(err)
	}
	got := e.query("SELECT customers_id, id FROM orders")
	if !slices.Equal(sorted(got), sorted(want)) {
		t.Fatalf("orders:\n got %v\nwant %v", sorted(got), sorted(want))
	}
	for id, api := range orders {
		if pages := int64(1+id%3+1) / 2; api.Requests() != pages { // ⌈records/2⌉
			t.Errorf("customer %d's orders: %d requests, want %d (one read of the partition)", id, api.Requests(), pages)
		}
	}
}

func TestOverwriteReplaces(t *testing.T) {
	users := apitest.Users(20)
	api := apitest.New(t, users, apitest.Offset, 7)
	api.Token = "s3cret-token"
	e := newEnv(t, connector(api.URL, "  users: {path: /users, records: data, primary_key: id, paginate: {type: offset, size: 7}}\n"), pipelineSQLite)
	if _, err := e.run(); err != nil {
		t.Fatal(err)
	}
	api.Records = users[5:12]
	if _, err := e.run(); err != nil {
		t.Fatal(err)
	}
	if got := sorted(e.query("SELECT id FROM users")); !slices.Equal(got, idsOf(users[5:12])) {
		t.Fatalf("ids after refresh = %v", got)
	}
	if n := e.query("SELECT COUNT(*) FROM sqlite_master WHERE name LIKE '_ferry_stage%'"); n[0] != "0" {
		t.Fatalf("staging table left behind")
	}
}

func TestRejectedRecordsAndHostileKeys(t *testing.T) {
	recs := []map[string]any{
		{"id": 1, `"; DROP TABLE users;--`: "sneaky", "Select": 1, "select": 2},
		{"name": "no id"},
		{"id": 3, "n": "x"},
	}
	api := apitest.New(t, recs, apitest.None, 0)
	api.Token = "s3cret-token"
	e := newEnv(t, connector(api.URL, "  users: {path: /users, records: data, primary_key: id}\n"), pipelineSQLite)
	sum, err := e.run()
	if err != nil {
		t.Fatal(err)
	}
	if sum.Streams[0].Records != 2 || sum.Streams[0].Rejected != 1 {
		t.Fatalf("summary = %+v", sum.Streams[0])
	}
	if got := e.query(`SELECT "drop_table_users", "select" FROM users WHERE id = 1`); got[0] != "sneaky|1" {
		t.Fatalf("hostile columns = %v", got)
	}
	rej := e.query("SELECT stream, reason, record FROM _ferry_rejected")
	if len(rej) != 1 || rej[0] != `users|missing primary key field "id"|{"name":"no id"}` {
		t.Fatalf("rejected = %v", rej)
	}
}

func TestSecretsStayOutOfLogsErrorsAndState(t *testing.T) {
	api := apitest.New(t, apitest.Users(30), apitest.NextURL, 10)
	var leaked atomic.Bool
	api.Fault = func(n int64, r *http.Request) apitest.Fault {
		if r.URL.Query().Get("api_key") != "k3y-very-secret" {
			leaked.Store(true) // the key must be sent on every page
			return apitest.Unauthorized
		}
		if n == 2 {
			return apitest.ServerError
		}
		return apitest.OK
	}
	conn := fmt.Sprintf(`name: test
base_url: %s
config: {key: {secret: true}}
auth: {type: api_key, in: query, name: api_key, value: "{{ config.key }}"}
http: {initial_backoff: 10ms, max_attempts: 3}
streams:
  users: {path: /users, records: data, primary_key: id, cursor: updated_at, paginate: {type: next_url, next_path: next, size: 10, size_param: limit}}
`, api.URL)
	e := newEnv(t, conn, "connector: connector.yaml\nconfig: {key: {env: API_KEY}}\ndestination: {type: sqlite, path: out.db}\nsync: {checkpoint_rows: 1}\n")
	e.SetEnv("API_KEY", "k3y-very-secret")
	if _, err := e.run(); err != nil {
		t.Fatal(err)
	}
	if leaked.Load() {
		t.Fatal("a request went out without the key")
	}
	if strings.Contains(e.Logs(), "k3y-very-secret") {
		t.Fatalf("the key is in the logs:\n%s", e.Logs())
	}
	if !strings.Contains(e.Logs(), "retrying http request") {
		t.Fatalf("expected a retry log line:\n%s", e.Logs())
	}
	for _, table := range []string{"_ferry_state", "_ferry_runs", "_ferry_tables"} {
		for _, row := range e.query("SELECT * FROM " + table) {
			if strings.Contains(row, "k3y-very-secret") {
				t.Fatalf("the key is stored in %s: %s", table, row)
			}
		}
	}
	// An error names the URL with the key redacted.
	api.Fault = func(int64, *http.Request) apitest.Fault { return apitest.BadGateway }
	_, err := e.run()
	if err == nil || strings.Contains(err.Error(), "k3y-very-secret") || !strings.Contains(err.Error(), "/users?limit=10: 502") {
		t.Fatalf("error = %v", err)
	}
}

func TestPaginationLoopFailsClearly(t *testing.T) {
	srv := apitest.New(t, nil, apitest.None, 0)
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"data":[{"id":%d}],"next_cursor":"same"}`, len(r.URL.Query().Get("c")))
	})
	e := newEnv(t, strings.Replace(connector(srv.URL, "  items: {path: /items, records: data, primary_key: id, paginate: {type: cursor, cursor_path: next_cursor, param: c}}\n"), "auth: {type: bearer, token: \"{{ config.token }}\"}\n", "", 1), pipelineSQLite)
	_, err := e.run()
	if err == nil || !strings.Contains(err.Error(), "pagination loop") || !strings.Contains(err.Error(), `"same"`) {
		t.Fatalf("error = %v", err)
	}
}

func TestMissingEnvFailsBeforeAnyRequest(t *testing.T) {
	api := apitest.New(t, apitest.Users(3), apitest.None, 0)
	e := newEnv(t, connector(api.URL, "  users: {path: /users, records: data}\n"), strings.Replace(pipelineSQLite, "API_TOKEN", "NOT_SET_TOKEN", 1))
	_, err := e.run()
	var ps spec.Problems
	if !errors.As(err, &ps) || !strings.Contains(err.Error(), "environment variable NOT_SET_TOKEN is not set") || !strings.Contains(err.Error(), "pipeline.yaml:2:") {
		t.Fatalf("error = %v", err)
	}
	if api.Requests() != 0 {
		t.Fatalf("%d requests before the error", api.Requests())
	}
}

func TestSchemaEvolvesAcrossRuns(t *testing.T) {
	api := apitest.New(t, []map[string]any{{"id": 1, "v": 1}}, apitest.None, 0)
	api.Token = "s3cret-token"
	e := newEnv(t, connector(api.URL, "  things: {path: /things, records: data, primary_key: id}\n"), pipelineSQLite+"mode: full_refresh_append\n")
	if _, err := e.run(); err != nil {
		t.Fatal(err)
	}
	api.Records = []map[string]any{{"id": 2, "v": 2.5, "new": true}, {"id": 3, "v": "three"}}
	sum, err := e.run()
	if err != nil {
		t.Fatal(err)
	}
	changes := strings.Join(sum.Streams[0].Changes, ", ")
	if changes != "+ new bool, ~ v int → float, ~ v float → text" {
		t.Fatalf("changes = %q", changes)
	}
	if got := e.query("SELECT id, v, new FROM things ORDER BY id"); !slices.Equal(got, []string{"1|1|NULL", "2|2.5|1", "3|three|NULL"}) {
		t.Fatalf("rows = %v", got)
	}
	// A run whose data no longer fills a column did not change the table:
	// that is not drift, so --fail-on-drift lets it pass, and the summary
	// notes the unfilled column.
	api.Records = []map[string]any{{"id": 4, "v": "four"}}
	sum, err = e.runWith(engine.Options{FailOnDrift: true})
	if err != nil {
		t.Fatalf("fail-on-drift on an unchanged table: %v", err)
	}
	if len(sum.Streams[0].Changes) != 0 || strings.Join(sum.Streams[0].Unfilled, ",") != "new" {
		t.Fatalf("changes = %q, unfilled = %q", sum.Streams[0].Changes, sum.Streams[0].Unfilled)
	}
	if n := e.count("things"); n != 4 {
		t.Fatalf("rows = %d", n)
	}
	// --fail-on-drift refuses a change before applying it: the stream
	// fails naming it, and the table keeps its layout.
	api.Records = []map[string]any{{"id": 5, "v": "five", "extra": 1}}
	_, err = e.runWith(engine.Options{FailOnDrift: true})
	var se *normalize.SchemaError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "extra") {
		t.Fatalf("fail-on-drift with a new column: %v", err)
	}
	if got := e.query("SELECT COUNT(*) FROM pragma_table_info('things') WHERE name = 'extra'"); got[0] != "0" {
		t.Fatalf("the refused column was added")
	}
	// The runs log keeps each run's changes.
	if got := e.query("SELECT COUNT(*) FROM _ferry_runs WHERE summary LIKE '%+ new bool%'"); got[0] != "1" {
		t.Fatalf("runs log: %v", got)
	}
	// No change, no drift.
	api.Records = []map[string]any{{"id": 6, "v": "six"}}
	if _, err := e.runWith(engine.Options{FailOnDrift: true}); err != nil {
		t.Fatalf("unchanged data: %v", err)
	}
}

func TestDiscover(t *testing.T) {
	api := apitest.New(t, apitest.Users(30), apitest.PageNumber, 10)
	api.Token = "s3cret-token"
	e := newEnv(t, connector(api.URL, "  users: {path: /users, records: data, primary_key: id, cursor: updated_at, paginate: {type: page_number, size: 10, size_param: per_page}}\n"), pipelineSQLite)
	p, r := e.Load()
	src, err := source.New(p.Connector.Inline.Type, p.Connector.Inline.Body, source.Options{Config: r.Config, Redactor: redact.New()})
	if err != nil {
		t.Fatal(err)
	}
	got := engine.Discover(context.Background(), engine.DiscoverOptions{Source: src, Pipeline: p, Streams: []string{"users"}, Sample: 15})
	if len(got) != 1 || got[0].Err != nil || got[0].Records != 20 {
		t.Fatalf("discover = %+v", got)
	}
	var cols []string
	for _, c := range got[0].Table.Columns {
		cols = append(cols, c.Name+":"+c.Type.String())
	}
	want := "_ferry_extracted_at:timestamp _ferry_run_id:text active:bool email:text id:int profile:json score:float updated_at:timestamp"
	if strings.Join(cols, " ") != want {
		t.Fatalf("columns = %s", strings.Join(cols, " "))
	}
	if tb := got[0].Table; tb.Cursor != "updated_at" || tb.PrimaryKey[0] != "id" {
		t.Fatalf("keys = %v %q", tb.PrimaryKey, tb.Cursor)
	}
	// Stopped after the sample: two pages of ten.
	if api.Requests() != 2 {
		t.Fatalf("requests = %d", api.Requests())
	}
}

// TestPostBody syncs a GraphQL-style API: POST with a JSON body whose
// variables carry the page cursor and the incremental start, records deep
// in the response.
func TestPostBody(t *testing.T) {
	users := apitest.Users(25)
	var bodies []map[string]any
	srv := apitest.New(t, nil, apitest.None, 0)
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Query     string         `json:"query"`
			Variables map[string]any `json:"variables"`
		}
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || json.NewDecoder(r.Body).Decode(&body) != nil {
			http.Error(w, "bad request", 400)
			return
		}
		bodies = append(bodies, body.Variables)
		start := 0
		if after, ok := body.Variables["after"].(string); ok {
			fmt.Sscan(after, &start)
		}
		first := int(body.Variables["first"].(float64))
		end := min(start+first, len(users))
		var edges []map[string]any
		for _, u := range users[start:end] {
			edges = append(edges, map[string]any{"node": u})
		}
		next := any(nil)
		if end < len(users) {
			next = fmt.Sprint(end)
		}
		json.NewEncoder(w).Encode(map[string]any{"data": map[string]any{"users": map[string]any{"edges": edges, "pageInfo": map[string]any{"endCursor": next}}}})
	})
	conn := fmt.Sprintf(`name: gql
base_url: %s
streams:
  users:
    method: POST
    path: /graphql
    body:
      query: "query($first: Int, $after: String, $since: String) { users(first: $first, after: $after, updatedSince: $since) { edges { node { id email } } } }"
      variables:
        first: "{{ page.size }}"
        after: "{{ page.cursor }}"
        since: "{{ incremental.since }}"
    records: data.users.edges.*.node
    primary_key: id
    cursor: updated_at
    incremental: {start: "2020-01-01T00:00:00Z"}
    paginate: {type: cursor, cursor_path: data.users.pageInfo.endCursor, size: 10}
`, srv.URL)
	e := newEnv(t, conn, "connector: connector.yaml\ndestination: {type: sqlite, path: out.db}\n")
	if _, err := e.run(); err != nil {
		t.Fatal(err)
	}
	if n := e.count("users"); n != 25 {
		t.Fatalf("rows = %d", n)
	}
	if len(bodies) != 3 || bodies[0]["after"] != nil || bodies[1]["after"] != "10" || bodies[0]["first"] != float64(10) || bodies[0]["since"] != "2020-01-01T00:00:00Z" {
		t.Fatalf("request variables = %v", bodies)
	}
}

// TestPageParamIgnored: an API that ignores the page parameter returns
// the same page forever; the stream fails clearly instead of looping.
func TestPageParamIgnored(t *testing.T) {
	srv := apitest.New(t, nil, apitest.None, 0)
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"items":[{"id":1},{"id":2}]}`)
	})
	e := newEnv(t, strings.Replace(connector(srv.URL, "  items: {path: /items, records: items, primary_key: id, paginate: {type: page_number}}\n"), "auth: {type: bearer, token: \"{{ config.token }}\"}\n", "", 1), pipelineSQLite)
	_, err := e.run()
	if err == nil || !strings.Contains(err.Error(), "page 2 (page=2) returned the same records as the page before") {
		t.Fatalf("error = %v", err)
	}
}

// TestInterruptCommitsAndResumes: cancelling a run (Ctrl-C) commits what
// was completely written, with its state, and the next run resumes there.
func TestInterruptCommitsAndResumes(t *testing.T) {
	users := apitest.Users(600)
	api := apitest.New(t, users, apitest.PageNumber, 20)
	api.Token = "s3cret-token"
	e := newEnv(t, connector(api.URL, "  users: {path: /users, records: data, primary_key: id, cursor: updated_at, incremental: {param: updated_since}, paginate: {type: page_number, size: 20, size_param: per_page}}\n"),
		pipelineSQLite+"sync: {checkpoint_rows: 1000000, checkpoint_interval: 1h}\n")
	// Ctrl-C while the fifth page (rows 81–100) is being written.
	sum, err := e.result(e.RunWith(enginetest.Options{Wrap: cancelAtWrite(func(n int, _ *enginetest.Running) bool { return n == 5 })}))
	if err == nil || sum.Streams[0].Status != "cancelled" || !strings.Contains(sum.Streams[0].Error, "interrupted") {
		t.Fatalf("interrupted run: %v %+v", err, sum.Streams[0])
	}
	// Nothing was committed before the interruption (no checkpoint was
	// due); the interruption committed the pages written so far.
	n := e.count("users")
	if n < 100 || int64(n) != sum.Streams[0].Records {
		t.Fatalf("rows after the interruption = %d, summary says %d", n, sum.Streams[0].Records)
	}
	if _, err := e.run(); err != nil {
		t.Fatal(err)
	}
	if got := sorted(e.query("SELECT id FROM users")); !slices.Equal(got, idsOf(users)) {
		t.Fatalf("after resuming: %d rows", len(got))
	}
}

// cancelAtWrite returns a destination wrapper whose writers, at the start
// of their n-th Write, cancel the run when at(n) is true, then write.
func cancelAtWrite(at func(n int, r *enginetest.Running) bool) func(dest.Destination, *enginetest.Running) dest.Destination {
	return func(d dest.Destination, r *enginetest.Running) dest.Destination {
		return enginetest.BeforeWrite(d, func(_ string, n int) {
			if at(n, r) {
				r.Cancel()
			}
		})
	}
}

// TestCancelDuringWriteKeepsTheTransaction: a run cancelled while a chunk
// is being written finishes that chunk and commits it with every chunk
// before it (and the CREATE TABLE), instead of rolling them back.
func TestCancelDuringWriteKeepsTheTransaction(t *testing.T) {
	users := apitest.Users(200)
	api := apitest.New(t, users, apitest.PageNumber, 20)
	api.Token = "s3cret-token"
	e := newEnv(t, connector(api.URL, "  users: {path: /users, records: data, primary_key: id, cursor: updated_at, incremental: {param: updated_since}, paginate: {type: page_number, size: 20, size_param: per_page}}\n"),
		pipelineSQLite+"sync: {checkpoint_rows: 1000000, checkpoint_interval: 1h}\n")
	// The run is cancelled while chunk 6 is being written.
	sum, err := e.result(e.RunWith(enginetest.Options{Wrap: cancelAtWrite(func(n int, _ *enginetest.Running) bool { return n == 6 })}))
	if err == nil || sum.Streams[0].Status != "cancelled" {
		t.Fatalf("cancelled run: %v %+v", err, sum.Streams[0])
	}
	// Six pages of 20 were written when the cancellation landed; all of
	// them are committed.
	if n := e.count("users"); n != 120 || sum.Streams[0].Records != 120 {
		t.Fatalf("rows committed = %d (summary %d), want the 120 of the six chunks written", n, sum.Streams[0].Records)
	}
	if _, err := e.run(); err != nil {
		t.Fatal(err)
	}
	if got := sorted(e.query("SELECT id FROM users")); !slices.Equal(got, idsOf(users)) {
		t.Fatalf("after resuming: %d rows", len(got))
	}
}

// TestCancelAfterTheSourceFinished: a run cancelled after the source read
// its last page but before every chunk was written must not finish the
// pass (which would save the last page's cursor over rows never written);
// it commits what was written, reports the interruption, and the next run
// resumes there.
func TestCancelAfterTheSourceFinished(t *testing.T) {
	users := apitest.Users(60)
	api := apitest.New(t, users, apitest.PageNumber, 20)
	api.Token = "s3cret-token"
	e := newEnv(t, connector(api.URL, "  users: {path: /users, records: data, primary_key: id, cursor: updated_at, incremental: {param: updated_since}, paginate: {type: page_number, size: 20, size_param: per_page}}\n"),
		pipelineSQLite+"sync: {checkpoint_rows: 1000000, checkpoint_interval: 1h}\n")
	sum, err := e.result(e.RunWith(enginetest.Options{Wrap: cancelAtWrite(func(n int, r *enginetest.Running) bool {
		if n != 1 {
			return false
		}
		// Wait until all three pages are converted (so the source is done),
		// then cancel while the first chunk is being written.
		pages := 0
		r.WaitFor(func(e engine.Event) bool {
			if _, ok := e.(engine.PageFetched); ok {
				pages++
			}
			return pages >= 3
		}, 10*time.Second)
		return true
	})}))
	if err == nil || sum.Streams[0].Status != "cancelled" {
		t.Fatalf("cancelled run: %v %+v", err, sum.Streams[0])
	}
	if n := e.count("users"); n != 20 {
		t.Fatalf("rows committed = %d, want the 20 of the chunk written", n)
	}
	if _, err := e.run(); err != nil {
		t.Fatal(err)
	}
	if got := sorted(e.query("SELECT id FROM users")); !slices.Equal(got, idsOf(users)) {
		t.Fatalf("after resuming: %d rows, want %d", len(got), len(users))
	}
}
