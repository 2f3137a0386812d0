// Package engine runs pipelines: for each stream it reads pages from the
// source, converts them into typed chunks, writes them to the destination
// and decides when to commit, so that rows and the state covering them
// become durable together. It owns the meaning of state (cursors, passes,
// resume positions, the identities of boundary records); sources and
// destinations only carry it.
//
// Per stream, three goroutines form a pipeline joined by small channels:
//
//	source.Read ──pages──▶ converter ──chunks──▶ writer (Write, Commit, Finish)
//
// so fetching, decoding and database writes overlap while memory stays
// bounded by the channel sizes, not by the data. What the run does is
// published to an Observer as events.
package engine

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/redact"
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
	// Observer is told what the run does (default: nobody).
	Observer Observer
	// FailOnDrift refuses any change to an existing table's layout (a new
	// column, a widened type): the stream fails before the change is
	// applied, as with schema policy freeze, naming the change.
	FailOnDrift bool
	// RetryFor bounds how long a stream keeps retrying while the database
	// is unavailable (default 2 minutes). Unbounded streams retry until
	// the run is cancelled.
	RetryFor time.Duration
	// Destination, when set, is used instead of opening the pipeline's;
	// the run takes it over and closes it.
	Destination dest.Destination
	// Source, when set, is used instead of building the connector's; the
	// run takes it over and closes it.
	Source source.Source
	// State, when set, keeps the sync state instead of the destination
	// (or the pipeline's state: section). State outside the destination
	// is saved after each commit: delivery is at-least-once, and a crash
	// between the commit and the save re-delivers the rows of that commit.
	State dest.StateStore
	// Transport, when set, is what source.Options.Transport says: an
	// http.RoundTripper sending the source's requests, or a
	// func(http.RoundTripper) http.RoundTripper wrapping its own (replay
	// and record).
	Transport any
	// WrapSource, when set, wraps the source the run builds (ferry run
	// --dry-run --limit cuts each stream short this way).
	WrapSource func(source.Source) source.Source
	// RunID, when set, is the run's id (default: NewRunID()); ferry serve
	// records a run before it starts.
	RunID string
	// Lease, when set, is a fenced lease the caller holds on the run's one
	// stream (Streams must name exactly that stream), as workers do: the
	// run does not take the stream's lock (the lease is the lock), and
	// every commit carries the lease, refused with a *dest.FencedError
	// once a newer lease exists, in the transaction that saves the state
	// (and the rows, when the destination keeps the state). The state
	// store must be a dest.Leaser. The caller renews the lease.
	Lease *dest.Lease
	// Slice, when set, restricts the run's one child stream to the
	// partitions of one slice (by a hash of their keys; the parent stream
	// is read whole), with the slice's own stream-level state, so the
	// slices of a stream run in parallel in separate runs, each resuming
	// on its own.
	Slice *Slice
}

// Run is one execution of a pipeline.
type Run struct {
	ID    string
	opts  Options
	log   *slog.Logger
	red   *redact.Redactor
	obs   Observer
	src   source.Source
	dst   dest.Destination
	state dest.StateStore
	// ownState is true when the state store is the destination's own, so
	// checkpoints commit in the rows' transaction (exactly-once effect).
	ownState  bool
	stateDest dest.Destination // the pipeline's state: destination, if any
	streams   []*StreamProgress
	byName    map[string]*StreamProgress
	started   time.Time

	requests, retries atomic.Int64
}

// StreamProgress is a stream's live counters, safe to read while the run
// goes on.
type StreamProgress struct {
	Name  string
	Table string
	Mode  dest.Mode
	// Records counts rows written; Committed the rows made durable.
	Records   atomic.Int64
	Committed atomic.Int64
	Pages     atomic.Int64
	// Rejected counts records sent to the rejected table; Filtered those
	// dropped by the incremental cursor or as repeats.
	Rejected atomic.Int64
	Filtered atomic.Int64
	Commits  atomic.Int64
	// Retries counts restarts after the database was unavailable.
	Retries atomic.Int64
	// Requests, HTTPRetries and Waited count the source's requests for the
	// stream, those retried, and the time spent waiting before retries
	// (backoff, Retry-After), in microseconds.
	Requests    atomic.Int64
	HTTPRetries atomic.Int64
	Waited      atomic.Int64
	// PartitionsStarted and PartitionsDone count the partitions of a child
	// stream this run read.
	PartitionsStarted atomic.Int64
	PartitionsDone    atomic.Int64
	status            atomic.Int32
	started           atomic.Int64 // unix micro
	finished          atomic.Int64

	qmu     sync.Mutex
	queries []QueryCount // distinct statements a database source ran
}

