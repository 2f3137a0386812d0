// Package sqlquery is the sql source: it reads tables and queries of a
// database Ferry may only read (PostgreSQL, MySQL/MariaDB, SQLite), as
// typed rows, incrementally by a cursor column, in batches ordered by the
// cursor and the primary key so that an interrupted pass resumes after
// the last committed row.
//
// Nothing can be written through its connections (see OpenReadOnly), and
// every query it runs is reported to the run (source.Request.Query) and
// logged with its parameters.
package sqlquery

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/schema"
	"github.com/ferry-dev/ferry/internal/source"
	"github.com/ferry-dev/ferry/internal/template"
)

func init() {
	source.Register("sql", "Tables or queries of a PostgreSQL, MySQL/MariaDB or SQLite database, read through a read-only connection, incrementally by a cursor column.", New)
}

// DefaultBatchSize is how many rows one query reads by default.
const DefaultBatchSize = 5000

// Source reads a database's tables and queries.
type Source struct {
	url     string
	dir     string
	batch   int
	log     *slog.Logger
	obs     source.Observer
	red     source.Redactor
	streams []source.Stream
	byName  map[string]*stream

	mu sync.Mutex
	db *DB
}

type stream struct {
	name   string
	from   string // the table, or the query as a subquery, before quoting
	query  bool
	pk     []string
	cursor string
}

var (
	_ source.Source  = (*Source)(nil)
	_ source.Checker = (*Source)(nil)
)

// New builds the source; it connects on the first read.
func New(c *Config, opts source.Options) (source.Source, error) {
	tpl, err := template.Parse(c.URL)
	if err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	u, _, err := tpl.Render(template.Env{"config": opts.Config, "stream": ""})
	if err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	s := &Source{url: u, dir: opts.Dir, batch: c.BatchSize, log: opts.Logger, obs: opts.Observer, red: opts.Redactor, byName: map[string]*stream{}}
	if s.batch == 0 {
		s.batch = DefaultBatchSize
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	for _, name := range c.StreamOrder {
		sc := c.Streams[name]
		st := &stream{name: name, pk: slices.Clone([]string(sc.PrimaryKey)), cursor: sc.Cursor}
		if sc.Query != "" {
			st.from, st.query = strings.TrimRight(strings.TrimSpace(sc.Query), ";"), true
		} else {
			st.from = sc.Table
		}
		s.byName[name] = st
		s.streams = append(s.streams, source.Stream{Name: name, PrimaryKey: st.pk, Cursor: st.cursor})
	}
	return s, nil
}

// Streams lists the streams in file order.
func (s *Source) Streams() []source.Stream { return s.streams }

// Close closes the connections.
func (s *Source) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db != nil {
		return s.db.Close()
	}
	return nil
}

func (s *Source) conn(ctx context.Context) (*DB, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db != nil {
		return s.db, nil
	}
	db, err := OpenReadOnly(ctx, s.url, s.dir)
	if err != nil {
		return nil, errors.New(s.red.String(err.Error()))
	}
	s.db = db
	return db, nil
}

// position is where a pass resumes: after the row whose ordering values
// are After; Nulls is true once the rows without a cursor value were read.
type position struct {
	Nulls bool     `json:"nulls,omitempty"`
	After []string `json:"after,omitempty"`
}

// plan is the queries of one pass.
type plan struct {
	st     *stream
	d      Dialect
	from   string
	order  []string // cursor (if any) then the key
	types  map[string]schema.Type
	since  any
	hasMin bool
}

