// Command tableapi measures the table API (internal/tableapi): requests
// per second and latency of GET /api/{table}/{key} and of 100-row keyset
// pages over a table of a million rows, on SQLite and PostgreSQL, against
// a plain net/http handler running the same query on the same database in
// the same run (the ceiling).
//
// The load comes from wrk (apt install wrk), a separate process written
// in C: it costs the machine less per request than a Go load generator,
// and it adds no dependency to Ferry's module. Each request picks a random
// key (or a random page) from a list the program writes, so the database
// is not answering one cached row.
//
//	go run ./bench/tableapi                     # SQLite and PostgreSQL, 1,000,000 rows
//	go run ./bench/tableapi -dest sqlite -rows 100000 -duration 5s
//
// Results go to stdout as the rows of bench/README.md's table. The program
// exits 1 when a scenario fails, 3 with -strict when a target is missed.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	_ "github.com/ferry-dev/ferry/internal/components/all"
	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/dest/sqlite"
	"github.com/ferry-dev/ferry/internal/engine"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/source"
	"github.com/ferry-dev/ferry/internal/spec"
	"github.com/ferry-dev/ferry/internal/tableapi"
)

var (
	destFlag    = flag.String("dest", "all", "sqlite, postgres or all")
	rows        = flag.Int("rows", 1_000_000, "rows in the table")
	duration    = flag.Duration("duration", 10*time.Second, "load per scenario")
	connections = flag.Int("connections", 32, "wrk connections")
	threads     = flag.Int("threads", 2, "wrk threads")
	strict      = flag.Bool("strict", false, "exit 3 when a target is missed")
	pgURL       = flag.String("postgres", envOr("FERRY_BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"), "PostgreSQL server")
)

func envOr(k, d string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return d
}

const connectorYAML = `name: bench
base_url: http://127.0.0.1:9
streams:
  items:
    path: /items
    records: data
    primary_key: id
    cursor: updated_at
`

