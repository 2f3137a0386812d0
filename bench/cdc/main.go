//go:build linux

// Command cdc measures change data capture end to end: the real ferry
// binary (built once, run as a subprocess) captures a PostgreSQL table's
// changes through logical replication and delivers them to a local HTTP
// sink in batches, or to NATS JetStream. It reports changes per second,
// ferry's CPU per change, commit-to-delivery latency at a fixed rate,
// ferry's resident memory and the slot's lag over a long run, and the
// sink's own ceiling measured in the same run (the most the sink or
// JetStream takes from a plain client on this machine).
//
//	go run ./bench/cdc                         # everything (about 8 minutes)
//	go run ./bench/cdc -only throughput -n 1000000
//	go run ./bench/cdc -only memory -memory-n 10000000
//
// PostgreSQL is a throwaway server started for the run (wal_level=logical;
// FERRY_BENCH_PG_LOGICAL_URL names another); NATS is FERRY_TEST_NATS_URL
// (default nats://127.0.0.1:4222). See bench/README.md.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferry-dev/ferry/internal/change/changetest"
	_ "github.com/ferry-dev/ferry/internal/components/all"
	"github.com/ferry-dev/ferry/internal/engine"
	"github.com/ferry-dev/ferry/internal/spec"
	"github.com/ferry-dev/ferry/internal/testserver"
)

var (
	only      = flag.String("only", "", "one of: ceiling, throughput, latency, memory (default all)")
	n         = flag.Int("n", 1_000_000, "changes for the throughput runs")
	rate      = flag.Int("rate", 1000, "changes per second for the latency run")
	latFor    = flag.Duration("latency-for", 30*time.Second, "length of the latency run")
	memN      = flag.Int("memory-n", 10_000_000, "changes for the memory run")
	memRate   = flag.Int("memory-rate", 40_000, "changes per second the memory run's writer makes")
	batch     = flag.Int("batch", 500, "changes per HTTP request (the http destination's batch.size)")
	lanes     = flag.Int("lanes", 8, "the http destination's concurrency")
	ferryPath = flag.String("ferry", "", "a ferry binary to measure (default: build ./cmd/ferry)")
	profile   = flag.String("cpuprofile", "", "run ferry in this process for the throughput runs and write a CPU profile here (the sink's CPU included)")
)

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

type bench struct {
	pg    string
	ferry string
	dir   string
	nats  string
}

func run() error {
	b := &bench{}
	var err error
	if b.dir, err = os.MkdirTemp("", "ferry-bench-cdc-"); err != nil {
		return err
	}
	defer os.RemoveAll(b.dir)
	b.ferry = *ferryPath
	if b.ferry == "" {
		b.ferry = filepath.Join(b.dir, "ferry")
		build := exec.Command("go", "build", "-trimpath", "-o", b.ferry, "./cmd/ferry")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("build ferry: %w", err)
		}
	}
	if b.pg = os.Getenv("FERRY_BENCH_PG_LOGICAL_URL"); b.pg == "" {
		u, stop, err := testserver.StartPostgres()
		if err != nil {
			return err
		}
		defer stop()
		b.pg = u
	}
	if b.nats = os.Getenv("FERRY_TEST_NATS_URL"); b.nats == "" {
		b.nats = nats.DefaultURL
	}
	host, _ := os.Hostname()
	fmt.Printf("date %s, host %s, %d CPUs, %s\n", time.Now().UTC().Format(time.RFC3339), host, numCPU(), cpuModel())
	fmt.Printf("command: go run ./bench/cdc %s\n\n", strings.Join(os.Args[1:], " "))
	want := func(s string) bool { return *only == "" || *only == s }
	if want("ceiling") || want("throughput") {
		if err := b.httpCeiling(); err != nil {
			return err
		}
		if err := b.natsCeiling(); err != nil {
			fmt.Println("nats ceiling:", err)
		}
	}
	if want("throughput") {
		if err := b.throughput("http", *n); err != nil {
			return err
		}
		if err := b.throughput("nats", *n); err != nil {
			return err
		}
	}
	if want("latency") {
		if err := b.latency(); err != nil {
			return err
		}
	}
	if want("memory") {
		if err := b.memory(); err != nil {
			return err
		}
	}
	return nil
}

// item is a change as the http sink receives it in a batch.
type item struct {
	Op   string `json:"op"`
	Data struct {
		ID int64 `json:"id"`
	} `json:"data"`
	CommittedAt string `json:"committed_at"`
	Position    string `json:"position"`
}

