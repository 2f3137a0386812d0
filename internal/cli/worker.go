package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferry-dev/ferry/internal/source"
	"github.com/ferry-dev/ferry/internal/spec"
	"github.com/ferry-dev/ferry/internal/worker"
	"github.com/ferry-dev/ferry/internal/workqueue"
)

// queueFlags are the flags that reach the work queue and the
// coordination database.
type queueFlags struct {
	nats, state, stream string
	ackWait             time.Duration
	maxDeliver          int
	replicas            int
}

func (f *queueFlags) add(cmd *cobra.Command, needNATS bool) {
	cmd.Flags().StringVar(&f.nats, "nats", "", "the NATS JetStream server(s) carrying the work items, nats://host:4222 (default $FERRY_NATS_URL)")
	cmd.Flags().StringVar(&f.state, "state", "", "the PostgreSQL coordination database (runs, item status, workers), postgres://… (default $FERRY_STATE_URL)")
	cmd.Flags().StringVar(&f.stream, "queue", "FERRY_WORK", "the JetStream stream of work items")
	cmd.Flags().DurationVar(&f.ackWait, "ack-wait", 30*time.Second, "how long an item stays with a worker that sends no progress before it is delivered again")
	cmd.Flags().IntVar(&f.maxDeliver, "max-deliver", 5, "deliveries of an item before it is dead-lettered")
	cmd.Flags().IntVar(&f.replicas, "replicas", 1, "replicas of the work streams (3 on a production cluster)")
}

// open connects to what the flags name; nats is optional when needNATS is
// false and no URL is given.
func (a *app) openQueue(ctx context.Context, f *queueFlags, needNATS bool, name string) (*workqueue.Queue, *worker.Coord, error) {
	if f.state == "" {
		f.state = os.Getenv("FERRY_STATE_URL")
	}
	if f.nats == "" {
		f.nats = os.Getenv("FERRY_NATS_URL")
	}
	if f.state == "" {
		return nil, nil, usageError{errors.New("give the coordination database with --state postgres://… (or $FERRY_STATE_URL)")}
	}
	if f.nats == "" && needNATS {
		return nil, nil, usageError{errors.New("give the NATS server with --nats nats://host:4222 (or $FERRY_NATS_URL)")}
	}
	for _, u := range []string{f.state, f.nats} {
		for _, part := range strings.Split(u, ",") {
			if pu, err := url.Parse(part); err == nil && pu.User != nil {
				if pw, ok := pu.User.Password(); ok {
					a.red.Add(pw)
				}
			}
		}
	}
	c, err := worker.OpenCoord(ctx, f.state)
	if err != nil {
		return nil, nil, errors.New(a.red.URL(a.red.String(err.Error())))
	}
	if f.nats == "" {
		return nil, c, nil
	}
	q, err := workqueue.Open(ctx, workqueue.Config{URL: f.nats, Stream: f.stream, AckWait: f.ackWait, MaxDeliver: f.maxDeliver, Replicas: f.replicas, Name: name})
	if err != nil {
		c.Close()
		return nil, nil, errors.New(a.red.URL(a.red.String(err.Error())))
	}
	return q, c, nil
}

