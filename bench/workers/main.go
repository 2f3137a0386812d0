// Command workers measures how `ferry worker` scales out: a local API
// whose every page answers after 50 ms (latency-bound, like real APIs)
// serves a child stream of many partitions, split into slices that 1, 2
// and 4 worker processes run in parallel from NATS JetStream, into
// PostgreSQL. It reports records per second per worker count, the speed-up
// over one worker, and the overhead per work item from enqueue to a worker
// starting it (p50, p99), and checks that exactly the records served
// landed.
//
//	go run ./bench/workers                  # 1, 2, 4 workers
//	go run ./bench/workers -workers 1,4 -partitions 512
//
// It needs PostgreSQL (FERRY_BENCH_POSTGRES_URL, default the local test
// server) and NATS JetStream (FERRY_BENCH_NATS_URL, default
// nats://127.0.0.1:4222).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferry-dev/ferry/internal/worker"
	"github.com/ferry-dev/ferry/internal/workqueue"
)

func main() {
	workersFlag := flag.String("workers", "1,2,4", "worker counts to measure")
	partitions := flag.Int("partitions", 256, "partitions (parent records) of the child stream")
	pages := flag.Int("pages", 4, "pages per partition")
	pageSize := flag.Int("page-size", 5, "records per page")
	latency := flag.Duration("latency", 50*time.Millisecond, "how long each page takes to answer")
	slicesN := flag.Int("slices", 32, "slices the child stream is split into")
	concurrency := flag.Int("concurrency", 4, "partitions each worker reads at once (the parent's concurrency)")
	probes := flag.Int("probes", 100, "items enqueued one by one to measure the enqueue → start overhead")
	flag.Parse()
	if err := run(*workersFlag, *partitions, *pages, *pageSize, *latency, *slicesN, *concurrency, *probes); err != nil {
		fmt.Fprintln(os.Stderr, "bench/workers:", err)
		os.Exit(1)
	}
}

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

type bench struct {
	bin, pg, nats, dir string
	partitions, pages  int
	pageSize           int
	concurrency        int
}

func run(workersFlag string, partitions, pages, pageSize int, latency time.Duration, slicesN, concurrency, probes int) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "ferry-bench-workers")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	b := &bench{bin: filepath.Join(dir, "ferry"), pg: env("FERRY_BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"), nats: env("FERRY_BENCH_NATS_URL", "nats://127.0.0.1:4222"), dir: dir,
		partitions: partitions, pages: pages, pageSize: pageSize, concurrency: concurrency}
	build := exec.Command("go", "build", "-o", b.bin, "./cmd/ferry")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build ferry: %w", err)
	}
	api := httptest.NewServer(handler(partitions, pages, pageSize, latency))
	defer api.Close()
	host, _ := os.Hostname()
	fmt.Printf("date %s, host %s, %d CPUs, load average %s\n", time.Now().UTC().Format(time.RFC3339), host, numCPU(), loadavg())
	fmt.Printf("%d partitions × %d pages × %d records, %s per page, %d slices, %d partitions at once per worker\n\n", partitions, pages, pageSize, latency, slicesN, concurrency)
	fmt.Printf("%-8s %10s %10s %12s %9s  %s\n", "WORKERS", "RECORDS", "TIME", "RECORDS/S", "SPEED-UP", "LOAD")
	var base float64
	total := partitions * pages * pageSize
	for _, f := range strings.Split(workersFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("-workers: %q is not a count", f)
		}
		d, rows, err := b.scale(ctx, api.URL, n, slicesN)
		if err != nil {
			return err
		}
		if rows != total {
			return fmt.Errorf("%d workers: the table has %d rows, the API served %d", n, rows, total)
		}
		rate := float64(total) / d.Seconds()
		if base == 0 {
			base = rate
		}
		fmt.Printf("%-8d %10d %10s %12.0f %8.2f×  %s\n", n, rows, d.Round(10*time.Millisecond), rate, rate/base, loadavg())
	}
	p50, p99, max, err := b.overhead(ctx, api.URL, probes)
	if err != nil {
		return err
	}
	fmt.Printf("\nenqueue → start, %d items one at a time, 4 idle workers: p50 %s, p99 %s, max %s (target p99 ≤ 50ms)\n", probes, p50.Round(100*time.Microsecond), p99.Round(100*time.Microsecond), max.Round(100*time.Microsecond))
	return nil
}