// sampleItem is a batch element of the size ferry sends for the bench
// table (for the ceilings).
func sampleItem(i int) []byte {
	return []byte(fmt.Sprintf(`{"op":"insert","key":{"id":%d},"idempotency_key":"0123456789abcdef0123456789abcdef","data":{"id":%d,"account":"acct-%07d","amount":%d.25,"status":"active","qty":%d,"updated_at":"2024-05-01T12:30:00.123456Z"},"position":"0000000001A2B3C4/%08d"}`, i, i, i, i%1000, i%50, i))
}

// httpCeiling measures what the sink takes from a plain client: batches
// of the same size and shape, from as many connections as ferry uses.
func (b *bench) httpCeiling() error {
	sink := changetest.New()
	sink.CountOnly = true
	defer sink.Close()
	body := []byte{'['}
	for i := 0; i < *batch; i++ {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, sampleItem(i)...)
	}
	body = append(body, ']')
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *lanes}}
	var sent atomic.Int64
	deadline := time.Now().Add(5 * time.Second)
	start := time.Now()
	var wg sync.WaitGroup
	for l := 0; l < *lanes; l++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				resp, err := client.Post(sink.URL+"/bench/batch", "application/json", bytes.NewReader(body))
				if err != nil {
					return
				}
				resp.Body.Close()
				sent.Add(int64(*batch))
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	fmt.Printf("http sink ceiling: %.0f changes/s (%d-change batches, %d connections, plain Go client, %s)\n", float64(sent.Load())/el.Seconds(), *batch, *lanes, el.Round(time.Millisecond))
	return nil
}

// natsCeiling measures what JetStream takes from a plain async publisher.
func (b *bench) natsCeiling() error {
	nc, err := nats.Connect(b.nats)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, _ := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	ctx := context.Background()
	name := fmt.Sprintf("FERRYBENCHCEIL%d", time.Now().UnixNano())
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{strings.ToLower(name) + ".>"}, Duplicates: 2 * time.Minute}); err != nil {
		return err
	}
	defer js.DeleteStream(ctx, name)
	count := 300_000
	start := time.Now()
	for i := 0; i < count; i++ {
		m := &nats.Msg{Subject: strings.ToLower(name) + ".bench", Data: sampleItem(i), Header: nats.Header{}}
		m.Header.Set(jetstream.MsgIDHeader, strconv.Itoa(i))
		if _, err := js.PublishMsgAsync(m); err != nil {
			return err
		}
	}
	<-js.PublishAsyncComplete()
	el := time.Since(start)
	fmt.Printf("jetstream ceiling: %.0f messages/s (%d async publishes with Nats-Msg-Id, plain client, %s)\n\n", float64(count)/el.Seconds(), count, el.Round(time.Millisecond))
	return nil
}

// database creates a fresh database with the bench table.
func (b *bench) database(ctx context.Context) (string, func(), error) {
	name := fmt.Sprintf("ferry_bench_%d", time.Now().UnixNano())
	admin, err := pgx.Connect(ctx, b.pg)
	if err != nil {
		return "", nil, err
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", nil, err
	}
	u := strings.Replace(b.pg, "/postgres?", "/"+name+"?", 1)
	c, err := pgx.Connect(ctx, u)
	if err != nil {
		return "", nil, err
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, `CREATE TABLE bench (id bigint PRIMARY KEY, account text NOT NULL, amount numeric(12,2), status text, qty int, updated_at timestamptz NOT NULL)`); err != nil {
		return "", nil, err
	}
	drop := func() {
		a, err := pgx.Connect(context.Background(), b.pg)
		if err != nil {
			return
		}
		defer a.Close(context.Background())
		a.Exec(context.Background(), "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1", name)
		a.Exec(context.Background(), "DROP DATABASE "+name+" WITH (FORCE)")
	}
	return u, drop, nil
}

// insert makes count insert changes, from id from, in transactions of
// per rows.
func insert(ctx context.Context, u string, from, count, per int) error {
	c, err := pgx.Connect(ctx, u)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	for done := 0; done < count; done += per {
		k := min(per, count-done)
		lo := from + done
		if _, err := c.Exec(ctx, `INSERT INTO bench SELECT i, 'acct-' || lpad(i::text, 7, '0'), (i % 1000) + 0.25, 'active', i % 50, now() FROM generate_series($1::bigint, $2::bigint) i`, lo, lo+k-1); err != nil {
			return err
		}
	}
	return nil
}