func main() {
	flag.Parse()
	log.SetFlags(0)
	if _, err := exec.LookPath("wrk"); err != nil {
		log.Fatal("wrk is not installed (apt install wrk)")
	}
	dests := []string{"sqlite", "postgres"}
	if *destFlag != "all" {
		dests = []string{*destFlag}
	}
	fmt.Printf("# %s, %d cores, %s, %d rows, %s per scenario, wrk -t%d -c%d\n", time.Now().UTC().Format(time.RFC3339), runtime.NumCPU(), cpuModel(), *rows, *duration, *threads, *connections)
	missed, failed := false, false
	fmt.Println("| database | scenario | server | req/s | p50 | p99 | load avg (1 min) before → after |")
	fmt.Println("|---|---|---|---:|---:|---:|---|")
	for _, d := range dests {
		m, err := runDest(d)
		if err != nil {
			log.Printf("%s: %v", d, err)
			failed = true
		}
		missed = missed || m
	}
	switch {
	case failed:
		os.Exit(1)
	case missed && *strict:
		os.Exit(3)
	}
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "model name") {
			_, v, _ := strings.Cut(l, ":")
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

// runDest builds the table on one database and measures both scenarios
// on both servers.
func runDest(kind string) (missed bool, err error) {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "ferry-bench-tableapi-")
	if err != nil {
		return false, err
	}
	defer os.RemoveAll(dir)
	section := "{type: sqlite, path: bench.db}"
	schemaName := fmt.Sprintf("ferry_bench_%d", time.Now().UnixNano())
	if kind == "postgres" {
		section = fmt.Sprintf(`{type: postgres, url: "${BENCH_PG}", schema: %s}`, schemaName)
		defer dropSchema(*pgURL, schemaName)
	}
	os.WriteFile(filepath.Join(dir, "connector.yaml"), []byte(connectorYAML), 0o644)
	os.WriteFile(filepath.Join(dir, "pipeline.yaml"), []byte("name: bench\nconnector: connector.yaml\nmode: incremental_dedup\napi: {expose: true}\ndestination: "+section+"\n"), 0o644)
	p, err := spec.LoadPipeline(filepath.Join(dir, "pipeline.yaml"))
	if err != nil {
		return false, err
	}
	lookup := func(k string) (string, bool) {
		if k == "BENCH_PG" {
			return *pgURL, true
		}
		return os.LookupEnv(k)
	}
	r, err := p.Resolve(lookup)
	if err != nil {
		return false, err
	}
	start := time.Now()
	if err := fill(ctx, p, r, *rows); err != nil {
		return false, fmt.Errorf("fill: %w", err)
	}
	log.Printf("%s: %d rows written in %s", kind, *rows, time.Since(start).Round(time.Millisecond))

	h, err := tableapi.New(ctx, tableapi.Options{Pipelines: []tableapi.Pipeline{{Spec: p, Resolved: r}}})
	if err != nil {
		return false, err
	}
	defer h.Close()
	mux := http.NewServeMux()
	tableapi.Mount(mux, h)
	apiURL, stopAPI, err := listen(mux)
	if err != nil {
		return false, err
	}
	defer stopAPI()
	ceil, closeCeil, err := ceiling(ctx, kind, dir, schemaName)
	if err != nil {
		return false, err
	}
	defer closeCeil()
	ceilURL, stopCeil, err := listen(ceil)
	if err != nil {
		return false, err
	}
	defer stopCeil()

	// The requests: random keys, and random pages (a cursor after a random
	// id, as the previous page's Link would give).
	rng := rand.New(rand.NewPCG(1, 2))
	var keys, pages, ckeys, cpages []string
	for range 20000 {
		id := rng.IntN(*rows) + 1
		keys = append(keys, fmt.Sprintf("/api/items/%d", id))
		ckeys = append(ckeys, fmt.Sprintf("/items/%d", id))
		after := rng.IntN(*rows-100) + 1
		s := strconv.Itoa(after)
		pages = append(pages, "/api/items?limit=100&cursor="+tableapi.EncodeCursor("items", "id", []*string{&s}))
		cpages = append(cpages, fmt.Sprintf("/items?after=%d", after))
	}
	// Both must answer, and alike, before they are measured.
	if err := same(apiURL+keys[0], ceilURL+ckeys[0]); err != nil {
		return false, err
	}
	for _, sc := range []struct {
		name      string
		target    float64
		api, ceil []string
	}{
		{"GET /api/items/{key}", 10000, keys, ckeys},
		{"100-row keyset page", 2000, pages, cpages},
	} {
		for _, srv := range []struct {
			name  string
			base  string
			paths []string
		}{{"table API", apiURL, sc.api}, {"ceiling (plain net/http)", ceilURL, sc.ceil}} {
			before := loadAvg()
			res, err := wrk(dir, srv.base, srv.paths)
			if err != nil {
				return missed, fmt.Errorf("%s %s: %w", sc.name, srv.name, err)
			}
			mark := ""
			if srv.name == "table API" && (res.rps < sc.target || res.p99 > 20*time.Millisecond) {
				mark, missed = " (target missed)", true
			}
			fmt.Printf("| %s | %s | %s | %.0f%s | %s | %s | %s → %s |\n", kind, sc.name, srv.name, res.rps, mark, res.p50, res.p99, before, loadAvg())
		}
	}
	return missed, nil
}

