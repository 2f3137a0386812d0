// Package enginetest runs pipelines through the real engine, for tests.
//
// A test gives a connector and a pipeline as YAML and the environment
// variables they read; New writes them into a temporary directory, and
// every Run loads, resolves and executes them exactly as `ferry run` does
// (spec.LoadPipeline → Pipeline.Resolve → engine.New → Run.Execute). A run
// gives back its summary, its error and every event it published; the
// destination's tables and state are then read back through the
// destination's own dest.Reader and dest.StateKeeper, opened read-only, so
// the same assertions hold on SQLite, PostgreSQL and MySQL:
//
//	p := enginetest.New(t, enginetest.Config{Connector: conn, Pipeline: "connector: connector.yaml\n", Dest: enginetest.Postgres})
//	res := p.Run()
//	if res.Err != nil { t.Fatal(res.Err) }
//	got := p.Rows("users", "id", "email") // sorted, canonical text
//
// The pipeline can be run again (incremental runs), with options (streams,
// FailOnDrift, a destination wrapped to observe or disturb its writers),
// cancelled when an event shows, or started in the background and waited
// for.
package enginetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/dest/dbtest"
	"github.com/ferry-dev/ferry/internal/engine"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/redact"
	"github.com/ferry-dev/ferry/internal/schema"
	"github.com/ferry-dev/ferry/internal/spec"
)

// Kind chooses the database a pipeline without a destination: section
// writes to.
type Kind string

// The destinations the harness can provide.
const (
	// SQLite is a file out.db in the pipeline's directory (the default).
	SQLite Kind = "sqlite"
	// Postgres is a fresh schema on the PostgreSQL test server
	// (dbtest.Postgres), dropped when the test ends.
	Postgres Kind = "postgres"
	// MySQL is a fresh database on the MySQL/MariaDB test server
	// (dbtest.MySQL), dropped when the test ends.
	MySQL Kind = "mysql"
)

// Kinds lists every destination kind, for tests that run on each.
var Kinds = []Kind{SQLite, Postgres, MySQL}

// URLEnv is the environment variable the destination: section the harness
// adds reads the server's URL from (it may hold a password).
const URLEnv = "FERRY_TEST_DESTINATION_URL"

// Config describes a test pipeline.
type Config struct {
	// Connector is the connector file's YAML, written to ConnectorFile
	// (default connector.yaml); "" writes none (an inline connector).
	Connector     string
	ConnectorFile string
	// Pipeline is the pipeline file's YAML, written to pipeline.yaml. When
	// it has no top-level destination: key, the harness appends the
	// destination Dest names. On PostgreSQL and MySQL, whose stream locks
	// are server-wide, a pipeline without a top-level name: key is given a
	// unique one, so tests running in parallel do not lock each other out.
	Pipeline string
	// Env holds the environment variables the files read (${VAR}, {env:
	// VAR}). The process environment is not consulted.
	Env map[string]string
	// Dest is the destination to add (default SQLite). Choosing one for a
	// pipeline that has its own destination: section fails the test.
	Dest Kind
	// Files are more files to write beside the pipeline (name → content).
	Files map[string]string
}

// Target says where the destination the harness added lives.
type Target struct {
	Kind Kind
	// Path is the SQLite file.
	Path string
	// URL is the server URL the pipeline reads (PostgreSQL: with
	// application_name set to Schema, so a test can find the run's
	// connections in pg_stat_activity; MySQL: naming Database).
	URL string
	// Schema is the PostgreSQL schema; Database the MySQL database.
	Schema, Database string
}

// Pipeline is a test pipeline: its files in a temporary directory, its
// environment, and its destination.
type Pipeline struct {
	t      testing.TB
	dir    string
	mu     sync.Mutex
	env    map[string]string
	target Target
	logs   *syncBuffer
}

var hasDestination = regexp.MustCompile(`(?m)^destination\s*:`)
var hasName = regexp.MustCompile(`(?m)^name\s*:`)

