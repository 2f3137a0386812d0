// Package e2e holds Ferry's end-to-end tests: the real command line,
// run as a subprocess of the test binary, against real databases and
// fake APIs, killed at random points.
package e2e_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/apitest"
	"github.com/ferry-dev/ferry/internal/cli"
	_ "github.com/ferry-dev/ferry/internal/components/all"
	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/dest/dbtest"
	"github.com/ferry-dev/ferry/internal/spec"
)

// TestMain lets the test binary act as the ferry command: the crash test
// runs it as a subprocess and kills it.
func TestMain(m *testing.M) {
	if os.Getenv("FERRY_TEST_AS_CLI") == "1" {
		os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// crashAPI serves four streams: users (page numbers, filtered by
// updated_since), events (offset, no server filter, append mode),
// products (last record, full refresh, with variants unnested into a
// child table), and per-user notes (a child
// stream with Link headers). Each request takes a little time so that a
// run lasts long enough to be killed at many points.
func crashAPI(t *testing.T) (*http.ServeMux, map[string][]map[string]any) {
	users := apitest.Users(400)
	var events, products []map[string]any
	for i := 1; i <= 600; i++ {
		events = append(events, map[string]any{"id": i, "seq": i / 3, "kind": []string{"view", "click"}[i%2]})
	}
	var variants []map[string]any // products' variants, unnested into a child table
	for i := 1; i <= 150; i++ {
		id := fmt.Sprintf("p%04d", i)
		var vs []map[string]any
		for j := range i % 3 {
			sku := fmt.Sprintf("%s-%c", id, 'a'+j)
			vs = append(vs, map[string]any{"sku": sku})
			variants = append(variants, map[string]any{"_ferry_root_id": id, "_ferry_list_index": j, "sku": sku})
		}
		products = append(products, map[string]any{"id": id, "price": fmt.Sprintf("%d.99", i), "variants": vs})
	}
	mux := http.NewServeMux()
	slow := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(300 * time.Microsecond)
			h.ServeHTTP(w, r)
		})
	}
	mux.Handle("/users", slow(apitest.New(t, users, apitest.PageNumber, 25)))
	mux.Handle("/events", slow(apitest.New(t, events, apitest.Offset, 40)))
	mux.Handle("/products", slow(apitest.New(t, products, apitest.LastRecord, 20)))
	var notes []map[string]any
	for _, u := range users[:60] {
		id := u["id"].(int)
		var recs []map[string]any
		for j := 0; j < id%5; j++ {
			recs = append(recs, map[string]any{"id": fmt.Sprintf("%d-%d", id, j), "user_id": id, "text": strings.Repeat("n", j), "updated_at": fmt.Sprintf("2024-03-01T00:00:%02dZ", j)})
		}
		notes = append(notes, recs...)
		mux.Handle(fmt.Sprintf("/users/%d/notes", id), slow(apitest.New(t, recs, apitest.Link, 2)))
	}
	return mux, map[string][]map[string]any{"users": users, "events": events, "products": products, "products__variants": variants, "notes": notes}
}

const crashConnector = `name: crashy
base_url: %s
http: {initial_backoff: 10ms, max_backoff: 50ms}
streams:
  users:
    path: /users
    records: data
    primary_key: id
    cursor: updated_at
    incremental: {param: updated_since}
    paginate: {type: page_number, size: 25, size_param: per_page}
  events:
    path: /events
    records: data
    cursor: seq
    paginate: {type: offset, size: 40}
  products:
    path: /products
    records: data
    primary_key: id
    paginate: {type: last_record, size: 20, size_param: limit, has_more_path: has_more}
  first_users:
    path: /users
    records: data
    primary_key: id
    paginate: {type: page_number, size: 20, size_param: per_page, max_pages: 3}
  notes:
    parent: first_users
    path: /users/{{ parent.id }}/notes
    primary_key: id
    cursor: updated_at
    paginate: {type: link_header, size: 2, size_param: limit}
`

