// Package engine runs pipelines: for each stream it reads pages from the
// source, converts them into typed chunks, writes them to the destination
// and decides when to commit, so that rows and the state covering them
// become durable together. It owns the meaning of state (cursors, passes,
// resume positions); sources and destinations only carry it.
//
// Per stream, three goroutines form a pipeline joined by small channels:
//
//	source.Read ──pages──▶ normalizer ──chunks──▶ writer (Write, Commit, Finish)
//
// so fetching, decoding and database writes overlap while memory stays
// bounded by the channel sizes, not by the data.
package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferry-dev/ferry/internal/redact"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/schema"
	"github.com/ferry-dev/ferry/internal/source"
	"github.com/ferry-dev/ferry/internal/spec"
)

// Options configure a run.
type Options struct {
	Pipeline *spec.Pipeline
	// Resolved holds config values read from the environment.
	Resolved *spec.Resolved
	// Streams limits the run to these streams (default: the pipeline's).
	Streams []string
	// Logger receives the run's logs (default: discard).
	Logger *slog.Logger
	// Redactor hides secrets; the run adds the pipeline's secrets to it.
	Redactor *redact.Redactor
	// FailOnDrift makes a run fail when a table's columns changed.
	FailOnDrift bool
	// RetryFor bounds how long a stream keeps retrying while the database
	// is unavailable (default 2 minutes).
	RetryFor time.Duration
	// Destination, when set, is used instead of opening the pipeline's;
	// the run takes it over and closes it.
	Destination dest.Destination
}

// Run is one execution of a pipeline.
type Run struct {
	ID      string
	opts    Options
	log     *slog.Logger
	red     *redact.Redactor
	src     source.Source
	dst     dest.Destination
	streams []*StreamProgress
	started time.Time
}

// StreamProgress is a stream's live counters, safe to read while the run
// goes on.
type StreamProgress struct {
	Name    string
	Table   string
	Mode    string
	Records atomic.Int64 // rows written
	Pages   atomic.Int64
	// Rejected counts records sent to the rejected table; Filtered those
	// dropped by the incremental cursor.
	Rejected atomic.Int64
	Filtered atomic.Int64
	Commits  atomic.Int64
	// Committed counts rows made durable; Records also counts rows in the
	// open transaction.
	Committed atomic.Int64
	// Retries counts restarts after the database was unavailable.
	Retries  atomic.Int64
	status   atomic.Int32
	started  atomic.Int64 // unix micro
	finished atomic.Int64
}

// Stream statuses.
const (
	Pending int32 = iota
	Running
	Succeeded
	Failed
)

// Status returns the stream's status.
func (p *StreamProgress) Status() int32 { return p.status.Load() }

// Elapsed returns how long the stream has run.
func (p *StreamProgress) Elapsed() time.Duration {
	s := p.started.Load()
	if s == 0 {
		return 0
	}
	end := p.finished.Load()
	if end == 0 {
		end = time.Now().UnixMicro()
	}
	return time.Duration(end-s) * time.Microsecond
}

// Summary is what a run did.
type Summary struct {
	RunID    string          `json:"run_id"`
	Pipeline string          `json:"pipeline"`
	Started  time.Time       `json:"started"`
	Duration time.Duration   `json:"duration"`
	Status   string          `json:"status"`
	Streams  []StreamSummary `json:"streams"`
	Requests int64           `json:"requests"`
	Retries  int64           `json:"retries"`
}

// StreamSummary is what a run did to one stream.
type StreamSummary struct {
	Stream   string          `json:"stream"`
	Table    string          `json:"table"`
	Mode     string          `json:"mode"`
	Status   string          `json:"status"`
	Records  int64           `json:"records"`
	Pages    int64           `json:"pages"`
	Rejected int64           `json:"rejected"`
	Filtered int64           `json:"filtered"`
	Duration time.Duration   `json:"duration"`
	Error    string          `json:"error,omitempty"`
	NewTable bool            `json:"new_table,omitempty"`
	Changes  []string        `json:"schema_changes,omitempty"`
	Drift    []schema.Change `json:"-"`
}

