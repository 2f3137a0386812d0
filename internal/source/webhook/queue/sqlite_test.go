package queue_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/source/webhook/queue"
)

func ev(id, stream string, at time.Time) *queue.Event {
	return &queue.Event{ID: id, Stream: stream, Type: "t", Path: "/h", ReceivedAt: at, Body: []byte(`{"id":"` + id + `"}`)}
}

// TestGroupCommit: concurrent appends are all stored, in one order, each
// once; a duplicate id is reported and not stored again; everything is
// there after a reopen.
func TestGroupCommit(t *testing.T) {
	dir := t.TempDir()
	q, err := queue.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now()
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				dup, err := q.Append(ctx, []*queue.Event{ev(fmt.Sprintf("e%d-%d", w, i), "s", now)})
				if err != nil || dup[0] {
					t.Errorf("append: %v %v", dup, err)
				}
			}
		}()
	}
	wg.Wait()
	e := ev("e3-7", "s", now)
	dup, err := q.Append(ctx, []*queue.Event{e, ev("new", "s", now), ev("new", "s", now)})
	if err != nil || !dup[0] || dup[1] || !dup[2] || e.Seq != 0 {
		t.Fatalf("duplicates: %v %v seq %d", dup, err, e.Seq)
	}
	q.Close()
	if _, err := q.Append(ctx, []*queue.Event{ev("late", "s", now)}); err != queue.ErrClosed {
		t.Fatalf("append after close: %v", err)
	}
	q, err = queue.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	got, err := q.Read(ctx, "s", 0, 10000)
	if err != nil || len(got) != 801 {
		t.Fatalf("read %d events, %v; want 801", len(got), err)
	}
	seen := map[string]bool{}
	for i, e := range got {
		if seen[e.ID] || (i > 0 && e.Seq <= got[i-1].Seq) {
			t.Fatalf("event %d: %s seq %d", i, e.ID, e.Seq)
		}
		seen[e.ID] = true
	}
}

// TestAckPruneReplay: acknowledged events are pruned after the retention,
// pending ones never; a replay puts kept events behind the others, and
// re-routes them.
func TestAckPruneReplay(t *testing.T) {
	q, err := queue.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ctx := context.Background()
	old, now := time.Now().Add(-48*time.Hour), time.Now()
	evs := []*queue.Event{ev("a", "s", old), ev("b", "s", old), ev("c", "s", old), ev("d", "s", now), ev("x", "", old)}
	if _, err := q.Append(ctx, evs); err != nil {
		t.Fatal(err)
	}
	q.Ack("s", evs[1].Seq)
	if d, _ := q.Depth(ctx, "s"); d != 2 {
		t.Fatalf("depth %d, want 2", d)
	}
	n, err := q.Prune(ctx, now.Add(-time.Hour))
	if err != nil || n != 3 { // a, b (acknowledged) and x (routed nowhere)
		t.Fatalf("pruned %d, %v; want 3", n, err)
	}
	if a, _ := q.Acked(ctx, "s"); a != evs[1].Seq {
		t.Fatalf("acked %d", a)
	}
	q.Ack("s", evs[3].Seq)
	n, err = q.Replay(ctx, queue.Filter{Stream: "s"}, func(e queue.Event) string {
		if e.ID == "d" {
			return "other"
		}
		return e.Stream
	})
	if err != nil || n != 2 {
		t.Fatalf("replayed %d, %v", n, err)
	}
	got, _ := q.Read(ctx, "s", evs[3].Seq, 10)
	other, _ := q.Read(ctx, "other", 0, 10)
	if len(got) != 1 || got[0].ID != "c" || len(other) != 1 || other[0].ID != "d" || other[0].Seq <= got[0].Seq {
		t.Fatalf("after the replay: %v %v", got, other)
	}
	list, _ := q.List(ctx, queue.Filter{}, 10)
	if len(list) != 2 || list[0].ID != "d" {
		t.Fatalf("list %v", list)
	}
}

// BenchmarkAppend measures appends from 64 concurrent senders.
func BenchmarkAppend(b *testing.B) {
	q, err := queue.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	body := make([]byte, 600)
	var n sync.Mutex
	i := 0
	b.SetParallelism(256)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n.Lock()
			i++
			id := fmt.Sprint(i)
			n.Unlock()
			if _, err := q.Append(context.Background(), []*queue.Event{{ID: id, Stream: "s", ReceivedAt: time.Now(), Body: body}}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkAppendBatch measures appends of 500 events at a time (the
// cost per event of a group commit, fsync amortised).
func BenchmarkAppendBatch(b *testing.B) {
	q, err := queue.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	body := make([]byte, 600)
	evs := make([]*queue.Event, 500)
	n := 0
	for b.Loop() {
		for i := range evs {
			n++
			evs[i] = &queue.Event{ID: fmt.Sprint("evt_", n), Stream: "s", ReceivedAt: time.Now(), Body: body}
		}
		if _, err := q.Append(context.Background(), evs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/event")
}

// TestSeqNeverReused: once every event is applied and pruned, a new
// event still gets a position after the last one (readers resume after
// the last position they committed, so a reused one would be skipped),
// also after a replay moved events up and they were pruned in turn.
func TestSeqNeverReused(t *testing.T) {
	dir := t.TempDir()
	q, err := queue.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	old := time.Now().Add(-time.Hour)
	evs := []*queue.Event{ev("a", "s", old), ev("b", "s", old)}
	q.Append(ctx, evs)
	if _, err := q.Replay(ctx, queue.Filter{}, nil); err != nil {
		t.Fatal(err)
	}
	moved, _ := q.Read(ctx, "s", 0, 10)
	top := moved[len(moved)-1].Seq
	q.Ack("s", top)
	if n, err := q.Prune(ctx, time.Now()); err != nil || n != 2 {
		t.Fatalf("pruned %d, %v", n, err)
	}
	q.Close()
	q, err = queue.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	e := ev("c", "s", time.Now())
	if _, err := q.Append(ctx, []*queue.Event{e}); err != nil {
		t.Fatal(err)
	}
	if e.Seq <= top {
		t.Fatalf("a new event got position %d, at or before the last one, %d", e.Seq, top)
	}
	if got, _ := q.Read(ctx, "s", top, 10); len(got) != 1 || got[0].ID != "c" {
		t.Fatalf("read after %d: %v", top, got)
	}
}
