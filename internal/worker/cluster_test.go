package worker_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferry-dev/ferry/internal/dest/dbtest"
	"github.com/ferry-dev/ferry/internal/worker"
)

// ferryBin is the ferry command, built once for the test binary.
var ferryBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ferry-worker-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ferryBin = filepath.Join(dir, "ferry")
	build := exec.Command("go", "build", "-o", ferryBin, "github.com/ferry-dev/ferry/cmd/ferry")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build ferry:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// natsURL returns the shared JetStream server, or skips (fails in CI).
func natsURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv("FERRY_TEST_NATS_URL")
	if u == "" {
		u = "nats://127.0.0.1:4222"
	}
	host := strings.TrimPrefix(u, "nats://")
	c, err := net.DialTimeout("tcp", host, 2*time.Second)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the NATS test server is unreachable (FERRY_TEST_NATS_URL): %v", err)
		}
		t.Skipf("the NATS test server is unreachable, skipping (set FERRY_TEST_NATS_URL): %v", err)
	}
	c.Close()
	return u
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// fanoutAPI serves users (one page) and each user's notes, paginated by
// 3: user i has i%7+1 notes. Hooks make it slow, fail or block.
type fanoutAPI struct {
	*httptest.Server
	users int
	// delay is how long each response waits (nanoseconds).
	delay atomic.Int64
	// fail, when set, makes the notes of a user answer 500.
	fail atomic.Pointer[func(user int) bool]
	// block, when set, is called with each notes request (user, page)
	// before it is answered.
	block    atomic.Pointer[func(user, page int)]
	requests atomic.Int64
}

func newFanoutAPI(t *testing.T, users int) *fanoutAPI {
	a := &fanoutAPI{users: users}
	a.Server = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.Close)
	return a
}

func notesOf(user int) int { return user%7 + 1 }

// want returns the ids of every note.
func (a *fanoutAPI) want() []string {
	var out []string
	for u := 1; u <= a.users; u++ {
		for j := range notesOf(u) {
			out = append(out, fmt.Sprintf("%d-%d", u, j))
		}
	}
	slices.Sort(out)
	return out
}

func (a *fanoutAPI) serve(w http.ResponseWriter, r *http.Request) {
	a.requests.Add(1)
	if d := a.delay.Load(); d > 0 {
		time.Sleep(time.Duration(d))
	}
	page, _ := strconv.Atoi(r.URL.Query().Get("page"))
	page = max(page, 1)
	size, _ := strconv.Atoi(r.URL.Query().Get("per_page"))
	if size <= 0 {
		size = 3
	}
	var recs []map[string]any
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case len(parts) == 1 && parts[0] == "users":
		for u := 1; u <= a.users; u++ {
			recs = append(recs, map[string]any{"id": u, "name": fmt.Sprintf("user %d", u)})
		}
	case len(parts) == 3 && parts[0] == "users" && parts[2] == "notes":
		u, _ := strconv.Atoi(parts[1])
		if f := a.fail.Load(); f != nil && (*f)(u) {
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(`{"error":"notes are down"}`))
			return
		}
		if b := a.block.Load(); b != nil {
			(*b)(u, page)
		}
		for j := range notesOf(u) {
			recs = append(recs, map[string]any{"id": fmt.Sprintf("%d-%d", u, j), "user_id": u, "text": strings.Repeat("x", j+1), "updated_at": fmt.Sprintf("2024-03-01T00:00:%02dZ", j)})
		}
	default:
		http.NotFound(w, r)
		return
	}
	lo := min((page-1)*size, len(recs))
	hi := min(lo+size, len(recs))
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"data": recs[lo:hi]})
}

