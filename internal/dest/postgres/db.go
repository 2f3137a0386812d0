package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ferry-dev/ferry/internal/dest/sqldest"
)

// db implements sqldest.DB over a pgxpool. Idle connections are pinged
// before reuse, so one cut by a server restart is replaced instead of
// failing a statement; a connection released inside a transaction or
// broken is closed.
type db struct {
	p *pgxpool.Pool

	mu     sync.Mutex
	active map[*txn]struct{} // open transactions, rolled back by Close
}

var _ sqldest.DB = (*db)(nil)

// Exec runs a statement outside any transaction.
func (d *db) Exec(ctx context.Context, query string, args ...any) error {
	_, err := d.p.Exec(ctx, query, args...)
	return err
}

// Query runs a query outside any transaction; the connection returns to
// the pool when the rows are closed.
func (d *db) Query(ctx context.Context, query string, args ...any) (sqldest.Rows, error) {
	c, err := d.p.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	r, err := c.Query(ctx, query, args...)
	if err != nil {
		c.Release()
		return nil, err
	}
	return &rows{Rows: r, release: c.Release}, nil
}

// Begin starts a transaction on a connection of its own.
func (d *db) Begin(ctx context.Context) (sqldest.Tx, error) {
	c, err := d.p.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	tx, err := c.Begin(ctx)
	if err != nil {
		c.Release()
		return nil, err
	}
	t := &txn{db: d, pc: c, conn: c.Conn(), tx: tx}
	d.mu.Lock()
	if d.active == nil {
		d.active = map[*txn]struct{}{}
	}
	d.active[t] = struct{}{}
	d.mu.Unlock()
	return t, nil
}

// Close rolls back the transactions still open — their sockets are cut
// first, so a COPY in flight stops at once and the server rolls back —
// and closes the pool.
func (d *db) Close() error {
	d.mu.Lock()
	open := make([]*txn, 0, len(d.active))
	for t := range d.active {
		open = append(open, t)
	}
	d.mu.Unlock()
	for _, t := range open {
		if nc := t.conn.PgConn().Conn(); nc != nil {
			nc.Close()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		t.Rollback(ctx)
		cancel()
	}
	d.p.Close()
	return nil
}

// QueryColumns runs one statement in a read-only transaction and renders
// every value in PostgreSQL's text form, NULL as "NULL".
func (d *db) QueryColumns(ctx context.Context, query string) ([]string, [][]string, error) {
	c, err := d.p.Acquire(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer c.Release()
	if _, err := c.Exec(ctx, "BEGIN TRANSACTION READ ONLY"); err != nil {
		return nil, nil, err
	}
	defer c.Exec(ctx, "ROLLBACK") // a failure leaves the connection in a transaction: release closes it
	// The extended protocol runs exactly one statement; no result formats
	// means every column comes back as text.
	rr := c.Conn().PgConn().ExecParams(ctx, query, nil, nil, nil, nil)
	var cols []string
	for _, fd := range rr.FieldDescriptions() {
		cols = append(cols, fd.Name)
	}
	var out [][]string
	for rr.NextRow() {
		vals := rr.Values()
		row := make([]string, len(vals))
		for i, v := range vals {
			if v == nil {
				row[i] = "NULL"
			} else {
				row[i] = string(v)
			}
		}
		out = append(out, row)
	}
	if _, err := rr.Close(); err != nil {
		return nil, nil, err
	}
	return cols, out, nil
}

// rows adapts pgx.Rows to sqldest.Rows.
type rows struct {
	pgx.Rows
	release func()
}

// Close closes the rows, returns the connection if the rows own it, and
// reports any error met while reading.
func (r *rows) Close() error {
	r.Rows.Close()
	err := r.Rows.Err()
	if r.release != nil {
		r.release()
		r.release = nil
	}
	return err
}

// txn implements sqldest.Tx. A Loader may leave work unfinished between
// its calls (a COPY still streaming, staged rows not merged yet): it
// registers itself as pending, and any other statement on the transaction
// finishes that work first, so statements always apply in the order they
// were issued.
type txn struct {
	db      *db
	pc      *pgxpool.Conn
	conn    *pgx.Conn
	tx      pgx.Tx
	pending *loader
	stages  int // temporary staging tables created in this transaction
	done    bool
	ended   sync.Once
}

var _ sqldest.Tx = (*txn)(nil)

// settle finishes the pending loader's work.
func (t *txn) settle(ctx context.Context) error {
	l := t.pending
	if l == nil {
		return nil
	}
	t.pending = nil
	return l.finish(ctx)
}

// Exec runs a statement in the transaction.
func (t *txn) Exec(ctx context.Context, query string, args ...any) error {
	if err := t.usable(ctx); err != nil {
		return err
	}
	_, err := t.tx.Exec(ctx, query, args...)
	return err
}

// Query runs a query in the transaction.
func (t *txn) Query(ctx context.Context, query string, args ...any) (sqldest.Rows, error) {
	if err := t.usable(ctx); err != nil {
		return nil, err
	}
	r, err := t.tx.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return &rows{Rows: r}, nil
}

func (t *txn) usable(ctx context.Context) error {
	if t.done {
		return errors.New("transaction already ended")
	}
	return t.settle(ctx)
}

// Commit finishes pending work and commits. The connection goes back to
// the pool whatever the outcome.
func (t *txn) Commit(ctx context.Context) error {
	if t.done {
		return errors.New("transaction already ended")
	}
	if err := t.settle(ctx); err != nil {
		t.Rollback(ctx)
		return err
	}
	err := t.tx.Commit(ctx)
	t.end()
	return err
}

// Rollback abandons pending work and rolls back. It is safe to call more
// than once.
func (t *txn) Rollback(ctx context.Context) error {
	if t.done {
		return nil
	}
	if l := t.pending; l != nil {
		t.pending = nil
		l.abandon(ctx)
	}
	err := t.tx.Rollback(ctx)
	t.end()
	if errors.Is(err, pgx.ErrTxClosed) {
		err = nil
	}
	if err != nil {
		return fmt.Errorf("roll back: %w", err)
	}
	return nil
}

func (t *txn) end() {
	t.done = true
	t.ended.Do(func() {
		t.db.mu.Lock()
		delete(t.db.active, t)
		t.db.mu.Unlock()
		t.pc.Release()
	})
}
