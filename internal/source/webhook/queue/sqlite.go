package queue

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// FileName is the queue's database file in its directory.
const FileName = "queue.db"

// maxBatch bounds the events of one group commit.
const maxBatch = 4096

// ackFlush is how often acknowledgements are saved when nothing is
// appended.
const ackFlush = 200 * time.Millisecond

// SQLite is the local durable queue: a SQLite database in WAL mode with
// synchronous=FULL, so a committed transaction is on stable storage.
// Positions are AUTOINCREMENT rowids: never reused, even once pruned. One
// writer goroutine takes every append waiting and commits them in one
// transaction (group commit): under load, many deliveries share one
// fsync, and an idle queue commits a lone delivery at once.
type SQLite struct {
	path string
	db   *sql.DB

	reqs    chan *appendReq
	stop    chan struct{}
	stopped chan struct{}

	mu      sync.Mutex
	notify  chan struct{}
	acks    map[string]uint64 // acknowledged positions (the largest of each stream)
	dirty   bool              // acks changed since last saved
	closed  bool
	closeMu sync.RWMutex // held for reading while a request is queued

	stmts    map[int]*sql.Stmt // the writer's inserts, by rows
	readStmt *sql.Stmt
}

type appendReq struct {
	ctx    context.Context
	events []*Event
	dup    []bool
	err    chan error
}

var _ Queue = (*SQLite)(nil)

const schemaSQL = `
CREATE TABLE IF NOT EXISTS events (
	seq INTEGER PRIMARY KEY AUTOINCREMENT,
	id TEXT NOT NULL,
	stream TEXT NOT NULL,
	type TEXT NOT NULL,
	path TEXT NOT NULL,
	received_at INTEGER NOT NULL,
	status INTEGER NOT NULL,
	body BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS events_id ON events (id);
CREATE INDEX IF NOT EXISTS events_stream ON events (stream, seq);
CREATE TABLE IF NOT EXISTS acks (stream TEXT PRIMARY KEY, seq INTEGER NOT NULL);
`

// Open opens (creating) the queue in dir.
func Open(dir string) (*SQLite, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("webhook queue: %w", err)
	}
	path := filepath.Join(dir, FileName)
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "busy_timeout(30000)")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("webhook queue %s: %w", path, err)
	}
	db.SetMaxOpenConns(4)
	db.SetMaxIdleConns(4)
	if _, err := db.Exec(schemaSQL); err != nil {
		db.Close()
		return nil, fmt.Errorf("webhook queue %s: %w", path, err)
	}
	s := &SQLite{path: path, db: db, reqs: make(chan *appendReq, 1024), stop: make(chan struct{}), stopped: make(chan struct{}),
		notify: make(chan struct{}), acks: map[string]uint64{}, stmts: map[int]*sql.Stmt{}}
	if s.readStmt, err = db.Prepare(`SELECT ` + columns + ` FROM events WHERE stream = ? AND seq > ? ORDER BY seq LIMIT ?`); err != nil {
		db.Close()
		return nil, fmt.Errorf("webhook queue %s: %w", path, err)
	}
	go s.writer()
	return s, nil
}

// Path returns the database file.
func (s *SQLite) Path() string { return s.path }

// Append implements Queue.
func (s *SQLite) Append(ctx context.Context, events []*Event) ([]bool, error) {
	r := &appendReq{ctx: ctx, events: events, dup: make([]bool, len(events)), err: make(chan error, 1)}
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return nil, ErrClosed
	}
	select {
	case s.reqs <- r:
	case <-ctx.Done():
		s.closeMu.RUnlock()
		return nil, ctx.Err()
	}
	s.closeMu.RUnlock()
	// Once queued, the request is committed or failed by the writer; the
	// caller learns which even if ctx ends meanwhile, so that a durable
	// event is never refused.
	return r.dup, <-r.err
}

