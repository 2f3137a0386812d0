// Package dest defines what a Ferry destination is and keeps the registry
// of destination types. A destination stores rows and, in the same
// transaction, the sync state that covers them; it also keeps the
// rejected records, the layout of each table it created, and a log of
// runs.
//
// A new destination is one package that calls Register in its init
// function, plus one blank import in internal/components/all. SQL
// databases share internal/dest/sqldest and only say how their dialect
// spells things.
package dest

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/registry"
	"github.com/ferry-dev/ferry/internal/schema"
	"github.com/ferry-dev/ferry/internal/spec"
)

// Destination is an open connection to one database for one run.
// Its methods are safe for concurrent use; each StreamWriter is used by
// one goroutine.
type Destination interface {
	// MaxIdentLen is the longest identifier the database accepts, in bytes.
	MaxIdentLen() int
	// TableName turns a stream's table name into the destination's
	// identifier (normalised, prefixed, shortened).
	TableName(name string) string
	// OpenStream prepares to write one stream. It fails, naming the table,
	// when the table exists but Ferry did not create it (unless the mode
	// replaces it) or when its shape conflicts with what Ferry recorded.
	OpenStream(ctx context.Context, cfg StreamConfig) (StreamWriter, error)
	// State reads and clears sync state outside any stream's transaction.
	State() StateStore
	// RecordRun stores a run's summary in the runs log.
	RecordRun(ctx context.Context, run Run) error
	// Count returns the number of rows in a table (-1 if it does not exist).
	Count(ctx context.Context, table string) (int64, error)
	// Query runs a read-only query for people (ferry query) and returns
	// the column names and rows rendered as text.
	Query(ctx context.Context, sql string) ([]string, [][]string, error)
	// Close releases connections. Uncommitted writes are rolled back.
	Close() error
}

// StreamConfig says what a StreamWriter writes.
type StreamConfig struct {
	Pipeline string
	Stream   string
	// Table is the destination identifier from TableName.
	Table string
	// Mode is the sync mode (spec.FullRefreshOverwrite, …).
	Mode string
	// RunID identifies the run.
	RunID string
	// Resume is true when a pass interrupted in an earlier run continues:
	// for full_refresh_overwrite, rows already in the staging table stay.
	Resume bool
}

// StreamWriter writes one stream's rows inside transactions it opens
// itself. Nothing is durable before Commit or Finish returns nil; after a
// crash, a new StreamWriter sees exactly what the last successful Commit
// left.
type StreamWriter interface {
	// Existing returns the table's layout as Ferry last recorded it, or nil
	// when the table does not exist yet. For full_refresh_overwrite it is
	// the layout of the table being replaced.
	Existing() *schema.Table
	// ExistingChild returns the recorded layout of a child table of
	// unnested arrays of this stream, or nil. It is safe to call while
	// Write runs in another goroutine.
	ExistingChild(table string) *schema.Table
	// Write adds a chunk to the open transaction, beginning one if needed:
	// its rows (appended, upserted or staged according to the mode), its
	// rejected records, and its checkpoints, which become durable with the
	// next Commit. Chunks arrive in order; a chunk built for a newer
	// version of the table migrates the table first. A destination that
	// cannot change tables inside a transaction commits what came before
	// (with its checkpoints) ahead of the change.
	//
	// Cancellation: a ctx that ends while Write runs may leave the open
	// transaction unusable (drivers abort the statement in flight), and
	// the next Commit then fails, losing every chunk written since the
	// last commit. A caller that wants to keep those chunks must not cancel
	// a Write that has started: it passes a context that is not cancelled
	// with the run (bounded by a timeout instead) and checks for
	// cancellation between chunks, then commits.
	Write(ctx context.Context, c *record.Chunk) error
	// Commit makes every row written since the last commit durable together
	// with the checkpoints that came with it, atomically.
	Commit(ctx context.Context) error
	// Finish ends a complete pass over the stream: it stores the final
	// checkpoints and, for full_refresh_overwrite, swaps the staged rows
	// in so readers see the whole new table at once; then it commits.
	Finish(ctx context.Context, final []record.Checkpoint) error
	// Abort rolls back what was written since the last commit and releases
	// the writer. It is safe to call after Finish or more than once.
	Abort(ctx context.Context) error
	// Rejected returns how many rows the database refused so far (each is
	// in the rejected table with the reason).
	Rejected() int
	// Committed returns how many rows of the root table are durable so far
	// (written and committed, by Commit, Finish, or on the writer's own
	// initiative).
	Committed() int64
}

// StateStore keeps sync state per pipeline, stream and partition.
type StateStore interface {
	// Load returns the state of one partition, nil if none.
	Load(ctx context.Context, pipeline, stream, partition string) (json.RawMessage, error)
	// List returns every partition's state of a pipeline (of one stream
	// when stream is not ""), ordered by stream and partition.
	List(ctx context.Context, pipeline, stream string) ([]StateEntry, error)
	// Reset deletes the state of a pipeline (of one stream when stream is
	// not "") and returns how many partitions it cleared.
	Reset(ctx context.Context, pipeline, stream string) (int, error)
}

// StateEntry is one partition's state.
type StateEntry struct {
	Stream    string
	Partition string
	State     json.RawMessage
	RunID     string
	UpdatedAt time.Time
}

// Run is a run's summary for the runs log.
type Run struct {
	ID         string
	Pipeline   string
	StartedAt  time.Time
	FinishedAt time.Time
	Status     string // "succeeded", "failed", "partial"
	// Summary is a JSON document: per stream counts, schema changes, errors.
	Summary json.RawMessage
}

// Rejection is a stored rejected record.
type Rejection struct {
	record.Reject
	RunID string
}

// Config is a destination's configuration, resolved.
type Config struct {
	Spec *spec.Destination
	// URL and Path are expanded from environment variables.
	URL  string
	Path string
}

// Factory opens a destination.
type Factory func(ctx context.Context, cfg Config) (Destination, error)

var destinations = registry.New[Factory]("destination type")

// Register makes a destination type available by name. It panics on a
// duplicate name or a nil factory.
func Register(name string, f Factory) { destinations.Register(name, f) }

// Open opens the destination cfg describes.
func Open(ctx context.Context, cfg Config) (Destination, error) {
	f, err := destinations.Get(cfg.Spec.Type)
	if err != nil {
		return nil, err
	}
	return f(ctx, cfg)
}

// Types lists the registered destination types.
func Types() []string { return destinations.Names() }

// TransientError marks a failure of the database connection (server
// restarting, connection reset) rather than of the statement or the data:
// the engine retries the stream from its last commit.
type TransientError struct{ Err error }

func (e *TransientError) Error() string { return e.Err.Error() }

// Unwrap returns the cause.
func (e *TransientError) Unwrap() error { return e.Err }

// IsTransient reports whether err is, or wraps, a TransientError.
func IsTransient(err error) bool {
	var te *TransientError
	return errors.As(err, &te)
}

// Metadata table names, shared by every destination.
const (
	StateTable    = schema.MetaPrefix + "state"
	TablesTable   = schema.MetaPrefix + "tables"
	RejectedTable = schema.MetaPrefix + "rejected"
	RunsTable     = schema.MetaPrefix + "runs"
)