// New writes the files of cfg into a temporary directory removed when the
// test ends.
func New(t testing.TB, cfg Config) *Pipeline {
	t.Helper()
	p := &Pipeline{t: t, dir: t.TempDir(), env: maps.Clone(cfg.Env), logs: &syncBuffer{}}
	if p.env == nil {
		p.env = map[string]string{}
	}
	pipeline := cfg.Pipeline
	if hasDestination.MatchString(pipeline) {
		if cfg.Dest != "" {
			t.Fatalf("enginetest: the pipeline has its own destination: section and Config.Dest is %s; give one or the other", cfg.Dest)
		}
	} else {
		section := p.destination(cfg.Dest)
		if !strings.HasSuffix(pipeline, "\n") && pipeline != "" {
			pipeline += "\n"
		}
		pipeline += "destination: " + section + "\n"
		if p.target.Kind != SQLite && !hasName.MatchString(pipeline) {
			pipeline = "name: " + dbtest.Name() + "\n" + pipeline
		}
	}
	if cfg.Connector != "" {
		name := cfg.ConnectorFile
		if name == "" {
			name = "connector.yaml"
		}
		p.Write(name, cfg.Connector)
	}
	for name, body := range cfg.Files {
		p.Write(name, body)
	}
	p.Write("pipeline.yaml", pipeline)
	return p
}

// destination returns the destination: section for kind, creating the
// database it names.
func (p *Pipeline) destination(kind Kind) string {
	p.t.Helper()
	switch kind {
	case "", SQLite:
		p.target = Target{Kind: SQLite, Path: filepath.Join(p.dir, "out.db")}
		return "{type: sqlite, path: out.db}"
	case Postgres:
		base, name := dbtest.Postgres(p.t)
		u, err := url.Parse(base)
		if err != nil {
			p.t.Fatalf("enginetest: the PostgreSQL test URL does not parse: %v", err)
		}
		q := u.Query()
		q.Set("application_name", name)
		u.RawQuery = q.Encode()
		p.target = Target{Kind: Postgres, URL: u.String(), Schema: name}
		p.env[URLEnv] = p.target.URL
		return fmt.Sprintf(`{type: postgres, url: "${%s}", schema: %s}`, URLEnv, name)
	case MySQL:
		raw := dbtest.MySQL(p.t)
		u, err := url.Parse(raw)
		if err != nil {
			p.t.Fatalf("enginetest: the MySQL test URL does not parse: %v", err)
		}
		p.target = Target{Kind: MySQL, URL: raw, Database: strings.TrimPrefix(u.Path, "/")}
		p.env[URLEnv] = raw
		return fmt.Sprintf(`{type: mysql, url: "${%s}"}`, URLEnv)
	}
	p.t.Fatalf("enginetest: unknown destination kind %q", kind)
	return ""
}

// Dir returns the directory holding the pipeline's files.
func (p *Pipeline) Dir() string { return p.dir }

// Target returns the destination the harness added (zero when the
// pipeline brought its own).
func (p *Pipeline) Target() Target { return p.target }

// Write writes a file into the pipeline's directory, for instance to
// change the pipeline between runs.
func (p *Pipeline) Write(name, body string) {
	p.t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		p.t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		p.t.Fatal(err)
	}
}

// SetEnv sets an environment variable for the next runs.
func (p *Pipeline) SetEnv(key, value string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.env[key] = value
}

// Lookup answers the pipeline's environment variables.
func (p *Pipeline) Lookup(key string) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	v, ok := p.env[key]
	return v, ok
}

// Logs returns everything the runs logged so far, at debug level.
func (p *Pipeline) Logs() string { return p.logs.String() }

// Load loads and resolves the pipeline as a run does; it fails the test
// on an error.
func (p *Pipeline) Load() (*spec.Pipeline, *spec.Resolved) {
	p.t.Helper()
	sp, r, _, err := p.load()
	if err != nil {
		p.t.Fatal(err)
	}
	return sp, r
}