// QueryCount is a statement a database source ran for a stream, and how
// many times.
type QueryCount struct {
	Query string `json:"query"`
	Count int64  `json:"count"`
}

// maxQueries bounds the distinct statements a summary keeps per stream.
const maxQueries = 100

func (p *StreamProgress) addQuery(q string) {
	p.qmu.Lock()
	defer p.qmu.Unlock()
	for i := range p.queries {
		if p.queries[i].Query == q {
			p.queries[i].Count++
			return
		}
	}
	if len(p.queries) < maxQueries {
		p.queries = append(p.queries, QueryCount{Query: q, Count: 1})
	}
}

// Queries returns the distinct statements a database source ran for the
// stream so far, in first-run order, with their counts.
func (p *StreamProgress) Queries() []QueryCount {
	p.qmu.Lock()
	defer p.qmu.Unlock()
	return slices.Clone(p.queries)
}

// Stream states, for progress displays.
const (
	Pending int32 = iota
	Running
	Succeeded
	Failed
	Stopped // stopped early on purpose (a budget, a long rate limit)
)

// State returns the stream's state (Pending, Running, Succeeded, Failed,
// Stopped).
func (p *StreamProgress) State() int32 { return p.status.Load() }

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
	Status   dest.Status     `json:"status"`
	Streams  []StreamSummary `json:"streams"`
	Requests int64           `json:"requests"`
	Retries  int64           `json:"retries"`
}

// StreamSummary is what a run did to one stream.
type StreamSummary struct {
	Stream   string        `json:"stream"`
	Table    string        `json:"table"`
	Mode     dest.Mode     `json:"mode"`
	Status   dest.Status   `json:"status"`
	Records  int64         `json:"records"`
	Pages    int64         `json:"pages"`
	Rejected int64         `json:"rejected"`
	Filtered int64         `json:"filtered"`
	Requests int64         `json:"requests"`
	Retries  int64         `json:"retries"`
	Duration time.Duration `json:"duration"`
	// Error is the failure's message, redacted and bounded; for a
	// stopped stream, why it stopped.
	Error string `json:"error,omitempty"`
	// ResumeAt is when the limit that stopped the stream resets (status
	// stopped; zero when the next run may go on at once).
	ResumeAt time.Time `json:"resume_at,omitzero"`
	NewTable bool      `json:"new_table,omitempty"`
	// Changes describes how the stream's tables changed (drift), for
	// people; Drift holds the same as values.
	Changes []string        `json:"schema_changes,omitempty"`
	Drift   []schema.Change `json:"-"`
	// Unfilled lists the columns the previous run gave values to and this
	// one did not (informational, not drift: the table did not change).
	Unfilled []string `json:"unfilled,omitempty"`
	// Queries lists every distinct statement a database source ran for
	// the stream (source.Request.Query), with how often.
	Queries []QueryCount `json:"queries,omitempty"`
	// Err is the stream's failure with its type intact (errors.As finds
	// *dest.TransientError, *source.PartitionErrors, *normalize.SchemaError,
	// *dest.LockedError, context.Canceled); its message is redacted.
	Err error `json:"-"`
}

