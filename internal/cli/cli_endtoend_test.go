package cli

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/dest/dbtest"
	"github.com/jackc/pgx/v5"
)

// TestTwoStreamsOneTableRefusedByValidate: ferry validate refuses two
// streams that write one table, naming both positions, before any run
// (a run used to fail with a raw `table "contacts" already exists`).
func TestTwoStreamsOneTableRefusedByValidate(t *testing.T) {
	s := newSite(t, "name: crm\nbase_url: https://crm.example.com\nstreams:\n  contacts: {path: /contacts}\n  leads: {path: /leads}\n",
		sqlitePipeline+"streams:\n  contacts:\n  leads: {table: contacts}\n")
	code, out, errs := s.ferry("validate", "PIPELINE")
	all := out + errs
	if code != 2 {
		t.Fatalf("validate: exit %d, want 2\n%s", code, all)
	}
	// One message, with the position of each stream.
	re := regexp.MustCompile(`pipeline\.yaml:\d+:\d+: .*contacts`)
	if !re.MatchString(all) || !regexp.MustCompile(`pipeline\.yaml:5:\d+`).MatchString(all) || !regexp.MustCompile(`pipeline\.yaml:4:\d+`).MatchString(all) {
		t.Fatalf("validate does not name both streams' positions:\n%s", all)
	}
	if code, out, errs := s.ferry("run", "--quiet", "PIPELINE"); code != 2 || strings.Contains(out+errs, "already exists") {
		t.Fatalf("run: exit %d\n%s%s", code, out, errs)
	}
}

// TestEmptyWildcardPageThroughRun: the documented GraphQL records path
// (data.products.edges.*.node) over `edges: []` is zero records, so an
// incremental run that finds nothing new succeeds and keeps the table.
func TestEmptyWildcardPageThroughRun(t *testing.T) {
	var empty atomic.Bool
	api := newAPI(t, func(*http.Request) any {
		edges := []any{}
		if !empty.Load() {
			edges = append(edges, map[string]any{"node": map[string]any{"id": "p1", "title": "Mug", "updated_at": "2026-01-01T00:00:00Z"}}, map[string]any{"node": map[string]any{"id": "p2", "title": "Cup", "updated_at": "2026-01-02T00:00:00Z"}})
		}
		return map[string]any{"data": map[string]any{"products": map[string]any{"edges": edges}}}
	})
	s := newSite(t, fmt.Sprintf("name: shop\nbase_url: %s\nstreams:\n  products: {path: /graphql, records: data.products.edges.*.node, primary_key: id, cursor: updated_at}\n", api.URL),
		sqlitePipeline+"streams:\n  products: {mode: incremental_dedup}\n")
	s.run(0)
	empty.Store(true)
	out := s.run(0)
	if got := s.query("SELECT id, title FROM products ORDER BY id"); strings.Join(got, ",") != "p1|Mug,p2|Cup" {
		t.Fatalf("rows after an empty page: %v\n%s", got, out)
	}
}

