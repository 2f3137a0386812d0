// Package outbox is the outbox source: it reads an outbox table (the
// transactional outbox pattern, with Debezium's columns: id, aggregate
// type, aggregate id, event type, payload) and emits its events in id
// order, routed to streams by aggregate type; once an event is delivered,
// its row is deleted or marked, so that the next read takes exactly the
// events not yet delivered, whatever order their transactions committed
// in.
//
// Delivery is at least once, in id order per aggregate: a crash between
// the delivery and the delete (or mark) delivers the event again, with the
// same idempotency key (its position is its id).
package outbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/ferry-dev/ferry/internal/change"
	mysqldest "github.com/ferry-dev/ferry/internal/dest/mysql"
	"github.com/ferry-dev/ferry/internal/dest/sqlite"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/schema"
	"github.com/ferry-dev/ferry/internal/source"
	"github.com/ferry-dev/ferry/internal/source/sqlquery"
	"github.com/ferry-dev/ferry/internal/spec"
	"github.com/ferry-dev/ferry/internal/template"
)

func init() {
	source.Register("outbox", "An outbox table (aggregate type, aggregate id, event type, payload): events in id order, routed to streams by aggregate type, deleted or marked once delivered.", New)
}

// Source reads an outbox table.
type Source struct {
	cfg     *Config
	url     string
	dir     string
	poll    time.Duration
	log     *slog.Logger
	red     source.Redactor
	streams []source.Stream
	others  []string // aggregate types listed by some stream

	mu sync.Mutex
	db *sql.DB
	d  sqlquery.Dialect

	// work takes the ids of delivered events to delete or mark; one
	// goroutine settles them in order, until Close (acknowledgements of a
	// run's last commit come after its Read returned).
	work     chan settleJob
	settled  sync.WaitGroup
	failedMu sync.Mutex
	failed   error
}

type settleJob struct {
	ids  []int64
	done func()
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
	s := &Source{cfg: c, url: u, dir: opts.Dir, poll: 500 * time.Millisecond, log: opts.Logger, red: opts.Redactor}
	if c.PollInterval != "" {
		if s.poll, err = spec.ParseDuration(c.PollInterval); err != nil {
			return nil, err
		}
	}
	if c.BatchSize == 0 {
		c.BatchSize = 1000
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	for _, name := range c.StreamOrder {
		s.others = append(s.others, c.Streams[name].AggregateTypes...)
		s.streams = append(s.streams, source.Stream{Name: name, PrimaryKey: []string{c.Columns.AggregateID}, Cursor: change.ColPosition, Unbounded: true,
			Hints: map[string]schema.Type{change.ColPosition: schema.Text, c.Columns.Payload: schema.JSON}})
	}
	return s, nil
}

// Streams lists the streams.
func (s *Source) Streams() []source.Stream { return s.streams }

// Close settles the last delivered events and closes the connections.
func (s *Source) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.work != nil {
		close(s.work)
		s.settled.Wait()
		s.work = nil
	}
	if s.db != nil {
		return s.db.Close()
	}
	return nil
}

func (s *Source) conn(ctx context.Context) (*sql.DB, sqlquery.Dialect, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db != nil {
		return s.db, s.d, nil
	}
	raw := strings.TrimSpace(s.url)
	scheme, rest, _ := strings.Cut(raw, ":")
	var db *sql.DB
	var d sqlquery.Dialect
	switch strings.ToLower(scheme) {
	case "postgres", "postgresql":
		cc, err := pgx.ParseConfig(raw)
		if err != nil {
			return nil, "", errors.New("outbox: url is not a valid postgres:// url")
		}
		db, d = stdlib.OpenDB(*cc), sqlquery.Postgres
	case "mysql", "mariadb":
		mc, err := mysqldest.ParseURL(raw)
		if err != nil {
			return nil, "", fmt.Errorf("outbox: %w", err)
		}
		mc.MultiStatements = false
		conn, err := gomysql.NewConnector(mc)
		if err != nil {
			return nil, "", err
		}
		db, d = sql.OpenDB(conn), sqlquery.MySQL
	case "sqlite", "file":
		path := strings.TrimPrefix(rest, "//")
		if !filepath.IsAbs(path) && s.dir != "" {
			path = filepath.Join(s.dir, path)
		}
		var err error
		if db, err = sqlite.OpenDB(path); err != nil {
			return nil, "", fmt.Errorf("outbox: %w", err)
		}
		d = sqlquery.SQLite
	default:
		return nil, "", fmt.Errorf("outbox: url scheme %q is not one Ferry reads (want postgres://, mysql://, mariadb:// or sqlite:PATH)", scheme)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, "", errors.New(s.red.String("outbox: " + err.Error()))
	}
	s.db, s.d = db, d
	s.work = make(chan settleJob, 256)
	s.settled.Add(1)
	go func() {
		defer s.settled.Done()
		for j := range s.work {
			if err := s.settle(db, d, j.ids); err != nil {
				s.failedMu.Lock()
				s.failed = err
				s.failedMu.Unlock()
			}
			j.done()
		}
	}()
	return db, d, nil
}