// NewRunID returns a sortable, unique run id such as
// 20261122T004500Z-3f9a1c.
func NewRunID() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return time.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// New prepares a run: it builds the source and opens the destination (and
// the state store), but sends no request.
func New(ctx context.Context, opts Options) (*Run, error) {
	p := opts.Pipeline
	r := &Run{ID: cmp.Or(opts.RunID, NewRunID()), opts: opts, log: opts.Logger, red: opts.Redactor, obs: opts.Observer, byName: map[string]*StreamProgress{}}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.red == nil {
		r.red = redact.New()
	}
	if r.obs == nil {
		r.obs = ObserverFunc(func(Event) {})
	}
	r.red.Add(opts.Resolved.Secrets...)
	names := p.StreamOrder
	if len(opts.Streams) > 0 {
		for _, s := range opts.Streams {
			if !slices.Contains(p.StreamOrder, s) {
				return nil, &UnknownStreamError{Pipeline: p.Name, Stream: s, Known: p.StreamOrder}
			}
		}
		names = opts.Streams
	}
	ok := false
	defer func() {
		if !ok {
			r.Close()
		}
	}()
	var err error
	if r.src = opts.Source; r.src == nil {
		conn := p.Connector.Inline
		r.src, err = source.New(conn.Type, conn.Body, source.Options{Name: conn.Name, Config: opts.Resolved.Config, Redactor: r.red, Logger: r.log, Observer: r, Dir: p.Dir, Transport: opts.Transport})
		if err != nil {
			return nil, fmt.Errorf("connector %s: %w", conn.Name, err)
		}
		if opts.WrapSource != nil {
			r.src = opts.WrapSource(r.src)
		}
	}
	if r.dst = opts.Destination; r.dst == nil {
		r.dst, err = dest.Open(ctx, p.Destination.Type, opts.Resolved.Destination, dest.Options{Dir: p.Dir, Logger: r.log, Redactor: r.red})
		if err != nil {
			return nil, r.redacted(fmt.Errorf("destination %s: %w", p.Destination.Type, err))
		}
	}
	if err := r.openState(ctx); err != nil {
		return nil, err
	}
	if err := r.checkLease(names); err != nil {
		return nil, err
	}
	for _, n := range names {
		sp := &StreamProgress{Name: n, Table: TableName(r.dst, p.TableOf(n)), Mode: p.ModeOf(n)}
		r.streams = append(r.streams, sp)
		r.byName[n] = sp
	}
	ok = true
	return r, nil
}

// openState chooses the state store: the option, the pipeline's state:
// section, or the destination's own.
func (r *Run) openState(ctx context.Context) error {
	p := r.opts.Pipeline
	switch {
	case r.opts.State != nil:
		r.state = r.opts.State
		if sk, ok := r.dst.(dest.StateKeeper); ok && sk.State() == r.state {
			r.ownState = true
		}
	case p.State != nil:
		d, err := dest.Open(ctx, p.State.Type, r.opts.Resolved.State, dest.Options{Dir: p.Dir, Logger: r.log})
		if err != nil {
			return r.redacted(fmt.Errorf("state %s: %w", p.State.Type, err))
		}
		r.stateDest = d
		sk, ok := d.(dest.StateKeeper)
		if !ok {
			return fmt.Errorf("state: the %s destination cannot keep state", p.State.Type)
		}
		r.state = sk.State()
	default:
		sk, ok := r.dst.(dest.StateKeeper)
		if !ok {
			return fmt.Errorf("the %s destination keeps no sync state: give the pipeline a state: section (a database that does, such as {type: postgres, url: …})", p.Destination.Type)
		}
		r.state, r.ownState = sk.State(), true
	}
	return nil
}

// checkLease checks that a run under a lease or of a slice runs the one
// stream the lease is for, in a store that can fence it.
func (r *Run) checkLease(names []string) error {
	l, sl := r.opts.Lease, r.opts.Slice
	if l == nil && sl == nil {
		return nil
	}
	if len(names) != 1 || (l != nil && names[0] != l.Stream) {
		return fmt.Errorf("a run under a lease or of a slice runs one stream (got %s)", strings.Join(names, ", "))
	}
	if sl != nil && (sl.Count < 1 || sl.Index < 0 || sl.Index >= sl.Count) {
		return fmt.Errorf("slice %s: the index must be from 0 to the count less one", sl)
	}
	if l != nil {
		if _, ok := r.state.(dest.Leaser); !ok {
			return fmt.Errorf("stream %s: its state store cannot fence commits with leases: keep the state in a SQL database (PostgreSQL for several machines)", names[0])
		}
		if sl != nil && l.Slice != sl.String() {
			return fmt.Errorf("the lease is for slice %q of stream %s, not %s", l.Slice, l.Stream, sl)
		}
	}
	return nil
}

