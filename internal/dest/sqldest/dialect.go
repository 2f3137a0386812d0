// Package sqldest is the part of Ferry's SQL destinations that does not
// depend on the database: table layouts and their migration, the state,
// tables, rejected and runs metadata tables, and the transaction protocol
// that commits rows together with the state that covers them. A database
// plugs in with a Dialect (how it spells types, identifiers and upserts)
// and a Loader (how it moves rows in bulk).
package sqldest

import (
	"context"
	"fmt"
	"time"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/schema"

	"github.com/ferry-dev/ferry/internal/record"
)

// Queryer runs statements, inside or outside a transaction.
type Queryer interface {
	Exec(ctx context.Context, query string, args ...any) error
	Query(ctx context.Context, query string, args ...any) (Rows, error)
}

// Rows iterates query results.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close() error
}

// Tx is an open transaction.
type Tx interface {
	Queryer
	Commit(ctx context.Context) error
	Rollback(ctx context.Context) error
}

// UniqueChecker is implemented by dialects that can tell whether the index
// CreateUnique makes already exists, so a writer of an existing table
// does not run the DDL in its first transaction: on PostgreSQL, CREATE
// INDEX IF NOT EXISTS takes a share lock on the table for the whole
// transaction, and two writers of one table at once (the slices of a
// stream run by workers) deadlock on it.
type UniqueChecker interface {
	HasUnique(ctx context.Context, q Queryer, table string) (bool, error)
}

// DB is a connection pool in the database's own driver.
type DB interface {
	Queryer
	Begin(ctx context.Context) (Tx, error)
	Close() error
}

// Dialect says how one database spells things. Implementations are
// stateless and safe for concurrent use.
type Dialect interface {
	// Name is the destination type, for messages.
	Name() string
	// Quote quotes an identifier so any name is safe.
	Quote(ident string) string
	// Table returns the quoted, qualified name of a table.
	Table(name string) string
	// Placeholder returns the bind parameter for the i-th argument (1-based).
	Placeholder(i int) string
	// MaxIdentLen is the identifier limit in bytes.
	MaxIdentLen() int
	// ColumnType spells a logical type; key is true for columns of a unique
	// key (some databases need bounded types there).
	ColumnType(t schema.Type, key bool) string
	// TransactionalDDL reports whether CREATE and ALTER can be rolled back.
	TransactionalDDL() bool
	// Columns lists a table's columns (name → database type); ok is false
	// when the table does not exist.
	Columns(ctx context.Context, q Queryer, table string) (cols map[string]string, ok bool, err error)
	// AddColumn returns the statement adding a column.
	AddColumn(table string, c schema.Column) string
	// Widen returns the statements changing column col of table to the
	// type it has in next (from its old type from).
	Widen(table string, next *schema.Table, col string, from schema.Type) []string
	// CreateUnique returns the statement creating the unique index that
	// enforces a table's primary key.
	CreateUnique(table string, cols []string) string
	// Upsert returns an INSERT of one row into table that replaces the row
	// with the same key.
	Upsert(table string, cols, key []string) string
	// Swap returns the statements that replace live with staging (live may
	// not exist).
	Swap(live, staging string, liveExists bool) []string
	// DropTable returns the statement dropping a table if it exists.
	DropTable(table string) string
	// Time converts a time to the driver's argument for Timestamp columns.
	Time(t time.Time) any
	// NewLoader returns a Loader writing rows into table within tx.
	NewLoader(tx Tx, t Target) (Loader, error)
	// Transient reports whether err is a connection problem worth retrying
	// (server restarting, connection reset) rather than a problem with the
	// statement or the data.
	Transient(err error) bool
}

// Indexer is implemented by dialects whose CREATE INDEX differs from
// "CREATE INDEX IF NOT EXISTS name ON table (cols)".
type Indexer interface {
	// CreateIndex returns the statement creating (if missing) a plain index
	// on cols, named with IndexName.
	CreateIndex(table string, cols []string) string
}

// TableSwap is one table of a full refresh's swap.
type TableSwap struct {
	Live, Staging string
	// LiveExists is true when there is a live table to replace.
	LiveExists bool
	// Empty is true when nothing was staged for the table: the new data
	// has no rows for it, so the live table is emptied.
	Empty bool
}

// MultiSwapper is implemented by dialects without transactional DDL that
// can still replace several tables in one atomic statement, so readers
// never see a refreshed table beside stale child tables.
type MultiSwapper interface {
	// SwapAll returns the statements replacing every live table with its
	// staging table (or with an empty copy of itself when Empty is set).
	// Each statement can be run again after a crash.
	SwapAll(swaps []TableSwap) []string
}

// swapAll returns the statements of a full refresh's swap: the dialect's
// atomic SwapAll, or one Swap per table (in a transaction when the
// dialect's DDL is transactional).
func swapAll(d Dialect, swaps []TableSwap) []string {
	if ms, ok := d.(MultiSwapper); ok {
		return ms.SwapAll(swaps)
	}
	var stmts []string
	for _, s := range swaps {
		if s.Empty {
			stmts = append(stmts, "DELETE FROM "+d.Table(s.Live))
			continue
		}
		stmts = append(stmts, d.Swap(s.Live, s.Staging, s.LiveExists)...)
	}
	return stmts
}

// IndexMover is implemented by dialects that move a plain index from a
// staging table, renamed to live, to the live table's index name other
// than by dropping it and creating it again.
type IndexMover interface {
	// MoveIndex returns the statements that leave table live (formerly
	// staging) with its index on cols named for live, whether or not the
	// staging-named index exists. They run in the swap, after the tables
	// are renamed.
	MoveIndex(live, staging string, cols []string) []string
}

