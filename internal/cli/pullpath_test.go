package cli

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/dest/dbtest"
	"github.com/ferry-dev/ferry/internal/dest/sqlite"
)

// site is a connector and a pipeline in a directory, synced into out.db
// through the command line, as a user would.
type site struct {
	t   *testing.T
	dir string
}

func newSite(t *testing.T, connector, pipeline string) *site {
	t.Helper()
	s := &site{t: t, dir: t.TempDir()}
	s.write("connector.yaml", connector)
	s.write("pipeline.yaml", pipeline)
	return s
}

func (s *site) write(name, body string) {
	s.t.Helper()
	if err := os.WriteFile(filepath.Join(s.dir, name), []byte(body), 0o644); err != nil {
		s.t.Fatal(err)
	}
}

func (s *site) path(name string) string { return filepath.Join(s.dir, name) }

// ferry runs a command; "PIPELINE" in args stands for the pipeline file.
func (s *site) ferry(args ...string) (int, string, string) {
	s.t.Helper()
	for i, a := range args {
		if a == "PIPELINE" {
			args[i] = s.path("pipeline.yaml")
		}
	}
	return ferry(s.t, args...)
}

// run syncs the pipeline and fails the test on another exit code.
func (s *site) run(want int, extra ...string) string {
	s.t.Helper()
	code, out, errs := s.ferry(append([]string{"run", "--quiet", "PIPELINE"}, extra...)...)
	if code != want {
		s.t.Fatalf("ferry run: exit %d, want %d\n%s%s", code, want, out, errs)
	}
	return out + errs
}

// query returns the rows of a query on out.db, "|"-joined, in order.
func (s *site) query(q string) []string {
	s.t.Helper()
	db, err := sqlite.OpenReadOnly(s.path("out.db"))
	if err != nil {
		s.t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(q)
	if err != nil {
		s.t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out []string
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			s.t.Fatal(err)
		}
		parts := make([]string, len(cols))
		for i, v := range vals {
			parts[i] = "NULL"
			if v.Valid {
				parts[i] = v.String
			}
		}
		out = append(out, strings.Join(parts, "|"))
	}
	return out
}

// jsonAPI serves the records a handler returns for a request as
// {"data": [...]}, counting requests.
type jsonAPI struct {
	*httptest.Server
	requests atomic.Int64
}

func newAPI(t *testing.T, page func(r *http.Request) any) *jsonAPI {
	a := &jsonAPI{}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.requests.Add(1)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(page(r))
	}))
	t.Cleanup(a.Close)
	return a
}

const sqlitePipeline = "connector: connector.yaml\ndestination: {type: sqlite, path: out.db}\n"

// TestUnnestChildWidensAcrossRuns: the second run of an unnest stream
// whose child field changes type widens the child table (runs used to
// forget the child tables' layouts and fail with "cannot change from
// text to int").
func TestUnnestChildWidensAcrossRuns(t *testing.T) {
	var sku atomic.Value
	sku.Store(`"abc"`)
	api := newAPI(t, func(*http.Request) any {
		return map[string]any{"data": []json.RawMessage{json.RawMessage(`{"id":1,"items":[{"sku":` + sku.Load().(string) + `}]}`)}}
	})
	s := newSite(t, fmt.Sprintf("name: things\nbase_url: %s\nstreams:\n  things: {path: /things, records: data, primary_key: id}\n", api.URL),
		sqlitePipeline+"mode: full_refresh_append\nschema: {nested: unnest}\n")
	s.run(0)
	sku.Store(`5`)
	s.run(0)
	if got := s.query("SELECT sku FROM things__items ORDER BY _ferry_run_id, sku"); len(got) != 2 || !slices.Contains(got, "5") || !slices.Contains(got, "abc") {
		t.Fatalf("child rows = %v", got)
	}
}

