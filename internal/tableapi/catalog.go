package tableapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/dest/sqldest"
	"github.com/ferry-dev/ferry/internal/schema"
)

// sqlDestination is what the table API needs of an opened destination:
// the recorded layouts, the connection pool and its dialect.
type sqlDestination interface {
	dest.Destination
	dest.Reader
	DB() sqldest.DB
	Dialect() sqldest.Dialect
	TableName(name string) string
}

// jsonKey returns the column's name as a JSON object key with its colon.
func (c *column) jsonKey() string {
	if c.key_ != "" {
		return c.key_
	}
	return makeJSONKey(c.name)
}

func makeJSONKey(name string) string {
	var b bytes.Buffer
	writeJSONString(&b, name)
	b.WriteByte(':')
	return b.String()
}

// column is a column the API serves.
type column struct {
	key_ string // the JSON key with its colon, made when the snapshot is built
	name     string
	typ      schema.Type
	nullable bool
	key      bool
	// path is the record field the column holds, for descriptions.
	path string
}

// store is one destination, opened read-only on first use: a pipeline
// that has not run yet has no database file to open, and the API starts
// anyway (its tables answer 503 until the first sync).
type store struct {
	pipeline string
	open     func(ctx context.Context) (sqlDestination, error)

	mu    sync.Mutex
	ready atomic.Bool
	d     sqlDestination
	f     flavor
	db    sqldest.DB
}

// get opens the destination if it is not yet open.
func (st *store) get(ctx context.Context) error {
	if st.ready.Load() {
		return nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.ready.Load() {
		return nil
	}
	d, err := st.open(ctx)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return &notSyncedError{pipeline: st.pipeline}
		}
		return err
	}
	f, err := newFlavor(d.Dialect())
	if err != nil {
		d.Close()
		return fmt.Errorf("pipeline %s: %w", st.pipeline, err)
	}
	st.d, st.f, st.db = d, f, d.DB()
	st.ready.Store(true)
	return nil
}

func (st *store) close() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.ready.Load() {
		return nil
	}
	st.ready.Store(false)
	return st.d.Close()
}

// table is a table the API serves. Its layout can change while the API
// runs (a sync adds a column); the current one is in snap.
type table struct {
	name        string
	pipeline    string
	stream      string // "" for a table listed in api.tables
	description string
	st          *store
	// key is the configured key of a listed table (streams use the
	// layout's primary key).
	key []string
	// write is the stream's write operations, nil when read-only.
	write *writer

	mu   sync.Mutex
	snap *snapshot
}

// snapshot is a table's layout and freshness as last read.
type snapshot struct {
	cols   []column
	byName map[string]*column
	// key lists the columns that identify a row (none: the table has no
	// key; it is paged by every column).
	key []string
	// rowID is true when the table has unnested child tables, linked to
	// its rows by _ferry_row_id.
	rowID    bool
	children map[string]*childTable
	// fresh is the time of the stream's last commit (zero when unknown:
	// a listed table, or a stream never synced).
	fresh time.Time
	// layoutAt is when the layouts were recorded, to notice a change.
	layoutAt  time.Time
	checkedAt time.Time
	layout    *schema.Table
}

// childTable is a child table of unnested arrays, embedded by expand.
type childTable struct {
	name   string // the database table
	expand string // the name expand takes
	cols   []column
	byName map[string]*column
	rowID  bool
}

// exposedColumns returns the columns of a layout that the API serves: all
// but Ferry's own.
func exposedColumns(t *schema.Table) []column {
	var out []column
	for _, c := range t.Columns {
		if strings.HasPrefix(c.Name, schema.MetaPrefix) {
			continue
		}
		key := slices.Contains(t.PrimaryKey, c.Name)
		out = append(out, column{name: c.Name, typ: c.Type, nullable: !key, key: key, path: c.Key()})
	}
	return out
}

