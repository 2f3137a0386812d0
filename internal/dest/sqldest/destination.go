package sqldest

import (
	"context"
	"fmt"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/schema"
)

// Destination implements dest.Destination, and every capability of
// package dest, for a SQL database.
type Destination struct {
	db       DB
	d        Dialect
	prefix   string
	readOnly bool
	locker   Locker
	// meta is false when a read-only open found no metadata tables: the
	// database holds no Ferry state, layouts or runs.
	meta bool
}

var (
	_ dest.Destination = (*Destination)(nil)
	_ dest.Namer       = (*Destination)(nil)
	_ dest.StateKeeper = (*Destination)(nil)
	_ dest.RunLog      = (*Destination)(nil)
	_ dest.Querier     = (*Destination)(nil)
	_ dest.Reader      = (*Destination)(nil)
	_ dest.Checker     = (*Destination)(nil)
)

// Config says what New opens.
type Config struct {
	DB      DB
	Dialect Dialect
	// Prefix is put before every data table's name.
	Prefix string
	// ReadOnly opens without creating or migrating anything; writing
	// fails with dest.ErrReadOnly.
	ReadOnly bool
	// Locker takes stream locks; nil uses the dialect when it is a
	// Locker. Without one, locks are refused.
	Locker Locker
}

// New returns a destination over cfg.DB. Opened for writing, it creates
// Ferry's metadata tables if they are missing and migrates them to the
// current version; opened read-only, it only reads their version.
func New(ctx context.Context, cfg Config) (*Destination, error) {
	x := &Destination{db: cfg.DB, d: cfg.Dialect, prefix: cfg.Prefix, readOnly: cfg.ReadOnly, locker: cfg.Locker}
	if x.locker == nil {
		x.locker, _ = cfg.Dialect.(Locker)
	}
	if err := x.openMetadata(ctx); err != nil {
		return nil, x.classify(err)
	}
	return x, nil
}

// DB returns the connection pool.
func (x *Destination) DB() DB { return x.db }

// Dialect returns the dialect.
func (x *Destination) Dialect() Dialect { return x.d }

// MaxIdentLen returns the dialect's identifier limit.
func (x *Destination) MaxIdentLen() int { return x.d.MaxIdentLen() }

// TableName normalises a stream's table name for this database.
func (x *Destination) TableName(name string) string {
	n := schema.Normalize(x.prefix + name)
	return schema.Truncate(n, name, x.d.MaxIdentLen())
}

// stagingPrefix starts the names of staging tables.
const stagingPrefix = schema.MetaPrefix + "stage_"

// stagingName is the table a full refresh loads before the swap.
func (x *Destination) stagingName(table string) string { return StagingName(x.d, table) }

// StagingName is the table a full refresh of table loads before the swap.
func StagingName(d Dialect, table string) string {
	return schema.Truncate(stagingPrefix+table, table, d.MaxIdentLen())
}

// Close closes the pool.
func (x *Destination) Close() error { return x.db.Close() }

// State returns the state store, which shares the writers' transactions.
func (x *Destination) State() dest.StateStore { return stateStore{x} }

// RecordRun stores a run summary.
func (x *Destination) RecordRun(ctx context.Context, run dest.Run) error {
	if x.readOnly {
		return dest.ErrReadOnly
	}
	stmt := x.d.Upsert(dest.RunsTable, []string{"run_id", "pipeline", "started_at", "finished_at", "status", "summary"}, []string{"run_id"})
	if err := x.db.Exec(ctx, stmt, run.ID, run.Pipeline, x.d.Time(run.StartedAt), x.d.Time(run.FinishedAt), string(run.Status), sanitize(string(run.Summary))); err != nil {
		return fmt.Errorf("record run %s: %w", run.ID, err)
	}
	return nil
}

// Check proves that a run could write here: the server answers, and the
// dialect's own checks (the schema exists or may be created, tables may
// be created) pass.
func (x *Destination) Check(ctx context.Context) (string, error) {
	rows, err := x.db.Query(ctx, "SELECT 1")
	if err != nil {
		return "", x.classify(err)
	}
	rows.Close()
	if c, ok := x.d.(DialectChecker); ok {
		return c.Check(ctx, x.db)
	}
	return "connected", nil
}

// classify marks connection failures as transient for the engine.
func (x *Destination) classify(err error) error {
	if err != nil && x.d.Transient(err) {
		return &dest.TransientError{Err: err}
	}
	return err
}

// ForeignTableError reports a table Ferry did not create.
type ForeignTableError struct {
	Table string
}

func (e *ForeignTableError) Error() string {
	return fmt.Sprintf("table %s exists but Ferry did not create it (it is not in %s); Ferry will not write into it: pick another table name for the stream (streams.<name>.table in the pipeline), or use mode full_refresh_overwrite to replace it", e.Table, dest.TablesTable)
}
