package metastore_test

import (
	"context"
	"errors"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/dest/dbtest"
	"github.com/ferry-dev/ferry/internal/metastore"
)

// stores opens a fresh store of each kind.
func stores(t *testing.T) map[string]string {
	t.Helper()
	return map[string]string{
		"sqlite":   "sqlite:" + filepath.Join(t.TempDir(), "meta.db"),
		"postgres": PostgresStore(t),
	}
}

// PostgresStore returns the URL of a fresh, empty PostgreSQL schema.
func PostgresStore(t *testing.T) string {
	t.Helper()
	u, schema := dbtest.Postgres(t)
	if err := dbtest.PostgresExec(u, `CREATE SCHEMA "`+schema+`"`); err != nil {
		t.Fatal(err)
	}
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	q := pu.Query()
	q.Set("search_path", schema)
	pu.RawQuery = q.Encode()
	return pu.String()
}

func TestStore(t *testing.T) {
	for kind, u := range stores(t) {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			s, err := metastore.Open(ctx, u)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			// Opening again (migrations are idempotent) works.
			s2, err := metastore.Open(ctx, u)
			if err != nil {
				t.Fatal(err)
			}
			s2.Close()

			t0 := time.Date(2026, 5, 1, 10, 0, 0, 123000, time.UTC)
			for i, id := range []string{"r1", "r2", "r3"} {
				r := &metastore.Run{ID: id, Pipeline: "shop", Trigger: "api", Status: metastore.Running, Started: t0.Add(time.Duration(i) * time.Minute), Instance: "h:1",
					Streams: []metastore.StreamRun{{Name: "orders", Status: metastore.Running, Records: int64(i)}}}
				if err := s.PutRun(ctx, r); err != nil {
					t.Fatal(err)
				}
			}
			end := t0.Add(5 * time.Minute)
			msg := "boom"
			done := &metastore.Run{ID: "r2", Pipeline: "shop", Trigger: "api", Status: "failed", Started: t0.Add(time.Minute), Ended: &end, Error: &msg, Instance: "h:1",
				Streams: []metastore.StreamRun{{Name: "orders", Status: "failed", Records: 7, Drift: []metastore.Drift{{Table: "orders", Change: "add column x"}}}}}
			if err := s.PutRun(ctx, done); err != nil {
				t.Fatal(err)
			}
			got, err := s.GetRun(ctx, "r2")
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != "failed" || *got.Error != "boom" || !got.Ended.Equal(end) || !got.Started.Equal(t0.Add(time.Minute)) || got.Streams[0].Records != 7 || got.Streams[0].Drift[0].Change != "add column x" {
				t.Fatalf("run read back = %+v", got)
			}
			if _, err := s.GetRun(ctx, "nope"); !errors.Is(err, metastore.ErrNotFound) {
				t.Fatalf("missing run: %v", err)
			}
			runs, err := s.ListRuns(ctx, metastore.RunFilter{Pipeline: "shop"})
			if err != nil || len(runs) != 3 || runs[0].ID != "r3" || runs[2].ID != "r1" {
				t.Fatalf("runs = %v, %v", runs, err)
			}
			runs, _ = s.ListRuns(ctx, metastore.RunFilter{Status: "failed"})
			if len(runs) != 1 || runs[0].ID != "r2" {
				t.Fatalf("failed runs = %v", runs)
			}
			if runs, _ = s.ListRuns(ctx, metastore.RunFilter{Trigger: "schedule"}); len(runs) != 0 {
				t.Fatalf("scheduled runs = %v", runs)
			}
			runs, _ = s.ListRuns(ctx, metastore.RunFilter{Limit: 1})
			if len(runs) != 1 {
				t.Fatalf("limit: %d runs", len(runs))
			}

			// Runs of a dead process on this host are failed, not left running.
			n, err := s.FailInterrupted(ctx, "h", func(pid int) bool { return false })
			if err != nil || n != 2 {
				t.Fatalf("FailInterrupted = %d, %v", n, err)
			}
			r1, _ := s.GetRun(ctx, "r1")
			if r1.Status != "failed" || r1.Error == nil || r1.Ended == nil || r1.Streams[0].Status != "failed" {
				t.Fatalf("interrupted run = %+v", r1)
			}

			st := "orders"
			lines := []metastore.LogLine{{Seq: 1, Time: t0, Level: "INFO", Msg: "a"}, {Seq: 2, Time: t0, Level: "WARN", Msg: "b", Stream: &st, Attrs: []byte(`{"k":1}`)}, {Seq: 3, Time: t0, Level: "INFO", Msg: "c"}}
			if err := s.AppendLogs(ctx, "r1", lines); err != nil {
				t.Fatal(err)
			}
			logs, err := s.Logs(ctx, "r1", 1, 0)
			if err != nil || len(logs) != 2 || logs[0].Msg != "b" || *logs[0].Stream != "orders" || string(logs[0].Attrs) != `{"k":1}` || logs[1].Seq != 3 {
				t.Fatalf("logs = %+v, %v", logs, err)
			}

			if err := s.AddDrift(ctx, []metastore.DriftEvent{{RunID: "r1", Pipeline: "shop", Stream: "orders", Table: "orders", Change: "add column x", At: t0}, {RunID: "r2", Pipeline: "other", Stream: "a", Table: "a", Change: "widen y", At: end}}); err != nil {
				t.Fatal(err)
			}
			dr, _ := s.Drift(ctx, "shop", 0)
			if len(dr) != 1 || dr[0].Change != "add column x" {
				t.Fatalf("drift = %+v", dr)
			}
			if dr, _ = s.Drift(ctx, "", 0); len(dr) != 2 || dr[0].RunID != "r2" {
				t.Fatalf("all drift = %+v", dr)
			}

			for _, n := range []int64{10, 5} {
				if err := s.AddThroughput(ctx, "shop", t0.Add(10*time.Second), n); err != nil {
					t.Fatal(err)
				}
			}
			_ = s.AddThroughput(ctx, "other", t0.Add(70*time.Second), 3)
			pts, err := s.Throughput(ctx, "shop", t0.Add(-time.Hour))
			if err != nil || len(pts) != 1 || pts[0].Records != 15 || !pts[0].T.Equal(t0.Truncate(time.Minute)) {
				t.Fatalf("throughput = %+v, %v", pts, err)
			}
			if pts, _ = s.Throughput(ctx, "", t0.Add(-time.Hour)); len(pts) != 2 || pts[1].Records != 3 {
				t.Fatalf("all throughput = %+v", pts)
			}

			if err := s.AddToken(ctx, metastore.Token{Hash: "abc", Role: "read", Name: "ci", Created: t0}); err != nil {
				t.Fatal(err)
			}
			toks, err := s.Tokens(ctx)
			if err != nil || len(toks) != 1 || toks[0].Role != "read" || toks[0].Hash != "abc" {
				t.Fatalf("tokens = %+v, %v", toks, err)
			}
		})
	}
}
