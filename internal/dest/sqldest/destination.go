package sqldest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/schema"
)

// Destination implements dest.Destination for a SQL database.
type Destination struct {
	db     DB
	d      Dialect
	prefix string
}

var _ dest.Destination = (*Destination)(nil)

// New returns a destination over db, creating Ferry's metadata tables if
// they are missing. prefix is put before every data table's name.
func New(ctx context.Context, db DB, d Dialect, prefix string) (*Destination, error) {
	x := &Destination{db: db, d: d, prefix: prefix}
	if err := x.createMetadata(ctx); err != nil {
		return nil, err
	}
	return x, nil
}

// DB returns the connection pool.
func (x *Destination) DB() DB { return x.db }

// Dialect returns the dialect.
func (x *Destination) Dialect() Dialect { return x.d }

func (x *Destination) createMetadata(ctx context.Context) error {
	key := x.d.ColumnType(schema.Text, true)
	text := x.d.ColumnType(schema.Text, false)
	ts := x.d.ColumnType(schema.Timestamp, false)
	q := x.d.Quote
	stmts := []string{
		fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (%s %s NOT NULL, %s %s NOT NULL, %s %s NOT NULL, %s %s NOT NULL, %s %s NOT NULL, %s %s, %s %s, PRIMARY KEY (%s, %s, %s))",
			x.d.Table(dest.StateTable), q("pipeline"), key, q("stream"), key, q("partition_hash"), key, q("partition_key"), text, q("state"), text, q("run_id"), text, q("updated_at"), ts,
			q("pipeline"), q("stream"), q("partition_hash")),
		fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (%s %s NOT NULL, %s %s, %s %s, %s %s NOT NULL, %s %s, PRIMARY KEY (%s))",
			x.d.Table(dest.TablesTable), q("table_name"), key, q("pipeline"), text, q("stream"), text, q("layout"), text, q("updated_at"), ts, q("table_name")),
		fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (%s %s, %s %s, %s %s, %s %s, %s %s, %s %s, %s %s, %s %s, %s %s)",
			x.d.Table(dest.RejectedTable), q("run_id"), text, q("pipeline"), text, q("stream"), text, q("table_name"), text, q("partition_key"), text,
			q("reason"), text, q("column_name"), text, q("record"), text, q("rejected_at"), ts),
		fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (%s %s NOT NULL, %s %s, %s %s, %s %s, %s %s, %s %s, PRIMARY KEY (%s))",
			x.d.Table(dest.RunsTable), q("run_id"), key, q("pipeline"), text, q("started_at"), ts, q("finished_at"), ts, q("status"), text, q("summary"), text, q("run_id")),
	}
	for _, s := range stmts {
		if err := x.db.Exec(ctx, s); err != nil {
			return fmt.Errorf("create Ferry's metadata tables: %w", err)
		}
	}
	return nil
}

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

// State returns the state store.
func (x *Destination) State() dest.StateStore { return stateStore{x} }

// RecordRun stores a run summary.
func (x *Destination) RecordRun(ctx context.Context, run dest.Run) error {
	stmt := x.d.Upsert(dest.RunsTable, []string{"run_id", "pipeline", "started_at", "finished_at", "status", "summary"}, []string{"run_id"})
	if err := x.db.Exec(ctx, stmt, run.ID, run.Pipeline, x.d.Time(run.StartedAt), x.d.Time(run.FinishedAt), run.Status, string(run.Summary)); err != nil {
		return fmt.Errorf("record run %s: %w", run.ID, err)
	}
	return nil
}

// loadLayout reads the layout Ferry recorded for a table.
func (x *Destination) loadLayout(ctx context.Context, q Queryer, table string) (*schema.Table, error) {
	rows, err := q.Query(ctx, fmt.Sprintf("SELECT %s FROM %s WHERE %s = %s", x.d.Quote("layout"), x.d.Table(dest.TablesTable), x.d.Quote("table_name"), x.d.Placeholder(1)), table)
	if err != nil {
		return nil, fmt.Errorf("read layout of table %s: %w", table, err)
	}
	defer rows.Close()
	if !rows.Next() {
		return nil, rows.Err()
	}
	var raw string
	if err := rows.Scan(&raw); err != nil {
		return nil, err
	}
	var t schema.Table
	if err := json.Unmarshal([]byte(raw), &t); err != nil {
		return nil, fmt.Errorf("layout of table %s in %s is unreadable: %w", table, dest.TablesTable, err)
	}
	return &t, rows.Err()
}