// TestDiscoverUsesPipelineSchema: discover shows the columns a run makes,
// with the pipeline's nested setting.
func TestDiscoverUsesPipelineSchema(t *testing.T) {
	api := newAPI(t, func(*http.Request) any {
		return map[string]any{"data": []map[string]any{{"id": 1, "addr": map[string]any{"city": "Oslo"}}}}
	})
	s := newSite(t, fmt.Sprintf("name: geo\nbase_url: %s\nstreams:\n  places: {path: /p, records: data, primary_key: id}\n", api.URL),
		sqlitePipeline+"schema: {nested: flatten}\n")
	code, out, errs := s.ferry("discover", "PIPELINE")
	if code != 0 || !strings.Contains(out, "addr__city") || strings.Contains(out, "addr ") {
		t.Fatalf("discover: %d\n%s%s", code, out, errs)
	}
	if _, err := os.Stat(s.path("out.db")); err == nil {
		t.Fatal("discover created the destination's database")
	}
}

// cursorAPI serves recs filtered by updated_since (>=) in pages of size
// (page=N), with a hook to change the records between runs.
type cursorAPI struct {
	*jsonAPI
	mu   sync.Mutex
	recs []map[string]any
	size int
	// repeat makes each page after the first start with the previous
	// page's last record (an API paging over data that moves).
	repeat bool
}

func newCursorAPI(t *testing.T, recs []map[string]any, size int) *cursorAPI {
	c := &cursorAPI{recs: recs, size: size}
	c.jsonAPI = newAPI(t, func(r *http.Request) any {
		c.mu.Lock()
		defer c.mu.Unlock()
		since := r.URL.Query().Get("updated_since")
		var in []map[string]any
		for _, rec := range c.recs {
			if since == "" || rec["updated_at"].(string) >= since {
				in = append(in, rec)
			}
		}
		page, _ := strconv.Atoi(r.URL.Query().Get("page"))
		page = max(page, 1)
		start := (page - 1) * c.size
		if c.repeat && page > 1 {
			start--
		}
		start = min(start, len(in))
		end := min(start+c.size, len(in))
		if c.repeat && page > 1 {
			end = min((page)*c.size, len(in))
		}
		return map[string]any{"data": in[start:end]}
	})
	return c
}

func (c *cursorAPI) set(recs []map[string]any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.recs = recs
}

func cursorConnector(url, extra string) string {
	return fmt.Sprintf(`name: items
base_url: %s
streams:
  items:
    path: /items
    records: data
    primary_key: id
    cursor: updated_at
    incremental: {param: updated_since%s}
    paginate: {type: page_number, size: 10, size_param: per_page}
`, url, extra)
}

func stamped(n int, at func(i int) string) []map[string]any {
	out := make([]map[string]any, n)
	for i := range out {
		out[i] = map[string]any{"id": i + 1, "updated_at": at(i)}
	}
	return out
}

// TestAppendBoundaryByKey: in incremental_append, a record at the saved
// cursor that merely gained a field is the same record (its key), not a
// new one: it is not appended again.
func TestAppendBoundaryByKey(t *testing.T) {
	recs := stamped(20, func(i int) string { return fmt.Sprintf("2024-01-01T00:00:%02dZ", min(i, 15)) })
	api := newCursorAPI(t, recs, 10)
	s := newSite(t, cursorConnector(api.URL, ""), sqlitePipeline+"mode: incremental_append\n")
	s.run(0)
	if n := s.query("SELECT COUNT(*) FROM items")[0]; n != "20" {
		t.Fatalf("first run: %s rows", n)
	}
	// Schema drift: every record gains a field, nothing else changes.
	for _, r := range recs {
		r["note"] = "x"
	}
	api.set(recs)
	s.run(0)
	if n := s.query("SELECT COUNT(*) FROM items")[0]; n != "20" {
		t.Fatalf("after a field was added: %s rows for 20 ids", n)
	}
}

