package outbox_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/change/changetest"
	_ "github.com/ferry-dev/ferry/internal/components/all"
	"github.com/ferry-dev/ferry/internal/dest/sqlite"
	"github.com/ferry-dev/ferry/internal/engine"
	"github.com/ferry-dev/ferry/internal/spec"
)

type pipe struct {
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, dir string) *pipe {
	t.Helper()
	p, err := spec.LoadPipeline(filepath.Join(dir, "pipeline.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := p.Resolve(engine.Env)
	if err != nil {
		t.Fatal(err)
	}
	run, err := engine.New(context.Background(), engine.Options{Pipeline: p, Resolved: r})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	pp := &pipe{cancel: cancel, done: make(chan error, 1)}
	go func() {
		_, err := run.Execute(ctx)
		run.Close()
		pp.done <- err
	}()
	return pp
}

func (p *pipe) stop(t *testing.T) {
	t.Helper()
	p.cancel()
	select {
	case err := <-p.done:
		if err != nil && !strings.Contains(err.Error(), "context canceled") {
			t.Fatalf("the run failed: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the run did not stop")
	}
}

// TestOutbox: events of an outbox table reach the endpoint routed by
// aggregate type (to two streams), in id order per aggregate, each with
// its type and payload; delivered rows are deleted (or marked), events
// written later are delivered by the running pipeline, and a restart
// delivers nothing again.
func TestOutbox(t *testing.T) {
	for _, mode := range []string{"delete", "mark"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			db, err := sqlite.OpenDB(filepath.Join(dir, "app.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			must := func(q string, args ...any) {
				t.Helper()
				if _, err := db.Exec(q, args...); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			must("CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, aggregatetype TEXT NOT NULL, aggregateid TEXT NOT NULL, type TEXT NOT NULL, payload TEXT, delivered_at TEXT)")
			event := func(n int) {
				agg := []string{"Order", "Customer", "Invoice"}[n%3]
				must("INSERT INTO outbox (aggregatetype, aggregateid, type, payload) VALUES (?, ?, ?, ?)", agg, fmt.Sprintf("%s-%d", agg, n%5), agg+"Changed", fmt.Sprintf(`{"n": %d}`, n))
			}
			for n := 0; n < 60; n++ {
				event(n)
			}
			sink := changetest.New()
			defer sink.Close()
			os.WriteFile(filepath.Join(dir, "connector.yaml"), []byte("name: app\ntype: outbox\nurl: sqlite:app.db\nafter_delivery: "+mode+"\npoll_interval: 20ms\nbatch_size: 7\nstreams:\n  orders: {aggregate_types: [Order]}\n  other: {}\n"), 0o644)
			os.WriteFile(filepath.Join(dir, "pipeline.yaml"), []byte("connector: connector.yaml\ndestination: {type: http, url: "+sink.URL+", create: {path: \"/events/{{ stream }}/{{ row.type }}\"}}\nstate: {type: sqlite, path: state.db}\nsync: {checkpoint_interval: 20ms}\n"), 0o644)
			p := start(t, dir)
			if !sink.WaitFor(30*time.Second, func() bool { return sink.Accepted() >= 60 }) {
				p.stop(t)
				t.Fatalf("%d events arrived, want 60", sink.Accepted())
			}
			for n := 60; n < 90; n++ {
				event(n)
			}
			if !sink.WaitFor(30*time.Second, func() bool { return sink.Accepted() >= 90 }) {
				p.stop(t)
				t.Fatalf("%d events arrived, want 90", sink.Accepted())
			}
			p.stop(t)
			last := map[string]int{}
			for _, rc := range sink.Changes() {
				var ev struct {
					ID      int    `json:"id"`
					Agg     string `json:"aggregatetype"`
					AggID   string `json:"aggregateid"`
					Type    string `json:"type"`
					Payload struct{ N int }
				}
				if err := json.Unmarshal(rc.Body, &ev); err != nil {
					t.Fatal(err)
				}
				stream := "other"
				if ev.Agg == "Order" {
					stream = "orders"
				}
				if rc.Path != "/events/"+stream+"/"+ev.Agg+"Changed" || ev.Payload.N != ev.ID-1 {
					t.Fatalf("event %+v at %s", ev, rc.Path)
				}
				if ev.ID <= last[ev.AggID] {
					t.Fatalf("aggregate %s: event %d after %d", ev.AggID, ev.ID, last[ev.AggID])
				}
				last[ev.AggID] = ev.ID
			}
			var left int
			q := "SELECT count(*) FROM outbox"
			if mode == "mark" {
				q += " WHERE delivered_at IS NULL"
			}
			// The run has stopped and closed the source, which settles the
			// last acknowledged events before it returns.
			db.QueryRow(q).Scan(&left)
			if left != 0 {
				t.Fatalf("%d events were not %sd", left, mode)
			}
			// A restart delivers nothing again.
			before := sink.Accepted()
			p = start(t, dir)
			event(90)
			sink.WaitFor(30*time.Second, func() bool { return sink.Accepted() > before })
			p.stop(t)
			if got := sink.Accepted() - before; got != 1 {
				t.Fatalf("after the restart %d events arrived, want the 1 new one", got)
			}
		})
	}
}
