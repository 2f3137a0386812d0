package httpdest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/change"
	"github.com/ferry-dev/ferry/internal/change/changetest"
	_ "github.com/ferry-dev/ferry/internal/components/all"
	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/dest/httpdest"
	"github.com/ferry-dev/ferry/internal/engine"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/redact"
	"github.com/ferry-dev/ferry/internal/schema"
	"github.com/ferry-dev/ferry/internal/source"
	"github.com/ferry-dev/ferry/internal/spec"
)

// ev is one scripted change.
type ev struct {
	id   int
	op   record.Op
	name string
}

// changeSource replays a fixed list of changes as typed pages of per
// changes each, resuming from the saved position (the index of the next
// change): a stand-in for a CDC source.
type changeSource struct {
	events []ev
	per    int
	mu     sync.Mutex
	reads  int
}

func (s *changeSource) Streams() []source.Stream {
	return []source.Stream{{Name: "items", PrimaryKey: []string{"id"}, Unbounded: true}}
}
func (s *changeSource) Close() error { return nil }
func (s *changeSource) Read(ctx context.Context, req source.ReadRequest) error {
	s.mu.Lock()
	s.reads++
	s.mu.Unlock()
	part := &record.Partition{}
	st, err := req.Start(ctx, part)
	if err != nil {
		return err
	}
	next := 0
	if len(st.Resume) > 0 {
		json.Unmarshal(st.Resume, &next)
	}
	cols := []schema.Column{{Name: "id", Type: schema.Int}, {Name: "name", Type: schema.Text}, {Name: change.ColPosition, Type: schema.Text}}
	for n := 1; next < len(s.events); n++ {
		c := record.NewChunk(&schema.Table{Name: "items", Columns: cols}, s.per)
		for ; next < len(s.events) && c.Len < s.per; next++ {
			e := s.events[next]
			c.Cols[0].AppendInt(int64(e.id), nil)
			if e.op == record.Delete {
				c.Cols[1].AppendNull(schema.Text)
			} else {
				c.Cols[1].AppendBytes([]byte(e.name))
			}
			c.Cols[2].AppendBytes([]byte(fmt.Sprintf("0/%08X", next)))
			c.Ops = append(c.Ops, e.op)
			c.Len++
		}
		pos, _ := json.Marshal(next)
		if err := req.Emit(ctx, &record.Page{Stream: "items", Partition: part, Chunk: c, Position: pos, Last: next == len(s.events), Number: n, Request: "script"}); err != nil {
			return err
		}
	}
	return nil
}

// script makes n changes over keys 1..keys: inserts, then updates, some
// deletes.
func script(n, keys int) []ev {
	var out []ev
	for i := 0; i < n; i++ {
		id := i%keys + 1
		op := record.Update
		switch {
		case i < keys:
			op = record.Insert
		case i%7 == 0:
			op = record.Delete
		}
		out = append(out, ev{id: id, op: op, name: fmt.Sprintf("v%d", i)})
	}
	return out
}

const connector = "name: fake\nbase_url: http://unused.invalid\nstreams:\n  items: {path: /items, primary_key: id}\n"

type env struct {
	dir  string
	sink *changetest.Sink
}

func newEnv(t *testing.T, destYAML string) *env {
	t.Helper()
	sink := changetest.New()
	t.Cleanup(sink.Close)
	dir := t.TempDir()
	pipe := fmt.Sprintf("connector: connector.yaml\ndestination: %s\nstate: {type: sqlite, path: state.db}\nsync: {checkpoint_rows: 20, checkpoint_interval: 50ms}\n", strings.ReplaceAll(destYAML, "SINK", sink.URL))
	os.WriteFile(filepath.Join(dir, "connector.yaml"), []byte(connector), 0o644)
	os.WriteFile(filepath.Join(dir, "pipeline.yaml"), []byte(pipe), 0o644)
	return &env{dir: dir, sink: sink}
}