// TestRepeatsWithinAPass: records an API repeats on neighbouring pages of
// one pass are written once, in append and dedup mode alike, and the
// summary counts each record once.
func TestRepeatsWithinAPass(t *testing.T) {
	for _, mode := range []string{"incremental_append", "incremental_dedup"} {
		t.Run(mode, func(t *testing.T) {
			recs := stamped(45, func(i int) string { return fmt.Sprintf("2024-01-01T00:%02d:00Z", i) })
			api := newCursorAPI(t, recs, 10)
			api.repeat = true
			s := newSite(t, cursorConnector(api.URL, ""), sqlitePipeline+"mode: "+mode+"\n")
			out := s.run(0)
			if n := s.query("SELECT COUNT(*) FROM items")[0]; n != "45" {
				t.Fatalf("%s rows for 45 records", n)
			}
			if !regexpRow(out, "items", "45") {
				t.Fatalf("the summary does not count 45 records:\n%s", out)
			}
		})
	}
}

// regexpRow reports whether the summary's row for stream shows records.
func regexpRow(out, stream, records string) bool {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 5 && f[0] == stream && f[4] == records {
			return true
		}
	}
	return false
}

// TestNoDriftWithoutChange: an incremental run of an unnest stream, or one
// whose JSON column is null in every record of the batch, changed no
// table: --fail-on-drift passes and the summary lists no change.
func TestNoDriftWithoutChange(t *testing.T) {
	var second atomic.Bool
	api := newAPI(t, func(*http.Request) any {
		if second.Load() {
			return map[string]any{"data": []map[string]any{{"id": 2, "updated_at": "2024-02-01T00:00:00Z", "items": []map[string]any{{"sku": "b"}}, "discount": nil}}}
		}
		return map[string]any{"data": []map[string]any{{"id": 1, "updated_at": "2024-01-01T00:00:00Z", "items": []map[string]any{{"sku": "a"}}, "discount": map[string]any{"pct": 5}}}}
	})
	s := newSite(t, fmt.Sprintf("name: o\nbase_url: %s\nstreams:\n  orders: {path: /o, records: data, primary_key: id, cursor: updated_at}\n", api.URL),
		sqlitePipeline+"schema: {nested: unnest}\n")
	s.run(0)
	second.Store(true)
	out := s.run(0, "--fail-on-drift")
	if strings.Contains(out, "schema changes") {
		t.Fatalf("drift reported for an unchanged table:\n%s", out)
	}
	if got := s.query("SELECT COUNT(*) FROM _ferry_runs WHERE status = 'succeeded'"); got[0] != "2" {
		t.Fatalf("runs: %v", got)
	}
}

