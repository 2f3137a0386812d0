// Package dest defines what a Ferry destination is. A destination stores
// the rows of streams; most destinations (every SQL database) also keep,
// in the same transaction as the rows, the sync state that covers them,
// the rejected records, the layout of each table they created and a log
// of runs. Those are capabilities, found by interface assertion, so that a
// destination that has none of them (an HTTP endpoint, a message broker)
// implements Destination and StreamWriter only.
//
// A new destination is one package that calls Register in its init
// function, plus one blank import in internal/components/all. SQL
// databases share internal/dest/sqldest and only say how their dialect
// spells things.
//
// This package is a contract: it imports only internal/schema,
// internal/record, internal/component and the standard library.
package dest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ferry-dev/ferry/internal/component"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/schema"
)

// Mode is a sync mode: how a pass over a stream changes its table.
type Mode string

// The sync modes.
const (
	// FullRefreshOverwrite reads everything and replaces the table at the
	// end of the pass, atomically (readers see the old table until then).
	FullRefreshOverwrite Mode = "full_refresh_overwrite"
	// FullRefreshAppend reads everything and appends it to the table.
	FullRefreshAppend Mode = "full_refresh_append"
	// IncrementalAppend reads records newer than the saved cursor and
	// appends them.
	IncrementalAppend Mode = "incremental_append"
	// IncrementalDedup reads records newer than the saved cursor and
	// upserts them by primary key, the newest cursor winning.
	IncrementalDedup Mode = "incremental_dedup"
)

// Modes lists the sync modes.
var Modes = []Mode{FullRefreshOverwrite, FullRefreshAppend, IncrementalAppend, IncrementalDedup}

// Incremental reports whether the mode reads from a saved cursor.
func (m Mode) Incremental() bool { return m == IncrementalAppend || m == IncrementalDedup }

// Upserts reports whether rows replace rows with the same primary key.
func (m Mode) Upserts() bool { return m == IncrementalDedup || m == FullRefreshOverwrite }

// Appends reports whether every record adds a row.
func (m Mode) Appends() bool { return m == IncrementalAppend || m == FullRefreshAppend }

// Status is how a run, or one stream of a run, ended.
type Status string

// The statuses.
const (
	// Succeeded: every record read became a row (or was deliberately
	// dropped by the incremental cursor), and state advanced.
	Succeeded Status = "succeeded"
	// Partial: the run completed but not everything landed: some streams
	// failed while others succeeded, or some records were rejected.
	Partial Status = "partial"
	// Failed: nothing the run was asked to do completed.
	Failed Status = "failed"
	// Cancelled: the run was interrupted; what was committed stays, and
	// the next run resumes there.
	Cancelled Status = "cancelled"
	// Stopped: the run stopped early on purpose (a request budget or a
	// rate limit that resets later); what was read is committed and the
	// next run resumes there.
	Stopped Status = "stopped"
)

// Destination is an open connection to one destination for one run.
// Its methods are safe for concurrent use; each StreamWriter is used by
// one goroutine.
//
// Capabilities beyond writing are separate interfaces: Namer, StateKeeper,
// RunLog, Querier, Reader, Checker. Callers find them by type assertion.
type Destination interface {
	// OpenStream prepares to write one stream. It fails, naming the table,
	// when the table exists but Ferry did not create it (unless the mode
	// replaces it) or when its shape conflicts with what Ferry recorded.
	// A destination opened read-only fails with ErrReadOnly.
	OpenStream(ctx context.Context, cfg StreamConfig) (StreamWriter, error)
	// Close releases connections. Uncommitted writes are rolled back.
	Close() error
}

// ErrReadOnly is returned by a destination opened with Options.ReadOnly
// when asked to write.
var ErrReadOnly = errors.New("the destination was opened read-only")

// Namer is implemented by destinations whose identifiers have rules.
type Namer interface {
	// TableName turns a stream's table name into the destination's
	// identifier (normalised, prefixed, shortened).
	TableName(name string) string
	// MaxIdentLen is the longest identifier the destination accepts, in
	// bytes (0 for no limit).
	MaxIdentLen() int
}

// Limits is implemented by destinations that bound the shape of a table.
type Limits interface {
	// MaxColumns is how many columns a table may have (0 for no limit).
	MaxColumns() int
	// ReservedColumns lists column names the destination refuses or
	// reserves (system columns); data keys with these names are renamed.
	ReservedColumns() []string
}