// writer commits appends in groups until Close.
func (s *SQLite) writer() {
	defer close(s.stopped)
	tick := time.NewTicker(ackFlush)
	defer tick.Stop()
	var batch []*appendReq
	for {
		batch = batch[:0]
		select {
		case r, ok := <-s.reqs:
			if !ok {
				s.flushAcks()
				return
			}
			batch = append(batch, r)
		case <-tick.C:
			s.flushAcks()
			continue
		}
		n := len(batch[0].events)
	drain:
		for n < maxBatch {
			select {
			case r, ok := <-s.reqs:
				if !ok {
					break drain
				}
				batch = append(batch, r)
				n += len(r.events)
			default:
				break drain
			}
		}
		err := s.commit(batch)
		stored := false
		for _, r := range batch {
			if err == nil {
				for _, d := range r.dup {
					stored = stored || !d
				}
			}
			r.err <- err
		}
		if stored {
			s.mu.Lock()
			close(s.notify)
			s.notify = make(chan struct{})
			s.mu.Unlock()
		}
	}
}

// takeAcks returns the acknowledged positions to save, nil when none
// changed since the last save.
func (s *SQLite) takeAcks() map[string]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.dirty {
		return nil
	}
	s.dirty = false
	a := make(map[string]uint64, len(s.acks))
	maps.Copy(a, s.acks)
	return a
}

// restoreAcks marks acknowledged positions as still to save, after a
// failed save.
func (s *SQLite) restoreAcks(a map[string]uint64) {
	if a == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dirty = true
}

const upsertAck = `INSERT INTO acks (stream, seq) VALUES (?, ?) ON CONFLICT (stream) DO UPDATE SET seq = max(seq, excluded.seq)`

func (s *SQLite) flushAcks() {
	acks := s.takeAcks()
	if acks == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tx, err := s.db.BeginTx(ctx, nil)
	if err == nil {
		for st, seq := range acks {
			if _, err = tx.ExecContext(ctx, upsertAck, st, int64(seq)); err != nil {
				break
			}
		}
		if err == nil {
			err = tx.Commit()
		} else {
			tx.Rollback()
		}
	}
	if err != nil {
		s.restoreAcks(acks)
	}
}

// commit stores a group of appends in one transaction.
func (s *SQLite) commit(batch []*appendReq) (err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	acks := s.takeAcks()
	defer func() {
		if err != nil {
			s.restoreAcks(acks)
			for _, r := range batch {
				for _, e := range r.events {
					e.Seq = 0
				}
			}
		}
	}()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("webhook queue: %w", err)
	}
	defer tx.Rollback()
	var all []ref
	for _, r := range batch {
		for i := range r.events {
			all = append(all, ref{r, i})
		}
	}
	for start := 0; start < len(all); start += insertRows {
		part := all[start:min(len(all), start+insertRows)]
		stmt, err := s.insert(ctx, len(part))
		if err != nil {
			return err
		}
		args := make([]any, 0, 7*len(part))
		for _, x := range part {
			e := x.r.events[x.i]
			args = append(args, e.ID, e.Stream, e.Type, e.Path, e.ReceivedAt.UnixMicro(), int64(e.Status), e.Body)
		}
		rows, err := tx.StmtContext(ctx, stmt).QueryContext(ctx, args...)
		if err != nil {
			return fmt.Errorf("webhook queue: store %d events: %w", len(part), err)
		}
		stored := make(map[string]uint64, len(part))
		for rows.Next() {
			var seq int64
			var id string
			if err := rows.Scan(&seq, &id); err != nil {
				rows.Close()
				return fmt.Errorf("webhook queue: %w", err)
			}
			stored[id] = uint64(seq)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("webhook queue: store %d events: %w", len(part), err)
		}
		// RETURNING gives the rows inserted: an id it does not give, or
		// gives once for two events of this batch, was already kept.
		for _, x := range part {
			e := x.r.events[x.i]
			if seq, ok := stored[e.ID]; ok {
				e.Seq = seq
				delete(stored, e.ID)
			} else {
				x.r.dup[x.i] = true
			}
		}
	}
	for st, seq := range acks {
		if _, err := tx.ExecContext(ctx, upsertAck, st, int64(seq)); err != nil {
			return fmt.Errorf("webhook queue: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("webhook queue: commit: %w", err)
	}
	return nil
}

// ref is one event of a group commit.
type ref struct {
	r *appendReq
	i int
}

// insertRows is how many events one INSERT statement stores (7 bound
// values each, within SQLite's limit on variables).
const insertRows = 256

// insert returns the prepared statement inserting n events, returning
// the sequence and id of each one stored. Only the writer calls it.
func (s *SQLite) insert(ctx context.Context, n int) (*sql.Stmt, error) {
	if st := s.stmts[n]; st != nil {
		return st, nil
	}
	var b strings.Builder
	b.WriteString(`INSERT INTO events (id, stream, type, path, received_at, status, body) VALUES `)
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(?, ?, ?, ?, ?, ?, ?)")
	}
	b.WriteString(` ON CONFLICT (id) DO NOTHING RETURNING seq, id`)
	st, err := s.db.PrepareContext(ctx, b.String())
	if err != nil {
		return nil, fmt.Errorf("webhook queue: %w", err)
	}
	if len(s.stmts) > 64 {
		for k, old := range s.stmts {
			if k != insertRows {
				old.Close()
				delete(s.stmts, k)
			}
		}
	}
	s.stmts[n] = st
	return st, nil
}