// NewRunID returns a sortable, unique run id such as
// 20261122T004500Z-3f9a1c.
func NewRunID() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return time.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// New prepares a run: it opens the destination and builds the source, but
// sends no request.
func New(ctx context.Context, opts Options) (*Run, error) {
	p := opts.Pipeline
	r := &Run{ID: NewRunID(), opts: opts, log: opts.Logger, red: opts.Redactor}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.red == nil {
		r.red = redact.New()
	}
	r.red.Add(opts.Resolved.Secrets...)
	if u := opts.Resolved.DestinationURL; u != "" {
		// The password of a connection URL is a secret too.
		r.red.Add(urlPassword(u)...)
	}
	names := p.StreamOrder
	if len(opts.Streams) > 0 {
		for _, s := range opts.Streams {
			if !slices.Contains(p.StreamOrder, s) {
				return nil, fmt.Errorf("pipeline %s has no stream %q (it has: %v)", p.Name, s, p.StreamOrder)
			}
		}
		names = opts.Streams
	}
	src, err := source.New(p.Connector.Inline, source.Options{Config: opts.Resolved.Config, Redactor: r.red, Logger: r.log})
	if err != nil {
		return nil, fmt.Errorf("connector %s: %w", p.Connector.Inline.Name, err)
	}
	r.src = src
	dst := opts.Destination
	if dst == nil {
		dst, err = dest.Open(ctx, dest.Config{Spec: p.Destination, URL: opts.Resolved.DestinationURL, Path: opts.Resolved.DestinationPath})
		if err != nil {
			return nil, fmt.Errorf("destination %s: %s", p.Destination.Type, r.red.URL(err.Error()))
		}
	}
	r.dst = dst
	for _, n := range names {
		sp := &StreamProgress{Name: n, Table: dst.TableName(p.TableOf(n)), Mode: p.ModeOf(n)}
		r.streams = append(r.streams, sp)
	}
	return r, nil
}

// Progress returns the streams' live counters.
func (r *Run) Progress() []*StreamProgress { return r.streams }

// Source returns the run's source.
func (r *Run) Source() source.Source { return r.src }

// Destination returns the run's destination.
func (r *Run) Destination() dest.Destination { return r.dst }

// Close releases the destination.
func (r *Run) Close() error { return r.dst.Close() }

// Execute syncs every stream and records the run. Streams run in parallel
// up to sync.parallelism (a child stream reads its parent stream itself,
// so it need not wait for it). It returns the summary and, if any stream
// failed, an error naming them.
func (r *Run) Execute(ctx context.Context) (*Summary, error) {
	r.started = time.Now()
	p := r.opts.Pipeline
	parallel := spec.DefaultParallelism
	if p.Sync != nil && p.Sync.Parallelism > 0 {
		parallel = p.Sync.Parallelism
	}
	sem := make(chan struct{}, parallel)
	results := make([]StreamSummary, len(r.streams))
	var wg sync.WaitGroup
	for i, sp := range r.streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				results[i] = StreamSummary{Stream: sp.Name, Table: sp.Table, Mode: sp.Mode, Status: "cancelled", Error: ctx.Err().Error()}
				return
			}
			defer func() { <-sem }()
			results[i] = r.stream(ctx, sp)
		}()
	}
	wg.Wait()
	sum := &Summary{RunID: r.ID, Pipeline: p.Name, Started: r.started, Duration: time.Since(r.started), Streams: results}
	st := r.src.Stats()
	sum.Requests, sum.Retries = st.Requests, st.Retries
	var failed []string
	for _, s := range results {
		if s.Status != "succeeded" {
			failed = append(failed, s.Stream)
		}
	}
	switch {
	case len(failed) == 0:
		sum.Status = "succeeded"
	case len(failed) == len(results):
		sum.Status = "failed"
	default:
		sum.Status = "partial"
	}
	raw, _ := json.Marshal(sum)
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := r.dst.RecordRun(rctx, dest.Run{ID: r.ID, Pipeline: p.Name, StartedAt: r.started, FinishedAt: time.Now(), Status: sum.Status, Summary: raw}); err != nil {
		r.log.Warn("could not record the run", "error", r.red.String(err.Error()))
	}
	if len(failed) > 0 {
		var errs []error
		for _, s := range results {
			if s.Status != "succeeded" {
				errs = append(errs, fmt.Errorf("stream %s: %s", s.Stream, s.Error))
			}
		}
		return sum, &RunError{Failed: failed, Errs: errs}
	}
	if r.opts.FailOnDrift {
		var drifted []string
		for _, s := range results {
			if len(s.Drift) > 0 {
				drifted = append(drifted, s.Stream)
			}
		}
		if len(drifted) > 0 {
			return sum, fmt.Errorf("schema drift in %v (--fail-on-drift)", drifted)
		}
	}
	return sum, nil
}

// RunError lists the streams that failed.
type RunError struct {
	Failed []string
	Errs   []error
}

func (e *RunError) Error() string {
	return errors.Join(e.Errs...).Error()
}

// Unwrap returns the stream errors.
func (e *RunError) Unwrap() []error { return e.Errs }

// urlPassword returns the password of a connection URL, if any.
func urlPassword(raw string) []string {
	u, err := parseURL(raw)
	if err != nil || u.User == nil {
		return nil
	}
	if p, ok := u.User.Password(); ok && p != "" {
		return []string{p}
	}
	return nil
}

// Env is the process environment lookup, for spec.Pipeline.Resolve.
func Env(key string) (string, bool) { return os.LookupEnv(key) }