// StateKeeper is implemented by destinations that keep sync state in
// their own transactions: the checkpoints of every chunk a StreamWriter
// writes are committed with its rows, so a run has an exactly-once effect.
type StateKeeper interface {
	State() StateStore
}

// RunLog is implemented by destinations that keep a log of runs.
type RunLog interface {
	// RecordRun stores a run's summary (replacing one with the same id).
	RecordRun(ctx context.Context, run Run) error
}

// Querier is implemented by destinations that answer ad-hoc queries for
// people (ferry query).
type Querier interface {
	// Query runs a read-only query and returns the column names and rows
	// rendered as text.
	Query(ctx context.Context, query string) ([]string, [][]string, error)
}

// Reader is implemented by destinations whose tables can be read back
// through Ferry: the conformance suite, and serving tables.
type Reader interface {
	// Layout returns the layout Ferry recorded for a table, nil if none.
	Layout(ctx context.Context, table string) (*schema.Table, error)
	// Count returns the number of rows in a table (-1 if it does not exist).
	Count(ctx context.Context, table string) (int64, error)
	// ReadRows calls fn with the column names and each row of a table,
	// ordered by the columns in orderBy (none: any order). Values are nil,
	// bool, int64, float64, string or time.Time (UTC), as Chunk.Value
	// gives them: Decimal and JSON values are strings.
	ReadRows(ctx context.Context, table string, orderBy []string, fn func(cols []string, row []any) error) error
}

// RejectKeeper is implemented by destinations whose rejected records can
// be read back and removed: ferry serve shows them and replays them after
// a fix.
type RejectKeeper interface {
	// Rejects returns a pipeline's rejected records (of one stream when
	// stream is not ""), newest first, at most limit.
	Rejects(ctx context.Context, pipeline, stream string, limit int) ([]Rejected, error)
	// DeleteRejects removes rejected records (every stored copy of each)
	// and returns how many rows it removed.
	DeleteRejects(ctx context.Context, rs []Rejected) (int, error)
}

// Rejected is a record in the rejected table.
type Rejected struct {
	// ID identifies the record: a hash of what is stored, so identical
	// copies share it.
	ID        string
	RunID     string
	Pipeline  string
	Stream    string
	Table     string
	Partition string
	Reason    string
	Column    string
	// Record is the record as the source gave it (JSON, as text).
	Record string
	At     time.Time
}

// Checker is implemented by destinations that can prove, without writing,
// that a run could write: the server answers, the credentials work, the
// database and schema exist, and the user may create tables.
type Checker interface {
	// Check returns a one-line description of what it found.
	Check(ctx context.Context) (string, error)
}

// StreamConfig says what a StreamWriter writes.
type StreamConfig struct {
	Pipeline string
	Stream   string
	// Table is the destination identifier (from Namer.TableName when the
	// destination has one).
	Table string
	// Mode is the sync mode.
	Mode Mode
	// RunID identifies the run.
	RunID string
	// Resume is true when a pass interrupted in an earlier run continues:
	// for full_refresh_overwrite, rows already in the staging table stay.
	Resume bool
	// Fence, when set, is the lease the run holds on the stream: a writer
	// of a destination that keeps state (a StateKeeper whose store is a
	// Leaser) checks in every commit's transaction that the lease is still
	// the stream's newest, and refuses the commit with a *FencedError
	// otherwise, rows and checkpoints alike. Other writers ignore it (the
	// engine fences the state it saves elsewhere).
	Fence *Lease
}

// StreamWriter writes one stream's rows inside transactions it opens
// itself. Nothing is durable before Commit or Finish returns nil; after a
// crash, a new StreamWriter sees exactly what the last successful Commit
// left.
//
// A writer of a destination that is a StateKeeper stores each chunk's
// checkpoints in the same transaction as its rows. Other writers ignore
// them: the engine stores state elsewhere after each Commit, which makes
// delivery at-least-once.
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