// ferryRun is a running ferry.
type ferryRun struct {
	cmd    *exec.Cmd
	out    bytes.Buffer
	done   chan error
	cancel context.CancelFunc // in-process
	cpu0   time.Duration
}

// startInProcess runs the pipeline's engine in this process (profiling).
func (b *bench) startInProcess(dir string, env ...string) (*ferryRun, error) {
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		os.Setenv(k, v)
	}
	p, err := spec.LoadPipeline(filepath.Join(dir, "pipeline.yaml"))
	if err != nil {
		return nil, err
	}
	r, err := p.Resolve(engine.Env)
	if err != nil {
		return nil, err
	}
	rn, err := engine.New(context.Background(), engine.Options{Pipeline: p, Resolved: r})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &ferryRun{done: make(chan error, 1), cancel: cancel, cpu0: selfCPU()}
	go func() {
		_, err := rn.Execute(ctx)
		rn.Close()
		f.done <- err
	}()
	return f, nil
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (b *bench) start(dir string, env ...string) (*ferryRun, error) {
	f := &ferryRun{done: make(chan error, 1)}
	f.cmd = exec.Command(b.ferry, "run", "--quiet", filepath.Join(dir, "pipeline.yaml"))
	f.cmd.Env = append(os.Environ(), env...)
	f.cmd.Stdout, f.cmd.Stderr = &f.out, &f.out
	if err := f.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { f.done <- f.cmd.Wait() }()
	return f, nil
}

// stop interrupts ferry and returns its CPU time.
func (f *ferryRun) stop() time.Duration {
	if f.cancel != nil {
		f.cancel()
		<-f.done
		return selfCPU() - f.cpu0
	}
	f.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-f.done:
	case <-time.After(60 * time.Second):
		f.cmd.Process.Kill()
		<-f.done
	}
	return f.cmd.ProcessState.UserTime() + f.cmd.ProcessState.SystemTime()
}

// pipeline writes the connector and pipeline of a scenario.
func (b *bench) pipeline(dest string) (string, error) {
	dir, err := os.MkdirTemp(b.dir, "run-")
	if err != nil {
		return "", err
	}
	conn := "name: bench\ntype: postgres_cdc\nconfig: {url: {secret: true}}\nurl: \"{{ config.url }}\"\nsnapshot: never\nbatch_size: 5000\nmax_wait: 5ms\nstreams:\n  bench: {table: bench, primary_key: id}\n"
	pipe := "connector: connector.yaml\nconfig: {url: \"${BENCH_PG_URL}\"}\ndestination: " + dest + "\nstate: {type: sqlite, path: state.db}\nsync: {checkpoint_interval: 200ms}\n"
	if err := os.WriteFile(filepath.Join(dir, "connector.yaml"), []byte(conn), 0o644); err != nil {
		return "", err
	}
	return dir, os.WriteFile(filepath.Join(dir, "pipeline.yaml"), []byte(pipe), 0o644)
}

// slotActive waits until the stream's slot is read.
func slotActive(ctx context.Context, u string, timeout time.Duration) error {
	c, err := pgx.Connect(ctx, u)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		var active bool
		if err := c.QueryRow(ctx, "SELECT active FROM pg_replication_slots WHERE slot_name = 'ferry_bench_bench'").Scan(&active); err == nil && active {
			return nil
		}
		time.Sleep(50 * time.Millisecond) // polling the server's catalogue
	}
	return fmt.Errorf("the slot was not active after %s", timeout)
}

// counter counts what arrived at the destination of a scenario.
type counter interface {
	count() int64
	close()
}

type sinkCounter struct{ s *changetest.Sink }

func (c sinkCounter) count() int64 { return c.s.Accepted() }
func (c sinkCounter) close()       { c.s.Close() }

type natsCounter struct {
	js   jetstream.JetStream
	nc   *nats.Conn
	name string
}

func (c natsCounter) count() int64 {
	s, err := c.js.Stream(context.Background(), c.name)
	if err != nil {
		return 0
	}
	info, err := s.Info(context.Background())
	if err != nil {
		return 0
	}
	return int64(info.State.Msgs)
}
func (c natsCounter) close() {
	c.js.DeleteStream(context.Background(), c.name)
	c.nc.Close()
}

