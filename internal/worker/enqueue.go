package worker

import (
	"context"
	"fmt"
	"time"

	"github.com/ferry-dev/ferry/internal/engine"
	"github.com/ferry-dev/ferry/internal/workqueue"
)

// Plan is what a trigger asks for: streams of a pipeline, each whole or
// split into slices.
type Plan struct {
	// Path is the pipeline file as the workers can read it.
	Path string
	// Name is the pipeline's name.
	Name    string
	Streams []StreamPlan
	// Trigger identifies the trigger: a schedule's firing time, a
	// webhook's delivery id, a user's request. Enqueueing one trigger
	// twice makes one run.
	Trigger string
}

// StreamPlan is one stream of a plan.
type StreamPlan struct {
	Stream string
	// Slices splits a child stream's partitions into this many items read
	// in parallel (0 or 1: one item).
	Slices int
}

// Enqueued is what Enqueue did.
type Enqueued struct {
	Run   string           `json:"run"`
	Items []workqueue.Item `json:"items"`
	// Duplicate is true when the trigger was enqueued before: nothing new
	// runs.
	Duplicate bool `json:"duplicate"`
}

// RunID derives a run's id from its pipeline and trigger.
func RunID(path, trigger string) string {
	return "w" + workqueue.ItemID(path, "", "", trigger)[:20]
}

// Enqueue turns a trigger into work items: it records the run and its
// items in the coordination database, then publishes each item with its
// id as Nats-Msg-Id. A trigger enqueued again (a schedule fired twice, a
// retried request) finds its run recorded and publishes only the items
// still queued, which JetStream drops as duplicates within its window: the
// trigger runs once.
func Enqueue(ctx context.Context, q *workqueue.Queue, c *Coord, p Plan) (Enqueued, error) {
	if p.Trigger == "" {
		p.Trigger = time.Now().UTC().Format(time.RFC3339Nano)
	}
	out := Enqueued{Run: RunID(p.Path, p.Trigger)}
	now := time.Now().UTC()
	for _, sp := range p.Streams {
		n := max(sp.Slices, 1)
		for i := range n {
			it := workqueue.Item{Run: out.Run, Pipeline: p.Path, Name: p.Name, Stream: sp.Stream, Trigger: p.Trigger, Enqueued: now}
			if sp.Slices > 1 {
				it.Slice = engine.Slice{Index: i, Count: n}.String()
			}
			it.ID = workqueue.ItemID(p.Path, it.Stream, it.Slice, p.Trigger)
			out.Items = append(out.Items, it)
		}
	}
	if len(out.Items) == 0 {
		return out, fmt.Errorf("pipeline %s: no stream to enqueue", p.Name)
	}
	created, err := c.createRun(ctx, out.Run, p.Name, p.Trigger, out.Items)
	if err != nil {
		return out, err
	}
	items := out.Items
	if !created {
		out.Duplicate = true
		st, err := c.itemsOf(ctx, out.Run, Queued)
		if err != nil {
			return out, err
		}
		items = items[:0:0]
		for _, s := range st {
			items = append(items, s.Item)
		}
	}
	for _, it := range items {
		if _, err := q.Publish(ctx, it, it.ID); err != nil {
			return out, err
		}
	}
	return out, nil
}

// Retry enqueues again the items of a run that failed or were
// dead-lettered; the items that succeeded are left alone. It returns the
// items enqueued.
func Retry(ctx context.Context, q *workqueue.Queue, c *Coord, runID string) ([]workqueue.Item, error) {
	items, retries, err := c.requeue(ctx, runID)
	if err != nil {
		return nil, err
	}
	for i, it := range items {
		if _, err := q.Publish(ctx, it, fmt.Sprintf("%s.retry%d", it.ID, retries[i])); err != nil {
			return items, err
		}
	}
	return items, nil
}

// Wait polls a run until every item succeeded or is dead, or ctx ends.
func Wait(ctx context.Context, c *Coord, runID string, every time.Duration) (RunStatus, error) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		st, err := c.Run(ctx, runID)
		if err != nil || st.Settled() {
			return st, err
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-t.C:
		}
	}
}