// StateStore keeps sync state per pipeline, stream and partition. The
// engine decides what state means; a store keeps what it is given.
type StateStore interface {
	// Load returns the state of one partition, nil if none.
	Load(ctx context.Context, pipeline, stream, partition string) (json.RawMessage, error)
	// Save stores the state of partitions (outside any stream's
	// transaction; a destination's own writers save state themselves).
	Save(ctx context.Context, pipeline, runID string, states []record.Checkpoint) error
	// List returns every partition's state of a pipeline (of one stream
	// when stream is not ""), ordered by stream and partition.
	List(ctx context.Context, pipeline, stream string) ([]StateEntry, error)
	// Reset deletes the state of a pipeline (of one stream when stream is
	// not "") and returns how many partitions it cleared. It does not take
	// the stream locks: callers that must not race a run take them first.
	Reset(ctx context.Context, pipeline, stream string) (int, error)
	// Lock takes the lock of one stream of a pipeline, so that no other
	// run of the stream (in this process or another, on this machine or
	// another that shares the store) runs at the same time. It waits a few
	// seconds at most (a holder killed a moment ago may still look alive to
	// the server), then fails with a *LockedError naming the holder. The
	// lock ends with release, or when the process ends.
	Lock(ctx context.Context, pipeline, stream string, holder Holder) (release func(), err error)
}

// Lease is a time-bounded claim on a stream of a pipeline (or on a slice
// of it: a subset of its partitions) with a fencing token. Tokens of one
// (pipeline, stream, slice) only grow: a lease taken after another
// expired has a larger token, and commits carrying the older token are
// refused, so a holder that stalled past its lease (paused, partitioned
// away) cannot commit over its successor.
type Lease struct {
	Pipeline string `json:"pipeline"`
	Stream   string `json:"stream"`
	// Slice names the part of the stream ("" for all of it).
	Slice  string `json:"slice,omitempty"`
	Token  int64  `json:"token"`
	Holder Holder `json:"holder"`
	// Expires is when the lease ends unless renewed, by the clock of the
	// process that took or renewed it.
	Expires time.Time `json:"expires"`
}

// Leaser is implemented by state stores shared by several processes
// (SQL databases) that grant leases with fencing tokens, and check them
// in the transactions that save state. A store that is a Leaser fences:
// SaveFenced, and the commits of its destination's writers opened with
// StreamConfig.Fence, run in one transaction with the check.
//
// Lease times are compared with the clocks of the processes taking them:
// keep the clocks synchronised (NTP) well within the lease's length.
type Leaser interface {
	// Acquire takes the lease of (pipeline, stream, slice) for ttl with a
	// token larger than any before it. It fails with a *LockedError naming
	// the holder when another holder's lease has not expired.
	Acquire(ctx context.Context, pipeline, stream, slice string, holder Holder, ttl time.Duration) (Lease, error)
	// Renew extends a lease by ttl from now. It fails with a *FencedError
	// when a newer lease exists (this one expired and was taken over).
	Renew(ctx context.Context, l Lease, ttl time.Duration) (Lease, error)
	// Release ends a lease early, if it is still the newest, so the next
	// holder need not wait for it to expire.
	Release(ctx context.Context, l Lease) error
	// SaveFenced is Save in one transaction with the check that l is still
	// the newest lease of its stream; it fails with a *FencedError, saving
	// nothing, when it is not.
	SaveFenced(ctx context.Context, l Lease, runID string, states []record.Checkpoint) error
}

// FencedError reports a commit refused because the lease it carried was
// superseded: another holder took the stream over after the lease
// expired, and its result stands.
type FencedError struct {
	Pipeline, Stream, Slice string
	// Token is the refused lease's token; Current the newest one (0 when
	// the lease is gone).
	Token, Current int64
}

func (e *FencedError) Error() string {
	what := "stream " + e.Stream
	if e.Slice != "" {
		what += " (slice " + e.Slice + ")"
	}
	return fmt.Sprintf("commit refused: the lease (token %d) on %s of pipeline %s was taken over by a newer one (token %d) after it expired; nothing of this commit was saved, and the newer holder's result stands", e.Token, what, e.Pipeline, e.Current)
}

// Holder identifies who holds a stream lock.
type Holder struct {
	RunID string    `json:"run_id"`
	Host  string    `json:"host,omitempty"`
	PID   int       `json:"pid,omitempty"`
	Since time.Time `json:"since"`
}

// LockedError reports a stream locked by another run.
type LockedError struct {
	Pipeline, Stream string
	// Holder is who has the lock, as far as the store knows (zero when the
	// store cannot tell).
	Holder Holder
}

func (e *LockedError) Error() string {
	if e.Holder.RunID == "" {
		return fmt.Sprintf("stream %s of pipeline %s is being synced by another run; wait for it to end", e.Stream, e.Pipeline)
	}
	who := "run " + e.Holder.RunID
	if e.Holder.Host != "" {
		who += fmt.Sprintf(" (pid %d on %s)", e.Holder.PID, e.Holder.Host)
	}
	return fmt.Sprintf("stream %s of pipeline %s is being synced by %s since %s; wait for it to end",
		e.Stream, e.Pipeline, who, e.Holder.Since.UTC().Format(time.RFC3339))
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
	Status     Status
	// Summary is a JSON document: per stream counts, schema changes, errors.
	Summary json.RawMessage
}