func (b *bench) destination(kind string) (string, counter, error) {
	if kind == "http" {
		s := changetest.New()
		s.CountOnly = true
		return fmt.Sprintf("{type: http, url: %s, concurrency: %d, batch: {size: %d, wait: 5ms}}", s.URL, *lanes, *batch), sinkCounter{s}, nil
	}
	nc, err := nats.Connect(b.nats)
	if err != nil {
		return "", nil, err
	}
	js, _ := jetstream.New(nc)
	name := fmt.Sprintf("FERRYBENCH%d", time.Now().UnixNano())
	subj := strings.ToLower(name)
	return fmt.Sprintf("{type: nats, url: %s, subject: \"%s.{{ stream }}\", stream: {name: %s, subjects: [\"%s.>\"], create: true}}", b.nats, subj, name, subj), natsCounter{js: js, nc: nc, name: name}, nil
}

// throughput: the changes are made first (ferry stopped), then ferry
// starts and delivers the backlog; the rate is changes over the time from
// ferry's start to the last delivery.
func (b *bench) throughput(kind string, count int) error {
	ctx := context.Background()
	u, drop, err := b.database(ctx)
	if err != nil {
		return err
	}
	defer drop()
	destYAML, ctr, err := b.destination(kind)
	if err != nil {
		return err
	}
	defer ctr.close()
	dir, err := b.pipeline(destYAML)
	if err != nil {
		return err
	}
	env := []string{"BENCH_PG_URL=" + u}
	// A first run creates the slot and publication.
	f, err := b.start(dir, env...)
	if err != nil {
		return err
	}
	if err := slotActive(ctx, u, 30*time.Second); err != nil {
		f.stop()
		return fmt.Errorf("%w\n%s", err, f.out.String())
	}
	f.stop()
	genStart := time.Now()
	if err := insert(ctx, u, 1, count, 100_000); err != nil {
		return err
	}
	gen := time.Since(genStart)
	start := time.Now()
	if *profile != "" {
		pf, perr := os.Create(*profile + "." + kind)
		if perr != nil {
			return perr
		}
		pprof.StartCPUProfile(pf)
		defer func() { pprof.StopCPUProfile(); pf.Close() }()
		f, err = b.startInProcess(dir, env...)
	} else {
		f, err = b.start(dir, env...)
	}
	if err != nil {
		return err
	}
	var last int64
	stalled := time.Now()
	for ctr.count() < int64(count) {
		if c := ctr.count(); c != last {
			last, stalled = c, time.Now()
		}
		if time.Since(stalled) > 60*time.Second {
			f.stop()
			return fmt.Errorf("%s: stalled at %d of %d changes:\n%s", kind, last, count, f.out.String())
		}
		time.Sleep(20 * time.Millisecond) // polling the sink's counter
	}
	el := time.Since(start)
	cpu := f.stop()
	fmt.Printf("postgres_cdc → %s: %d changes in %s = %.0f changes/s; ferry CPU %.2f µs/change (%.2f cores); the changes took %s to make\n",
		kind, count, el.Round(time.Millisecond), float64(count)/el.Seconds(), float64(cpu.Microseconds())/float64(count), cpu.Seconds()/el.Seconds(), gen.Round(time.Millisecond))
	return nil
}

// latency: one change per transaction at a fixed rate, while ferry
// streams; latency is the sink's arrival time minus the change's commit
// time (PostgreSQL's clock: same machine).
func (b *bench) latency() error {
	ctx := context.Background()
	u, drop, err := b.database(ctx)
	if err != nil {
		return err
	}
	defer drop()
	sink := changetest.New()
	defer sink.Close()
	dir, err := b.pipeline(fmt.Sprintf("{type: http, url: %s, concurrency: %d, batch: {size: %d, wait: 2ms}}", sink.URL, *lanes, *batch))
	if err != nil {
		return err
	}
	f, err := b.start(dir, "BENCH_PG_URL="+u)
	if err != nil {
		return err
	}
	if err := slotActive(ctx, u, 30*time.Second); err != nil {
		f.stop()
		return err
	}
	c, err := pgx.Connect(ctx, u)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	total := int(latFor.Seconds() * float64(*rate))
	tick := time.NewTicker(time.Second / time.Duration(*rate))
	for i := 1; i <= total; i++ {
		<-tick.C
		if _, err := c.Exec(ctx, "INSERT INTO bench VALUES ($1, 'acct', 1.25, 'active', 1, now())", i); err != nil {
			tick.Stop()
			f.stop()
			return err
		}
	}
	tick.Stop()
	if !sink.WaitFor(60*time.Second, func() bool { return sink.Accepted() >= int64(total) }) {
		f.stop()
		return fmt.Errorf("latency run: %d of %d changes arrived", sink.Accepted(), total)
	}
	f.stop()
	var lat []time.Duration
	for _, rc := range sink.Changes() {
		var it item
		if json.Unmarshal(rc.Body, &it) != nil {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, it.CommittedAt)
		if err != nil {
			continue
		}
		lat = append(lat, rc.At.Sub(at))
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[int(math.Min(float64(len(lat)-1), p*float64(len(lat))))] }
	fmt.Printf("latency at %d changes/s for %s (%d changes, one per transaction): p50 %s, p95 %s, p99 %s, max %s\n",
		*rate, *latFor, len(lat), pct(0.50).Round(100*time.Microsecond), pct(0.95).Round(100*time.Microsecond), pct(0.99).Round(100*time.Microsecond), lat[len(lat)-1].Round(100*time.Microsecond))
	return nil
}