// Slice is one of Count slices of a child stream's partitions.
type Slice struct {
	Index, Count int
}

// String returns the slice as index/count, such as 3/8.
func (s Slice) String() string { return fmt.Sprintf("%d/%d", s.Index, s.Count) }

// Has reports whether a partition key belongs to the slice.
func (s Slice) Has(key string) bool {
	h := fnv.New64a()
	h.Write([]byte(key))
	return h.Sum64()%uint64(s.Count) == uint64(s.Index)
}

// StateKey is the partition key under which the slice keeps its
// stream-level state (its pass), apart from the other slices'.
func (s Slice) StateKey() string { return "ferry.slice " + s.String() }

// ParseSlice reads index/count.
func ParseSlice(text string) (Slice, error) {
	var s Slice
	if _, err := fmt.Sscanf(text, "%d/%d", &s.Index, &s.Count); err != nil || s.Count < 1 || s.Index < 0 || s.Index >= s.Count || s.String() != text {
		return Slice{}, fmt.Errorf("slice %q is not index/count with 0 ≤ index < count (such as 0/4)", text)
	}
	return s, nil
}

// TableName returns the destination's identifier for a stream's table.
func TableName(d dest.Destination, name string) string {
	if n, ok := d.(dest.Namer); ok {
		return n.TableName(name)
	}
	return schema.Normalize(name)
}

// UnknownStreamError reports a stream the pipeline does not have.
type UnknownStreamError struct {
	Pipeline, Stream string
	Known            []string
}

func (e *UnknownStreamError) Error() string {
	return fmt.Sprintf("pipeline %s has no stream %q (it has: %s)", e.Pipeline, e.Stream, strings.Join(e.Known, ", "))
}

// Progress returns the streams' live counters.
func (r *Run) Progress() []*StreamProgress { return r.streams }

// Source returns the run's source.
func (r *Run) Source() source.Source { return r.src }

// State returns the run's state store (a dest.Leaser when it can fence).
func (r *Run) State() dest.StateStore { return r.state }

// UseLease makes the run fence its commits with l, as Options.Lease does,
// for a caller that takes the lease from the run's state store after New
// and before Execute.
func (r *Run) UseLease(l *dest.Lease) error {
	r.opts.Lease = l
	return r.checkLease(r.streamNames())
}

// Destination returns the run's destination.
func (r *Run) Destination() dest.Destination { return r.dst }

// Close releases the source, the destination and the state store.
func (r *Run) Close() error {
	var errs []error
	if r.src != nil {
		errs = append(errs, r.src.Close())
	}
	if r.dst != nil {
		errs = append(errs, r.dst.Close())
	}
	if r.stateDest != nil {
		errs = append(errs, r.stateDest.Close())
	}
	return errors.Join(errs...)
}

// Requested counts a source request and publishes it (source.Observer).
func (r *Run) Requested(req source.Request) {
	r.requests.Add(1)
	if req.Retry {
		r.retries.Add(1)
	}
	if sp := r.byName[req.Stream]; sp != nil {
		if req.Query != "" {
			sp.addQuery(req.Query)
		}
		sp.Requests.Add(1)
		if req.Retry {
			sp.HTTPRetries.Add(1)
			sp.Waited.Add(req.Wait.Microseconds())
		}
	}
	r.obs.Observe(Requested{Base: r.base(), Request: req})
}

func (r *Run) base() Base { return Base{RunID: r.ID, At: time.Now()} }