const columns = `seq, id, stream, type, path, received_at, status, body`

func scanEvents(rows *sql.Rows) ([]Event, error) {
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var e Event
		var seq, at, status int64
		if err := rows.Scan(&seq, &e.ID, &e.Stream, &e.Type, &e.Path, &at, &status, &e.Body); err != nil {
			return nil, fmt.Errorf("webhook queue: %w", err)
		}
		e.Seq, e.ReceivedAt, e.Status = uint64(seq), time.UnixMicro(at).UTC(), Status(status)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("webhook queue: %w", err)
	}
	return out, nil
}

// Read implements Queue.
func (s *SQLite) Read(ctx context.Context, stream string, after uint64, limit int) ([]Event, error) {
	rows, err := s.readStmt.QueryContext(ctx, stream, int64(after), limit)
	if err != nil {
		return nil, fmt.Errorf("webhook queue: %w", err)
	}
	return scanEvents(rows)
}

// Notify implements Queue.
func (s *SQLite) Notify() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.notify
}

// Ack implements Queue.
func (s *SQLite) Ack(stream string, upTo uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if upTo > s.acks[stream] {
		s.acks[stream] = upTo
		s.dirty = true
	}
}

// Acked implements Queue.
func (s *SQLite) Acked(ctx context.Context, stream string) (uint64, error) {
	var seq int64
	err := s.db.QueryRowContext(ctx, `SELECT seq FROM acks WHERE stream = ?`, stream).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		err = nil
	}
	if err != nil {
		return 0, fmt.Errorf("webhook queue: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return max(uint64(seq), s.acks[stream]), nil
}

// Depth implements Queue.
func (s *SQLite) Depth(ctx context.Context, stream string) (int64, error) {
	acked, err := s.Acked(ctx, stream)
	if err != nil {
		return 0, err
	}
	var n int64
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM events WHERE stream = ? AND seq > ?`, stream, int64(acked)).Scan(&n); err != nil {
		return 0, fmt.Errorf("webhook queue: %w", err)
	}
	return n, nil
}

// Prune implements Queue.
func (s *SQLite) Prune(ctx context.Context, cutoff time.Time) (int64, error) {
	s.flushAcks()
	res, err := s.db.ExecContext(ctx, `DELETE FROM events WHERE received_at < ? AND (stream = '' OR seq <= coalesce((SELECT a.seq FROM acks a WHERE a.stream = events.stream), 0))`, cutoff.UnixMicro())
	if err != nil {
		return 0, fmt.Errorf("webhook queue: prune: %w", err)
	}
	return res.RowsAffected()
}

func (f Filter) where() (string, []any) {
	var conds []string
	var args []any
	if f.Stream != "" {
		conds = append(conds, "stream = ?")
		args = append(args, f.Stream)
	}
	if !f.Since.IsZero() {
		conds = append(conds, "received_at >= ?")
		args = append(args, f.Since.UnixMicro())
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// Replay implements Queue. It runs in one transaction, so a queue shared
// with a running receiver (another process) stays consistent: appends
// wait for it, and readers see the events moved all at once.
func (s *SQLite) Replay(ctx context.Context, f Filter, routeTo func(Event) string) (int64, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("webhook queue: %w", err)
	}
	defer tx.Rollback()
	where, args := f.where()
	var top, low sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT max(seq) FROM events`).Scan(&top); err != nil {
		return 0, fmt.Errorf("webhook queue: %w", err)
	}
	if err := tx.QueryRowContext(ctx, `SELECT min(seq) FROM events`+where, args...).Scan(&low); err != nil {
		return 0, fmt.Errorf("webhook queue: %w", err)
	}
	if !low.Valid {
		return 0, nil
	}
	shift := top.Int64 - low.Int64 + 1
	res, err := tx.ExecContext(ctx, `UPDATE events SET seq = seq + ?`+where, append([]any{shift}, args...)...)
	if err != nil {
		return 0, fmt.Errorf("webhook queue: replay: %w", err)
	}
	n, _ := res.RowsAffected()
	// AUTOINCREMENT remembers the largest position inserted, not updated:
	// raise it, so that positions are never reused once these are pruned
	// (a reader resumes after the last position it committed).
	if _, err := tx.ExecContext(ctx, `UPDATE sqlite_sequence SET seq = max(seq, (SELECT max(seq) FROM events)) WHERE name = 'events'`); err != nil {
		return 0, fmt.Errorf("webhook queue: replay: %w", err)
	}
	if routeTo != nil {
		after := top.Int64
		for {
			rows, err := tx.QueryContext(ctx, `SELECT `+columns+` FROM events WHERE seq > ? ORDER BY seq LIMIT 500`, after)
			if err != nil {
				return 0, fmt.Errorf("webhook queue: %w", err)
			}
			evs, err := scanEvents(rows)
			if err != nil {
				return 0, err
			}
			if len(evs) == 0 {
				break
			}
			for _, e := range evs {
				if st := routeTo(e); st != e.Stream {
					if _, err := tx.ExecContext(ctx, `UPDATE events SET stream = ? WHERE seq = ?`, st, int64(e.Seq)); err != nil {
						return 0, fmt.Errorf("webhook queue: %w", err)
					}
				}
				after = int64(e.Seq)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("webhook queue: replay: %w", err)
	}
	s.mu.Lock()
	close(s.notify)
	s.notify = make(chan struct{})
	s.mu.Unlock()
	return n, nil
}

// List implements Queue.
func (s *SQLite) List(ctx context.Context, f Filter, limit int) ([]Event, error) {
	where, args := f.where()
	rows, err := s.db.QueryContext(ctx, `SELECT `+columns+` FROM events`+where+` ORDER BY seq DESC LIMIT ?`, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("webhook queue: %w", err)
	}
	return scanEvents(rows)
}

// Close implements Queue: appends already queued are committed first.
func (s *SQLite) Close() error {
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return nil
	}
	s.closed = true
	close(s.reqs)
	s.closeMu.Unlock()
	<-s.stopped
	for _, st := range s.stmts {
		st.Close()
	}
	s.readStmt.Close()
	return s.db.Close()
}