const crashPipeline = `connector: connector.yaml
destination: %s
sync: {checkpoint_rows: 60, checkpoint_interval: 50ms, parallelism: 2}
streams:
  users: {mode: incremental_dedup}
  events: {mode: incremental_append}
  products: {mode: full_refresh_overwrite, schema: {nested: unnest}}
  notes: {mode: incremental_dedup}
`

// TestCrashAnywhere kills `ferry run` with SIGKILL at random moments,
// reruns it, and checks that the tables end up equal to the API's data:
// nothing lost, nothing duplicated, in every sync mode, on every
// destination.
func TestCrashAnywhere(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test skipped in -short mode")
	}
	for _, tc := range []struct {
		dest       string
		iterations int
	}{{"sqlite", 20}, {"postgres", 10}, {"mysql", 10}} {
		t.Run(tc.dest, func(t *testing.T) {
			iterations := tc.iterations
			if v, err := strconv.Atoi(os.Getenv("FERRY_CRASH_ITERATIONS")); err == nil && v > 0 {
				iterations = v
			}
			crashLoop(t, newCrashTarget(t, tc.dest), iterations)
		})
	}
}

func crashLoop(t *testing.T, target *crashTarget, iterations int) {
	mux, data := crashAPI(t)
	srv := apitest.New(t, nil, apitest.None, 0)
	srv.Config.Handler = mux
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	seed := time.Now().UnixNano()
	if v, err := strconv.ParseInt(os.Getenv("FERRY_CRASH_SEED"), 10, 64); err == nil {
		seed = v
	}
	t.Logf("seed %d (set FERRY_CRASH_SEED to replay)", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))

	run := func(dir string, killAfter time.Duration) (killed bool, took time.Duration) {
		start := time.Now()
		cmd := exec.Command(self, "run", "--quiet", filepath.Join(dir, "pipeline.yaml"))
		cmd.Env = append(os.Environ(), "FERRY_TEST_AS_CLI=1")
		var buf bytes.Buffer
		cmd.Stdout, cmd.Stderr = &buf, &buf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		if killAfter > 0 {
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("run failed before the kill: %v\n%s", err, buf.String())
				}
				return false, time.Since(start)
			case <-time.After(killAfter):
				cmd.Process.Kill() // SIGKILL
				<-done
				return true, time.Since(start)
			}
		}
		if err := <-done; err != nil {
			t.Fatalf("run failed: %v\n%s", err, buf.String())
		}
		return false, time.Since(start)
	}

	// Calibrate: how long does an uninterrupted run take?
	calib := target.fresh(t, srv.URL)
	start := time.Now()
	run(calib, 0)
	full := time.Since(start)
	t.Logf("an uninterrupted run takes %s", full)
	target.check(t, calib, data)

	kills := 0
	for i := 0; i < iterations; i++ {
		dir := target.fresh(t, srv.URL)
		// One to three kills at random moments, then a run to the end. The
		// machine's speed varies: a run that ends before its kill time
		// shortens the estimate, and the iteration starts over on a fresh
		// database.
		for k, want := 0, 1+rng.IntN(3); k < want; {
			at := time.Duration(rng.Int64N(int64(full))) + time.Millisecond
			killed, took := run(dir, at)
			if killed {
				kills++
				k++
				continue
			}
			full = max(10*time.Millisecond, min(full, took))
			dir = target.fresh(t, srv.URL)
			k = 0
		}
		run(dir, 0)
		target.check(t, dir, data)
		if t.Failed() {
			t.Fatalf("iteration %d failed (seed %d)", i, seed)
		}
	}
	if kills < iterations {
		t.Fatalf("only %d kills landed in %d iterations: the runs are too short to test", kills, iterations)
	}
	t.Logf("%d iterations, %d kills", iterations, kills)
}

// crashTarget is a destination the crash test writes to: a fresh, empty
// database for every iteration.
type crashTarget struct {
	kind string
}

func newCrashTarget(t *testing.T, kind string) *crashTarget {
	switch kind {
	case "postgres":
		dbtest.PostgresURL(t)
	case "mysql":
		dbtest.MySQLURL(t)
	}
	return &crashTarget{kind: kind}
}