// saveLayout records the layout of table (live, or the staging table
// that will replace live). The layout is named for live, so a resumed
// full refresh finds the staged child tables it has to swap in.
func (x *Destination) saveLayout(ctx context.Context, q Queryer, table, live, pipeline, stream string, t *schema.Table) error {
	cp := t.Clone()
	cp.Name = live
	b, err := json.Marshal(cp)
	if err != nil {
		return err
	}
	stmt := x.d.Upsert(dest.TablesTable, []string{"table_name", "pipeline", "stream", "layout", "updated_at"}, []string{"table_name"})
	if err := q.Exec(ctx, stmt, table, pipeline, stream, string(b), x.d.Time(time.Now())); err != nil {
		return fmt.Errorf("record layout of table %s: %w", table, err)
	}
	return nil
}

// storedLayout is a layout recorded in the tables table: Table is the
// physical table it describes, Layout.Name the live table it is (or
// will replace).
type storedLayout struct {
	Table  string
	Layout *schema.Table
}

// streamLayouts reads the layouts recorded for a stream's tables, parents
// before children.
func (x *Destination) streamLayouts(ctx context.Context, pipeline, stream string) ([]storedLayout, error) {
	d := x.d
	rows, err := x.db.Query(ctx, fmt.Sprintf("SELECT %s, %s FROM %s WHERE %s = %s AND %s = %s ORDER BY %s",
		d.Quote("table_name"), d.Quote("layout"), d.Table(dest.TablesTable), d.Quote("pipeline"), d.Placeholder(1), d.Quote("stream"), d.Placeholder(2), d.Quote("table_name")),
		pipeline, stream)
	if err != nil {
		return nil, fmt.Errorf("read layouts of stream %s: %w", stream, err)
	}
	defer rows.Close()
	var out []storedLayout
	for rows.Next() {
		var name, raw string
		if err := rows.Scan(&name, &raw); err != nil {
			return nil, err
		}
		var t schema.Table
		if err := json.Unmarshal([]byte(raw), &t); err != nil {
			return nil, fmt.Errorf("the layout of table %s in %s is unreadable: %w", name, dest.TablesTable, err)
		}
		out = append(out, storedLayout{name, &t})
	}
	// Parents before children: shorter names first works because a child
	// table's name extends its parent's.
	slices.SortStableFunc(out, func(a, b storedLayout) int { return len(a.Layout.Name) - len(b.Layout.Name) })
	return out, rows.Err()
}

func (x *Destination) deleteLayout(ctx context.Context, q Queryer, table string) error {
	return q.Exec(ctx, fmt.Sprintf("DELETE FROM %s WHERE %s = %s", x.d.Table(dest.TablesTable), x.d.Quote("table_name"), x.d.Placeholder(1)), table)
}

// partitionHash keys a partition in the state table with a bounded value.
func partitionHash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

type stateStore struct{ x *Destination }

// classify marks connection failures as transient for the engine.
func (x *Destination) classify(err error) error {
	if err != nil && x.d.Transient(err) {
		return &dest.TransientError{Err: err}
	}
	return err
}

func (s stateStore) Load(ctx context.Context, pipeline, stream, partition string) (json.RawMessage, error) {
	raw, err := s.load(ctx, pipeline, stream, partition)
	return raw, s.x.classify(err)
}

func (s stateStore) load(ctx context.Context, pipeline, stream, partition string) (json.RawMessage, error) {
	d := s.x.d
	rows, err := s.x.db.Query(ctx, fmt.Sprintf("SELECT %s FROM %s WHERE %s = %s AND %s = %s AND %s = %s",
		d.Quote("state"), d.Table(dest.StateTable), d.Quote("pipeline"), d.Placeholder(1), d.Quote("stream"), d.Placeholder(2), d.Quote("partition_hash"), d.Placeholder(3)),
		pipeline, stream, partitionHash(partition))
	if err != nil {
		return nil, fmt.Errorf("load state of %s/%s: %w", pipeline, stream, err)
	}
	defer rows.Close()
	if !rows.Next() {
		return nil, rows.Err()
	}
	var raw string
	if err := rows.Scan(&raw); err != nil {
		return nil, err
	}
	return json.RawMessage(raw), rows.Err()
}

func (s stateStore) List(ctx context.Context, pipeline, stream string) ([]dest.StateEntry, error) {
	d := s.x.d
	query := fmt.Sprintf("SELECT %s, %s, %s, %s, %s FROM %s WHERE %s = %s",
		d.Quote("stream"), d.Quote("partition_key"), d.Quote("state"), d.Quote("run_id"), d.Quote("updated_at"), d.Table(dest.StateTable), d.Quote("pipeline"), d.Placeholder(1))
	args := []any{pipeline}
	if stream != "" {
		query += fmt.Sprintf(" AND %s = %s", d.Quote("stream"), d.Placeholder(2))
		args = append(args, stream)
	}
	query += fmt.Sprintf(" ORDER BY %s, %s", d.Quote("stream"), d.Quote("partition_key"))
	rows, err := s.x.db.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list state of %s: %w", pipeline, err)
	}
	defer rows.Close()
	var out []dest.StateEntry
	for rows.Next() {
		var e dest.StateEntry
		var st, run string
		var at any
		if err := rows.Scan(&e.Stream, &e.Partition, &st, &run, &at); err != nil {
			return nil, err
		}
		e.State, e.RunID, e.UpdatedAt = json.RawMessage(st), run, scanTime(at)
		out = append(out, e)
	}
	return out, rows.Err()
}