func (e *env) run(t *testing.T, src source.Source) (*engine.Summary, error) {
	t.Helper()
	p, err := spec.LoadPipeline(filepath.Join(e.dir, "pipeline.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := p.Resolve(engine.Env)
	if err != nil {
		t.Fatal(err)
	}
	run, err := engine.New(context.Background(), engine.Options{Pipeline: p, Resolved: r, Source: src, RetryFor: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer run.Close()
	return run.Execute(context.Background())
}

// inOrder checks that each key's changes arrived in the order the source
// made them, each at least once, and returns how many arrived twice.
func inOrder(t *testing.T, sink *changetest.Sink, events []ev) (dups int) {
	t.Helper()
	want := map[string][]string{}
	for _, e := range events {
		k := fmt.Sprint(e.id)
		want[k] = append(want[k], e.op.String()+":"+e.name)
	}
	for k, got := range sink.ByKey() {
		var seq []string
		seen := map[string]bool{}
		for _, rc := range got {
			var body struct {
				Name string `json:"name"`
			}
			json.Unmarshal(rc.Body, &body)
			op := map[string]string{"POST": "insert", "PATCH": "update", "DELETE": "delete"}[rc.Method]
			name := body.Name
			if op == "delete" {
				name = ""
			}
			s := op + ":" + name
			if seen[rc.IdempotencyKey] {
				dups++
				continue
			}
			seen[rc.IdempotencyKey] = true
			seq = append(seq, s)
		}
		key := strings.TrimPrefix(k, "/items/")
		var w []string
		for _, s := range want[key] {
			if strings.HasPrefix(s, "delete:") {
				s = "delete:"
			}
			w = append(w, s)
		}
		if strings.Join(seq, ",") != strings.Join(w, ",") {
			t.Errorf("key %s: got %v, want %v", key, seq, w)
		}
	}
	return dups
}

// TestPerChange: one request per change, its method and path by
// operation, each key's changes in order, an idempotency key per change.
func TestPerChange(t *testing.T) {
	e := newEnv(t, "{type: http, url: SINK, concurrency: 4}")
	events := script(300, 17)
	var mu sync.Mutex
	paths := map[string]int{}
	e.sink.SetFail(func(r *http.Request, _ []byte, _ int64) int {
		mu.Lock()
		paths[r.Method+" "+strings.SplitN(strings.TrimPrefix(r.URL.Path, "/"), "/", 2)[0]]++
		mu.Unlock()
		return 0
	})
	sum, err := e.run(t, &changeSource{events: events, per: 25})
	if err != nil {
		t.Fatal(err)
	}
	if got := sum.Streams[0].Records; got != 300 {
		t.Fatalf("records = %d, want 300", got)
	}
	if dups := inOrder(t, e.sink, events); dups != 0 {
		t.Fatalf("%d duplicates without any failure", dups)
	}
	if e.sink.Requests() != 300 {
		t.Fatalf("requests = %d, want one per change", e.sink.Requests())
	}
	if paths["POST items"] != 17 || paths["DELETE items"] == 0 || paths["PATCH items"] == 0 {
		t.Fatalf("requests by method: %v", paths)
	}
}

// TestEndpointFailsThenRecovers: 5xx and timeouts are retried; when the
// endpoint stays down past every attempt, the stream starts over from its
// last commit and re-delivers with the same idempotency keys: every change
// arrives, in order per key, and the duplicates are only re-deliveries.
func TestEndpointFailsThenRecovers(t *testing.T) {
	e := newEnv(t, "{type: http, url: SINK, concurrency: 3, max_attempts: 2, max_backoff: 20ms, timeout: 200ms}")
	events := script(200, 11)
	var down sync.Mutex
	seen := map[string]int{}
	e.sink.SetFail(func(r *http.Request, body []byte, n int64) int {
		down.Lock()
		defer down.Unlock()
		k := r.Method + r.URL.Path + string(body)
		seen[k]++
		switch {
		case n > 80 && n <= 90:
			return 502 // down for longer than two attempts: the commit fails
		case seen[k] == 1 && n%5 == 0:
			return 503
		case seen[k] == 1 && n%7 == 0:
			down.Unlock()
			time.Sleep(300 * time.Millisecond) // past the attempt timeout
			down.Lock()
			return 0
		}
		return 0
	})
	src := &changeSource{events: events, per: 10}
	sum, err := e.run(t, src)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Streams[0].Status != dest.Succeeded {
		t.Fatalf("status %s", sum.Streams[0].Status)
	}
	dups := inOrder(t, e.sink, events)
	if src.reads < 2 {
		t.Fatalf("the stream never restarted from its last commit (reads %d)", src.reads)
	}
	ids := map[string]bool{}
	for _, rc := range e.sink.Changes() {
		ids[rc.IdempotencyKey] = true
	}
	if len(ids) != 200 {
		t.Fatalf("%d distinct changes arrived, want 200", len(ids))
	}
	t.Logf("%d requests, %d changes accepted, %d re-deliveries, %d reads", e.sink.Requests(), e.sink.Accepted(), dups, src.reads)
}

// TestDeadLetterAndReplay: a change the API refuses for good (422) goes
// to the dead-letter table with its request and the response; the others
// are delivered; after a fix, replaying it delivers it once and marks it.
func TestDeadLetterAndReplay(t *testing.T) {
	e := newEnv(t, "{type: http, url: SINK, dead_letter: \"sqlite:dlq.db\"}")
	events := script(40, 40)
	events[7].name = "bad"
	refuse := true
	var mu sync.Mutex
	e.sink.SetFail(func(r *http.Request, body []byte, _ int64) int {
		mu.Lock()
		defer mu.Unlock()
		if refuse && strings.Contains(string(body), `"bad"`) {
			return 422
		}
		return 0
	})
	sum, err := e.run(t, &changeSource{events: events, per: 8})
	if err != nil {
		t.Fatal(err)
	}
	st := sum.Streams[0]
	if st.Rejected != 1 || st.Records != 39 || st.Status != dest.Partial {
		t.Fatalf("summary: records %d rejected %d status %s", st.Records, st.Rejected, st.Status)
	}
	letters, err := httpdest.OpenLetters(context.Background(), "sqlite:"+filepath.Join(e.dir, "dlq.db"), "", false)
	if err != nil {
		t.Fatal(err)
	}
	defer letters.Close()
	list, err := letters.List(context.Background(), "fake", "", false)
	if err != nil || len(list) != 1 {
		t.Fatalf("letters = %+v, %v", list, err)
	}
	x := list[0]
	if x.Status != 422 || x.Method != "POST" || !strings.Contains(x.Body, `"bad"`) || !strings.Contains(x.Response, "refused by the test sink") || x.Key != `{"id":8}` || x.Position == "" {
		t.Fatalf("letter = %+v", x)
	}
	// The endpoint is fixed; the replay delivers the letter.
	mu.Lock()
	refuse = false
	mu.Unlock()
	d, err := dest.Open(context.Background(), "http", &httpdest.Config{URL: e.sink.URL, DeadLetter: "sqlite:" + filepath.Join(e.dir, "dlq.db")}, dest.Options{Redactor: redact.New()})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	status, err := d.(*httpdest.Destination).Replay(context.Background(), x)
	if err != nil || status != 200 {
		t.Fatalf("replay: %d, %v", status, err)
	}
	letters.Replayed(context.Background(), x.ID)
	if list, _ := letters.List(context.Background(), "fake", "", false); len(list) != 0 {
		t.Fatalf("pending letters after the replay: %d", len(list))
	}
	got := 0
	for _, rc := range e.sink.Changes() {
		if strings.Contains(string(rc.Body), `"bad"`) {
			got++
			if rc.IdempotencyKey != x.IdempotencyKey {
				t.Fatalf("the replay changed the idempotency key")
			}
		}
	}
	if got != 1 {
		t.Fatalf("the refused change arrived %d times", got)
	}
}

// TestBatches: changes go as JSON arrays of at most batch.size items,
// each with its op, key and idempotency key; order per key holds.
func TestBatches(t *testing.T) {
	e := newEnv(t, "{type: http, url: SINK, concurrency: 2, batch: {size: 16, path: /bulk}}")
	events := script(500, 23)
	sum, err := e.run(t, &changeSource{events: events, per: 50})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Streams[0].Records != 500 {
		t.Fatalf("records = %d", sum.Streams[0].Records)
	}
	if r := e.sink.Requests(); r > 500/8 || r < 500/16 {
		t.Fatalf("%d requests for 500 changes in batches of 16", r)
	}
	last := map[string]int{}
	for _, rc := range e.sink.Changes() {
		var it struct {
			Op   string          `json:"op"`
			Key  map[string]int  `json:"key"`
			IK   string          `json:"idempotency_key"`
			Data json.RawMessage `json:"data"`
			Pos  string          `json:"position"`
		}
		if err := json.Unmarshal(rc.Body, &it); err != nil || it.IK == "" || it.Pos == "" || rc.Path != "/bulk" {
			t.Fatalf("item %s: %v", rc.Body, err)
		}
		k := fmt.Sprint(it.Key["id"])
		var i int
		fmt.Sscanf(it.Pos, "0/%X", &i)
		if i <= last[k] && last[k] != 0 {
			t.Fatalf("key %s: change %d after %d", k, i, last[k])
		}
		last[k] = i
		if (it.Op == "delete") != (string(it.Data) == "null") {
			t.Fatalf("item %s", rc.Body)
		}
	}
}

// TestTemplatesAndRunRecord: paths, bodies and headers are templates over
// the change; the run is recorded in the state database.
func TestTemplatesAndRunRecord(t *testing.T) {
	e := newEnv(t, `{type: http, url: SINK, headers: {X-Op: "{{ op }}"}, create: {path: "/v1/things", body: {external_id: "{{ row.id }}", title: "{{ upper(row.name) }}"}}, update: {method: PUT, path: "/v1/things/{{ key.id }}"}}`)
	events := []ev{{1, record.Insert, "a"}, {1, record.Update, "b"}}
	var mu sync.Mutex
	var hdrs []string
	e.sink.SetFail(func(r *http.Request, _ []byte, _ int64) int {
		mu.Lock()
		hdrs = append(hdrs, r.Method+" "+r.URL.Path+" "+r.Header.Get("X-Op"))
		mu.Unlock()
		return 0
	})
	if _, err := e.run(t, &changeSource{events: events, per: 1}); err != nil {
		t.Fatal(err)
	}
	ch := e.sink.Changes()
	if len(ch) != 2 || string(ch[0].Body) != `{"external_id":1,"title":"A"}` || string(ch[1].Body) != `{"id":1,"name":"b"}` {
		t.Fatalf("bodies: %s", ch)
	}
	if strings.Join(hdrs, ";") != "POST /v1/things insert;PUT /v1/things/1 update" {
		t.Fatalf("requests: %v", hdrs)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "state.db")); err != nil {
		t.Fatal(err)
	}
}

// TestNeedsState: a pipeline writing to an API without a state: section
// is refused when it is checked, at the destination's line, before any
// run.
func TestNeedsState(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "connector.yaml"), []byte(connector), 0o644)
	for _, d := range []string{"{type: http, url: http://127.0.0.1:1}", "{type: nats}"} {
		pipe := filepath.Join(dir, "pipeline.yaml")
		os.WriteFile(pipe, []byte("connector: connector.yaml\ndestination: "+d+"\n"), 0o644)
		_, err := spec.LoadPipeline(pipe)
		if err == nil || !strings.Contains(err.Error(), "keeps no sync state: add a state: section") || !strings.Contains(err.Error(), "pipeline.yaml:2:") {
			t.Errorf("%s without state: err = %v", d, err)
		}
	}
}
