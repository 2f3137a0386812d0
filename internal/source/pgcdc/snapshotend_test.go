package pgcdc_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/change/changetest"
	"github.com/ferry-dev/ferry/internal/cli"
)

// stateShow returns what ferry state show prints.
func stateShow(t *testing.T, dir string) string {
	var out, errb bytes.Buffer
	if code := cli.Main([]string{"state", "show", filepath.Join(dir, "pipeline.yaml")}, &out, &errb); code != 0 {
		return "exit error: " + errb.String()
	}
	return out.String()
}

// TestStreamingWaitsForSnapshotEnd: no streamed change is delivered
// before the state saying the snapshot is complete is on file. Changes
// are made while the snapshot is being delivered (the endpoint holds its
// first request until they are committed), the state is saved at most
// every 400 ms, and the endpoint reads ferry state show when the first
// streamed change reaches it: the stream's position must already be past
// the snapshot. The run is then interrupted right there, and the rerun
// takes no second snapshot and sends no change twice.
func TestStreamingWaitsForSnapshotEnd(t *testing.T) {
	url, exec := db(t)
	exec("CREATE TABLE items (id bigint PRIMARY KEY, name text)")
	exec("INSERT INTO items SELECT i, 'item ' || i FROM generate_series(1, 300) i")
	sink := changetest.New()
	defer sink.Close()
	dir := writePipeline(t, url, "{type: http, url: "+sink.URL+", batch: {size: 100, path: /changes}}\nstate: {type: sqlite, path: state.db}")
	pl := filepath.Join(dir, "pipeline.yaml")
	raw, _ := os.ReadFile(pl)
	os.WriteFile(pl, bytes.Replace(raw, []byte("checkpoint_interval: 20ms"), []byte("checkpoint_interval: 400ms"), 1), 0o644)

	changed := make(chan struct{})
	var (
		mu         sync.Mutex
		atFirst    string // ferry state show when the first streamed change arrived
		sawStream  = make(chan struct{})
		streamOnce sync.Once
	)
	fail := func(r *http.Request, body []byte, n int64) int {
		if n == 1 {
			select { // hold the snapshot's first page until the changes are made
			case <-changed:
			case <-time.After(30 * time.Second):
			}
		}
		var items []struct {
			Op string `json:"op"`
		}
		json.Unmarshal(body, &items)
		for _, it := range items {
			if it.Op != "upsert" { // not a snapshot row
				streamOnce.Do(func() {
					mu.Lock()
					atFirst = stateShow(t, dir)
					mu.Unlock()
					close(sawStream)
				})
			}
		}
		return 0
	}
	sink.Fail.Store(&fail)
	p := start(t, dir)
	if !sink.WaitFor(30*time.Second, func() bool { return sink.Requests() >= 1 }) {
		p.stop(t)
		t.Fatal("the snapshot did not start")
	}
	// The slot exists (the snapshot is being read from it): these changes
	// come after its consistent point, as streamed changes.
	exec("UPDATE items SET name = 'changed' WHERE id = 1")
	exec("INSERT INTO items VALUES (301, 'new')")
	close(changed)
	select {
	case <-sawStream:
	case <-time.After(30 * time.Second):
		p.stop(t)
		t.Fatalf("no streamed change arrived (%d changes)", sink.Accepted())
	}
	p.stop(t) // interrupted right after the snapshot and its first changes
	mu.Lock()
	state := atFirst
	mu.Unlock()
	if !strings.Contains(state, `"phase":"stream"`) {
		t.Fatalf("a streamed change was delivered before the end of the snapshot was saved; ferry state show said then:\n%s", state)
	}
	if sink.Accepted() < 301 {
		t.Fatalf("%d changes arrived before the interruption", sink.Accepted())
	}

	// The rerun goes on streaming: no second snapshot, nothing twice.
	exec("UPDATE items SET name = 'again' WHERE id = 2")
	p = start(t, dir)
	if !sink.WaitFor(30*time.Second, func() bool { return len(sink.Changes()) >= 303 }) {
		p.stop(t)
		t.Fatalf("%d changes, want 303", len(sink.Changes()))
	}
	p.stop(t)
	ops := map[string]int{}
	for _, rc := range sink.Changes() {
		var it struct {
			Op string `json:"op"`
		}
		json.Unmarshal(rc.Body, &it)
		ops[it.Op]++
	}
	if ops["upsert"] != 300 || ops["update"] != 2 || ops["insert"] != 1 || len(sink.Changes()) != 303 {
		t.Fatalf("ops %v (%d changes): want one snapshot of 300 rows, 2 updates and 1 insert", ops, len(sink.Changes()))
	}
}