// memory: a writer makes changes at a steady rate while ferry streams them
// to the sink; ferry's RSS and the slot's lag are sampled.
func (b *bench) memory() error {
	ctx := context.Background()
	u, drop, err := b.database(ctx)
	if err != nil {
		return err
	}
	defer drop()
	sink := changetest.New()
	sink.CountOnly = true
	defer sink.Close()
	dir, err := b.pipeline(fmt.Sprintf("{type: http, url: %s, concurrency: %d, batch: {size: %d, wait: 5ms}}", sink.URL, *lanes, *batch))
	if err != nil {
		return err
	}
	f, err := b.start(dir, "BENCH_PG_URL="+u)
	if err != nil {
		return err
	}
	if err := slotActive(ctx, u, 30*time.Second); err != nil {
		f.stop()
		return err
	}
	var genErr error
	genDone := make(chan struct{})
	go func() {
		defer close(genDone)
		per := *memRate / 10 // a transaction every 100 ms
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for done := 0; done < *memN; done += per {
			<-tick.C
			if genErr = insert(ctx, u, done+1, min(per, *memN-done), per); genErr != nil {
				return
			}
		}
	}()
	mon, err := pgx.Connect(ctx, u)
	if err != nil {
		return err
	}
	defer mon.Close(ctx)
	type sample struct {
		at         time.Duration
		delivered  int64
		rssMB, lag float64
	}
	var samples []sample
	start := time.Now()
	tick := time.NewTicker(5 * time.Second)
	for sink.Accepted() < int64(*memN) {
		<-tick.C
		var lag int64
		mon.QueryRow(ctx, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint FROM pg_replication_slots WHERE slot_name = 'ferry_bench_bench'").Scan(&lag)
		samples = append(samples, sample{time.Since(start), sink.Accepted(), rssMB(f.cmd.Process.Pid), float64(lag) / (1 << 20)})
		if genErr != nil {
			break
		}
		if s := samples[len(samples)-1]; len(samples) > 12 && s.delivered == samples[len(samples)-13].delivered {
			f.stop()
			return fmt.Errorf("memory run stalled at %d changes:\n%s", s.delivered, f.out.String())
		}
	}
	tick.Stop()
	<-genDone
	cpu := f.stop()
	if genErr != nil {
		return genErr
	}
	fmt.Printf("memory: %d changes at %d/s in %s, ferry CPU %.2f µs/change; samples every 5 s:\n", *memN, *memRate, time.Since(start).Round(time.Second), float64(cpu.Microseconds())/float64(*memN))
	fmt.Println("  elapsed  delivered   ferry RSS   slot lag")
	var maxRSS, maxLag float64
	for i, s := range samples {
		maxRSS, maxLag = max(maxRSS, s.rssMB), max(maxLag, s.lag)
		if i%6 == 0 || i == len(samples)-1 {
			fmt.Printf("  %7s %10d %8.1f MB %7.1f MB\n", s.at.Round(time.Second), s.delivered, s.rssMB, s.lag)
		}
	}
	q := len(samples) / 4
	if q > 0 {
		first, lastQ := avg(samples[q:2*q], func(s sample) float64 { return s.rssMB }), avg(samples[len(samples)-q:], func(s sample) float64 { return s.rssMB })
		fmt.Printf("  RSS: max %.1f MB; second quarter average %.1f MB, last quarter %.1f MB; slot lag max %.1f MB\n", maxRSS, first, lastQ, maxLag)
	}
	return nil
}

func avg[T any](xs []T, f func(T) float64) float64 {
	var s float64
	for _, x := range xs {
		s += f(x)
	}
	return s / float64(len(xs))
}

// rssMB reads a process's resident set size.
func rssMB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "processor\t:")
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "model name\t: "); ok {
			return v
		}
	}
	return "unknown CPU"
}