// TestReadOnlyCommands: query and state show never write, not even
// Ferry's metadata tables, and need none of the API's secrets.
func TestReadOnlyCommands(t *testing.T) {
	other := filepath.Join(t.TempDir(), "other.db")
	db, err := sqlite.OpenDB(other)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("CREATE TABLE mine (x INTEGER)"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	code, out, errs := ferry(t, "query", other, "SELECT name FROM sqlite_master")
	if code != 0 || strings.Contains(out, "_ferry") || !strings.Contains(out, "mine") {
		t.Fatalf("query: %d\n%s%s", code, out, errs)
	}
	db, _ = sqlite.OpenDB(other)
	var n int
	db.QueryRow("SELECT COUNT(*) FROM sqlite_master WHERE name LIKE '_ferry%'").Scan(&n)
	db.Close()
	if n != 0 {
		t.Fatalf("query created %d metadata tables in another file", n)
	}

	// A pipeline whose API secret is not in the environment, on a
	// PostgreSQL schema: state show and query work and create nothing.
	u, schema := dbtest.Postgres(t)
	s := newSite(t, "name: hd\nbase_url: https://helpdesk.example\nconfig: {token: {secret: true}}\nauth: {type: bearer, token: \"{{ config.token }}\"}\nstreams:\n  tickets: {path: /t}\n",
		fmt.Sprintf("connector: connector.yaml\nconfig: {token: \"${HELPDESK_TOKEN_NOT_SET}\"}\ndestination: {type: postgres, url: %q, schema: %s}\n", u, schema))
	code, out, errs = s.ferry("state", "show", "PIPELINE")
	if code != 0 || !strings.Contains(out, "no state") {
		t.Fatalf("state show: %d\n%s%s", code, out, errs)
	}
	code, out, errs = s.ferry("query", "PIPELINE", "SELECT 1 AS one")
	if code != 0 || !strings.Contains(out, "one") {
		t.Fatalf("query a pipeline: %d\n%s%s", code, out, errs)
	}
	if err := dbtest.PostgresExec(u, fmt.Sprintf(`DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = '%s') THEN RAISE EXCEPTION 'schema created'; END IF; END $$`, schema)); err != nil {
		t.Fatalf("a read-only command wrote: %v", err)
	}
}

// TestEnvEverywhere: ${VAR} expands in every string of the destination
// (here PostgreSQL's schema), and a connector that holds one is told how
// to pass the value instead.
func TestEnvEverywhere(t *testing.T) {
	api := newAPI(t, func(*http.Request) any { return map[string]any{"data": []map[string]any{{"id": 1}}} })
	u, schema := dbtest.Postgres(t)
	t.Setenv("FERRY_TEST_SCHEMA", schema)
	s := newSite(t, fmt.Sprintf("name: e\nbase_url: %s\nstreams:\n  e: {path: /e, records: data, primary_key: id}\n", api.URL),
		fmt.Sprintf("connector: connector.yaml\ndestination: {type: postgres, url: %q, schema: \"${FERRY_TEST_SCHEMA:-unused}\"}\n", u))
	s.run(0)
	if err := dbtest.PostgresExec(u, fmt.Sprintf(`SELECT 1/COUNT(*) FROM "%s".e`, schema)); err != nil {
		t.Fatalf("the rows are not in the expanded schema: %v", err)
	}
	s.write("connector.yaml", "name: e\nbase_url: ${API_BASE}\nstreams:\n  e: {path: /e}\n")
	code, _, errs := s.ferry("validate", "PIPELINE")
	if code != 2 || !strings.Contains(errs, "connector.yaml:2:11: base_url: a connector does not read the environment") {
		t.Fatalf("validate a connector with ${}: %d\n%s", code, errs)
	}
}

// TestCursorFieldMissing: a cursor field no record has fails the stream,
// naming the field and the keys the records have.
func TestCursorFieldMissing(t *testing.T) {
	api := newAPI(t, func(*http.Request) any {
		return map[string]any{"data": []map[string]any{{"id": 1, "updatedAt": "2024-01-01T00:00:00Z"}}}
	})
	s := newSite(t, fmt.Sprintf("name: c\nbase_url: %s\nstreams:\n  c: {path: /c, records: data, primary_key: id, cursor: updated_at}\n", api.URL), sqlitePipeline)
	out := s.run(1)
	if !strings.Contains(out, `cursor field "updated_at" is in none of the 1 records`) || !strings.Contains(out, `did you mean "updatedAt"?`) {
		t.Fatalf("output:\n%s", out)
	}
}

// TestExclusiveFilter: an API whose filter is exclusive (> since) and
// keeps seconds loses no record updated in the same second as the saved
// cursor, and none is written twice.
func TestExclusiveFilter(t *testing.T) {
	var mu sync.Mutex
	recs := []map[string]any{{"id": 1, "updated_at": "2024-01-01T10:00:00Z"}, {"id": 2, "updated_at": "2024-01-01T10:00:00Z"}}
	api := newAPI(t, func(r *http.Request) any {
		mu.Lock()
		defer mu.Unlock()
		after := r.URL.Query().Get("updated_after")
		var out []map[string]any
		for _, rec := range recs {
			if after == "" || rec["updated_at"].(string) > after {
				out = append(out, rec)
			}
		}
		return map[string]any{"data": out}
	})
	conn := fmt.Sprintf("name: x\nbase_url: %s\nstreams:\n  x: {path: /x, records: data, primary_key: id, cursor: updated_at, incremental: {param: updated_after, exclusive: true, granularity: 1s}}\n", api.URL)
	for _, mode := range []string{"incremental_append", "incremental_dedup"} {
		t.Run(mode, func(t *testing.T) {
			mu.Lock()
			recs = recs[:2]
			mu.Unlock()
			s := newSite(t, conn, sqlitePipeline+"mode: "+mode+"\n")
			s.run(0)
			// Three more records in the same second arrive after the sync.
			mu.Lock()
			for id := 3; id <= 5; id++ {
				recs = append(recs, map[string]any{"id": id, "updated_at": "2024-01-01T10:00:00Z"})
			}
			mu.Unlock()
			s.run(0)
			if got := s.query("SELECT id FROM x ORDER BY id"); strings.Join(got, ",") != "1,2,3,4,5" {
				t.Fatalf("rows = %v", got)
			}
		})
	}
}

// TestRejectedRecords: a stream whose records are all rejected fails;
// some rejects make the run partial (exit code 3); max_rejected sets the
// limit.
func TestRejectedRecords(t *testing.T) {
	var bad atomic.Int64
	bad.Store(3)
	api := newAPI(t, func(*http.Request) any {
		var out []map[string]any
		for i := int64(1); i <= 3; i++ {
			created := any("2024-01-01T00:00:00Z")
			if i <= bad.Load() {
				created = 1704067200 // unix seconds: not a timestamp
			}
			out = append(out, map[string]any{"id": i, "created": created})
		}
		return map[string]any{"data": out}
	})
	conn := fmt.Sprintf("name: r\nbase_url: %s\nstreams:\n  r: {path: /r, records: data, primary_key: id, columns: {created: timestamp}}\n", api.URL)
	s := newSite(t, conn, sqlitePipeline)
	out := s.run(1)
	if !strings.Contains(out, "3 of the 3 records read were rejected") {
		t.Fatalf("all rejected:\n%s", out)
	}
	bad.Store(1)
	out = s.run(3)
	if !strings.Contains(out, "partial") || !strings.Contains(out, "1 records of r were rejected") {
		t.Fatalf("some rejected:\n%s", out)
	}
	s.write("pipeline.yaml", sqlitePipeline+"streams:\n  r: {max_rejected: \"10%\"}\n")
	out = s.run(1)
	if !strings.Contains(out, "1 of the 3 records read were rejected (the limit is 10%") {
		t.Fatalf("over the limit:\n%s", out)
	}
}

// TestColumnHints: a hint that matches no field fails the stream; hints
// reach the fields of unnested arrays' child tables.
func TestColumnHints(t *testing.T) {
	api := newAPI(t, func(*http.Request) any {
		return map[string]any{"data": []map[string]any{{"id": 1, "items": []map[string]any{{"sku": 12}}}}}
	})
	conn := func(cols string) string {
		return fmt.Sprintf("name: h\nbase_url: %s\nstreams:\n  h: {path: /h, records: data, primary_key: id, columns: {%s}}\n", api.URL, cols)
	}
	s := newSite(t, conn("no_such_field: decimal"), sqlitePipeline+"schema: {nested: unnest}\n")
	out := s.run(1)
	if !strings.Contains(out, "columns: no_such_field match no field") {
		t.Fatalf("unused hint:\n%s", out)
	}
	s = newSite(t, conn("items.sku: text"), sqlitePipeline+"schema: {nested: unnest}\n")
	s.run(0)
	if got := s.query("SELECT typeof(sku), sku FROM h__items"); got[0] != "text|12" {
		t.Fatalf("child hint: %v", got)
	}
}

// TestExitCodes: 0 success, 1 a failed sync, 2 usage and configuration,
// 3 partial (tested above).
func TestExitCodes(t *testing.T) {
	api := newAPI(t, func(*http.Request) any { return map[string]any{"data": []map[string]any{{"id": 1}}} })
	s := newSite(t, fmt.Sprintf("name: x\nbase_url: %s\nstreams:\n  x: {path: /x, records: data, primary_key: id}\n", api.URL), sqlitePipeline)
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"run", "--quiet", "PIPELINE"}, 0},
		{[]string{"nosuchcommand"}, 2},
		{[]string{"run", "--quiet", s.path("missing.yaml")}, 2},
		{[]string{"run", "--quiet", "--stream", "nope", "PIPELINE"}, 2},
		{[]string{"run", "--nope", "PIPELINE"}, 2},
	} {
		if code, out, errs := s.ferry(tc.args...); code != tc.want {
			t.Errorf("ferry %v: exit %d, want %d\n%s%s", tc.args, code, tc.want, out, errs)
		}
	}
	api.Close() // the API is gone: the sync fails
	if code, _, _ := s.ferry("run", "--quiet", "PIPELINE"); code != 1 {
		t.Errorf("a failed sync exits %d, want 1", code)
	}
	code, out, _ := ferry(t, "--help")
	if code != 0 || !strings.Contains(out, "3    partial") {
		t.Errorf("--help lacks the exit codes:\n%s", out)
	}
}