// handler serves /users (partitions, at once) and /users/{id}/notes
// (pages after latency) and /ping (one record, at once).
func handler(partitions, pages, pageSize int, latency time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
		page, _ := strconv.Atoi(r.URL.Query().Get("page"))
		page = max(page, 1)
		var recs []map[string]any
		switch {
		case len(parts) == 1 && parts[0] == "users":
			for u := 1; u <= partitions; u++ {
				recs = append(recs, map[string]any{"id": u})
			}
		case len(parts) == 1 && parts[0] == "ping":
			recs = append(recs, map[string]any{"id": 1})
		case len(parts) == 3 && parts[2] == "notes":
			time.Sleep(latency)
			u, _ := strconv.Atoi(parts[1])
			if page <= pages {
				for j := range pageSize {
					n := (page-1)*pageSize + j
					recs = append(recs, map[string]any{"id": fmt.Sprintf("%d-%d", u, n), "user_id": u, "updated_at": fmt.Sprintf("2024-03-01T00:%02d:%02dZ", n/60%60, n%60), "text": "a note of some length, as notes go"})
				}
			}
		default:
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"data": recs})
	})
}

const connector = `name: benchfan
base_url: %s
streams:
  users:
    path: /users
    records: data
    primary_key: id
  ping:
    path: /ping
    records: data
    primary_key: id
  notes:
    parent: {stream: users, concurrency: %d}
    path: /users/{{ parent.id }}/notes
    records: data
    primary_key: id
    cursor: updated_at
    paginate: {type: page_number, size: %d, size_param: per_page, stop_on_short_page: true}
`

const pipeline = `connector: connector.yaml
destination: {type: postgres, url: %q, schema: %s}
streams:
  notes: {mode: incremental_dedup}
  ping: {mode: full_refresh_append}
`

// setup writes the pipeline for a fresh schema and returns its path, the
// coordination URL and a cleanup.
func (b *bench) setup(ctx context.Context, apiURL, schema string) (string, string, func(), error) {
	dir := filepath.Join(b.dir, schema)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "connector.yaml"), fmt.Appendf(nil, connector, apiURL, b.concurrency, b.pageSize), 0o644); err != nil {
		return "", "", nil, err
	}
	path := filepath.Join(dir, "pipeline.yaml")
	if err := os.WriteFile(path, fmt.Appendf(nil, pipeline, b.pg, schema), 0o644); err != nil {
		return "", "", nil, err
	}
	if err := b.exec(ctx, `CREATE SCHEMA "`+schema+`"`); err != nil {
		return "", "", nil, err
	}
	sep := "?"
	if strings.Contains(b.pg, "?") {
		sep = "&"
	}
	cleanup := func() {
		_ = b.exec(context.Background(), `DROP SCHEMA "`+schema+`" CASCADE`)
		if nc, err := nats.Connect(b.nats); err == nil {
			if js, err := jetstream.New(nc); err == nil {
				q := strings.ToUpper(schema)
				_ = js.DeleteStream(context.Background(), q)
				_ = js.DeleteStream(context.Background(), q+"_DEAD")
			}
			nc.Close()
		}
	}
	return path, b.pg + sep + "search_path=" + schema, cleanup, nil
}

func (b *bench) exec(ctx context.Context, stmt string) error {
	c, err := pgx.Connect(ctx, b.pg)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	_, err = c.Exec(ctx, stmt)
	return err
}

// startWorkers starts n worker processes and returns a stop function.
func (b *bench) startWorkers(n int, state, queue string) (func(), error) {
	var cmds []*exec.Cmd
	stop := func() {
		for _, c := range cmds {
			_ = c.Process.Signal(syscall.SIGTERM)
		}
		for _, c := range cmds {
			_ = c.Wait()
		}
	}
	for i := range n {
		c := exec.Command(b.bin, "worker", "--id", fmt.Sprintf("bench-%d", i+1), "--nats", b.nats, "--state", state, "--queue", queue)
		c.Stderr = os.Stderr
		if err := c.Start(); err != nil {
			stop()
			return nil, err
		}
		cmds = append(cmds, c)
	}
	return stop, nil
}