// where returns the filter of a stream's aggregate types.
func (s *Source) where(d sqlquery.Dialect, stream string, args *[]any) string {
	c := s.cfg
	types := c.Streams[stream].AggregateTypes
	not := ""
	if len(types) == 0 {
		types, not = s.others, "NOT "
	}
	var conds []string
	if c.AfterDelivery == "mark" {
		conds = append(conds, d.Quote(c.DeliveredColumn)+" IS NULL")
	}
	if len(types) > 0 {
		ph := make([]string, len(types))
		for i, t := range types {
			*args = append(*args, t)
			ph[i] = d.Placeholder(len(*args))
		}
		conds = append(conds, d.Quote(c.Columns.AggregateType)+" "+not+"IN ("+strings.Join(ph, ", ")+")")
	}
	if len(conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(conds, " AND ")
}

// Read emits a stream's events until ctx ends, reading the outbox again
// every poll_interval while it is empty.
func (s *Source) Read(ctx context.Context, req source.ReadRequest) error {
	if _, ok := s.cfg.Streams[req.Stream]; !ok {
		return fmt.Errorf("unknown stream %q", req.Stream)
	}
	part := &record.Partition{}
	if _, err := req.Start(ctx, part); err != nil {
		return err
	}
	db, d, err := s.conn(ctx)
	if err != nil {
		return err
	}
	c := s.cfg
	// Rows delivered but not yet deleted (or marked) must not be read
	// again: the acknowledgements remove them, in order, on their own
	// connection.
	var (
		mu      sync.Mutex
		pending = map[int64]bool{}
	)
	work := s.work
	number := 0
	for {
		s.failedMu.Lock()
		ferr := s.failed
		s.failedMu.Unlock()
		mu.Lock()
		skip := make(map[int64]bool, len(pending))
		for id := range pending {
			skip[id] = true
		}
		mu.Unlock()
		if ferr != nil {
			return ferr
		}
		var args []any
		q := "SELECT * FROM " + d.Quote(c.Table) + s.where(d, req.Stream, &args) + " ORDER BY " + d.Quote(c.Columns.ID) + fmt.Sprintf(" LIMIT %d", c.BatchSize+len(skip))
		chunk, ids, err := s.read(ctx, db, req.Stream, q, args, skip)
		if err != nil {
			return err
		}
		if chunk.Len == 0 {
			t := time.NewTimer(s.poll)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
			continue
		}
		mu.Lock()
		for _, id := range ids {
			pending[id] = true
		}
		mu.Unlock()
		number++
		pos, _ := json.Marshal(map[string]int64{"last_id": ids[len(ids)-1]})
		pg := &record.Page{Stream: req.Stream, Partition: part, Chunk: chunk, Position: pos, Number: number, Request: "outbox " + c.Table + ": " + q, FetchedAt: time.Now().UnixMicro()}
		pg.Ack = func(err error) {
			if err != nil {
				mu.Lock()
				for _, id := range ids {
					delete(pending, id)
				}
				mu.Unlock()
				return
			}
			work <- settleJob{ids: ids, done: func() {
				mu.Lock()
				for _, id := range ids {
					delete(pending, id)
				}
				mu.Unlock()
			}}
		}
		if err := req.Emit(ctx, pg); err != nil {
			return err
		}
	}
}

// read reads one batch of events as a chunk.
func (s *Source) read(ctx context.Context, db *sql.DB, stream, q string, args []any, skip map[int64]bool) (*record.Chunk, []int64, error) {
	c := s.cfg
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, nil, fmt.Errorf("outbox: %s: %w", q, err)
	}
	defer rows.Close()
	cts, err := rows.ColumnTypes()
	if err != nil {
		return nil, nil, err
	}
	names := make([]string, len(cts))
	tb := &schema.Table{Name: stream}
	idCol := -1
	for j, ct := range cts {
		names[j] = ct.Name()
		typ := sqlquery.TypeOf(ct.DatabaseTypeName())
		if names[j] == c.Columns.Payload {
			typ = schema.JSON
		}
		if typ == schema.Unknown {
			typ = schema.Text
		}
		if names[j] == c.Columns.ID {
			idCol = j
		}
		tb.Columns = append(tb.Columns, schema.Column{Name: names[j], Path: []string{names[j]}, Type: typ})
	}
	if idCol < 0 {
		return nil, nil, fmt.Errorf("outbox table %s has no column %s (columns.id)", c.Table, c.Columns.ID)
	}
	tb.Columns = append(tb.Columns, schema.Column{Name: change.ColPosition, Path: []string{change.ColPosition}, Type: schema.Text})
	ch := record.NewChunk(tb, c.BatchSize)
	vals := make([]any, len(cts))
	ptrs := make([]any, len(vals))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var ids []int64
	for rows.Next() && ch.Len < c.BatchSize {
		if err := rows.Scan(ptrs...); err != nil {
			return nil, nil, err
		}
		id, err := strconv.ParseInt(fmt.Sprint(textOf(vals[idCol])), 10, 64)
		if err != nil {
			return nil, nil, fmt.Errorf("outbox column %s holds %v, not an integer id", c.Columns.ID, vals[idCol])
		}
		if skip[id] {
			continue
		}
		for j := range cts {
			if err := appendValue(ch, &ch.Cols[j], tb.Columns[j].Type, vals[j]); err != nil {
				return nil, nil, fmt.Errorf("outbox event %d: column %s: %w", id, names[j], err)
			}
		}
		ch.Cols[len(cts)].AppendBytes([]byte(fmt.Sprintf("%020d", id)))
		ch.Ops = append(ch.Ops, record.Insert)
		ch.Len++
		ids = append(ids, id)
	}
	return ch, ids, rows.Err()
}