// Execute syncs every stream and records the run. Streams run in parallel
// up to sync.parallelism (a child stream reads its parent stream itself,
// so it need not wait for it). It returns the summary and, if any stream
// failed, a *RunError wrapping each stream's typed error.
func (r *Run) Execute(ctx context.Context) (*Summary, error) {
	r.started = time.Now()
	p := r.opts.Pipeline
	r.obs.Observe(RunStarted{Base: r.base(), Pipeline: p.Name, Streams: r.streamNames()})
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
				err := fmt.Errorf("interrupted before it started: %w", ctx.Err())
				results[i] = StreamSummary{Stream: sp.Name, Table: sp.Table, Mode: sp.Mode, Status: dest.Cancelled, Error: err.Error(), Err: err}
				return
			}
			defer func() { <-sem }()
			results[i] = r.stream(ctx, sp)
			r.obs.Observe(StreamFinished{Base: r.base(), Summary: results[i], Err: results[i].Err})
		}()
	}
	wg.Wait()
	sum := &Summary{RunID: r.ID, Pipeline: p.Name, Started: r.started, Duration: time.Since(r.started), Streams: results}
	sum.Requests, sum.Retries = r.requests.Load(), r.retries.Load()
	sum.Status = runStatus(results)
	raw, _ := json.Marshal(sum)
	// A destination without a runs log (an API) has the run recorded
	// where its state is kept, when that store keeps one.
	rl, ok := r.dst.(dest.RunLog)
	if !ok && r.stateDest != nil {
		rl, ok = r.stateDest.(dest.RunLog)
	}
	if ok {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := rl.RecordRun(rctx, dest.Run{ID: r.ID, Pipeline: p.Name, StartedAt: r.started, FinishedAt: time.Now(), Status: sum.Status, Summary: raw}); err != nil {
			r.log.Warn("could not record the run", "error", r.red.String(err.Error()))
		}
	}
	var err error
	var failed []string
	var errs []error
	for _, s := range results {
		if s.Err != nil && s.Status != dest.Stopped {
			failed = append(failed, s.Stream)
			errs = append(errs, &StreamError{Stream: s.Stream, Err: s.Err})
		}
	}
	if len(failed) > 0 {
		err = &RunError{Failed: failed, Errs: errs}
	}
	r.obs.Observe(RunFinished{Base: r.base(), Summary: sum, Err: err})
	return sum, err
}

func (r *Run) streamNames() []string {
	out := make([]string, len(r.streams))
	for i, s := range r.streams {
		out[i] = s.Name
	}
	return out
}

// runStatus sums up the streams: succeeded when all did; failed when none
// did; cancelled when interrupted and nothing failed; partial otherwise
// (some failed, or some records were rejected).
func runStatus(results []StreamSummary) dest.Status {
	var ok, failed, cancelled, partial, stopped int
	for _, s := range results {
		switch s.Status {
		case dest.Succeeded:
			ok++
		case dest.Partial:
			partial++
		case dest.Cancelled:
			cancelled++
		case dest.Stopped:
			stopped++
		default:
			failed++
		}
	}
	switch {
	case len(results) == 0:
		return dest.Succeeded
	case failed == len(results):
		return dest.Failed
	case cancelled > 0 && failed == 0 && partial == 0:
		return dest.Cancelled
	case failed > 0 || partial > 0:
		return dest.Partial
	case stopped > 0:
		return dest.Stopped
	}
	return dest.Succeeded
}

// StreamError is one stream's failure.
type StreamError struct {
	Stream string
	Err    error
}

func (e *StreamError) Error() string { return "stream " + e.Stream + ": " + e.Err.Error() }

// Unwrap returns the stream's error.
func (e *StreamError) Unwrap() error { return e.Err }

// RunError lists the streams that failed; errors.As and errors.Is see
// each stream's error.
type RunError struct {
	Failed []string
	Errs   []error
}

func (e *RunError) Error() string {
	return errors.Join(e.Errs...).Error()
}

// Unwrap returns the stream errors.
func (e *RunError) Unwrap() []error { return e.Errs }

// Env is the process environment lookup, for spec.Pipeline.Resolve.
func Env(key string) (string, bool) { return os.LookupEnv(key) }

// maxErrorText bounds an error's message in summaries and the runs log.
const maxErrorText = 4 << 10

// redacted returns err with its message redacted and bounded, keeping the
// error chain for errors.As.
func (r *Run) redacted(err error) error {
	if err == nil {
		return nil
	}
	return &redactedError{msg: bound(r.red.URL(r.red.String(err.Error()))), err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// bound cuts a message to maxErrorText bytes at a UTF-8 boundary, saying
// how much was cut.
func bound(s string) string {
	if len(s) <= maxErrorText {
		return s
	}
	cut := maxErrorText
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return fmt.Sprintf("%s… (%d more bytes)", s[:cut], len(s)-cut)
}