// TestDiscoverKeepsTheIdentifierLimit: discover names a column whose key
// is longer than PostgreSQL's 63-byte identifiers as the run will, not as
// the raw key.
func TestDiscoverKeepsTheIdentifierLimit(t *testing.T) {
	long := "a_field_name_so_long_that_no_postgresql_identifier_can_hold_it_whole_or_even_nearly"
	api := newAPI(t, func(*http.Request) any { return map[string]any{"data": []map[string]any{{"id": 1, long: "x"}}} })
	u, schema := dbtest.Postgres(t)
	s := newSite(t, fmt.Sprintf("name: e\nbase_url: %s\nstreams:\n  e: {path: /e, records: data, primary_key: id}\n", api.URL),
		fmt.Sprintf("connector: connector.yaml\ndestination: {type: postgres, url: %q, schema: %q}\n", u, schema))
	code, out, errs := s.ferry("discover", "PIPELINE")
	if code != 0 || strings.Contains(out, "  "+long+"  text") { // the key shows in FROM, not as the column

		t.Fatalf("discover: %d\n%s%s", code, out, errs)
	}
	s.run(0)
	conn, err := pgx.Connect(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var col string
	if err := conn.QueryRow(context.Background(), `SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'e' AND column_name LIKE 'a_field%'`, schema).Scan(&col); err != nil {
		t.Fatal(err)
	}
	if len(col) > 63 || !strings.Contains(out, "  "+col+"  text") {
		t.Fatalf("the run made column %q; discover showed:\n%s", col, out)
	}
}

// TestSelfCommand: the demo's closing hint names a command that works from
// where the user is: ferry on the PATH, go run ./cmd/ferry from the
// repository (go run builds into a go-build directory), a relative path,
// or the quoted absolute path.
func TestSelfCommand(t *testing.T) {
	repo := t.TempDir()
	if err := os.MkdirAll(filepath.Join(repo, "cmd", "ferry"), 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(repo, "bin", "ferry")
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	notFound := func(string) (string, error) { return "", exec.ErrNotFound }
	goBuild := filepath.Join(t.TempDir(), "go-build123", "b001", "exe", "ferry")
	for _, tc := range []struct {
		name, exe, wd string
		look          func(string) (string, error)
		want          string
	}{
		{"on the PATH", bin, "/", func(string) (string, error) { return bin, nil }, "ferry"},
		{"another ferry on the PATH", bin, t.TempDir(), func(string) (string, error) { return "/usr/bin/ferry-other", nil }, bin},
		{"go run in the repository", goBuild, repo, notFound, "go run ./cmd/ferry"},
		{"go run elsewhere", goBuild, t.TempDir(), notFound, goBuild},
		{"below the directory", bin, repo, notFound, "./bin/ferry"},
		{"a path with a space", "/opt/my tools/ferry", t.TempDir(), notFound, "'/opt/my tools/ferry'"},
		{"below, with a space", "/opt/my tools/ferry", "/opt", notFound, "'./my tools/ferry'"},
	} {
		if got := selfCommandFor(tc.exe, tc.wd, tc.look); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestEchoedSecretRedactedEverywhere: an API that echoes the token in its
// error, JSON-escaped as PHP (\/) or Go (\u0026, \u003c) write it, never
// gets it into stderr, ferry check, ferry discover or the runs table.
func TestEchoedSecretRedactedEverywhere(t *testing.T) {
	const token = "tk/9&<q>x-2f7c1d"
	escaped := []string{`tk\/9&<q>x-2f7c1d`, `tk/9\u0026\u003cq\u003ex-2f7c1d`, `tk\/9\u0026\u003cq\u003ex-2f7c1d`, `tk\u002f9\u0026\u003cq\u003ex\u002d2f7c1d`}
	var n atomic.Int64
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		form := escaped[int(n.Add(1))%len(escaped)]
		fmt.Fprintf(w, `{"error":"invalid token %s for %s"}`, form, r.URL.Path)
	}))
	defer api.Close()
	t.Setenv("ECHO_TOKEN", token)
	s := newSite(t, fmt.Sprintf("name: e\nbase_url: %s\nconfig: {token: {secret: true}}\nauth: {type: bearer, token: \"{{ config.token }}\"}\nstreams:\n  e: {path: /e, records: data, primary_key: id}\n", api.URL),
		"connector: connector.yaml\nconfig: {token: \"${ECHO_TOKEN}\"}\ndestination: {type: sqlite, path: out.db}\n")
	forms := append([]string{token, url.QueryEscape(token), url.PathEscape(token)}, escaped...)
	leak := func(what, text string) {
		t.Helper()
		for _, f := range forms {
			if strings.Contains(text, f) {
				t.Fatalf("%s shows the token as %q:\n%s", what, f, text)
			}
		}
	}
	for _, args := range [][]string{{"run", "PIPELINE"}, {"run", "--log-format", "json", "-v", "PIPELINE"}, {"check", "PIPELINE"}, {"discover", "PIPELINE"}} {
		code, out, errs := s.ferry(args...)
		if code == 0 || !strings.Contains(out+errs, "invalid token") {
			t.Fatalf("%v: exit %d, the API's message missing:\n%s%s", args, code, out, errs)
		}
		leak(strings.Join(args[:len(args)-1], " "), out+errs)
	}
	leak("the runs table", strings.Join(s.query("SELECT * FROM _ferry_runs"), "\n"))
}

// TestTenThousandKeysOnEveryDatabase: one record with 10,000 keys is
// rejected with a short reason on SQLite, PostgreSQL and MySQL/MariaDB;
// the rest of the stream lands, the run is partial, and no message or
// stored error grows with the record.
func TestTenThousandKeysOnEveryDatabase(t *testing.T) {
	wide := map[string]any{"id": 2}
	for i := range 9999 {
		wide[fmt.Sprintf("k%04d", i)] = i
	}
	api := newAPI(t, func(*http.Request) any {
		return map[string]any{"data": []map[string]any{{"id": 1, "name": "a"}, wide, {"id": 3, "name": "c"}}}
	})
	conn := fmt.Sprintf("name: w\nbase_url: %s\nstreams:\n  w: {path: /w, records: data, primary_key: id}\n", api.URL)
	dests := map[string]func(t *testing.T) string{
		"sqlite": func(*testing.T) string { return "{type: sqlite, path: out.db}" },
		"postgres": func(t *testing.T) string {
			u, schema := dbtest.Postgres(t)
			return fmt.Sprintf("{type: postgres, url: %q, schema: %q}", u, schema)
		},
		"mysql": func(t *testing.T) string { return fmt.Sprintf("{type: mysql, url: %q}", dbtest.MySQL(t)) },
	}
	for _, name := range []string{"sqlite", "postgres", "mysql"} {
		t.Run(name, func(t *testing.T) {
			s := newSite(t, conn, "connector: connector.yaml\ndestination: "+dests[name](t)+"\n")
			start := time.Now()
			code, out, errs := s.ferry("run", "--quiet", "PIPELINE")
			took := time.Since(start)
			if code != 3 || len(out+errs) > 4096 {
				t.Fatalf("run: exit %d (want 3, partial) in %s, %d bytes of output:\n%.2000s", code, took, len(out+errs), out+errs)
			}
			if took > 60*time.Second {
				t.Fatalf("the run took %s", took)
			}
			code, out, errs = s.ferry("query", "PIPELINE", "SELECT COUNT(*) FROM w")
			if code != 0 || !strings.Contains(out, "2") {
				t.Fatalf("rows: %d %s%s", code, out, errs)
			}
			code, out, errs = s.ferry("query", "PIPELINE", "SELECT reason FROM _ferry_rejected")
			if code != 0 || !strings.Contains(out, "record has 10000 fields") || len(out) > 2048 {
				t.Fatalf("rejected: %d %.2000s%s", code, out, errs)
			}
			code, out, errs = s.ferry("query", "PIPELINE", "SELECT * FROM _ferry_runs")
			if code != 0 || len(out) > 4096 {
				t.Fatalf("runs: %d %d bytes %.2000s%s", code, len(out), out, errs)
			}
		})
	}
}