func textOf(v any) any {
	if b, ok := v.([]byte); ok {
		return string(b)
	}
	return v
}

// settle deletes or marks delivered events.
func (s *Source) settle(db *sql.DB, d sqlquery.Dialect, ids []int64) error {
	c := s.cfg
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for start := 0; start < len(ids); start += 500 {
		part := ids[start:min(len(ids), start+500)]
		var args []any
		var where string
		if c.AfterDelivery == "mark" {
			args = append(args, time.Now().UTC())
			if d == sqlquery.SQLite {
				args[0] = time.Now().UTC().Format("2006-01-02 15:04:05.999999")
			}
		}
		ph := make([]string, len(part))
		for i, id := range part {
			args = append(args, id)
			ph[i] = d.Placeholder(len(args))
		}
		where = " WHERE " + d.Quote(c.Columns.ID) + " IN (" + strings.Join(ph, ", ") + ")"
		q := "DELETE FROM " + d.Quote(c.Table) + where
		if c.AfterDelivery == "mark" {
			q = "UPDATE " + d.Quote(c.Table) + " SET " + d.Quote(c.DeliveredColumn) + " = " + d.Placeholder(1) + where
		}
		if _, err := db.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("outbox: %s the delivered events of %s: %w (the events stay and will be delivered again)", c.AfterDelivery, c.Table, err)
		}
	}
	return nil
}

// Check reads the outbox's columns and pending count.
func (s *Source) Check(ctx context.Context, stream string) (string, error) {
	db, d, err := s.conn(ctx)
	if err != nil {
		return "", err
	}
	var args []any
	var n int64
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+d.Quote(s.cfg.Table)+s.where(d, stream, &args), args...).Scan(&n); err != nil {
		return "", fmt.Errorf("outbox table %s: %w", s.cfg.Table, err)
	}
	return fmt.Sprintf("outbox %s: %d events waiting for stream %s", s.cfg.Table, n, stream), nil
}
