package sqldest

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/schema"
)

// fakeDialect spells every statement in a short, readable form, so that
// tests can compare the statements the shared code plans with a list.
type fakeDialect struct {
	transactional bool
}

var _ Dialect = fakeDialect{}

func (fakeDialect) Name() string             { return "fake" }
func (fakeDialect) Quote(s string) string    { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
func (d fakeDialect) Table(n string) string  { return d.Quote(n) }
func (fakeDialect) Placeholder(i int) string { return fmt.Sprintf("$%d", i) }
func (fakeDialect) MaxIdentLen() int         { return 63 }
func (fakeDialect) ColumnType(t schema.Type, key bool) string {
	if key {
		return strings.ToUpper(t.String()) + "(KEY)"
	}
	return strings.ToUpper(t.String())
}
func (d fakeDialect) TransactionalDDL() bool { return d.transactional }
func (fakeDialect) Columns(context.Context, Queryer, string) (map[string]string, bool, error) {
	return nil, false, nil
}
func (d fakeDialect) AddColumn(table string, c schema.Column) string {
	return fmt.Sprintf("ALTER TABLE %s ADD %s %s", d.Table(table), d.Quote(c.Name), d.ColumnType(c.Type, false))
}
func (d fakeDialect) Widen(table string, next *schema.Table, col string, from schema.Type) []string {
	return []string{fmt.Sprintf("ALTER TABLE %s WIDEN %s %s TO %s", d.Table(table), d.Quote(col), from, next.Column(col).Type)}
}
func (d fakeDialect) CreateUnique(table string, cols []string) string {
	return fmt.Sprintf("CREATE UNIQUE INDEX ON %s (%s)", d.Table(table), QuoteList(d, cols))
}
func (d fakeDialect) Upsert(table string, cols, key []string) string {
	return fmt.Sprintf("UPSERT %s (%s) KEY (%s)", d.Table(table), QuoteList(d, cols), QuoteList(d, key))
}
func (d fakeDialect) Swap(live, staging string, liveExists bool) []string {
	if !liveExists {
		return []string{fmt.Sprintf("RENAME %s TO %s", d.Table(staging), d.Table(live))}
	}
	return []string{fmt.Sprintf("DROP %s", d.Table(live)), fmt.Sprintf("RENAME %s TO %s", d.Table(staging), d.Table(live))}
}
func (d fakeDialect) DropTable(table string) string { return "DROP TABLE IF EXISTS " + d.Table(table) }
func (fakeDialect) Time(t time.Time) any            { return t.UTC().Format(time.RFC3339Nano) }
func (fakeDialect) NewLoader(Tx, Target) (Loader, error) {
	return nil, fmt.Errorf("the fake dialect has no loader")
}
func (fakeDialect) Transient(error) bool { return false }

// multiSwapDialect swaps every table in one statement.
type multiSwapDialect struct{ fakeDialect }

func (multiSwapDialect) SwapAll(swaps []TableSwap) []string {
	var parts []string
	for _, s := range swaps {
		parts = append(parts, fmt.Sprintf("%s<-%s(exists=%t,empty=%t)", s.Live, s.Staging, s.LiveExists, s.Empty))
	}
	return []string{"SWAP ALL " + strings.Join(parts, ", ")}
}

// typedDialect knows the logical types of its database types and which
// database types hold which logical types: the database type is the
// logical type's name in upper case.
type typedDialect struct{ fakeDialect }

func (typedDialect) LogicalType(dbType string) (schema.Type, bool) {
	t, err := schema.ParseType(dbType)
	return t, err == nil && dbType == strings.ToUpper(dbType)
}

func (typedDialect) Holds(dbType string, t schema.Type) bool {
	return dbType == strings.ToUpper(t.String())
}

// call is one statement a fake database ran.
type call struct {
	where string // "db", or "tx1", "tx2"… for the n-th transaction
	stmt  string
	args  []any
}

func (c call) String() string { return c.where + ": " + c.stmt }

// fakeDB records what runs on it: statements on the pool, and the
// beginning, statements and end of each transaction.
type fakeDB struct {
	calls []call
	txs   int
	open  *fakeTx
}

var _ DB = (*fakeDB)(nil)

func (db *fakeDB) Exec(_ context.Context, q string, args ...any) error {
	db.calls = append(db.calls, call{"db", q, args})
	return nil
}

func (db *fakeDB) Query(context.Context, string, ...any) (Rows, error) {
	return nil, fmt.Errorf("the fake database answers no queries")
}

func (db *fakeDB) Begin(context.Context) (Tx, error) {
	if db.open != nil {
		return nil, fmt.Errorf("a transaction is already open")
	}
	db.txs++
	tx := &fakeTx{db: db, name: fmt.Sprintf("tx%d", db.txs)}
	db.calls = append(db.calls, call{tx.name, "BEGIN", nil})
	db.open = tx
	return tx, nil
}

func (db *fakeDB) Close() error { return nil }

// log returns the calls as "where: statement" lines.
func (db *fakeDB) log() []string {
	out := make([]string, len(db.calls))
	for i, c := range db.calls {
		out[i] = c.String()
	}
	return out
}

type fakeTx struct {
	db   *fakeDB
	name string
}

func (tx *fakeTx) Exec(_ context.Context, q string, args ...any) error {
	if tx.db.open != tx {
		return fmt.Errorf("%s is over", tx.name)
	}
	tx.db.calls = append(tx.db.calls, call{tx.name, q, args})
	return nil
}

func (tx *fakeTx) Query(context.Context, string, ...any) (Rows, error) {
	return nil, fmt.Errorf("the fake database answers no queries")
}

func (tx *fakeTx) Commit(context.Context) error { return tx.end("COMMIT") }

func (tx *fakeTx) Rollback(context.Context) error { return tx.end("ROLLBACK") }

func (tx *fakeTx) end(what string) error {
	if tx.db.open != tx {
		return fmt.Errorf("%s is over", tx.name)
	}
	tx.db.calls = append(tx.db.calls, call{tx.name, what, nil})
	tx.db.open = nil
	return nil
}

// recorder is a Queryer that records the statements it is given.
type recorder struct{ calls []call }

func (r *recorder) Exec(_ context.Context, q string, args ...any) error {
	r.calls = append(r.calls, call{"q", q, args})
	return nil
}

func (r *recorder) Query(context.Context, string, ...any) (Rows, error) {
	return nil, fmt.Errorf("the recorder answers no queries")
}

// checkpoint is a checkpoint with a JSON state.
func checkpoint(stream, partition, state string) record.Checkpoint {
	return record.Checkpoint{Stream: stream, Partition: partition, State: []byte(state)}
}