// TestStateResetNeedsYes: without a terminal, state reset refuses unless
// --yes is given; with it, it clears.
func TestStateResetNeedsYes(t *testing.T) {
	api := newAPI(t, func(*http.Request) any {
		return map[string]any{"data": []map[string]any{{"id": 1, "u": "2024-01-01T00:00:00Z"}}}
	})
	s := newSite(t, fmt.Sprintf("name: x\nbase_url: %s\nstreams:\n  x: {path: /x, records: data, primary_key: id, cursor: u}\n", api.URL), sqlitePipeline)
	s.run(0)
	// echo n | ferry state reset PIPELINE --stream x
	var out, errb bytes.Buffer
	code := runWith(context.Background(), []string{"state", "reset", s.path("pipeline.yaml"), "--stream", "x"}, strings.NewReader("n\n"), &out, &errb, "ferry")
	if errs := errb.String(); code != 2 || !strings.Contains(errs, "pass --yes") {
		t.Fatalf("reset without a terminal: %d %s", code, errs)
	}
	if got := s.query("SELECT COUNT(*) FROM _ferry_state"); got[0] == "0" {
		t.Fatal("state cleared without confirmation")
	}
	code, outs, _ := s.ferry("state", "reset", "--yes", "PIPELINE")
	if code != 0 || !strings.Contains(outs, "cleared") || s.query("SELECT COUNT(*) FROM _ferry_state")[0] != "0" {
		t.Fatalf("reset --yes: %d %s", code, outs)
	}
}