func (a *app) workerCmd() *cobra.Command {
	var f queueFlags
	var id string
	var lease, heartbeat time.Duration
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Run work items from NATS JetStream (scale out)",
		Long: `Run work items from a NATS JetStream work queue, one at a time, with the
same engine as ferry run. Start as many workers as you like, on any
machines that see the pipeline files (at the paths they were enqueued
with), the NATS server and the databases.

Each item is a stream of a pipeline, or a slice of a child stream's
partitions. A worker holds a lease on the item's stream in the pipeline's
state store (PostgreSQL) with a fencing token: a worker paused or cut off
past its lease has its next commit refused, and its successor's result
stands. A worker killed at any moment loses nothing: its item is
delivered again after --ack-wait and resumes from the last commit.

SIGTERM (or Ctrl-C) stops fetching, interrupts the item in hand, commits
what it wrote and gives it back to the queue at once.

Enqueue items with ferry enqueue; list workers with ferry workers.
See docs/scale-out.md.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			q, c, err := a.openQueue(ctx, &f, true, "ferry worker "+id)
			if err != nil {
				return err
			}
			defer q.Close()
			defer c.Close()
			log, err := a.logger()
			if err != nil {
				return err
			}
			w := worker.New(worker.Config{ID: id, Queue: q, Coord: c, Logger: log, Redactor: a.red, Lease: lease, Heartbeat: heartbeat,
				Load: func(path string) (*spec.Pipeline, *spec.Resolved, error) { return a.loadPipeline(path, false) }})
			fmt.Fprintf(a.err, "worker %s taking items from %s\n", w.ID(), q.Config().Stream)
			return w.Run(ctx)
		},
	}
	f.add(cmd, true)
	cmd.Flags().StringVar(&id, "id", "", "the worker's name in ferry workers (default host-pid)")
	cmd.Flags().DurationVar(&lease, "lease", 20*time.Second, "how long a stream's lease lasts unrenewed (renewed every third of it); at most --ack-wait")
	cmd.Flags().DurationVar(&heartbeat, "heartbeat", 2*time.Second, "how often the worker records itself for ferry workers")
	return cmd
}

func (a *app) enqueueCmd() *cobra.Command {
	var f queueFlags
	var streams []string
	var slices int
	var trigger, retry string
	var waitFor bool
	var timeout time.Duration
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "enqueue PIPELINE.yaml",
		Short: "Turn a trigger into work items for ferry worker",
		Long: `Turn a trigger into work items: one per stream of the pipeline (all, or
those of --stream), a child stream split into --slices items read in
parallel. The run and its items are recorded in the coordination
database; each item is published with an id derived from the pipeline,
stream, slice and --trigger, so a trigger enqueued twice runs once.

--retry RUN enqueues again only the items of RUN that failed.
--wait waits until every item succeeded (exit 0) or some are dead-lettered
(exit 1).`,
		Args: func(cmd *cobra.Command, args []string) error {
			if retry != "" {
				return exactArgs(0, "no pipeline with --retry")(cmd, args)
			}
			return exactArgs(1, "PIPELINE.yaml")(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if slices < 0 {
				return usageError{errors.New("--slices must be positive")}
			}
			q, c, err := a.openQueue(ctx, &f, true, "ferry enqueue")
			if err != nil {
				return err
			}
			defer q.Close()
			defer c.Close()
			var runID string
			if retry != "" {
				items, err := worker.Retry(ctx, q, c, retry)
				if err != nil {
					return err
				}
				runID = retry
				fmt.Fprintf(a.out, "run %s: %d failed items enqueued again\n", retry, len(items))
			} else {
				plan, err := a.plan(args[0], streams, slices, trigger)
				if err != nil {
					return err
				}
				out, err := worker.Enqueue(ctx, q, c, plan)
				if err != nil {
					return err
				}
				runID = out.Run
				if asJSON {
					enc := json.NewEncoder(a.out)
					if err := enc.Encode(out); err != nil {
						return err
					}
				} else if out.Duplicate {
					fmt.Fprintf(a.out, "run %s: this trigger was enqueued before; nothing new to run\n", out.Run)
				} else {
					fmt.Fprintf(a.out, "run %s: %d items enqueued\n", out.Run, len(out.Items))
				}
			}
			if !waitFor {
				return nil
			}
			wctx := ctx
			if timeout > 0 {
				var cancel context.CancelFunc
				wctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			st, err := worker.Wait(wctx, c, runID, 200*time.Millisecond)
			if err != nil {
				return fmt.Errorf("run %s: %w", runID, err)
			}
			a.printRun(st)
			if !st.Done() {
				a.exit = exitFailed
			}
			return nil
		},
	}
	f.add(cmd, true)
	cmd.Flags().StringSliceVar(&streams, "stream", nil, "enqueue only these streams (repeatable)")
	cmd.Flags().IntVar(&slices, "slices", 0, "split each child stream's partitions into this many items")
	cmd.Flags().StringVar(&trigger, "trigger", "", "what triggered the run (a schedule's time, an event id); the same trigger runs once (default: now)")
	cmd.Flags().StringVar(&retry, "retry", "", "enqueue again the failed items of this run")
	cmd.Flags().BoolVar(&waitFor, "wait", false, "wait until the run's items are done")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "with --wait: give up after this long")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the run and its items as JSON")
	return cmd
}

// plan turns a pipeline file and the flags into an enqueue plan.
func (a *app) plan(path string, streams []string, slices int, trigger string) (worker.Plan, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return worker.Plan{}, err
	}
	p, _, src, names, err := a.openSource(abs, streams, 0)
	if err != nil {
		return worker.Plan{}, err
	}
	defer src.Close()
	plan := worker.Plan{Path: abs, Name: p.Name, Trigger: trigger}
	for _, n := range names {
		sp := worker.StreamPlan{Stream: n}
		if info, ok := source.Find(src, n); ok && info.Parent != "" && slices > 1 {
			sp.Slices = slices
		}
		plan.Streams = append(plan.Streams, sp)
	}
	return plan, nil
}

func (a *app) printRun(st worker.RunStatus) {
	t := &table{header: []string{"STREAM", "SLICE", "STATUS", "ATTEMPTS", "WORKER", "ROWS", "ERROR"}, right: map[int]bool{3: true, 5: true}}
	for _, it := range st.Items {
		t.add(it.Item.Stream, it.Item.Slice, it.Status, fmt.Sprint(it.Attempts), it.Worker, fmt.Sprint(it.Rows), firstLine(it.Error))
	}
	fmt.Fprintf(a.out, "run %s: %d of %d items succeeded\n", st.Run, st.Count(worker.Succeeded), len(st.Items))
	t.write(a.out)
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 100 {
		s = s[:100] + "…"
	}
	return s
}

func (a *app) workersCmd() *cobra.Command {
	var f queueFlags
	var run string
	var asJSON bool
	var within time.Duration
	cmd := &cobra.Command{
		Use:   "workers",
		Short: "List the workers, their items and the dead-lettered items",
		Long: `List the workers that sent a heartbeat recently (id, host, item, since,
last heartbeat), the latest runs, and, with --nats, the dead-lettered
items. --run RUN shows one run's items.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			q, c, err := a.openQueue(ctx, &f, false, "ferry workers")
			if err != nil {
				return err
			}
			defer c.Close()
			if q != nil {
				defer q.Close()
			}
			if run != "" {
				st, err := c.Run(ctx, run)
				if err != nil {
					return err
				}
				if asJSON {
					return json.NewEncoder(a.out).Encode(st)
				}
				a.printRun(st)
				return nil
			}
			ws, err := c.Workers(ctx, within)
			if err != nil {
				return err
			}
			var dead []workqueue.DeadItem
			if q != nil {
				if dead, err = q.Dead(ctx, 100); err != nil {
					return err
				}
			}
			if asJSON {
				return json.NewEncoder(a.out).Encode(map[string]any{"workers": ws, "dead": dead})
			}
			t := &table{header: []string{"WORKER", "HOST", "PID", "STATUS", "ITEM", "SINCE", "HEARTBEAT", "ITEMS", "FAILED", "ROWS"}, right: map[int]bool{2: true, 7: true, 8: true, 9: true}}
			for _, w := range ws {
				since := ""
				if !w.ItemSince.IsZero() {
					since = time.Since(w.ItemSince).Round(time.Second).String()
				}
				t.add(w.ID, w.Host, fmt.Sprint(w.PID), w.Status, w.Item, since, time.Since(w.Heartbeat).Round(100*time.Millisecond).String()+" ago", fmt.Sprint(w.ItemsDone), fmt.Sprint(w.ItemsFailed), fmt.Sprint(w.Rows))
			}
			fmt.Fprintf(a.out, "%d workers seen in the last %s\n", len(ws), within)
			t.write(a.out)
			if q != nil {
				fmt.Fprintf(a.out, "\n%d dead-lettered items\n", len(dead))
				if len(dead) > 0 {
					dt := &table{header: []string{"AT", "ITEM", "RUN", "ATTEMPTS", "REASON"}}
					for _, d := range dead {
						dt.add(d.At.Local().Format(time.RFC3339), d.Item.String(), d.Item.Run, d.Attempts, firstLine(d.Reason))
					}
					dt.write(a.out)
				}
			}
			return nil
		},
	}
	f.add(cmd, false)
	cmd.Flags().StringVar(&run, "run", "", "show this run's items")
	cmd.Flags().DurationVar(&within, "within", 5*time.Minute, "list workers that sent a heartbeat within this long")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