func (p *Pipeline) load() (*spec.Pipeline, *spec.Resolved, Stage, error) {
	sp, err := spec.LoadPipeline(filepath.Join(p.dir, "pipeline.yaml"))
	if err != nil {
		return nil, nil, StageLoad, err
	}
	r, err := sp.Resolve(p.Lookup)
	if err != nil {
		return nil, nil, StageResolve, err
	}
	return sp, r, "", nil
}

// OpenDestination opens the pipeline's destination as a run does (for
// writing), for a test to wrap or to use directly. The caller closes it,
// or hands it to a run, which closes it.
func (p *Pipeline) OpenDestination() dest.Destination {
	p.t.Helper()
	sp, r := p.Load()
	d, err := dest.Open(context.Background(), sp.Destination.Type, r.Destination, dest.Options{Dir: sp.Dir, Logger: p.logger()})
	if err != nil {
		p.t.Fatalf("open destination %s: %v", sp.Destination.Type, err)
	}
	return d
}

func (p *Pipeline) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(p.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Options adjust one run.
type Options struct {
	// Engine holds the engine's options (Streams, FailOnDrift, RetryFor,
	// Destination, Source, State…). The harness sets Pipeline and Resolved,
	// and Logger and Redactor when they are nil; Observer, when set, is told
	// every event too.
	Engine engine.Options
	// Context is the run's parent context (default: the background).
	Context context.Context
	// CancelWhen, when set, is called with every event; the run is
	// cancelled (as by Ctrl-C) once it returns true. It is called from the
	// run's goroutines, possibly at once, and must return quickly.
	CancelWhen func(engine.Event) bool
	// Wrap, when set, wraps the pipeline's destination (opened by the
	// harness) for the run: to count, slow down, fail or cancel writes.
	// The wrapper should keep the capabilities the engine needs
	// (dest.StateKeeper, dest.Namer, dest.RunLog): see BeforeWrite.
	Wrap func(d dest.Destination, r *Running) dest.Destination
}

// Stage says how far a run got.
type Stage string

// The stages of a run that can fail.
const (
	StageLoad    Stage = "load"    // spec.LoadPipeline
	StageResolve Stage = "resolve" // Pipeline.Resolve
	StageNew     Stage = "new"     // engine.New
	StageExecute Stage = "execute" // Run.Execute
)

// Result is what one run did.
type Result struct {
	// Summary is the run's summary (nil when it did not execute).
	Summary *engine.Summary
	// Err is the run's error, from whichever stage failed.
	Err error
	// Stage is the last stage the run reached.
	Stage Stage
	// Events are the events the run published, in the order Observe was
	// called.
	Events []engine.Event
	// Run is the engine's run (closed; its Progress stays readable), nil
	// when engine.New failed.
	Run *engine.Run
	// Elapsed is how long Execute took.
	Elapsed time.Duration
}

// Stream returns the summary of one stream, or a zero summary naming it
// when the run has none.
func (r *Result) Stream(name string) engine.StreamSummary {
	if r.Summary != nil {
		for _, s := range r.Summary.Streams {
			if s.Stream == name {
				return s
			}
		}
	}
	return engine.StreamSummary{Stream: name}
}

// EventsOf returns the events of type T among events.
func EventsOf[T engine.Event](events []engine.Event) []T {
	var out []T
	for _, e := range events {
		if x, ok := e.(T); ok {
			out = append(out, x)
		}
	}
	return out
}

// Run runs the pipeline once with default options.
func (p *Pipeline) Run() *Result {
	p.t.Helper()
	return p.RunWith(Options{})
}

// RunStreams runs the pipeline once for some of its streams.
func (p *Pipeline) RunStreams(streams ...string) *Result {
	p.t.Helper()
	return p.RunWith(Options{Engine: engine.Options{Streams: streams}})
}

// RunWith runs the pipeline once with opts and waits for it to end.
func (p *Pipeline) RunWith(opts Options) *Result {
	p.t.Helper()
	return p.Start(opts).Wait()
}

// Running is a run in progress.
type Running struct {
	p      *Pipeline
	ctx    context.Context
	cancel context.CancelFunc
	run    atomic.Pointer[engine.Run]

	mu      sync.Mutex
	events  []engine.Event
	changed chan struct{} // closed and replaced on every event

	done chan struct{}
	res  *Result
}

// Start starts a run in the background. The test must Wait for it; a
// run still going when the test ends is cancelled and waited for.
func (p *Pipeline) Start(opts Options) *Running {
	parent := opts.Context
	if parent == nil {
		parent = context.Background()
	}
	ctx, cancel := context.WithCancel(parent)
	r := &Running{p: p, ctx: ctx, cancel: cancel, changed: make(chan struct{}), done: make(chan struct{})}
	p.t.Cleanup(func() {
		r.Cancel()
		<-r.done
	})
	go r.execute(opts)
	return r
}

func (r *Running) execute(opts Options) {
	res := &Result{}
	defer func() {
		res.Events = r.Events()
		r.res = res
		r.cancel()
		close(r.done)
	}()
	sp, resolved, stage, err := r.p.load()
	if err != nil {
		res.Stage, res.Err = stage, err
		return
	}
	eo := opts.Engine
	eo.Pipeline, eo.Resolved = sp, resolved
	if eo.Logger == nil {
		eo.Logger = r.p.logger()
	}
	if eo.Redactor == nil {
		eo.Redactor = redact.New()
	}
	inner := eo.Observer
	eo.Observer = engine.ObserverFunc(func(e engine.Event) {
		r.observe(e)
		if inner != nil {
			inner.Observe(e)
		}
		if opts.CancelWhen != nil && opts.CancelWhen(e) {
			r.Cancel()
		}
	})
	var opened dest.Destination // opened here for Wrap
	if opts.Wrap != nil {
		d := eo.Destination
		if d == nil {
			d, err = dest.Open(r.ctx, sp.Destination.Type, resolved.Destination, dest.Options{Dir: sp.Dir, Logger: eo.Logger})
			if err != nil {
				res.Stage, res.Err = StageNew, err
				return
			}
			opened = d
		}
		eo.Destination = opts.Wrap(d, r)
	}
	res.Stage = StageNew
	run, err := engine.New(context.Background(), eo)
	if err != nil {
		if opened != nil {
			// engine.New may have failed before taking the destination over;
			// closing Ferry's destinations twice is harmless.
			opened.Close()
		}
		res.Err = err
		return
	}
	r.run.Store(run)
	res.Run = run
	defer run.Close()
	res.Stage = StageExecute
	start := time.Now()
	res.Summary, res.Err = run.Execute(r.ctx)
	res.Elapsed = time.Since(start)
}

func (r *Running) observe(e engine.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	close(r.changed)
	r.changed = make(chan struct{})
}

// Cancel cancels the run, as Ctrl-C does.
func (r *Running) Cancel() { r.cancel() }

// Engine returns the engine's run, nil until engine.New has returned (it
// is set before Execute starts, so a wrapped destination's writers always
// see it).
func (r *Running) Engine() *engine.Run { return r.run.Load() }

// Events returns the events published so far.
func (r *Running) Events() []engine.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// WaitFor waits until an event for which match is true has been published
// (it may have been already), and returns it. ok is false when the run
// ended, or timeout passed, without one. match is called in WaitFor's
// goroutine, once per event, in the order the events were published, so
// it may count them.
func (r *Running) WaitFor(match func(engine.Event) bool, timeout time.Duration) (e engine.Event, ok bool) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	seen := 0
	for {
		r.mu.Lock()
		for ; seen < len(r.events); seen++ {
			if match(r.events[seen]) {
				e := r.events[seen]
				r.mu.Unlock()
				return e, true
			}
		}
		changed := r.changed
		r.mu.Unlock()
		select {
		case <-changed:
		case <-r.done:
			// The last events may have arrived with the end.
			for _, e := range r.Events()[seen:] {
				if match(e) {
					return e, true
				}
			}
			return nil, false
		case <-timer.C:
			return nil, false
		}
	}
}