// TestCheckDestination: check looks at the destination too: a database
// that does not exist is a failed check.
func TestCheckDestination(t *testing.T) {
	api := newAPI(t, func(*http.Request) any { return map[string]any{"data": []map[string]any{{"id": 1}}} })
	u := dbtest.PostgresURL(t)
	parsed, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	parsed.Path = "/ferry_no_such_database" // whatever database the test URL names
	bad := parsed.String()
	s := newSite(t, fmt.Sprintf("name: x\nbase_url: %s\nstreams:\n  x: {path: /x, records: data}\n", api.URL),
		fmt.Sprintf("connector: connector.yaml\ndestination: {type: postgres, url: %q}\n", bad))
	code, out, errs := s.ferry("check", "PIPELINE")
	if code != 1 || !strings.Contains(out, "✓ x:") || !strings.Contains(out, "✗ destination postgres") || !strings.Contains(out, "ferry_no_such_database") {
		t.Fatalf("check: %d\n%s%s", code, out, errs)
	}
	s.write("pipeline.yaml", fmt.Sprintf("connector: connector.yaml\ndestination: {type: postgres, url: %q}\n", u))
	code, out, _ = s.ferry("check", "PIPELINE")
	if code != 0 || !strings.Contains(out, "✓ destination postgres") {
		t.Fatalf("check a good destination: %d\n%s", code, out)
	}
}

