package serve_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/ferry-dev/ferry/internal/components/all"
	"github.com/ferry-dev/ferry/internal/metastore"
	"github.com/ferry-dev/ferry/internal/serve"
	"github.com/ferry-dev/ferry/internal/spec"
)

// gatedAPI serves /items in pages of 10 records. While Hold is set, every
// page request waits until it is cleared (or the request ends), so tests
// decide when runs progress.
type gatedAPI struct {
	*httptest.Server
	pages    int
	held     atomic.Bool
	mu       sync.Mutex
	release  chan struct{}
	requests atomic.Int64
	waiting  atomic.Int64
	// bad gives record 3 a field the others lack (a new column).
	bad atomic.Bool
}

func newGatedAPI(t *testing.T, pages int) *gatedAPI {
	g := &gatedAPI{pages: pages, release: make(chan struct{})}
	g.Server = httptest.NewServer(http.HandlerFunc(g.serve))
	t.Cleanup(func() { g.Open(); g.Close() })
	return g
}

// Hold makes page requests wait; Open lets them (and those waiting) go.
func (g *gatedAPI) Hold() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.held.Load() {
		g.release = make(chan struct{})
		g.held.Store(true)
	}
}

func (g *gatedAPI) Open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.held.Load() {
		g.held.Store(false)
		close(g.release)
	}
}

func (g *gatedAPI) serve(w http.ResponseWriter, r *http.Request) {
	g.requests.Add(1)
	g.mu.Lock()
	held, release := g.held.Load(), g.release
	g.mu.Unlock()
	page, _ := strconv.Atoi(r.URL.Query().Get("page"))
	if page < 1 {
		page = 1
	}
	if held && page > 1 { // the first page always comes, so a run has started writing
		g.waiting.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
			g.waiting.Add(-1)
			return
		}
		g.waiting.Add(-1)
	}
	var data []map[string]any
	if page <= g.pages {
		for i := range 10 {
			id := (page-1)*10 + i + 1
			rec := map[string]any{"id": id, "name": fmt.Sprintf("item %d", id), "amount": id * 10}
			if id == 3 && g.bad.Load() {
				rec["color"] = "red"
			}
			data = append(data, rec)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"data": data, "meta": map[string]any{"total_pages": g.pages}})
}

const gatedConnector = `name: gated
base_url: "{{ config.base_url }}"
config:
  base_url:
    description: where the API is
streams:
  items:
    path: /items
    records: data
    primary_key: id
    columns:
      amount: integer
    paginate:
      type: page_number
      size: 10
      size_param: per_page
      total_pages_path: meta.total_pages
`

// writePipeline writes a connector and pipeline for api into dir and
// returns the pipeline file. extra is appended to the pipeline.
func writePipeline(t *testing.T, dir, name string, api *gatedAPI, mode, extra string) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "gated.connector.yaml"), []byte(gatedConnector), 0o644); err != nil {
		t.Fatal(err)
	}
	p := fmt.Sprintf(`name: %s
connector: gated.connector.yaml
config:
  base_url: %s
destination:
  type: sqlite
  path: %s.db
streams:
  items: {mode: %s}
sync:
  checkpoint_rows: 10
  checkpoint_interval: 50ms
%s`, name, api.URL, name, mode, extra)
	path := filepath.Join(dir, name+".pipeline.yaml")
	if err := os.WriteFile(path, []byte(p), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func loadPipeline(t *testing.T, path string) serve.Pipeline {
	t.Helper()
	p, err := spec.LoadPipeline(path)
	if err != nil {
		t.Fatal(err)
	}
	r, err := p.Resolve(func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	return serve.Pipeline{Spec: p, Resolved: r, File: path}
}

// server is a running Server on loopback.
type server struct {
	*serve.Server
	URL    string
	Store  *metastore.Store
	cancel context.CancelFunc
	done   chan error
}

// startServer runs a server over the pipelines until the test ends.
func startServer(t *testing.T, cfg serve.Config) *server {
	t.Helper()
	ctx := context.Background()
	if cfg.Store == nil {
		st, err := metastore.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "meta.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		cfg.Store = st
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 20 * time.Second
	}
	srv, err := serve.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := srv.Listen()
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	s := &server{Server: srv, URL: "http://" + l.Addr().String(), Store: cfg.Store, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- srv.Run(rctx, l) }()
	t.Cleanup(func() { s.stop(t) })
	return s
}

// stop shuts the server down and waits for it.
func (s *server) stop(t *testing.T) {
	t.Helper()
	s.cancel()
	select {
	case err, ok := <-s.done:
		if ok && err != nil {
			t.Errorf("server: %v", err)
		}
		if ok {
			close(s.done)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the server did not stop within 30s")
	}
}

// call makes a request and decodes the JSON answer into out (when not
// nil); it returns the status.
func call(t *testing.T, method, url, token string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	var sent []byte
	if body != nil {
		sent, _ = json.Marshal(body)
		rd = strings.NewReader(string(sent))
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	checkAPI(t, req, sent, resp, raw)
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %d %s: %v", method, url, resp.StatusCode, raw, err)
		}
	}
	return resp.StatusCode
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitRun polls a run until it has ended and returns it.
func waitRun(t *testing.T, base, id string) metastore.Run {
	t.Helper()
	var run metastore.Run
	eventually(t, "run "+id+" to end", 30*time.Second, func() bool {
		run = metastore.Run{}
		call(t, "GET", base+"/v1/runs/"+id, "", nil, &run)
		return run.Ended != nil
	})
	return run
}