// Done is closed when the run has ended.
func (r *Running) Done() <-chan struct{} { return r.done }

// Wait waits for the run to end and returns what it did.
func (r *Running) Wait() *Result {
	<-r.done
	return r.res
}

// Read opens the pipeline's destination read-only, as `ferry state` and
// `ferry query` do, and calls fn with it; an error fails the test.
func (p *Pipeline) Read(fn func(d dest.Destination) error) {
	p.t.Helper()
	sp, r := p.Load()
	d, err := dest.Open(context.Background(), sp.Destination.Type, r.Destination, dest.Options{ReadOnly: true, Dir: sp.Dir})
	if err != nil {
		p.t.Fatalf("open destination %s read-only: %v", sp.Destination.Type, err)
	}
	defer d.Close()
	if err := fn(d); err != nil {
		p.t.Fatal(err)
	}
}

// reader returns d's Reader.
func reader(d dest.Destination) (dest.Reader, error) {
	r, ok := d.(dest.Reader)
	if !ok {
		return nil, fmt.Errorf("the destination %T cannot be read back: it is not a dest.Reader", d)
	}
	return r, nil
}

// Rows reads the columns cols of a table through the destination's
// Reader, each row as canonical text joined by "|" (see Render), sorted.
// With no cols, every column is read, in the table's order.
func (p *Pipeline) Rows(table string, cols ...string) []string {
	p.t.Helper()
	var out []string
	p.Read(func(d dest.Destination) error {
		rd, err := reader(d)
		if err != nil {
			return err
		}
		return rd.ReadRows(context.Background(), table, nil, func(names []string, row []any) error {
			parts, err := project(table, names, row, cols)
			if err != nil {
				return err
			}
			out = append(out, strings.Join(parts, "|"))
			return nil
		})
	})
	slices.Sort(out)
	return out
}