const fanoutConnector = `name: fanout
base_url: %s
http: {initial_backoff: 10ms, max_backoff: 50ms, max_attempts: 2}
streams:
  users:
    path: /users
    records: data
    primary_key: id
    paginate: {type: page_number, size: 500, size_param: per_page, stop_on_short_page: true}
  notes:
    parent: {stream: users, concurrency: 2}
    path: /users/{{ parent.id }}/notes
    records: data
    primary_key: id
    cursor: updated_at
    paginate: {type: page_number, size: 3, size_param: per_page, stop_on_short_page: true}
`

const fanoutPipeline = `connector: connector.yaml
destination: {type: postgres, url: %q, schema: %s}
sync: {checkpoint_rows: %d, checkpoint_interval: 100ms}
streams:
  users: {mode: full_refresh_overwrite}
  notes: {mode: incremental_dedup}
`

// cluster is one test's NATS queue, coordination schema, destination
// schema and worker processes.
type cluster struct {
	t        *testing.T
	nats     string
	pg       string // server URL
	schema   string // the destination's and the coordination's schema
	state    string // coordination URL (search_path = schema)
	queue    string
	pipeline string
	api      *fanoutAPI

	mu      sync.Mutex
	workers map[string]*proc
}

func newCluster(t *testing.T, nats string, users, checkpointRows int) *cluster {
	t.Helper()
	u, schema := dbtest.Postgres(t)
	if err := dbtest.PostgresExec(u, `CREATE SCHEMA "`+schema+`"`); err != nil {
		t.Fatal(err)
	}
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	c := &cluster{t: t, nats: nats, pg: u, schema: schema, state: u + sep + "search_path=" + schema, queue: "FERRY_T_" + strings.ToUpper(randomHex(6)), workers: map[string]*proc{}}
	c.api = newFanoutAPI(t, users)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "connector.yaml"), fmt.Appendf(nil, fanoutConnector, c.api.URL), 0o644); err != nil {
		t.Fatal(err)
	}
	c.pipeline = filepath.Join(dir, "pipeline.yaml")
	if err := os.WriteFile(c.pipeline, fmt.Appendf(nil, fanoutPipeline, u, schema, checkpointRows), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.deleteStreams)
	return c
}

// deleteStreams removes the test's JetStream streams from the shared
// server.
func (c *cluster) deleteStreams() {
	nc, err := nats.Connect(c.nats)
	if err != nil {
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range []string{c.queue, c.queue + "_DEAD"} {
		_ = js.DeleteStream(ctx, s)
	}
}

// proc is a ferry process whose output the test reads.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// queueArgs are the flags every command of the cluster takes.
func (c *cluster) queueArgs(nats string) []string {
	return []string{"--nats", nats, "--state", c.state, "--queue", c.queue, "--ack-wait", "2s", "--max-deliver", "4"}
}

// startWorker starts `ferry worker` (against nats, default the cluster's).
func (c *cluster) startWorker(name string, nats ...string) *proc {
	c.t.Helper()
	n := c.nats
	if len(nats) > 0 {
		n = nats[0]
	}
	args := append([]string{"worker", "--id", name, "--lease", "1500ms", "--heartbeat", "200ms", "--log-level", "info"}, c.queueArgs(n)...)
	p := &proc{name: name, cmd: exec.Command(ferryBin, args...), out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	c.mu.Lock()
	c.workers[name] = p
	c.mu.Unlock()
	c.t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGCONT)
		_ = p.cmd.Process.Kill()
		<-p.done
		if c.t.Failed() {
			c.t.Logf("worker %s:\n%s", name, p.out.String())
		}
	})
	return p
}

// ferry runs a ferry command to its end and returns its output and exit
// code.
func (c *cluster) ferry(args ...string) (string, int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ferryBin, args...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatalf("ferry %s: %v", strings.Join(args, " "), err)
	}
	return string(out), code
}

