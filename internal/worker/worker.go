// Package worker runs Ferry's work items: `ferry worker` takes items (a
// stream of a pipeline, or a slice of a child stream's partitions) from
// the JetStream work queue (internal/workqueue) and runs each with the
// engine, as `ferry run` does, under a fenced lease on the stream taken
// from the pipeline's own state store (dest.Leaser), so a worker that
// stalls past its lease cannot commit over its successor. Runs, the
// status of their items and the workers' heartbeats live in a PostgreSQL
// coordination database (Coord); Enqueue turns triggers into items.
//
// A worker is stateless: killed at any moment, its item is delivered
// again after the queue's ack wait and resumes from the last commit.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/engine"
	"github.com/ferry-dev/ferry/internal/redact"
	"github.com/ferry-dev/ferry/internal/spec"
	"github.com/ferry-dev/ferry/internal/workqueue"
)

// Config configures a worker.
type Config struct {
	// ID names the worker (default host-pid).
	ID    string
	Queue *workqueue.Queue
	Coord *Coord
	// Load reads a pipeline file and resolves its environment.
	Load func(path string) (*spec.Pipeline, *spec.Resolved, error)
	// Logger receives the worker's logs; Redactor hides secrets.
	Logger   *slog.Logger
	Redactor *redact.Redactor
	// Lease is how long a stream's lease lasts without renewal (default
	// 20s); it is renewed every third of it. Keep it at most the queue's
	// ack wait, so an item delivered again finds its lease expired.
	Lease time.Duration
	// Heartbeat is how often the worker records itself (default 2s).
	Heartbeat time.Duration
	// Observer, when set, is told every engine event of the items run.
	Observer engine.Observer
}

// Worker takes work items and runs them, one at a time.
type Worker struct {
	cfg     Config
	log     *slog.Logger
	host    string
	started time.Time

	mu        sync.Mutex
	status    string
	item      string
	itemSince time.Time
	rows      atomic.Int64
	done      atomic.Int64
	failed    atomic.Int64
}

// New returns a worker.
func New(cfg Config) *Worker {
	host, _ := os.Hostname()
	if cfg.ID == "" {
		cfg.ID = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 20 * time.Second
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Redactor == nil {
		cfg.Redactor = redact.New()
	}
	return &Worker{cfg: cfg, log: cfg.Logger.With("worker", cfg.ID), host: host, started: time.Now(), status: "idle"}
}

// ID returns the worker's id.
func (w *Worker) ID() string { return w.cfg.ID }

// Run takes and runs items until ctx ends. Then it stops fetching; the
// item in hand is interrupted, what it wrote is committed, its lease
// released and it is given back to the queue at once, so another worker
// resumes it from that commit: a rolling restart loses nothing.
func (w *Worker) Run(ctx context.Context) error {
	hbCtx, stopHB := context.WithCancel(context.WithoutCancel(ctx))
	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		w.heartbeats(hbCtx)
	}()
	watchCtx, stopWatch := context.WithCancel(ctx)
	go func() {
		_ = w.cfg.Queue.WatchMaxDeliveries(watchCtx, func(it workqueue.Item, reason string) {
			_ = w.cfg.Coord.setItem(context.WithoutCancel(ctx), it.ID, Dead, "", 0, 0, reason)
			w.log.Warn("work item dead-lettered", "item", it.String(), "reason", reason)
		})
	}()
	defer func() {
		stopWatch()
		w.setStatus("stopped", "")
		stopHB()
		<-hbDone
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = w.cfg.Coord.heartbeat(fctx, w.info())
	}()
	w.log.Info("worker started")
	for ctx.Err() == nil {
		d, err := w.cfg.Queue.Next(ctx, time.Second)
		if errors.Is(err, workqueue.ErrNoItem) || (err != nil && ctx.Err() != nil) {
			continue
		}
		if err != nil {
			// The server is away (restarting): the connection reconnects.
			w.log.Warn("cannot fetch work items; trying again", "error", err)
			wait(ctx, time.Second)
			continue
		}
		if ctx.Err() != nil {
			_ = d.Retry(0) // fetched as we stop: give it back
			break
		}
		w.handle(ctx, d)
	}
	w.log.Info("worker stopped")
	return nil
}

