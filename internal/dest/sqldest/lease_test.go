package sqldest_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/dest/desttest"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/schema"
)

// TestLeaseFencing: a lease's token grows with every takeover; a holder
// whose lease expired and was taken over has its commit refused with a
// *dest.FencedError, rows and state alike, in the same transaction, and
// its Save too; the successor's commit stands.
func TestLeaseFencing(t *testing.T) {
	forEachKind(t, func(t *testing.T, kind string) {
		ctx := context.Background()
		x := mustOpen(t, kind, fresh(t, kind), false)
		ls := x.State().(dest.Leaser)
		a := dest.Holder{RunID: "run-a", Since: time.Now()}
		b := dest.Holder{RunID: "run-b", Since: time.Now()}
		la, err := ls.Acquire(ctx, "p", "events", "0/2", a, 200*time.Millisecond)
		if err != nil || la.Token != 1 {
			t.Fatalf("first lease: %+v, %v", la, err)
		}
		// Another slice is another lease.
		if other, err := ls.Acquire(ctx, "p", "events", "1/2", b, time.Minute); err != nil || other.Token != 1 {
			t.Fatalf("lease of the other slice: %+v, %v", other, err)
		}
		var le *dest.LockedError
		if _, err := ls.Acquire(ctx, "p", "events", "0/2", b, time.Minute); !errors.As(err, &le) || le.Holder.RunID != "run-a" {
			t.Fatalf("acquire of a live lease: %v", err)
		}
		tb := &schema.Table{Name: "events", Version: 1, PrimaryKey: []string{"id"}, Columns: []schema.Column{{Name: "id", Path: []string{"id"}, Type: schema.Int}}}
		wa, err := x.OpenStream(ctx, dest.StreamConfig{Pipeline: "p", Stream: "events", Table: "events", Mode: dest.IncrementalDedup, RunID: "run-a", Fence: &la})
		if err != nil {
			t.Fatal(err)
		}
		c := desttest.Chunk(tb, []any{1})
		c.Checkpoints = []record.Checkpoint{{Stream: "events", Partition: "k1", State: json.RawMessage(`{"v":"a"}`)}}
		if err := wa.Write(ctx, c); err != nil {
			t.Fatal(err)
		}
		if err := wa.Commit(ctx); err != nil {
			t.Fatalf("commit under a live lease: %v", err)
		}
		if la, err = ls.Renew(ctx, la, 200*time.Millisecond); err != nil {
			t.Fatalf("renew: %v", err)
		}
		// a stalls; its lease expires and b takes over.
		deadline := time.Now().Add(5 * time.Second)
		var lb dest.Lease
		for {
			if lb, err = ls.Acquire(ctx, "p", "events", "0/2", b, time.Minute); err == nil || time.Now().After(deadline) {
				break
			}
		}
		if err != nil || lb.Token != 2 {
			t.Fatalf("takeover after expiry: %+v, %v", lb, err)
		}
		wb, err := x.OpenStream(ctx, dest.StreamConfig{Pipeline: "p", Stream: "events", Table: "events", Mode: dest.IncrementalDedup, RunID: "run-b", Fence: &lb})
		if err != nil {
			t.Fatal(err)
		}
		c = desttest.Chunk(tb, []any{2})
		c.Checkpoints = []record.Checkpoint{{Stream: "events", Partition: "k1", State: json.RawMessage(`{"v":"b"}`)}}
		if err := wb.Write(ctx, c); err != nil {
			t.Fatal(err)
		}
		if err := wb.Commit(ctx); err != nil {
			t.Fatalf("successor's commit: %v", err)
		}
		// a wakes up and commits: refused, nothing of it saved.
		c = desttest.Chunk(tb, []any{3})
		c.Checkpoints = []record.Checkpoint{{Stream: "events", Partition: "k1", State: json.RawMessage(`{"v":"a2"}`)}}
		if err := wa.Write(ctx, c); err != nil {
			t.Fatal(err)
		}
		var fe *dest.FencedError
		if err := wa.Commit(ctx); !errors.As(err, &fe) || fe.Token != 1 || fe.Current != 2 {
			t.Fatalf("commit of a superseded lease: %v", err)
		}
		wa.Abort(ctx)
		if err := ls.SaveFenced(ctx, la, "run-a", []record.Checkpoint{{Stream: "events", Partition: "k1", State: json.RawMessage(`{"v":"a3"}`)}}); !errors.As(err, &fe) {
			t.Fatalf("SaveFenced of a superseded lease: %v", err)
		}
		if _, err := ls.Renew(ctx, la, time.Minute); !errors.As(err, &fe) {
			t.Fatalf("renew of a superseded lease: %v", err)
		}
		if err := ls.Release(ctx, la); err != nil {
			t.Fatalf("release of a superseded lease: %v", err)
		}
		if raw, err := x.State().Load(ctx, "p", "events", "k1"); err != nil || string(raw) != `{"v":"b"}` {
			t.Fatalf("state = %s, %v; want the successor's", raw, err)
		}
		if n, err := x.Count(ctx, "events"); err != nil || n != 2 {
			t.Fatalf("rows = %d, %v; want the 2 committed under live leases", n, err)
		}
		if err := ls.SaveFenced(ctx, lb, "run-b", []record.Checkpoint{{Stream: "events", Partition: "k2", State: json.RawMessage(`{"v":"b2"}`)}}); err != nil {
			t.Fatal(err)
		}
		wb.Abort(ctx)
		// Released, the lease is free at once, with the next token.
		if err := ls.Release(ctx, lb); err != nil {
			t.Fatal(err)
		}
		if lc, err := ls.Acquire(ctx, "p", "events", "0/2", a, time.Minute); err != nil || lc.Token != 3 {
			t.Fatalf("acquire after release: %+v, %v", lc, err)
		}
	})
}
