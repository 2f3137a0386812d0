package serve_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/dest/sqlite"
	"github.com/ferry-dev/ferry/internal/metastore"
	"github.com/ferry-dev/ferry/internal/serve"
)

// TestScheduleFiresAndNeverOverlaps runs a pipeline every second while
// its API holds each run: firings during a run are recorded as skipped,
// and no two runs that ran overlap.
func TestScheduleFiresAndNeverOverlaps(t *testing.T) {
	api := newGatedAPI(t, 3)
	api.Hold()
	s := startServer(t, serve.Config{Pipelines: []serve.Pipeline{loadPipeline(t, writePipeline(t, t.TempDir(), "shop", api, "full_refresh_append", "schedule:\n  cron: \"* * * * * *\"\n"))}})
	ctx := context.Background()
	runs := func() []*metastore.Run {
		rs, err := s.Store.ListRuns(ctx, metastore.RunFilter{Pipeline: "shop", Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		return rs
	}
	count := func(rs []*metastore.Run, status string) int {
		n := 0
		for _, r := range rs {
			if r.Status == status {
				n++
			}
		}
		return n
	}
	// The first firing starts a run, held by the API; the next ones find
	// it running.
	eventually(t, "two skipped firings while a run is held", 20*time.Second, func() bool { return count(runs(), metastore.Skipped) >= 2 })
	if n := count(runs(), metastore.Running); n != 1 {
		t.Fatalf("%d runs running at once", n)
	}
	api.Open()
	eventually(t, "two scheduled runs to succeed", 30*time.Second, func() bool { return count(runs(), "succeeded") >= 2 })
	api.Hold() // fewer runs from here on
	rs := runs()
	slices.Reverse(rs) // oldest first
	var prevEnd time.Time
	for _, r := range rs {
		if r.Trigger != serve.TriggerSchedule {
			t.Fatalf("run %s has trigger %s", r.ID, r.Trigger)
		}
		if r.Status == metastore.Skipped {
			if r.Error == nil || r.Streams[0].Status != metastore.Skipped {
				t.Fatalf("skipped run = %+v", r)
			}
			continue
		}
		if r.Started.Before(prevEnd) {
			t.Fatalf("run %s started at %s, before the previous run ended at %s", r.ID, r.Started, prevEnd)
		}
		if r.Ended != nil {
			prevEnd = *r.Ended
		}
	}
	var pv serve.PipelineView
	call(t, "GET", s.URL+"/v1/pipelines/shop", "", nil, &pv)
	if pv.Schedule == nil || *pv.Schedule != "* * * * * *" || pv.NextRun == nil {
		t.Fatalf("pipeline = %+v", pv)
	}
}

// TestScheduleCatchUp: firings missed while no server ran are run once
// at start, not once each; a schedule that did not fire meanwhile does
// not run at start.
func TestScheduleCatchUp(t *testing.T) {
	for _, c := range []struct {
		name    string
		last    time.Time
		catchUp bool
	}{
		{"missed", time.Date(2020, 3, 1, 0, 0, 0, 0, time.UTC), true},
		{"not missed", time.Now().UTC().Add(-time.Minute), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			api := newGatedAPI(t, 1)
			dir := t.TempDir()
			store, err := metastore.Open(context.Background(), "sqlite:"+filepath.Join(dir, "meta.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			ended := c.last.Add(time.Second)
			if err := store.PutRun(context.Background(), &metastore.Run{ID: "old", Pipeline: "shop", Trigger: serve.TriggerSchedule, Status: "succeeded", Started: c.last, Ended: &ended, Instance: "elsewhere:1"}); err != nil {
				t.Fatal(err)
			}
			// Yearly: no firing comes while the test runs, except a caught-up one.
			p := loadPipeline(t, writePipeline(t, dir, "shop", api, "full_refresh_append", "schedule:\n  cron: \"@yearly\"\n"))
			s := startServer(t, serve.Config{Pipelines: []serve.Pipeline{p}, Store: store})
			var pv serve.PipelineView
			eventually(t, "the schedule to be set", 10*time.Second, func() bool {
				call(t, "GET", s.URL+"/v1/pipelines/shop", "", nil, &pv)
				return pv.NextRun != nil
			})
			// The next firing is the yearly one: the catch-up (if any) was
			// decided before it was set.
			rs, _ := store.ListRuns(context.Background(), metastore.RunFilter{Pipeline: "shop"})
			if !c.catchUp {
				if len(rs) != 1 {
					t.Fatalf("runs = %d, want only the old one", len(rs))
				}
				return
			}
			if len(rs) != 2 || rs[0].Trigger != serve.TriggerSchedule {
				t.Fatalf("runs = %+v, want the old one and one caught up", rs)
			}
			if r := waitRun(t, s.URL, rs[0].ID); r.Status != "succeeded" {
				t.Fatalf("caught-up run = %+v", r)
			}
			if rs, _ = store.ListRuns(context.Background(), metastore.RunFilter{Pipeline: "shop"}); len(rs) != 2 {
				t.Fatalf("%d runs after the catch-up, want 2", len(rs))
			}
		})
	}
}

// TestLockedElsewhereIsSkipped: a run whose stream another process holds
// (its lock in the destination) is recorded as skipped, not failed.
func TestLockedElsewhereIsSkipped(t *testing.T) {
	api := newGatedAPI(t, 1)
	dir := t.TempDir()
	s := startServer(t, serve.Config{Pipelines: []serve.Pipeline{loadPipeline(t, writePipeline(t, dir, "shop", api, "full_refresh_append", ""))}})
	ctx := context.Background()
	d, err := dest.Open(ctx, "sqlite", &sqlite.Config{Path: filepath.Join(dir, "shop.db")}, dest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	release, err := d.(dest.StateKeeper).State().Lock(ctx, "shop", "items", dest.Holder{RunID: "other-process", Since: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	var run metastore.Run
	call(t, "POST", s.URL+"/v1/pipelines/shop/runs", "", nil, &run)
	done := waitRun(t, s.URL, run.ID)
	release()
	if done.Status != metastore.Skipped || done.Streams[0].Status != metastore.Skipped || done.Streams[0].Error == nil {
		t.Fatalf("run with the stream locked elsewhere = %+v", done)
	}
}