func indexColumns(cols []column) map[string]*column {
	m := make(map[string]*column, len(cols))
	for i := range cols {
		cols[i].key_ = makeJSONKey(cols[i].name)
		m[cols[i].name] = &cols[i]
	}
	return m
}

// current returns the table's snapshot, refreshed when older than ttl: the
// stream's freshness is read again and, when a layout changed, the layouts.
func (t *table) current(ctx context.Context, ttl time.Duration) (*snapshot, error) {
	if err := t.st.get(ctx); err != nil {
		if ns, ok := err.(*notSyncedError); ok {
			return nil, &notSyncedError{table: t.name, pipeline: ns.pipeline, stream: t.stream}
		}
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	if t.snap != nil && now.Sub(t.snap.checkedAt) < ttl {
		return t.snap, nil
	}
	fresh, layoutAt, err := t.freshness(ctx)
	if err != nil {
		if t.snap != nil {
			return nil, fmt.Errorf("read the freshness of table %s: %w", t.name, err)
		}
		return nil, err
	}
	if t.snap != nil && layoutAt.Equal(t.snap.layoutAt) {
		s := *t.snap
		s.fresh, s.checkedAt = fresh, now
		t.snap = &s
		return t.snap, nil
	}
	s, err := t.load(ctx)
	if err != nil {
		return nil, err
	}
	s.fresh, s.layoutAt, s.checkedAt = fresh, layoutAt, now
	t.snap = s
	return s, nil
}

// invalidate makes the next request read the freshness again (after a
// write through).
func (t *table) invalidate() {
	t.mu.Lock()
	if t.snap != nil {
		s := *t.snap
		s.checkedAt = time.Time{}
		t.snap = &s
	}
	t.mu.Unlock()
}

// freshness returns the stream's last commit (the newest update of its
// state) and the newest update of its tables' layouts.
func (t *table) freshness(ctx context.Context) (fresh, layoutAt time.Time, err error) {
	if t.stream == "" {
		return time.Time{}, time.Time{}, nil
	}
	d := t.st.f.d
	q := func(tbl string) (time.Time, error) {
		rows, err := t.st.db.Query(ctx, fmt.Sprintf("SELECT MAX(%s) FROM %s WHERE %s = %s AND %s = %s",
			d.Quote("updated_at"), d.Table(tbl), d.Quote("pipeline"), d.Placeholder(1), d.Quote("stream"), d.Placeholder(2)), t.pipeline, t.stream)
		if err != nil {
			return time.Time{}, err
		}
		defer rows.Close()
		var v any
		if rows.Next() {
			if err := rows.Scan(&v); err != nil {
				return time.Time{}, err
			}
		}
		if err := rows.Err(); err != nil {
			return time.Time{}, err
		}
		cv, err := sqldest.ConvertValue(schema.Timestamp, v)
		if err != nil || cv == nil {
			return time.Time{}, err
		}
		return cv.(time.Time), nil
	}
	if fresh, err = q(dest.StateTable); err != nil {
		return
	}
	layoutAt, err = q(dest.TablesTable)
	if layoutAt.After(fresh) {
		fresh = layoutAt
	}
	return
}

// load reads the table's layout (and its children's).
func (t *table) load(ctx context.Context) (*snapshot, error) {
	if t.stream == "" {
		return t.loadListed(ctx)
	}
	layout, err := t.st.d.Layout(ctx, t.name)
	if err != nil {
		return nil, err
	}
	if layout == nil {
		return nil, &notSyncedError{table: t.name, pipeline: t.pipeline, stream: t.stream}
	}
	s := &snapshot{layout: layout, cols: exposedColumns(layout), key: layout.PrimaryKey, children: map[string]*childTable{}}
	s.byName = indexColumns(s.cols)
	s.rowID = layout.Index(schema.ColRowID) >= 0
	if s.rowID {
		if err := t.loadChildren(ctx, s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// loadChildren finds the child tables of unnested arrays among the
// stream's recorded layouts.
func (t *table) loadChildren(ctx context.Context, s *snapshot) error {
	d := t.st.f.d
	rows, err := t.st.db.Query(ctx, fmt.Sprintf("SELECT %s FROM %s WHERE %s = %s AND %s = %s",
		d.Quote("table_name"), d.Table(dest.TablesTable), d.Quote("pipeline"), d.Placeholder(1), d.Quote("stream"), d.Placeholder(2)), t.pipeline, t.stream)
	if err != nil {
		return fmt.Errorf("list the child tables of %s: %w", t.name, err)
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return err
		}
		names = append(names, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, n := range names {
		if n == t.name || strings.HasPrefix(n, schema.MetaPrefix) {
			continue
		}
		l, err := t.st.d.Layout(ctx, n)
		if err != nil {
			return err
		}
		if l == nil || l.Parent != t.name {
			continue
		}
		c := &childTable{name: n, expand: strings.TrimPrefix(n, t.name+"__"), cols: exposedColumns(l), rowID: l.Index(schema.ColRowID) >= 0}
		c.byName = indexColumns(c.cols)
		s.children[c.expand] = c
	}
	return nil
}

// loadListed reads the columns of a table or view listed in api.tables
// from the database.
func (t *table) loadListed(ctx context.Context) (*snapshot, error) {
	dbCols, ok, err := t.st.f.d.Columns(ctx, t.st.db, t.name)
	if err != nil {
		return nil, fmt.Errorf("read the columns of %s: %w", t.name, err)
	}
	if !ok {
		return nil, fmt.Errorf("table %s (pipeline %s, api.tables) does not exist", t.name, t.pipeline)
	}
	s := &snapshot{children: map[string]*childTable{}}
	for _, n := range slices.Sorted(maps.Keys(dbCols)) {
		if strings.HasPrefix(n, schema.MetaPrefix) {
			continue
		}
		key := slices.Contains(t.key, n)
		s.cols = append(s.cols, column{name: n, typ: t.st.f.logicalType(dbCols[n]), nullable: !key, key: key})
	}
	s.byName = indexColumns(s.cols)
	for _, k := range t.key {
		if s.byName[k] == nil {
			return nil, fmt.Errorf("table %s (pipeline %s): api.tables key column %s does not exist", t.name, t.pipeline, k)
		}
	}
	s.key = t.key
	return s, nil
}

// logicalType guesses the logical type of a column from its database
// type, for tables Ferry did not create.
func (f flavor) logicalType(dbType string) schema.Type {
	if ty, ok := f.d.(sqldest.Typer); ok {
		if lt, ok := ty.LogicalType(dbType); ok {
			return lt
		}
	}
	t := strings.ToLower(dbType)
	switch {
	case t == "boolean" || t == "bool" || t == "tinyint(1)":
		return schema.Bool
	case strings.Contains(t, "int"):
		return schema.Int
	case strings.Contains(t, "double") || strings.Contains(t, "real") || strings.Contains(t, "float"):
		return schema.Float
	case strings.Contains(t, "numeric") || strings.Contains(t, "decimal"):
		return schema.Decimal
	case strings.Contains(t, "timestamp") || strings.Contains(t, "datetime"):
		return schema.Timestamp
	case strings.Contains(t, "json"):
		return schema.JSON
	}
	return schema.Text
}

// notSyncedError is a served stream whose table does not exist yet.
type notSyncedError struct{ table, pipeline, stream string }

func (e *notSyncedError) Error() string {
	if e.stream == "" {
		return fmt.Sprintf("table %s of pipeline %s cannot be read yet: its database does not exist (run ferry run)", e.table, e.pipeline)
	}
	return fmt.Sprintf("table %s does not exist yet: stream %s of pipeline %s has not been synced (run ferry run)", e.table, e.stream, e.pipeline)
}