// Declarer is implemented by destination configurations that say, before
// anything is opened, what the destination can do, so that ferry validate
// refuses a pipeline that asks for more. A configuration that does not
// implement it declares every mode and a state store.
type Declarer interface {
	Declare() Declaration
}

// Declaration is what a destination can do.
type Declaration struct {
	// Modes lists the sync modes it supports (nil: all of them).
	Modes []Mode
	// NoState is true when it is not a StateKeeper: a pipeline writing to
	// it needs a state: section, and delivery is at-least-once.
	NoState bool
	// TablePrefix is put before every table name it writes, so that
	// validation can tell the tables of two streams apart as the
	// destination names them.
	TablePrefix string
}

// Supports reports whether the declaration allows mode m.
func (d Declaration) Supports(m Mode) bool {
	if d.Modes == nil {
		return true
	}
	for _, x := range d.Modes {
		if x == m {
			return true
		}
	}
	return false
}

// Options are what every destination gets besides its configuration.
type Options struct {
	// ReadOnly opens the destination for reading (state, queries, serving):
	// it creates and migrates nothing, and OpenStream fails.
	ReadOnly bool
	// Dir is the directory relative paths are resolved against (the
	// pipeline file's).
	Dir string
	// Logger receives the destination's logs (nil: discard).
	Logger *slog.Logger
	// Redactor, when set, is the run's: a destination that derives secrets
	// (an API's auth tokens) adds them so that no message shows them.
	Redactor Redactor
}

// Redactor hides secrets; *redact.Redactor implements it.
type Redactor interface {
	Add(secrets ...string)
	String(s string) string
	URL(raw string) string
	MaxLen() int
}

// Factory opens a destination from its configuration, a pointer to the
// type it registered.
type Factory func(ctx context.Context, cfg any, opts Options) (Destination, error)

// Register makes a destination type available by name, with the type its
// section of a pipeline file decodes into (the fields besides type:). doc's
// first paragraph is its summary; the others go into the generated
// reference. It panics on a duplicate name or a nil factory.
func Register[C any](name, doc string, open func(ctx context.Context, cfg *C, opts Options) (Destination, error)) {
	if open == nil {
		panic("dest: Register " + name + " with a nil open function")
	}
	component.Register(component.Info{
		Kind:    component.Destination,
		Name:    name,
		Summary: doc,
		Config:  func() any { return new(C) },
		Factory: Factory(func(ctx context.Context, cfg any, opts Options) (Destination, error) {
			c, ok := cfg.(*C)
			if !ok {
				return nil, fmt.Errorf("destination %s: configuration is %T, want %T", name, cfg, c)
			}
			return open(ctx, c, opts)
		}),
	})
}

// Open opens a destination of type typ with its configuration cfg (a
// pointer to the registered configuration type, as spec decodes it).
func Open(ctx context.Context, typ string, cfg any, opts Options) (Destination, error) {
	info, err := component.Lookup(component.Destination, typ)
	if err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return info.Factory.(Factory)(ctx, cfg, opts)
}

// TransientError marks a failure of the database connection (server
// restarting, connection reset) rather than of the statement or the data:
// the engine retries the stream from its last commit.
type TransientError struct {
	Err error
	// Now is true when trying again at once is right (the failure was a
	// race with another writer that has settled), not after a backoff.
	Now bool
}

func (e *TransientError) Error() string { return e.Err.Error() }

// Unwrap returns the cause.
func (e *TransientError) Unwrap() error { return e.Err }

// IsTransient reports whether err is, or wraps, a TransientError.
func IsTransient(err error) bool {
	var te *TransientError
	return errors.As(err, &te)
}

// Metadata table names, shared by every destination that keeps them.
const (
	StateTable    = schema.MetaPrefix + "state"
	TablesTable   = schema.MetaPrefix + "tables"
	RejectedTable = schema.MetaPrefix + "rejected"
	RunsTable     = schema.MetaPrefix + "runs"
	MetaTable     = schema.MetaPrefix + "meta"
	LocksTable    = schema.MetaPrefix + "locks"
	LeasesTable   = schema.MetaPrefix + "leases"
)