// moveIndex returns the dialect's statements moving a staging-named index
// to the live table's name.
func moveIndex(d Dialect, live, staging string, cols []string) []string {
	if m, ok := d.(IndexMover); ok {
		return m.MoveIndex(live, staging, cols)
	}
	return []string{
		"DROP INDEX IF EXISTS " + d.Quote(IndexName(staging, cols, d.MaxIdentLen())),
		createIndex(d, live, cols),
	}
}

// TupleMatcher is implemented by dialects that spell a match of column
// tuples against bound rows differently from InValues.
type TupleMatcher interface {
	// InList returns a condition true when the tuple of cols is one of rows
	// tuples of bind parameters (numbered from 1).
	InList(cols []string, rows int) string
}

// createIndex returns the dialect's statement for a plain index.
func createIndex(d Dialect, table string, cols []string) string {
	if ix, ok := d.(Indexer); ok {
		return ix.CreateIndex(table, cols)
	}
	return fmt.Sprintf("CREATE INDEX IF NOT EXISTS %s ON %s (%s)", d.Quote(IndexName(table, cols, d.MaxIdentLen())), d.Table(table), quoteList(d, cols))
}

// inList returns the dialect's tuple match.
func inList(d Dialect, cols []string, rows int) string {
	if tm, ok := d.(TupleMatcher); ok {
		return tm.InList(cols, rows)
	}
	return InValues(d, cols, rows)
}

// TypeChecker is implemented by dialects that can tell whether a
// column's database type still holds a logical type, so that a table
// changed outside Ferry is reported instead of failing on insert.
type TypeChecker interface {
	// Holds reports whether a column of database type dbType (as Columns
	// returns it) can store values of type t.
	Holds(dbType string, t schema.Type) bool
}

// Typer is implemented by dialects that can tell a column's logical type
// from its database type (as Columns reports it).
type Typer interface {
	// LogicalType returns the logical type a column of database type
	// dbType holds as Ferry writes it; ok is false when it cannot tell.
	LogicalType(dbType string) (t schema.Type, ok bool)
}

// Target is what a Loader writes to.
type Target struct {
	// Table is the physical table (the live table, or the staging table of
	// a full refresh).
	Table string
	// Layout is the table's layout.
	Layout *schema.Table
	// Upsert is true when rows replace rows with the same primary key (the
	// newest cursor wins); false appends.
	Upsert bool
}

// Loader moves rows into a table within one transaction.
type Loader interface {
	// Load writes a chunk's rows in order. Chunks are built for Target's
	// layout (the writer migrates and makes a new Loader when it changes).
	// Rows holding a value the database cannot store (out of its range,
	// a character it refuses) are skipped and returned, with the reason,
	// instead of failing the chunk; the writer stores them as rejected.
	Load(ctx context.Context, c *record.Chunk) ([]RowError, error)
	// Flush finishes pending work: before the transaction commits and
	// before the writer drops the Loader (the table's layout changes).
	Flush(ctx context.Context) error
}

// Abandoner is implemented by Loaders that hold resources (goroutines,
// statements) to release when their transaction is rolled back instead of
// flushed.
type Abandoner interface {
	Abandon()
}

// RowError is a row a Loader skipped.
type RowError struct {
	Row    int    // index in the chunk
	Column string // the offending column
	Reason string
}

// ColumnsOf runs a query listing a table's columns as (name, type) rows
// and collects them; a table with no row does not exist. Dialects use it
// to implement Columns.
func ColumnsOf(ctx context.Context, q Queryer, query string, args ...any) (map[string]string, bool, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, false, err
	}
	defer rows.Close()
	cols := map[string]string{}
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			return nil, false, err
		}
		cols[name] = typ
	}
	return cols, len(cols) > 0, rows.Err()
}

// ColumnReserver is implemented by dialects whose tables have column
// names a data column cannot take: system columns (PostgreSQL's xmin),
// or names the database refuses even quoted. normalize.Options'
// ReservedColumns takes them, so keys with those names get other columns.
type ColumnReserver interface {
	// ReservedColumns lists the names, in lower case. Names are compared
	// without regard to case.
	ReservedColumns() []string
}

// ColumnLimiter is implemented by dialects that know how many columns a
// table can have.
type ColumnLimiter interface {
	// MaxColumns is the most columns a table Ferry creates can have, Ferry's
	// own columns included, whatever their types.
	MaxColumns() int
}

// ReservedColumns returns the column names d reserves (nil when it
// implements no ColumnReserver).
func ReservedColumns(d Dialect) []string {
	if r, ok := d.(ColumnReserver); ok {
		return r.ReservedColumns()
	}
	return nil
}

// MaxColumns returns the most columns a table can have in d's database (0
// when d implements no ColumnLimiter: no known limit).
func MaxColumns(d Dialect) int {
	if l, ok := d.(ColumnLimiter); ok {
		return l.MaxColumns()
	}
	return 0
}

// The dialect's limits make the destination's (dest.Limits).
var _ dest.Limits = (*Destination)(nil)

// ReservedColumns returns the column names the database reserves, for
// normalize.Options.ReservedColumns.
func (x *Destination) ReservedColumns() []string { return ReservedColumns(x.d) }

// MaxColumns returns the most columns a table can have (0: no known
// limit), Ferry's own columns included.
func (x *Destination) MaxColumns() int { return MaxColumns(x.d) }
