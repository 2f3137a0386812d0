package sqldest

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"
)

// StdDB adapts a database/sql pool to DB. With Serialize set, at most one
// transaction is open at a time (for databases with a single writer, such
// as SQLite); Begin waits for the current one to end.
type StdDB struct {
	DB        *sql.DB
	Serialize bool
	mu        sync.Mutex
	waiting   atomic.Int32
}

var _ DB = (*StdDB)(nil)

// Exec runs a statement outside any transaction.
func (s *StdDB) Exec(ctx context.Context, query string, args ...any) error {
	_, err := s.DB.ExecContext(ctx, query, args...)
	return err
}

// Query runs a query outside any transaction.
func (s *StdDB) Query(ctx context.Context, query string, args ...any) (Rows, error) {
	return s.DB.QueryContext(ctx, query, args...)
}

// Begin starts a transaction.
func (s *StdDB) Begin(ctx context.Context) (Tx, error) {
	if s.Serialize {
		s.waiting.Add(1)
		s.mu.Lock()
		s.waiting.Add(-1)
	}
	// The transaction outlives a cancelled context: database/sql would roll
	// it back at once, while the engine commits what was completely written
	// when a run is interrupted. Statements still honour ctx.
	tx, err := s.DB.BeginTx(context.WithoutCancel(ctx), nil)
	if err != nil {
		if s.Serialize {
			s.mu.Unlock()
		}
		return nil, err
	}
	return &StdTx{Tx: tx, release: s.release}, nil
}

func (s *StdDB) release() {
	if s.Serialize {
		s.mu.Unlock()
	}
}

// Close closes the pool.
func (s *StdDB) Close() error { return s.DB.Close() }

// Contended reports whether a Begin is waiting for the open transaction
// (only with Serialize).
func (s *StdDB) Contended() bool { return s.waiting.Load() > 0 }

// StdTx adapts a database/sql transaction to Tx.
type StdTx struct {
	Tx      *sql.Tx
	release func()
	once    sync.Once
	pending func() error
}

// SetPending registers work running on the transaction's connection in
// the background (a Loader's statement): it is waited for before any
// other statement, as a connection runs one statement at a time.
func (t *StdTx) SetPending(wait func() error) { t.pending = wait }

// settle waits for the pending background work.
func (t *StdTx) settle() error {
	if f := t.pending; f != nil {
		t.pending = nil
		return f()
	}
	return nil
}

// Exec runs a statement in the transaction.
func (t *StdTx) Exec(ctx context.Context, query string, args ...any) error {
	if err := t.settle(); err != nil {
		return err
	}
	_, err := t.Tx.ExecContext(ctx, query, args...)
	return err
}

// Query runs a query in the transaction.
func (t *StdTx) Query(ctx context.Context, query string, args ...any) (Rows, error) {
	if err := t.settle(); err != nil {
		return nil, err
	}
	return t.Tx.QueryContext(ctx, query, args...)
}

// Commit commits.
func (t *StdTx) Commit(context.Context) error {
	defer t.done()
	if err := t.settle(); err != nil {
		t.Tx.Rollback()
		return err
	}
	return t.Tx.Commit()
}

// Rollback rolls back.
func (t *StdTx) Rollback(context.Context) error {
	defer t.done()
	t.settle()
	return t.Tx.Rollback()
}

func (t *StdTx) done() { t.once.Do(t.release) }

// QueryColumns runs a query and renders every value as text, NULL as "NULL".
func (s *StdDB) QueryColumns(ctx context.Context, query string) ([]string, [][]string, error) {
	rows, err := s.DB.QueryContext(ctx, query)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, nil, err
	}
	var out [][]string
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return nil, nil, err
		}
		row := make([]string, len(cols))
		for i, v := range vals {
			if v.Valid {
				row[i] = v.String
			} else {
				row[i] = "NULL"
			}
		}
		out = append(out, row)
	}
	return cols, out, rows.Err()
}