// fill writes n rows into table items the way a sync does: records
// normalized with the stream's settings, written through the
// destination's writer in chunks, committed with a checkpoint.
func fill(ctx context.Context, p *spec.Pipeline, r *spec.Resolved, n int) error {
	d, err := dest.Open(ctx, p.Destination.Type, r.Destination, dest.Options{Dir: p.Dir})
	if err != nil {
		return err
	}
	defer d.Close()
	table := d.(dest.Namer).TableName("items")
	w, err := d.OpenStream(ctx, dest.StreamConfig{Pipeline: "bench", Stream: "items", Table: table, Mode: dest.IncrementalDedup, RunID: "bench-fill"})
	if err != nil {
		return err
	}
	defer w.Abort(ctx)
	info := source.Stream{Name: "items", PrimaryKey: []string{"id"}, Cursor: "updated_at"}
	norm, err := engine.NewNormalizer(table, info, p.SchemaOf("items"), d, w, "bench-fill")
	if err != nil {
		return err
	}
	statuses := []string{"new", "paid", "shipped", "cancelled"}
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	const batch = 5000
	for i := 1; i <= n; i += batch {
		var recs [][]byte
		for j := i; j < i+batch && j <= n; j++ {
			rec, _ := json.Marshal(map[string]any{
				"id": j, "email": fmt.Sprintf("user%d@example.com", j), "status": statuses[j%4], "amount": float64(j%10000) / 100,
				"quantity": j % 17, "active": j%3 != 0, "created_at": base.Add(time.Duration(j) * time.Second).Format(time.RFC3339),
				"updated_at": base.Add(time.Duration(j) * time.Second).Format(time.RFC3339), "country": []string{"PL", "DE", "FR", "ES"}[j%4],
			})
			recs = append(recs, rec)
		}
		c, _, err := norm.Page(&record.Page{Stream: "items", Partition: &record.Partition{}, Records: recs}, nil)
		if err != nil {
			return err
		}
		if i+batch > n {
			c.Checkpoints = []record.Checkpoint{{Stream: "items", State: json.RawMessage(`{"bench":true}`)}}
		}
		if err := w.Write(ctx, c); err != nil {
			return err
		}
		if err := w.Commit(ctx); err != nil {
			return err
		}
	}
	return nil
}

// ceiling is a plain net/http handler running the table API's queries on
// its own pool: GET /items/{id} and GET /items?after=N (100 rows).
func ceiling(ctx context.Context, kind, dir, schemaName string) (http.Handler, func(), error) {
	cols := `"id", "email", "status", "amount", "quantity", "active", "created_at", "updated_at", "country"`
	var query func(ctx context.Context, q string, args ...any) (*rowsIter, error)
	var closeFn func()
	table := `"items"`
	ph1 := "?"
	switch kind {
	case "sqlite":
		db, err := sqlite.OpenReadOnly(filepath.Join(dir, "bench.db"))
		if err != nil {
			return nil, nil, err
		}
		closeFn = func() { db.Close() }
		query = func(ctx context.Context, q string, args ...any) (*rowsIter, error) {
			rs, err := db.QueryContext(ctx, q, args...)
			if err != nil {
				return nil, err
			}
			return &rowsIter{next: rs.Next, scan: rs.Scan, close: func() { rs.Close() }, err: rs.Err}, nil
		}
	case "postgres":
		pool, err := pgxpool.New(ctx, *pgURL)
		if err != nil {
			return nil, nil, err
		}
		closeFn = pool.Close
		table = `"` + schemaName + `"."items"`
		ph1 = "$1"
		query = func(ctx context.Context, q string, args ...any) (*rowsIter, error) {
			rs, err := pool.Query(ctx, q, args...)
			if err != nil {
				return nil, err
			}
			return &rowsIter{next: rs.Next, scan: rs.Scan, close: rs.Close, err: rs.Err}, nil
		}
	}
	one := fmt.Sprintf("SELECT %s FROM %s WHERE \"id\" = %s LIMIT 2", cols, table, ph1)
	page := fmt.Sprintf("SELECT %s FROM %s WHERE \"id\" > %s ORDER BY \"id\" LIMIT 101", cols, table, ph1)
	serve := func(w http.ResponseWriter, r *http.Request, q string, arg int64, single bool) {
		rs, err := query(r.Context(), q, arg)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		defer rs.close()
		var out []map[string]any
		for rs.next() {
			var id, qty int64
			var email, status, country string
			var amount float64
			var active any
			var created, updated any
			if err := rs.scan(&id, &email, &status, &amount, &qty, &active, &created, &updated, &country); err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			out = append(out, map[string]any{"id": id, "email": email, "status": status, "amount": amount, "quantity": qty, "active": active, "created_at": created, "updated_at": updated, "country": country})
		}
		w.Header().Set("Content-Type", "application/json")
		if single {
			if len(out) == 0 {
				http.Error(w, "not found", 404)
				return
			}
			json.NewEncoder(w).Encode(out[0])
			return
		}
		if len(out) > 100 {
			out = out[:100]
		}
		json.NewEncoder(w).Encode(out)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /items/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
		serve(w, r, one, id, true)
	})
	mux.HandleFunc("GET /items", func(w http.ResponseWriter, r *http.Request) {
		after, _ := strconv.ParseInt(r.URL.Query().Get("after"), 10, 64)
		serve(w, r, page, after, false)
	})
	return mux, closeFn, nil
}