func wait(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func (w *Worker) setStatus(status, item string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.status = status
	if item != w.item {
		w.item, w.itemSince = item, time.Now()
		if item == "" {
			w.itemSince = time.Time{}
		}
	}
}

func (w *Worker) info() WorkerInfo {
	w.mu.Lock()
	defer w.mu.Unlock()
	return WorkerInfo{ID: w.cfg.ID, Host: w.host, PID: os.Getpid(), Started: w.started, Status: w.status, Item: w.item, ItemSince: w.itemSince,
		Rows: w.rows.Load(), ItemsDone: w.done.Load(), ItemsFailed: w.failed.Load()}
}

func (w *Worker) heartbeats(ctx context.Context) {
	t := time.NewTicker(w.cfg.Heartbeat)
	defer t.Stop()
	for {
		if err := w.cfg.Coord.heartbeat(ctx, w.info()); err != nil && ctx.Err() == nil {
			w.log.Warn("cannot record the heartbeat", "error", w.cfg.Redactor.String(err.Error()))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// outcome is how an item's run ended.
type outcome int

const (
	succeeded   outcome = iota
	failed              // may succeed on another delivery
	permanent           // cannot succeed as it is (a pipeline that does not load)
	busy                // another holder's lease is live
	fenced              // the lease was taken over: the successor owns the item
	interrupted         // the worker is stopping
)

// handle runs one delivery and answers the queue.
func (w *Worker) handle(ctx context.Context, d *workqueue.Delivery) {
	it := d.Item
	bg := context.WithoutCancel(ctx)
	log := w.log.With("item", it.String(), "run", it.Run, "attempt", d.Attempt)
	if st, err := w.cfg.Coord.itemStatus(bg, it.ID); err == nil && st == Succeeded {
		// Done before, and the acknowledgement was lost (a crash between
		// the two, a retry published while it ran).
		log.Info("work item already done")
		_ = d.Ack(bg)
		return
	}
	w.setStatus("working", it.String())
	defer w.setStatus("idle", "")
	_ = w.cfg.Coord.setItem(bg, it.ID, Running, w.cfg.ID, d.Attempt, 0, "")
	start := time.Now()
	res, rows, until, err := w.runItem(ctx, d, log)
	w.rows.Add(rows)
	switch res {
	case succeeded:
		w.done.Add(1)
		_ = w.cfg.Coord.setItem(bg, it.ID, Succeeded, w.cfg.ID, d.Attempt, rows, "")
		if err := d.Ack(bg); err != nil {
			log.Warn("could not acknowledge the work item (it is done; a new delivery finds it so)", "error", err)
		}
		log.Info("work item done", "rows", rows, "duration", time.Since(start).Round(time.Millisecond))
	case busy:
		if d.Last {
			msg := fmt.Sprintf("the stream was run by another holder at each of the %d deliveries: %s", d.Attempt, w.cfg.Redactor.String(err.Error()))
			_ = w.cfg.Coord.setItem(bg, it.ID, Dead, w.cfg.ID, d.Attempt, 0, msg)
			if derr := d.DeadLetter(bg, msg); derr != nil {
				log.Error("could not dead-letter the work item", "error", derr)
			}
			log.Error("work item dead-lettered", "error", msg)
			return
		}
		_ = w.cfg.Coord.setItem(bg, it.ID, Queued, "", d.Attempt, 0, "")
		delay := max(time.Until(until), 100*time.Millisecond)
		log.Info("the stream's lease is held by another worker; the item comes back later", "in", delay.Round(time.Millisecond), "holder", err)
		_ = d.Retry(delay)
	case fenced:
		// Not acknowledged nor given back: the delivery belongs to the
		// worker that took the lease over.
		_ = w.cfg.Coord.noteFenced(bg, it.ID)
		log.Warn("work item given up: the lease was taken over", "error", w.cfg.Redactor.String(err.Error()))
	case interrupted:
		_ = w.cfg.Coord.setItem(bg, it.ID, Queued, "", d.Attempt, rows, "")
		_ = d.Retry(0)
		log.Info("work item interrupted; committed what it wrote and gave it back", "rows", rows)
	default:
		w.failed.Add(1)
		msg := w.cfg.Redactor.String(err.Error())
		if res == permanent || d.Last {
			_ = w.cfg.Coord.setItem(bg, it.ID, Dead, w.cfg.ID, d.Attempt, rows, msg)
			if derr := d.DeadLetter(bg, msg); derr != nil {
				log.Error("could not dead-letter the work item", "error", derr)
			}
			log.Error("work item failed for good; dead-lettered", "error", msg)
			return
		}
		_ = w.cfg.Coord.setItem(bg, it.ID, Failed, w.cfg.ID, d.Attempt, rows, msg)
		delay := time.Duration(1<<min(d.Attempt, 5)) * 500 * time.Millisecond
		_ = d.Retry(delay)
		log.Warn("work item failed; it is delivered again", "in", delay, "error", msg)
	}
}

// runItem runs an item's stream under a fenced lease, sending progress to
// the queue and renewing the lease meanwhile.
func (w *Worker) runItem(ctx context.Context, d *workqueue.Delivery, log *slog.Logger) (res outcome, rows int64, until time.Time, err error) {
	it := d.Item
	p, r, err := w.cfg.Load(it.Pipeline)
	if err != nil {
		return permanent, 0, until, fmt.Errorf("pipeline %s: %w", it.Pipeline, err)
	}
	if p.Name != it.Name {
		return permanent, 0, until, fmt.Errorf("pipeline file %s is now pipeline %q, not %q", it.Pipeline, p.Name, it.Name)
	}
	opts := engine.Options{Pipeline: p, Resolved: r, Streams: []string{it.Stream}, Logger: w.cfg.Logger, Redactor: w.cfg.Redactor}
	if it.Slice != "" {
		sl, err := engine.ParseSlice(it.Slice)
		if err != nil {
			return permanent, 0, until, err
		}
		opts.Slice = &sl
	}
	var committed atomic.Int64
	opts.Observer = engine.ObserverFunc(func(e engine.Event) {
		if c, ok := e.(engine.Committed); ok {
			committed.Store(c.Total)
		}
		if w.cfg.Observer != nil {
			w.cfg.Observer.Observe(e)
		}
	})
	ictx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	run, err := engine.New(ictx, opts)
	if err != nil {
		if dest.IsTransient(err) {
			return failed, 0, until, err
		}
		var ue *engine.UnknownStreamError
		if errors.As(err, &ue) {
			return permanent, 0, until, err
		}
		return failed, 0, until, err
	}
	defer run.Close()
	leaser, ok := run.State().(dest.Leaser)
	if !ok {
		return permanent, 0, until, fmt.Errorf("pipeline %s keeps its state where workers cannot share and fence it: keep it in PostgreSQL (the destination, or a state: section)", p.Name)
	}
	host, _ := os.Hostname()
	holder := dest.Holder{RunID: run.ID, Host: host, PID: os.Getpid(), Since: time.Now()}
	lease, err := leaser.Acquire(ictx, p.Name, it.Stream, it.Slice, holder, w.cfg.Lease)
	var le *dest.LockedError
	if errors.As(err, &le) {
		return busy, 0, time.Now().Add(w.cfg.Lease / 4), err
	}
	if err != nil {
		return failed, 0, until, fmt.Errorf("take the lease of %s: %w", it, err)
	}
	held := lease
	if err := run.UseLease(&held); err != nil {
		_ = leaser.Release(context.WithoutCancel(ctx), lease)
		return permanent, 0, until, err
	}
	// Progress: in-progress acknowledgements and lease renewals, a third
	// of the shorter of the two apart.
	every := min(w.cfg.Lease, w.cfg.Queue.Config().AckWait) / 3
	var lost atomic.Pointer[dest.FencedError]
	kaDone := make(chan struct{})
	kaCtx, stopKA := context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		defer close(kaDone)
		t := time.NewTicker(every)
		defer t.Stop()
		cur := lease
		for {
			select {
			case <-kaCtx.Done():
				return
			case <-t.C:
			}
			_ = d.InProgress()
			next, err := leaser.Renew(kaCtx, cur, w.cfg.Lease)
			var fe *dest.FencedError
			if errors.As(err, &fe) {
				lost.Store(fe)
				cancel(fe)
				return
			}
			if err == nil {
				cur = next
			} else if kaCtx.Err() == nil {
				log.Warn("could not renew the lease; trying again", "error", w.cfg.Redactor.String(err.Error()))
			}
		}
	}()
	sum, err := run.Execute(ictx)
	stopKA()
	<-kaDone
	rows = committed.Load()
	var fe *dest.FencedError
	if errors.As(err, &fe) {
		return fenced, rows, until, err
	}
	if fe := lost.Load(); fe != nil {
		return fenced, rows, until, fe
	}
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer rcancel()
	if rerr := leaser.Release(rctx, lease); rerr != nil {
		log.Warn("could not release the lease (it expires by itself)", "error", w.cfg.Redactor.String(rerr.Error()))
	}
	switch {
	case err == nil:
		return succeeded, rows, until, nil
	case ctx.Err() != nil:
		return interrupted, rows, until, err
	case sum != nil && sum.Status == dest.Stopped:
		return succeeded, rows, until, nil
	}
	return failed, rows, until, err
}