func (s *Source) plan(ctx context.Context, db *DB, st *stream, since string) (*plan, error) {
	p := &plan{st: st, d: db.Dialect, types: map[string]schema.Type{}}
	if st.query {
		p.from = "(" + st.from + ") ferry_q"
	} else {
		p.from = db.Dialect.Quote(st.from)
	}
	// The result's columns and types, from an empty read.
	probe := "SELECT * FROM " + p.from + " WHERE 1 = 0"
	cols, err := s.columns(ctx, db, st.name, probe)
	if err != nil {
		return nil, err
	}
	for i, n := range cols.names {
		p.types[n] = cols.types[i]
	}
	var missing []string
	for _, k := range append(slices.Clone(st.pk), st.cursor) {
		if _, ok := p.types[k]; k != "" && !ok {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s has no column %s (it has: %s)", st.from, strings.Join(missing, ", "), strings.Join(cols.names, ", "))
	}
	if st.cursor != "" {
		p.order = append(p.order, st.cursor)
	}
	for _, k := range st.pk {
		if k != st.cursor {
			p.order = append(p.order, k)
		}
	}
	if since != "" && st.cursor != "" {
		p.since, p.hasMin = p.param(st.cursor, since), true
	}
	return p, nil
}

// param converts a saved value of column col for comparison with it.
// SQLite keeps timestamps as text and compares them as text: they are
// given in its usual form (2006-01-02 15:04:05.999999), which is how
// CURRENT_TIMESTAMP and most programs write them.
func (p *plan) param(col, s string) any {
	v := param(p.types[col], s)
	if tm, ok := v.(time.Time); ok && p.d == SQLite {
		return tm.UTC().Format("2006-01-02 15:04:05.999999999")
	}
	return v
}

// query returns the next batch's statement and parameters.
func (p *plan) query(pos position, limit int) (string, []any) {
	var where []string
	var args []any
	ph := func(v any) string {
		args = append(args, v)
		return p.d.Placeholder(len(args))
	}
	order := p.order
	nulls := p.st.cursor != "" && !pos.Nulls && !p.hasMin
	if nulls {
		// First the rows without a cursor value, by key: they only come
		// with a full read.
		where = append(where, p.d.Quote(p.st.cursor)+" IS NULL")
		order = order[1:]
	} else if p.st.cursor != "" {
		if p.hasMin {
			where = append(where, p.d.Quote(p.st.cursor)+" >= "+ph(p.since))
		} else {
			where = append(where, p.d.Quote(p.st.cursor)+" IS NOT NULL")
		}
	}
	if len(pos.After) == len(order) && len(order) > 0 {
		var cols, vals []string
		for i, c := range order {
			cols = append(cols, p.d.Quote(c))
			vals = append(vals, ph(p.param(c, pos.After[i])))
		}
		where = append(where, "("+strings.Join(cols, ", ")+") > ("+strings.Join(vals, ", ")+")")
	}
	q := "SELECT * FROM " + p.from
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	var ob []string
	for _, c := range order {
		ob = append(ob, p.d.Quote(c))
	}
	q += " ORDER BY " + strings.Join(ob, ", ") + fmt.Sprintf(" LIMIT %d", limit)
	return q, args
}

// orderOf returns the ordering columns of a batch at pos.
func (p *plan) orderOf(pos position) []string {
	if p.st.cursor != "" && !pos.Nulls && !p.hasMin {
		return p.order[1:]
	}
	return p.order
}

// Read reads one stream: one partition, in batches.
func (s *Source) Read(ctx context.Context, req source.ReadRequest) error {
	st, ok := s.byName[req.Stream]
	if !ok {
		return fmt.Errorf("unknown stream %q", req.Stream)
	}
	part := &record.Partition{}
	start, err := req.Start(ctx, part)
	if err != nil || start.Skip {
		return err
	}
	db, err := s.conn(ctx)
	if err != nil {
		return err
	}
	p, err := s.plan(ctx, db, st, start.Since)
	if err != nil {
		return err
	}
	var pos position
	if len(start.Resume) > 0 {
		if err := json.Unmarshal(start.Resume, &pos); err != nil {
			return fmt.Errorf("resume position %s is unreadable: %w", start.Resume, err)
		}
	}
	if st.cursor == "" || p.hasMin {
		pos.Nulls = true
	}
	if p.hasMin {
		// An incremental read cannot see rows without a cursor value: say
		// so rather than leave them behind.
		if err := s.noNullCursor(ctx, db, st, p); err != nil {
			return err
		}
	}
	for n := 1; ; n++ {
		q, args := p.query(pos, s.batch)
		order := p.orderOf(pos)
		c, last, err := s.batchRows(ctx, db, st.name, q, args, order)
		if err != nil {
			return err
		}
		done := c.Len < s.batch
		if c.Len > 0 {
			pos.After = last
		}
		if done && !pos.Nulls {
			// The rows without cursor are read: now the others.
			pos = position{Nulls: true}
			done = false
		}
		raw, _ := json.Marshal(pos)
		pg := &record.Page{Stream: st.name, Partition: part, Chunk: c, Position: raw, Last: done, Number: n,
			Request: "SQL " + db.Target + ": " + q, FetchedAt: time.Now().UnixMicro()}
		if err := req.Emit(ctx, pg); err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}

// noNullCursor fails when rows lack a cursor value.
func (s *Source) noNullCursor(ctx context.Context, db *DB, st *stream, p *plan) error {
	var n int64
	q := "SELECT COUNT(*) FROM " + p.from + " WHERE " + p.d.Quote(st.cursor) + " IS NULL"
	err := s.run(ctx, db, st.name, q, nil, func(rows rowsScanner) error {
		for rows.Next() {
			if err := rows.Scan(&n); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if n > 0 {
		return fmt.Errorf("%d rows of %s have no %s, so an incremental sync cannot see them: fill the column (and make it NOT NULL), or sync the stream in full_refresh_overwrite mode", n, st.from, st.cursor)
	}
	return nil
}

// columns runs a query that returns no rows, for its columns.
func (s *Source) columns(ctx context.Context, db *DB, stream, q string) (columns, error) {
	var cols columns
	err := s.run(ctx, db, stream, q, nil, func(rows rowsScanner) error {
		cts, err := rows.ColumnTypes()
		if err != nil {
			return err
		}
		cols = describe(cts)
		return nil
	})
	return cols, err
}

type rowsScanner = *sql.Rows

// run runs one query in a read-only transaction, reporting it to the run
// and the log.
func (s *Source) run(ctx context.Context, db *DB, stream, q string, args []any, fn func(rowsScanner) error) error {
	begun := time.Now()
	err := func() error {
		tx, err := db.BeginRead(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		rows, err := tx.QueryContext(ctx, q, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		if err := fn(rows); err != nil {
			return err
		}
		if err := rows.Err(); err != nil {
			return err
		}
		return tx.Commit()
	}()
	shown := make([]string, len(args))
	for i, a := range args {
		shown[i] = text(a)
	}
	s.log.Info("query", "stream", stream, "sql", q, "args", shown, "duration", time.Since(begun).Round(time.Microsecond))
	if s.obs != nil {
		r := source.Request{Stream: stream, Method: "QUERY", URL: db.Target, Query: q, Attempt: 1, Duration: time.Since(begun)}
		if err != nil {
			r.Err = s.red.String(err.Error())
		}
		s.obs.Requested(r)
	}
	if err != nil {
		return fmt.Errorf("%s: query %s: %s", db.Target, q, s.red.String(err.Error()))
	}
	return nil
}

// batchRows reads one batch into a chunk, returning the ordering values of
// its last row.
func (s *Source) batchRows(ctx context.Context, db *DB, stream, q string, args []any, order []string) (*record.Chunk, []string, error) {
	var c *record.Chunk
	var last []string
	err := s.run(ctx, db, stream, q, args, func(rows rowsScanner) error {
		cts, err := rows.ColumnTypes()
		if err != nil {
			return err
		}
		cols := describe(cts)
		orderIdx := make([]int, len(order))
		for i, o := range order {
			orderIdx[i] = slices.Index(cols.names, o)
		}
		vals := make([]any, len(cols.names))
		ptrs := make([]any, len(vals))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		var buf [][]any
		for rows.Next() {
			if err := rows.Scan(ptrs...); err != nil {
				return err
			}
			buf = append(buf, slices.Clone(vals))
		}
		if err := rows.Err(); err != nil {
			return err
		}
		// Columns of unknown type (SQLite expressions) take the type of
		// their first value.
		types := slices.Clone(cols.types)
		for j, t := range types {
			if t != schema.Unknown {
				continue
			}
			types[j] = schema.Text
			for _, row := range buf {
				if row[j] != nil {
					types[j] = valueType(row[j])
					break
				}
			}
		}
		tb := &schema.Table{Name: stream}
		for j, n := range cols.names {
			tb.Columns = append(tb.Columns, schema.Column{Name: n, Path: []string{n}, Type: types[j]})
		}
		c = record.NewChunk(tb, len(buf))
		for _, row := range buf {
			for j, v := range row {
				if err := appendValue(c, &c.Cols[j], types[j], v, cols.binary[j]); err != nil {
					return fmt.Errorf("column %s: %w", cols.names[j], err)
				}
			}
			c.Ops = append(c.Ops, record.Upsert)
			c.Len++
		}
		if n := len(buf); n > 0 {
			last = make([]string, len(order))
			for i, j := range orderIdx {
				last[i] = text(buf[n-1][j])
			}
		}
		return nil
	})
	return c, last, err
}

// Check connects and reads the stream's columns.
func (s *Source) Check(ctx context.Context, name string) (string, error) {
	st, ok := s.byName[name]
	if !ok {
		return "", fmt.Errorf("unknown stream %q", name)
	}
	db, err := s.conn(ctx)
	if err != nil {
		return "", err
	}
	p, err := s.plan(ctx, db, st, "")
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s: %s has %d columns, read-only", db.Target, st.from, len(p.types)), nil
}