// fresh writes the files of an iteration into a new directory, with a
// destination of its own.
func (c *crashTarget) fresh(t *testing.T, api string) string {
	t.Helper()
	dir := t.TempDir()
	var destYAML string
	switch c.kind {
	case "sqlite":
		destYAML = "{type: sqlite, path: out.db}"
	case "postgres":
		u, schema := dbtest.Postgres(t)
		destYAML = fmt.Sprintf("{type: postgres, url: %q, schema: %s}", u, schema)
	case "mysql":
		destYAML = fmt.Sprintf("{type: mysql, url: %q}", dbtest.MySQL(t))
	}
	if err := os.WriteFile(filepath.Join(dir, "connector.yaml"), []byte(fmt.Sprintf(crashConnector, api)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pipeline.yaml"), []byte(fmt.Sprintf(crashPipeline, destYAML)), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// open opens an iteration's destination read-only, as its pipeline
// describes it.
func (c *crashTarget) open(t *testing.T, dir string) dest.Destination {
	t.Helper()
	p, err := spec.LoadPipeline(filepath.Join(dir, "pipeline.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := p.ResolveStores(os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	d, err := dest.Open(context.Background(), p.Destination.Type, r.Destination, dest.Options{ReadOnly: true, Dir: p.Dir})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// check compares the tables with the API's data, exactly, reading them
// back through the destination.
func (c *crashTarget) check(t *testing.T, dir string, data map[string][]map[string]any) {
	t.Helper()
	d := c.open(t, dir)
	defer d.Close()
	rd := d.(dest.Reader)
	read := func(table string, cols ...string) []string {
		var out []string
		err := rd.ReadRows(context.Background(), table, nil, func(names []string, row []any) error {
			parts := make([]string, len(cols))
			for i, col := range cols {
				j := slices.Index(names, col)
				if j < 0 {
					return fmt.Errorf("table %s has no column %s", table, col)
				}
				parts[i] = fmt.Sprint(row[j])
			}
			out = append(out, strings.Join(parts, "|"))
			return nil
		})
		if err != nil {
			t.Fatalf("read %s: %v", table, err)
		}
		return out
	}
	want := func(recs []map[string]any, cols ...string) []string {
		var out []string
		for _, r := range recs {
			var parts []string
			for _, c := range cols {
				parts = append(parts, fmt.Sprint(r[c]))
			}
			out = append(out, strings.Join(parts, "|"))
		}
		slices.Sort(out)
		return out
	}
	for _, tc := range []struct {
		table string
		cols  []string
	}{
		{"users", []string{"id", "email"}},
		{"events", []string{"id", "seq", "kind"}},
		{"products", []string{"id", "price"}},
		{"products__variants", []string{"_ferry_root_id", "_ferry_list_index", "sku"}},
		{"notes", []string{"id", "user_id", "text"}},
	} {
		got := read(tc.table, tc.cols...)
		slices.Sort(got)
		exp := want(data[tc.table], tc.cols...)
		if !slices.Equal(got, exp) {
			t.Errorf("%s table %s: %d rows, want %d; first difference: %s", c.kind, tc.table, len(got), len(exp), firstDiff(got, exp))
		}
	}
	for _, staged := range []string{"_ferry_stage_products", "_ferry_stage_products__variants"} {
		if n, _ := rd.Count(context.Background(), staged); n >= 0 {
			t.Errorf("staging table %s was left behind", staged)
		}
	}
	entries, err := d.(dest.StateKeeper).State().List(context.Background(), "crashy", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(string(e.State), `"pass"`) {
			t.Errorf("a pass is still open after a complete run: %s", e.State)
		}
	}
}

func firstDiff(got, want []string) string {
	for i := 0; i < max(len(got), len(want)); i++ {
		switch {
		case i >= len(got):
			return "missing " + want[i]
		case i >= len(want):
			return "extra " + got[i]
		case got[i] != want[i]:
			return fmt.Sprintf("got %s, want %s", got[i], want[i])
		}
	}
	return "none"
}
