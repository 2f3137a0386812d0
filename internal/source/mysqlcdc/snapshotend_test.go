package mysqlcdc_test

import (
	"bytes"
	"encoding/json"
	"fmt"
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

// TestStreamingWaitsForSnapshotEnd: no change from the binlog is
// delivered before the state saying the snapshot is complete is on file
// (8339857). Changes are made while the snapshot is being delivered (the
// endpoint holds its first request until they are committed), the state
// is saved at most every 400 ms, and the endpoint reads ferry state show
// when the first streamed change reaches it: the stream's position must
// already be past the snapshot. The run is interrupted right there; the
// rerun takes no second snapshot and sends no change twice.
func TestStreamingWaitsForSnapshotEnd(t *testing.T) {
	u, d := db(t)
	exec(t, d, "CREATE TABLE items (id BIGINT PRIMARY KEY, name VARCHAR(50))")
	for i := 1; i <= 300; i += 100 {
		var vals []string
		for j := i; j < i+100; j++ {
			vals = append(vals, fmt.Sprintf("(%d, 'item %d')", j, j))
		}
		exec(t, d, "INSERT INTO items VALUES "+strings.Join(vals, ","))
	}
	sink := changetest.New()
	defer sink.Close()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "connector.yaml"), []byte("name: shop\ntype: mysql_cdc\nconfig: {url: {secret: true}}\nurl: \"{{ config.url }}\"\nmax_wait: 5ms\nstreams:\n  items: {table: items, primary_key: id}\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "pipeline.yaml"), []byte("connector: connector.yaml\nconfig: {url: \"${SRC_URL}\"}\ndestination: {type: http, url: "+sink.URL+", batch: {size: 100}}\nstate: {type: sqlite, path: state.db}\nsync: {checkpoint_interval: 400ms}\n"), 0o644)
	t.Setenv("SRC_URL", u)

	changed := make(chan struct{})
	var (
		mu         sync.Mutex
		atFirst    string
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
					var out, errb bytes.Buffer
					cli.Main([]string{"state", "show", filepath.Join(dir, "pipeline.yaml")}, &out, &errb)
					mu.Lock()
					atFirst = out.String() + errb.String()
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
	// The snapshot's binlog position is taken: these are streamed changes.
	exec(t, d, "UPDATE items SET name = 'changed' WHERE id = 1")
	exec(t, d, "INSERT INTO items VALUES (301, 'new')")
	close(changed)
	select {
	case <-sawStream:
	case <-time.After(30 * time.Second):
		p.stop(t)
		t.Fatalf("no streamed change arrived (%d changes)", sink.Accepted())
	}
	p.stop(t)
	mu.Lock()
	state := atFirst
	mu.Unlock()
	if !strings.Contains(state, `"phase":"stream"`) {
		t.Fatalf("a streamed change was delivered before the end of the snapshot was saved; ferry state show said then:\n%s", state)
	}

	exec(t, d, "UPDATE items SET name = 'again' WHERE id = 2")
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