// scanTime reads a timestamp scanned into an any from any driver.
func scanTime(v any) time.Time {
	switch x := v.(type) {
	case time.Time:
		return x
	case string:
		t, _ := time.Parse(time.RFC3339Nano, x)
		return t
	case []byte:
		t, _ := time.Parse(time.RFC3339Nano, string(x))
		return t
	}
	return time.Time{}
}

func (s stateStore) Reset(ctx context.Context, pipeline, stream string) (int, error) {
	d := s.x.d
	before, err := s.List(ctx, pipeline, stream)
	if err != nil {
		return 0, err
	}
	query := fmt.Sprintf("DELETE FROM %s WHERE %s = %s", d.Table(dest.StateTable), d.Quote("pipeline"), d.Placeholder(1))
	args := []any{pipeline}
	if stream != "" {
		query += fmt.Sprintf(" AND %s = %s", d.Quote("stream"), d.Placeholder(2))
		args = append(args, stream)
	}
	if err := s.x.db.Exec(ctx, query, args...); err != nil {
		return 0, fmt.Errorf("reset state of %s: %w", pipeline, err)
	}
	return len(before), nil
}

// ForeignTableError reports a table Ferry did not create.
type ForeignTableError struct {
	Table string
}

func (e *ForeignTableError) Error() string {
	return fmt.Sprintf("table %s exists but Ferry did not create it (it is not in %s); Ferry will not write into it: pick another table name for the stream (streams.<name>.table in the pipeline), or use mode full_refresh_overwrite to replace it", e.Table, dest.TablesTable)
}

// QuoteList quotes identifiers and joins them with commas.
func QuoteList(d Dialect, names []string) string { return quoteList(d, names) }

// quoteList quotes and joins identifiers.
func quoteList(d Dialect, names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = d.Quote(n)
	}
	return strings.Join(q, ", ")
}

// Count returns a table's row count, or -1 when it does not exist.
func (x *Destination) Count(ctx context.Context, table string) (int64, error) {
	_, ok, err := x.d.Columns(ctx, x.db, table)
	if err != nil || !ok {
		return -1, err
	}
	rows, err := x.db.Query(ctx, "SELECT COUNT(*) FROM "+x.d.Table(table))
	if err != nil {
		return -1, fmt.Errorf("count rows of %s: %w", table, err)
	}
	defer rows.Close()
	var n int64
	if rows.Next() {
		if err := rows.Scan(&n); err != nil {
			return -1, err
		}
	}
	return n, rows.Err()
}

// Query runs a query and renders every value as text.
func (x *Destination) Query(ctx context.Context, query string) ([]string, [][]string, error) {
	cq, ok := x.db.(interface {
		QueryColumns(ctx context.Context, query string) ([]string, [][]string, error)
	})
	if !ok {
		return nil, nil, fmt.Errorf("%s does not support ad-hoc queries", x.d.Name())
	}
	return cq.QueryColumns(ctx, query)
}

// IndexName names an index of table on cols, within maxLen bytes.
func IndexName(table string, cols []string, maxLen int) string {
	return schema.Truncate(schema.MetaPrefix+"ix_"+table+"_"+strings.Join(cols, "_"), table+"\x00"+strings.Join(cols, "\x00"), maxLen)
}

// InValues builds cols IN (…) over bound rows: a plain IN list for one
// column, row values with VALUES for several (SQLite, PostgreSQL,
// MariaDB ≥ 10.3).
func InValues(d Dialect, cols []string, rows int) string {
	var b strings.Builder
	n := 1
	if len(cols) == 1 {
		b.WriteString(d.Quote(cols[0]) + " IN (")
		for r := 0; r < rows; r++ {
			if r > 0 {
				b.WriteString(", ")
			}
			b.WriteString(d.Placeholder(n))
			n++
		}
		b.WriteString(")")
		return b.String()
	}
	b.WriteString("(" + quoteList(d, cols) + ") IN (VALUES ")
	for r := 0; r < rows; r++ {
		if r > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(")
		for c := range cols {
			if c > 0 {
				b.WriteString(", ")
			}
			b.WriteString(d.Placeholder(n))
			n++
		}
		b.WriteString(")")
	}
	b.WriteString(")")
	return b.String()
}
