// Package source defines what a Ferry source is, and keeps the registry of
// source kinds. A source reads streams of records and emits them as pages,
// each carrying the position to resume from; it never writes anything and
// never decides what state is committed: the engine does.
//
// A new kind of source is one package that calls Register in its init
// function, plus one blank import in internal/components/all.
package source

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/ferry-dev/ferry/internal/redact"

	"github.com/ferry-dev/ferry/internal/httpx"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/registry"
	"github.com/ferry-dev/ferry/internal/schema"
	"github.com/ferry-dev/ferry/internal/spec"
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
	// Hints fixes the types of some keys.
	Hints map[string]schema.Type
	// ServerFilter is true when the source passes the incremental start
	// value to the API, so the API returns only newer records.
	ServerFilter bool
	// Lookback widens incremental reads behind the saved cursor.
	Lookback spec.Lookback
	// Start is the cursor value of the first sync ("" for none).
	Start string
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
	// start at the first page.
	Resume json.RawMessage
}

// ReadRequest asks a source to read one stream.
type ReadRequest struct {
	Stream string
	// Start is called once per partition, before its first request.
	Start func(ctx context.Context, p *record.Partition) (Start, error)
	// Emit receives the pages of each partition in order, the last one
	// with Page.Last set. It blocks while the consumer is busy and returns
	// an error once the consumer has given up; Read must then stop and
	// return that error.
	Emit func(ctx context.Context, p *record.Page) error
}

// Source reads streams from one API.
//
// Read reads every partition of a stream. When one partition of a child
// stream fails, Read goes on with the others and returns a *PartitionErrors
// at the end; the failed partitions never got a page with Last set, so their
// state does not advance. Any other error means the stream failed. On
// context cancellation Read returns promptly with the context's error.
// Sources are safe for concurrent Reads of different streams.
type Source interface {
	// Streams lists the streams in declaration order.
	Streams() []Stream
	// Check proves connectivity and credentials with one request for the
	// stream and returns a one-line description of what came back.
	Check(ctx context.Context, stream string) (string, error)
	// Read reads a stream.
	Read(ctx context.Context, req ReadRequest) error
	// Stats returns the source's HTTP counters.
	Stats() httpx.Stats
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

// Options are what every source gets besides its connector.
type Options struct {
	// Config holds the pipeline's config values, resolved.
	Config map[string]any
	// Redactor hides secrets in messages; the source adds secrets it
	// derives (tokens) to it.
	Redactor *redact.Redactor
	// Logger receives the source's logs.
	Logger *slog.Logger
	// Observer is told about every HTTP attempt (progress, metrics).
	Observer httpx.Observer
	// MaxAttempts, when set, overrides the connector's attempts per request
	// (ferry check uses 2 to answer quickly).
	MaxAttempts int
}

// Factory builds a source from a checked connector.
type Factory func(c *spec.Connector, opts Options) (Source, error)

var sources = registry.New[Factory]("source type")

// Register makes a source kind available under name (the connector's
// type). It panics if the name is taken or f is nil.
func Register(name string, f Factory) { sources.Register(name, f) }

// New builds the source for a connector.
func New(c *spec.Connector, opts Options) (Source, error) {
	f, err := sources.Get(c.Type)
	if err != nil {
		return nil, err
	}
	return f(c, opts)
}

// Kinds lists the registered source kinds.
func Kinds() []string { return sources.Names() }

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