func project(table string, names []string, row []any, cols []string) ([]string, error) {
	if len(cols) == 0 {
		cols = names
	}
	parts := make([]string, len(cols))
	for i, c := range cols {
		j := slices.Index(names, c)
		if j < 0 {
			return nil, fmt.Errorf("table %s has no column %s (it has %v)", table, c, names)
		}
		parts[i] = Render(row[j])
	}
	return parts, nil
}

// Count returns the number of rows of a table, -1 when it does not
// exist.
func (p *Pipeline) Count(table string) int64 {
	p.t.Helper()
	var n int64
	p.Read(func(d dest.Destination) error {
		rd, err := reader(d)
		if err != nil {
			return err
		}
		n, err = rd.Count(context.Background(), table)
		return err
	})
	return n
}

// Layout returns the layout Ferry recorded for a table, nil if none.
func (p *Pipeline) Layout(table string) *schema.Table {
	p.t.Helper()
	var l *schema.Table
	p.Read(func(d dest.Destination) error {
		rd, err := reader(d)
		if err != nil {
			return err
		}
		l, err = rd.Layout(context.Background(), table)
		return err
	})
	return l
}

// Query runs a query through the destination's dest.Querier (SQL in the
// destination's dialect) and returns each row joined by "|", NULL as
// "NULL", in the order the database returns them.
func (p *Pipeline) Query(query string) []string {
	p.t.Helper()
	var out []string
	p.Read(func(d dest.Destination) error {
		q, ok := d.(dest.Querier)
		if !ok {
			return fmt.Errorf("the destination %T answers no queries", d)
		}
		_, rows, err := q.Query(context.Background(), query)
		if err != nil {
			return fmt.Errorf("%s: %w", query, err)
		}
		for _, r := range rows {
			out = append(out, strings.Join(r, "|"))
		}
		return nil
	})
	return out
}