// waitWorkers waits until n workers are idle.
func waitWorkers(ctx context.Context, co *worker.Coord, n int) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		ws, err := co.Workers(ctx, 5*time.Second)
		if err != nil {
			return err
		}
		idle := 0
		for _, w := range ws {
			if w.Status == "idle" {
				idle++
			}
		}
		if idle >= n {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%d workers did not start", n)
}

// scale runs the child stream on n workers and returns the time from
// enqueue to the last item done, and the rows in the table.
func (b *bench) scale(ctx context.Context, apiURL string, n, slicesN int) (time.Duration, int, error) {
	schema := fmt.Sprintf("ferry_bench_w%d_%d", n, time.Now().UnixNano()%1e9)
	path, state, cleanup, err := b.setup(ctx, apiURL, schema)
	if err != nil {
		return 0, 0, err
	}
	defer cleanup()
	queue := strings.ToUpper(schema)
	co, err := worker.OpenCoord(ctx, state)
	if err != nil {
		return 0, 0, err
	}
	defer co.Close()
	q, err := workqueue.Open(ctx, workqueue.Config{URL: b.nats, Stream: queue})
	if err != nil {
		return 0, 0, err
	}
	defer q.Close()
	stop, err := b.startWorkers(n, state, queue)
	if err != nil {
		return 0, 0, err
	}
	defer stop()
	if err := waitWorkers(ctx, co, n); err != nil {
		return 0, 0, err
	}
	start := time.Now()
	out, err := worker.Enqueue(ctx, q, co, worker.Plan{Path: path, Name: "benchfan", Streams: []worker.StreamPlan{{Stream: "notes", Slices: slicesN}}})
	if err != nil {
		return 0, 0, err
	}
	st, err := worker.Wait(ctx, co, out.Run, 10*time.Millisecond)
	if err != nil {
		return 0, 0, err
	}
	d := time.Since(start)
	if !st.Done() {
		return 0, 0, fmt.Errorf("%d workers: %d of %d items succeeded", n, st.Count(worker.Succeeded), len(st.Items))
	}
	c, err := pgx.Connect(ctx, b.pg)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close(ctx)
	var rows int
	if err := c.QueryRow(ctx, fmt.Sprintf(`SELECT count(DISTINCT id) FROM "%s".notes`, schema)).Scan(&rows); err != nil {
		return 0, 0, err
	}
	return d, rows, nil
}

// overhead enqueues probes one-record items one at a time on 4 idle
// workers and returns the percentiles of enqueue → start.
func (b *bench) overhead(ctx context.Context, apiURL string, probes int) (p50, p99, worst time.Duration, err error) {
	schema := fmt.Sprintf("ferry_bench_probe_%d", time.Now().UnixNano()%1e9)
	path, state, cleanup, err := b.setup(ctx, apiURL, schema)
	if err != nil {
		return 0, 0, 0, err
	}
	defer cleanup()
	queue := strings.ToUpper(schema)
	co, err := worker.OpenCoord(ctx, state)
	if err != nil {
		return 0, 0, 0, err
	}
	defer co.Close()
	q, err := workqueue.Open(ctx, workqueue.Config{URL: b.nats, Stream: queue})
	if err != nil {
		return 0, 0, 0, err
	}
	defer q.Close()
	stop, err := b.startWorkers(4, state, queue)
	if err != nil {
		return 0, 0, 0, err
	}
	defer stop()
	if err := waitWorkers(ctx, co, 4); err != nil {
		return 0, 0, 0, err
	}
	var lat []time.Duration
	for i := range probes {
		out, err := worker.Enqueue(ctx, q, co, worker.Plan{Path: path, Name: "benchfan", Streams: []worker.StreamPlan{{Stream: "ping"}}, Trigger: fmt.Sprint("probe-", i)})
		if err != nil {
			return 0, 0, 0, err
		}
		st, err := worker.Wait(ctx, co, out.Run, 5*time.Millisecond)
		if err != nil {
			return 0, 0, 0, err
		}
		if !st.Done() {
			return 0, 0, 0, fmt.Errorf("probe %d failed: %+v", i, st.Items)
		}
		it := st.Items[0]
		lat = append(lat, it.Started.Sub(it.Item.Enqueued))
	}
	slices.Sort(lat)
	return lat[len(lat)/2], lat[(len(lat)*99)/100], lat[len(lat)-1], nil
}

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "processor\t:")
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
