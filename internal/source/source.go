// Package source defines what a Ferry source is. A source reads streams of
// records and emits them as pages, each carrying the position to resume
// from; it never writes anything and never decides what state is
// committed: the engine does.
//
// A new kind of source is one package that calls Register in its init
// function, with the type its connector files decode into, plus one blank
// import in internal/components/all.
//
// This package is a contract: it imports only internal/schema,
// internal/record, internal/component and the standard library.
package source

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/ferry-dev/ferry/internal/component"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/schema"
)

// Stream describes a stream a source offers.
type Stream struct {
	Name string
	// PrimaryKey lists the JSON keys (or parent field columns) that
	// identify a record.
	PrimaryKey []string
	// Cursor is the JSON key (dotted for nested) ordering records for
	// incremental syncs; "" when the stream has none.
	Cursor string
	// Parent names the parent stream of a child stream.
	Parent string
	// ParentFields are the columns each child row gets from its partition.
	ParentFields []string
	// FollowsParent is true for a child stream that reads only the
	// partitions of parents changed since its last pass (the connector's
	// parent.incremental_dependency): in an incremental mode the engine
	// keeps the parent's cursor in the child's state and passes it as
	// ReadRequest.ParentSince.
	FollowsParent bool
	// Hints fixes the types of some keys (dotted keys reach into objects
	// and, for unnested arrays, into child tables: items.sku).
	Hints map[string]schema.Type
	// ServerFilter is true when the source passes the incremental start
	// value to the API, so the API returns only newer records.
	ServerFilter bool
	// Exclusive is true when the API's filter returns records strictly
	// after the value it is given (updated_after=T means > T); Granularity
	// is the resolution of the API's cursor values (1s for an API that
	// keeps seconds). The engine then asks from one granule before the
	// saved cursor, so records sharing the cursor's granule are not lost,
	// and skips the ones already synced.
	Exclusive   bool
	Granularity time.Duration
	// Lookback widens incremental reads behind the saved cursor.
	Lookback Lookback
	// Start is the cursor value of the first sync ("" for none).
	Start string
	// Unbounded is true for a stream that never ends (webhooks, change
	// data capture): Read returns only when its context ends, and the
	// engine commits by rows and time, never finishing a pass.
	Unbounded bool
}

// Lookback widens incremental reads behind the saved cursor: a duration
// for timestamp cursors, an amount for numeric ones.
type Lookback struct {
	Duration time.Duration
	Amount   int64
	IsAmount bool
}

// Start says where to begin reading one partition.
type Start struct {
	// Skip is true when the partition was completed earlier in the pass
	// being resumed: the source must not read it.
	Skip bool
	// Since is the cursor value to read from, "" for everything. Sources
	// that can filter on the server pass it to the API.
	Since string
	// Resume is a position from an earlier page of this partition, nil to
	// start at the first page. Sources must read positions they wrote in
	// any earlier version: the engine keeps them in state across upgrades.
	Resume json.RawMessage
}

// ReadRequest asks a source to read one stream.
type ReadRequest struct {
	Stream string
	// Start is called once per partition, before its first request. It is
	// safe for concurrent use: a source may start several partitions at
	// once.
	Start func(ctx context.Context, p *record.Partition) (Start, error)
	// Emit receives the pages of each partition in order, the last one
	// with Page.Last set. It blocks while the consumer is busy (that is the
	// source's backpressure) and returns an error once the consumer has
	// given up; Read must then stop and return that error. A page's Ack,
	// if set, is called once the page is durable or has failed.
	Emit func(ctx context.Context, p *record.Page) error
	// ParentSince, for a child stream that follows its parent
	// (Stream.FollowsParent), is the parent cursor value to read parents
	// from: only parents whose cursor is at or after it get partitions.
	// "" reads every parent.
	ParentSince string
	// ParentChanged, when set, is asked about each parent record before
	// its partition is started, with the parent's cursor value as the
	// source read it ("" when it has none) and the partition's key: false
	// means the parent did not change since the child's last completed
	// pass, and its partition is not read. It is called by one goroutine
	// at a time, for the whole parent stream (the engine learns from it
	// where the next pass starts).
	ParentChanged func(cursor, key string) bool
}