// Name returns the pipeline's name, which keys its state.
func (p *Pipeline) Name() string {
	p.t.Helper()
	sp, _ := p.Load()
	return sp.Name
}

// States returns the state of every partition of a stream ("" for every
// stream), through the destination's dest.StateKeeper.
func (p *Pipeline) States(stream string) []dest.StateEntry {
	p.t.Helper()
	name := p.Name()
	var out []dest.StateEntry
	p.Read(func(d dest.Destination) error {
		sk, ok := d.(dest.StateKeeper)
		if !ok {
			return fmt.Errorf("the destination %T keeps no state", d)
		}
		var err error
		out, err = sk.State().List(context.Background(), name, stream)
		return err
	})
	return out
}

// State returns the state of one partition of a stream ("" for the
// stream's own), nil if none.
func (p *Pipeline) State(stream, partition string) json.RawMessage {
	p.t.Helper()
	name := p.Name()
	var out json.RawMessage
	p.Read(func(d dest.Destination) error {
		sk, ok := d.(dest.StateKeeper)
		if !ok {
			return fmt.Errorf("the destination %T keeps no state", d)
		}
		var err error
		out, err = sk.State().Load(context.Background(), name, stream, partition)
		return err
	})
	return out
}

// Render writes a value read back through dest.Reader as canonical text,
// as the destination suite (internal/dest/desttest) does: NULL, true or
// false, numbers in their shortest form, timestamps in RFC 3339 (UTC),
// strings as they are.
func Render(v any) string {
	if v == nil {
		return "NULL"
	}
	if s, ok := dest.Text(v); ok {
		return s
	}
	return fmt.Sprint(v)
}

// SQLDestination is a destination with the capabilities of Ferry's SQL
// destinations that a run uses.
type SQLDestination interface {
	dest.Destination
	dest.StateKeeper
	dest.Namer
	dest.RunLog
}

// BeforeWrite wraps a destination so that each of its stream writers
// calls fn(stream, n) at the start of its n-th Write (n counts from 1 per
// writer), then writes. The wrapper keeps the capabilities a run uses;
// d must have them (every SQL destination does).
func BeforeWrite(d dest.Destination, fn func(stream string, n int)) dest.Destination {
	sd, ok := d.(SQLDestination)
	if !ok {
		panic(fmt.Sprintf("enginetest.BeforeWrite: %T lacks a capability a run needs (StateKeeper, Namer, RunLog)", d))
	}
	return &beforeWrite{SQLDestination: sd, fn: fn}
}

type beforeWrite struct {
	SQLDestination
	fn func(stream string, n int)
}

func (d *beforeWrite) OpenStream(ctx context.Context, cfg dest.StreamConfig) (dest.StreamWriter, error) {
	w, err := d.SQLDestination.OpenStream(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &countingWriter{StreamWriter: w, stream: cfg.Stream, fn: d.fn}, nil
}

type countingWriter struct {
	dest.StreamWriter
	stream string
	fn     func(stream string, n int)
	n      int
}

func (w *countingWriter) Write(ctx context.Context, c *record.Chunk) error {
	w.n++
	w.fn(w.stream, w.n)
	return w.StreamWriter.Write(ctx, c)
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// errNoRun reports a Result without a summary.
var errNoRun = errors.New("enginetest: the run did not execute")

// Check fails the test when the run failed, naming the stage.
func (r *Result) Check(t testing.TB) *Result {
	t.Helper()
	if r.Err != nil {
		t.Fatalf("run (%s): %v", r.Stage, r.Err)
	}
	if r.Summary == nil {
		t.Fatal(errNoRun)
	}
	return r
}