type rowsIter struct {
	next  func() bool
	scan  func(...any) error
	close func()
	err   func() error
}

func listen(h http.Handler) (string, func(), error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(l)
	return "http://" + l.Addr().String(), func() { srv.Close() }, nil
}

// same checks both servers answer 200 with a row of the same id.
func same(a, b string) error {
	var ids []float64
	for _, u := range []string{a, b} {
		resp, err := http.Get(u)
		if err != nil {
			return err
		}
		var o map[string]any
		err = json.NewDecoder(resp.Body).Decode(&o)
		resp.Body.Close()
		if resp.StatusCode != 200 || err != nil {
			return fmt.Errorf("GET %s: %d %v", u, resp.StatusCode, err)
		}
		id, _ := o["id"].(float64)
		ids = append(ids, id)
	}
	if ids[0] != ids[1] {
		return fmt.Errorf("the table API and the ceiling answer different rows: %v", ids)
	}
	return nil
}

type result struct {
	rps      float64
	p50, p99 time.Duration
}

var (
	rpsRE = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	latRE = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s)`)
	non2x = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
)

// wrk runs the load generator over the paths (round robin from a random
// start per thread) and reads its summary.
func wrk(dir, base string, paths []string) (result, error) {
	list := filepath.Join(dir, "paths.txt")
	if err := os.WriteFile(list, []byte(strings.Join(paths, "\n")+"\n"), 0o644); err != nil {
		return result{}, err
	}
	script := filepath.Join(dir, "paths.lua")
	lua := `local paths = {}
for line in io.lines("` + list + `") do paths[#paths + 1] = line end
local i = 0
function init(args) math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16)); i = math.random(#paths) end
function request() i = i % #paths + 1; return wrk.format("GET", paths[i]) end
`
	if err := os.WriteFile(script, []byte(lua), 0o644); err != nil {
		return result{}, err
	}
	out, err := exec.Command("wrk", "-t"+strconv.Itoa(*threads), "-c"+strconv.Itoa(*connections), "-d"+duration.String(), "--latency", "-s", script, base).CombinedOutput()
	if err != nil {
		return result{}, fmt.Errorf("wrk: %v: %s", err, out)
	}
	if m := non2x.FindSubmatch(out); m != nil {
		return result{}, fmt.Errorf("%s non-2xx responses:\n%s", m[1], out)
	}
	var res result
	m := rpsRE.FindSubmatch(out)
	if m == nil {
		return result{}, fmt.Errorf("no Requests/sec in wrk's output:\n%s", out)
	}
	res.rps, _ = strconv.ParseFloat(string(m[1]), 64)
	for _, l := range latRE.FindAllSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(string(l[2]), 64)
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[string(l[3])]
		d := time.Duration(v * float64(unit)).Round(10 * time.Microsecond)
		if string(l[1]) == "50" {
			res.p50 = d
		} else {
			res.p99 = d
		}
	}
	return res, nil
}

func dropSchema(u, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := pgxpool.New(ctx, u)
	if err != nil {
		return
	}
	defer pool.Close()
	pool.Exec(ctx, `DROP SCHEMA IF EXISTS "`+name+`" CASCADE`)
}