// Source reads streams from one API, database or push endpoint.
//
// Read reads every partition of a stream. When one partition of a child
// stream fails, Read goes on with the others and returns a *PartitionErrors
// at the end; the failed partitions never got a page with Last set, so their
// state does not advance. Any other error means the stream failed. On
// context cancellation Read returns promptly with the context's error.
// Sources are safe for concurrent Reads of different streams.
//
// Lifecycle: the factory allocates and provisions (compiles templates,
// builds clients) but sends nothing; Read and Check do the work; Close
// releases what the source holds (idle connections, listeners). Close is
// called once, after every Read has returned.
type Source interface {
	// Streams lists the streams in declaration order.
	Streams() []Stream
	// Read reads a stream.
	Read(ctx context.Context, req ReadRequest) error
	// Close releases the source's resources.
	Close() error
}

// Checker is implemented by sources that can prove connectivity and
// credentials cheaply (ferry check).
type Checker interface {
	// Check makes one request for the stream and returns a one-line
	// description of what came back.
	Check(ctx context.Context, stream string) (string, error)
}

// PartitionErrors collects the partitions of a child stream that failed.
type PartitionErrors struct {
	Stream string
	Errs   []PartitionError
}

// PartitionError is one failed partition.
type PartitionError struct {
	Partition string
	Err       error
}

func (e *PartitionErrors) Error() string {
	first := e.Errs[0]
	if len(e.Errs) == 1 {
		return fmt.Sprintf("partition %s: %v", first.Partition, first.Err)
	}
	names := make([]string, 0, maxNamed)
	for _, pe := range e.Errs[:min(len(e.Errs), maxNamed)] {
		names = append(names, pe.Partition)
	}
	more := ""
	if n := len(e.Errs) - maxNamed; n > 0 {
		more = fmt.Sprintf(" and %d more", n)
	}
	return fmt.Sprintf("%d partitions failed (%s%s); first, partition %s: %v", len(e.Errs), strings.Join(names, ", "), more, first.Partition, first.Err)
}

// maxNamed is how many failed partitions an error message names.
const maxNamed = 5

// Unwrap returns the partition errors.
func (e *PartitionErrors) Unwrap() []error {
	out := make([]error, len(e.Errs))
	for i, pe := range e.Errs {
		out[i] = pe.Err
	}
	return out
}

// Redactor hides secrets. The engine passes the process's; a source adds
// the secrets it derives (tokens it obtains) with Add. *redact.Redactor
// implements it.
type Redactor interface {
	// Add registers secrets.
	Add(secrets ...string)
	// String hides every known secret in s.
	String(s string) string
	// URL hides secrets and credentials in a URL.
	URL(raw string) string
	// MaxLen is the length of the longest form of a secret String hides.
	MaxLen() int
}

// Request describes one request a source made (an HTTP attempt, a query),
// for progress displays and metrics.
type Request struct {
	Stream string
	// Method and URL (redacted) say what was asked.
	Method, URL string
	// Status is the response status (0 when none arrived).
	Status int
	// Attempt counts from 1; Retry is true when another attempt follows.
	Attempt int
	Retry   bool
	// Wait is how long the source waits before the next attempt (backoff,
	// Retry-After, a rate limit).
	Wait     time.Duration
	Duration time.Duration
	// Bytes is the size of the response body read.
	Bytes int64
	// Err is the attempt's failure, redacted, "" on success.
	Err string
	// Query is the statement a database source ran, with its parameters
	// as placeholders: the run keeps every distinct one in its summary
	// (the run record), so what was asked of a database is on file.
	Query string
}