// enqueue enqueues the pipeline and returns the run id.
func (c *cluster) enqueue(extra ...string) string {
	c.t.Helper()
	args := append(append([]string{"enqueue", c.pipeline, "--json"}, c.queueArgs(c.nats)...), extra...)
	out, code := c.ferry(args...)
	if code != 0 {
		c.t.Fatalf("ferry enqueue: exit %d\n%s", code, out)
	}
	var e worker.Enqueued
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &e); err != nil {
		c.t.Fatalf("ferry enqueue printed %q: %v", out, err)
	}
	return e.Run
}

// coord opens the coordination database for the test.
func (c *cluster) coord() *worker.Coord {
	c.t.Helper()
	co, err := worker.OpenCoord(context.Background(), c.state)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(co.Close)
	return co
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(50 * time.Millisecond) // polling interval, not synchronisation
	}
}

// waitRun waits until every item of run succeeded.
func (c *cluster) waitRun(co *worker.Coord, run string, within time.Duration) worker.RunStatus {
	c.t.Helper()
	var st worker.RunStatus
	waitFor(c.t, within, "run "+run+" to complete", func() bool {
		var err error
		st, err = co.Run(context.Background(), run)
		if err != nil {
			c.t.Fatal(err)
		}
		return st.Done()
	})
	return st
}

// noteIDs reads the ids in the notes table, sorted, and their count
// (duplicates would show as count > len(distinct)).
func (c *cluster) noteIDs() []string {
	c.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.pg)
	if err != nil {
		c.t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, fmt.Sprintf(`SELECT id FROM "%s".notes ORDER BY id`, c.schema))
	if err != nil {
		c.t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		c.t.Fatal(err)
	}
	slices.Sort(ids)
	return ids
}

// checkExact fails unless the notes table holds every note once.
func (c *cluster) checkExact() {
	c.t.Helper()
	got, want := c.noteIDs(), c.api.want()
	if !slices.Equal(got, want) {
		c.t.Fatalf("notes table has %d rows, want %d exactly (first got %v, want %v)", len(got), len(want), got[:min(5, len(got))], want[:min(5, len(want))])
	}
}

// pgValue runs a one-value query on the destination database.
func (c *cluster) pgValue(query string, args ...any) any {
	c.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.pg)
	if err != nil {
		c.t.Fatal(err)
	}
	defer conn.Close(ctx)
	var v any
	if err := conn.QueryRow(ctx, query, args...).Scan(&v); err != nil {
		c.t.Fatalf("%s: %v", query, err)
	}
	return v
}

// TestThreeWorkersSplitPartitions: three workers run a child stream split
// into slices, and the parent stream, in parallel; the table holds every
// record exactly once, each slice ran once, and ferry workers lists the
// workers.
func TestThreeWorkersSplitPartitions(t *testing.T) {
	c := newCluster(t, natsURL(t), 120, 20)
	co := c.coord()
	for i := range 3 {
		c.startWorker(fmt.Sprintf("w%d", i+1))
	}
	run := c.enqueue("--slices", "6")
	st := c.waitRun(co, run, 60*time.Second)
	if len(st.Items) != 7 {
		t.Fatalf("run has %d items, want 6 slices of notes and users", len(st.Items))
	}
	workersUsed := map[string]bool{}
	for _, it := range st.Items {
		workersUsed[it.Worker] = true
		if it.Attempts != 1 {
			t.Errorf("item %s ran %d times, want once", it.Item, it.Attempts)
		}
	}
	c.checkExact()
	if len(workersUsed) < 2 {
		t.Errorf("the items ran on %v only: no parallelism", workersUsed)
	}
	out, code := c.ferry("workers", "--state", c.state, "--nats", c.nats, "--queue", c.queue)
	if code != 0 {
		t.Fatalf("ferry workers: exit %d: %s", code, out)
	}
	for _, w := range []string{"w1", "w2", "w3"} {
		if !strings.Contains(out, w) {
			t.Errorf("ferry workers does not list %s:\n%s", w, out)
		}
	}
	if !strings.Contains(out, "0 dead-lettered items") {
		t.Errorf("ferry workers:\n%s", out)
	}
}