// TestConcurrentRuns: a second run of a stream while one holds it fails
// at once, naming the holder, and state reset refuses meanwhile.
func TestConcurrentRuns(t *testing.T) {
	release := make(chan struct{})
	var held atomic.Bool
	api := newAPI(t, func(r *http.Request) any {
		if r.URL.Query().Get("page") == "2" && !held.Swap(true) {
			<-release // the first run stays on page 2
		}
		if p := r.URL.Query().Get("page"); p != "" && p != "1" && p != "2" {
			return map[string]any{"data": []map[string]any{}}
		}
		return map[string]any{"data": []map[string]any{{"id": r.URL.Query().Get("page"), "u": "2024-01-01T00:00:00Z"}}}
	})
	s := newSite(t, fmt.Sprintf("name: x\nbase_url: %s\nstreams:\n  x: {path: /x, records: data, primary_key: id, cursor: u, paginate: {type: page_number}}\n", api.URL), sqlitePipeline)
	first := make(chan int, 1)
	go func() {
		code, _, _ := s.ferry("run", "--quiet", "PIPELINE")
		first <- code
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !held.Load() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // polling the fake API's own state
	}
	code, out, errs := s.ferry("run", "--quiet", "PIPELINE")
	if code != 1 || !strings.Contains(out+errs, "stream x of pipeline x is being synced by run") {
		t.Errorf("second run: %d\n%s%s", code, out, errs)
	}
	code, _, errs = s.ferry("state", "reset", "--yes", "PIPELINE")
	if code == 0 || !strings.Contains(errs, "is being synced by run") {
		t.Errorf("state reset during a run: %d %s", code, errs)
	}
	close(release)
	if code := <-first; code != 0 {
		t.Fatalf("the first run: exit %d", code)
	}
	if got := s.query("SELECT id FROM x ORDER BY id"); strings.Join(got, ",") != "1,2" {
		t.Fatalf("rows = %v", got)
	}
}

// TestAPIErrorOnce: a failed request is one message, printed once, with
// the API's own message whole (not cut at some length mid-word) and no
// raw log lines of escaped JSON beside it; a body that is not JSON says so.
func TestAPIErrorOnce(t *testing.T) {
	long := "invalid value for 'limit': must be less than or equal to 100; " + strings.Repeat("see the reference for the accepted ranges of every parameter. ", 6) + "END"
	for _, tc := range []struct {
		name, ctype, body, want string
	}{
		{"json", "application/json", fmt.Sprintf(`{"error":{"code":"invalid_request","message":%q}}`, long), long},
		{"html", "text/html", "<html><body><h1>Bad Gateway</h1></body></html>", "body is not JSON: (HTML page) text/html, 46 bytes: \"Bad Gateway\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tc.ctype)
				w.WriteHeader(http.StatusBadRequest)
				io.WriteString(w, tc.body)
			}))
			defer api.Close()
			s := newSite(t, fmt.Sprintf("name: x\nbase_url: %s\nstreams:\n  items: {path: /items, records: data}\n", api.URL), sqlitePipeline)
			code, out, errs := s.ferry("run", "--quiet", "PIPELINE")
			if code != 1 {
				t.Fatalf("exit %d\n%s%s", code, out, errs)
			}
			all := out + errs
			if n := strings.Count(all, tc.want); n != 1 {
				t.Fatalf("%q appears %d times in:\n%s", tc.want, n, all)
			}
			if n := strings.Count(all, "400 Bad Request"); n != 1 {
				t.Fatalf("the failure is reported %d times:\n%s", n, all)
			}
			if strings.Contains(all, `\"`) || strings.Contains(all, "level=") {
				t.Fatalf("raw log lines or escaped JSON in the output:\n%s", all)
			}
		})
	}
}
