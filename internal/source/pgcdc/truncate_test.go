package pgcdc_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/change/changetest"
)

// setConnector rewrites the pipeline's connector with on_truncate set
// ("": left out).
func setConnector(t *testing.T, dir, onTruncate string) {
	t.Helper()
	c := connector
	if onTruncate != "" {
		c = strings.Replace(c, "max_wait: 5ms\n", "max_wait: 5ms\non_truncate: "+onTruncate+"\n", 1)
	}
	if err := os.WriteFile(filepath.Join(dir, "connector.yaml"), []byte(c), 0o644); err != nil {
		t.Fatal(err)
	}
}

// wait returns the run's error once it ends by itself.
func (p *pipe) wait(t *testing.T, onTruncate string) error {
	t.Helper()
	select {
	case err := <-p.done:
		return err
	case <-time.After(30 * time.Second):
		p.cancel()
		t.Fatalf("on_truncate %q: the run did not stop at the truncate", onTruncate)
		return nil
	}
}

// TestTruncate: a TRUNCATE of a captured table, as docs/changes.md says:
// by default (on_truncate: fail) the stream stops there with a message
// that names the table and the fix, after delivering every change before
// it (in its own transaction too), and a rerun stops there again
// without sending anything twice (the saved position does not count the
// TRUNCATE as delivered); with on_truncate: skip the run
// goes past it, sends nothing for it (the destination keeps its rows)
// and delivers the changes after it.
func TestTruncate(t *testing.T) {
	url, exec := db(t)
	exec("CREATE TABLE items (id bigint PRIMARY KEY, name text)")
	exec("INSERT INTO items SELECT i, 'item ' || i FROM generate_series(1, 10) i")
	sink := changetest.New()
	defer sink.Close()
	dir := writePipeline(t, url, "{type: http, url: "+sink.URL+", batch: {size: 50, path: /changes}}\nstate: {type: sqlite, path: state.db}")
	for _, onTruncate := range []string{"", "fail"} {
		setConnector(t, dir, onTruncate)
		p := start(t, dir)
		if onTruncate == "" {
			if !sink.WaitFor(30*time.Second, func() bool { return sink.Accepted() >= 10 }) {
				p.stop(t)
				t.Fatalf("snapshot: %d changes arrived, want 10", sink.Accepted())
			}
			// The truncate follows a change of its own transaction, still
			// in the page being filled when the truncate is read.
			exec("BEGIN; INSERT INTO items VALUES (11, 'before the truncate'); TRUNCATE items; COMMIT")
			exec("INSERT INTO items VALUES (12, 'after the truncate')")
		}
		err := p.wait(t, onTruncate)
		if err == nil || !strings.Contains(err.Error(), "table public.items was truncated") || !strings.Contains(err.Error(), "on_truncate: skip") {
			t.Fatalf("on_truncate %q: the run ended with %v, want the truncate named", onTruncate, err)
		}
		if got := sink.Accepted(); got != 11 {
			t.Fatalf("on_truncate %q: %d changes arrived, want the 10 of the snapshot and the insert before the truncate", onTruncate, got)
		}
	}
	setConnector(t, dir, "skip")
	p := start(t, dir)
	if !sink.WaitFor(30*time.Second, func() bool { return sink.Accepted() >= 12 }) {
		p.stop(t)
		t.Fatalf("on_truncate: skip: %d changes arrived, want the insert after the truncate too", sink.Accepted())
	}
	exec("INSERT INTO items VALUES (13, 'later')")
	if !sink.WaitFor(30*time.Second, func() bool { return sink.Accepted() >= 13 }) {
		p.stop(t)
		t.Fatal("a change after the skipped truncate did not arrive")
	}
	p.stop(t)
	var ops []string
	for _, rc := range sink.Changes() {
		var it struct {
			Op  string         `json:"op"`
			Key map[string]any `json:"key"`
		}
		if err := json.Unmarshal(rc.Body, &it); err != nil {
			t.Fatal(err)
		}
		if it.Op == "delete" {
			t.Errorf("a delete was sent for key %v: a skipped truncate sends nothing", it.Key)
		}
		ops = append(ops, it.Op)
	}
	if len(ops) != 13 || sink.Accepted() != 13 {
		t.Fatalf("%d changes (%v), want 13", len(ops), ops)
	}
}