// Observer is told about a source's requests. Its methods must be safe for
// concurrent use and return quickly.
type Observer interface {
	Requested(Request)
}

// Options are what every source gets besides its configuration.
type Options struct {
	// Name is the connector's name.
	Name string
	// Config holds the pipeline's config values, resolved.
	Config map[string]any
	// Redactor hides secrets in messages (required).
	Redactor Redactor
	// Logger receives the source's logs (nil: discard).
	Logger *slog.Logger
	// Observer is told about every request (nil: nobody).
	Observer Observer
	// MaxAttempts, when set, overrides the connector's attempts per request
	// (ferry check uses 2 to answer quickly).
	MaxAttempts int
	// Dir is the directory relative paths are resolved against (the
	// connector file's).
	Dir string
	// Transport, when set, is an http.RoundTripper that sends an HTTP
	// source's requests instead of its own (replaying exchanges, ferry
	// run --replay), or a func(http.RoundTripper) http.RoundTripper that
	// wraps its own (recording them, --record). It is typed any so that
	// this contract does not import net/http; sources that send no HTTP
	// ignore it.
	Transport any
}

// Factory builds a source from its configuration, a pointer to the type
// it registered, decoded, provisioned and validated by package spec.
type Factory func(cfg any, opts Options) (Source, error)

// Register makes a source kind available under name (the connector's
// type), with the type a connector of that kind decodes into (the fields
// besides name, description, type and config). It panics if the name is
// taken or open is nil.
func Register[C any](name, summary string, open func(cfg *C, opts Options) (Source, error)) {
	if open == nil {
		panic("source: Register " + name + " with a nil factory")
	}
	component.Register(component.Info{
		Kind:    component.Source,
		Name:    name,
		Summary: summary,
		Config:  func() any { return new(C) },
		Factory: Factory(func(cfg any, opts Options) (Source, error) {
			c, ok := cfg.(*C)
			if !ok {
				return nil, fmt.Errorf("source %s: configuration is %T, want %T", name, cfg, c)
			}
			return open(c, opts)
		}),
	})
}

// New builds the source of kind with its configuration.
func New(kind string, cfg any, opts Options) (Source, error) {
	info, err := component.Lookup(component.Source, kind)
	if err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Redactor == nil {
		return nil, errors.New("source: Options.Redactor is required")
	}
	return info.Factory.(Factory)(cfg, opts)
}

// StopError ends a read early on purpose, not as a failure: the request
// budget is spent, or a rate limit resets later than the source may wait.
// A source returns it from Read (for a child stream, it stops every
// partition). The engine commits what was read, ends the stream as
// stopped (exit code 4) saying when it may go on, and the next run
// resumes from the last commit.
type StopError struct {
	// Reason says what stopped the read, naming the rule
	// ("X-RateLimit-Remaining: 0", "http.budget: 100 requests per run").
	Reason string
	// Until is when the limit resets; zero when the next run may go on
	// at once.
	Until time.Time
	// Err is the cause (the response that said so), if any.
	Err error
}

func (e *StopError) Error() string {
	msg := "stopped early: " + e.Reason
	if !e.Until.IsZero() {
		msg += "; the limit resets at " + e.Until.UTC().Format(time.RFC3339)
	}
	if e.Err != nil {
		msg += " (" + e.Err.Error() + ")"
	}
	return msg
}

// Unwrap returns the cause.
func (e *StopError) Unwrap() error { return e.Err }

// ErrStop may be returned by an Emit function to end a read early without
// error (for samples); Read then returns ErrStop.
var ErrStop = errors.New("stop reading")

// Find returns the named stream of a source.
func Find(s Source, name string) (Stream, bool) {
	i := slices.IndexFunc(s.Streams(), func(st Stream) bool { return st.Name == name })
	if i < 0 {
		return Stream{}, false
	}
	return s.Streams()[i], true
}
