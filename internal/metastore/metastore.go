// Package metastore is the metadata store of ferry serve: every run
// (trigger, status, times, per-stream counts, errors, drift), the log
// lines of each run, records-per-minute points for throughput charts, and
// the hashes of API tokens.
//
// One schema serves SQLite (the default, a file beside the pipelines) and
// PostgreSQL (so that several instances, and workers, share one store).
// Statements are written once with ? placeholders and rewritten to $n for
// PostgreSQL; times are stored as Unix microseconds (BIGINT), so ordering
// and comparison are the same on both.
package metastore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the pgx database/sql driver
	_ "modernc.org/sqlite"             // the SQLite database/sql driver
)

// Version is the version of the schema this build writes.
const Version = 1

// ErrNotFound is returned for a run that is not in the store.
var ErrNotFound = errors.New("not found")

// Store is an open metadata store. It is safe for concurrent use.
type Store struct {
	db       *sql.DB
	postgres bool
	where    string // what to call the store in messages (no secrets)
}

// Open opens (and creates or migrates) the store at url: sqlite:PATH (or
// a path ending in .db), or a postgres:// or postgresql:// URL.
func Open(ctx context.Context, url string) (*Store, error) {
	s := &Store{}
	var err error
	switch {
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		s.postgres, s.where = true, "the PostgreSQL metadata store"
		s.db, err = sql.Open("pgx", url)
		if err == nil {
			s.db.SetMaxOpenConns(8)
		}
	default:
		path := strings.TrimPrefix(url, "sqlite:")
		if path == "" {
			return nil, fmt.Errorf("metadata store %q: want sqlite:PATH or a postgres:// URL", url)
		}
		if dir := filepath.Dir(path); dir != "" {
			if _, statErr := os.Stat(dir); statErr != nil {
				return nil, fmt.Errorf("metadata store %s: %w", path, statErr)
			}
		}
		s.where = "the metadata store " + path
		s.db, err = sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)")
		if err == nil {
			// One connection: SQLite has one writer, and queueing in the
			// pool is fairer than busy retries.
			s.db.SetMaxOpenConns(1)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", s.where, err)
	}
	if err := s.migrate(ctx); err != nil {
		s.db.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the store.
func (s *Store) Close() error { return s.db.Close() }

// Ping checks that the store answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("%s does not answer: %w", s.where, err)
	}
	return nil
}

// q rewrites ? placeholders to $n for PostgreSQL.
func (s *Store) q(stmt string) string {
	if !s.postgres {
		return stmt
	}
	var b strings.Builder
	n := 0
	for _, r := range stmt {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

var schemaV1 = []string{
	`CREATE TABLE IF NOT EXISTS ferry_serve_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`,
	`CREATE TABLE IF NOT EXISTS ferry_serve_runs (
		id TEXT PRIMARY KEY, pipeline TEXT NOT NULL, trigger_kind TEXT NOT NULL, status TEXT NOT NULL,
		started_at BIGINT NOT NULL, ended_at BIGINT, error TEXT, streams TEXT NOT NULL, instance TEXT NOT NULL)`,
	`CREATE INDEX IF NOT EXISTS ferry_serve_runs_pipeline ON ferry_serve_runs (pipeline, started_at)`,
	`CREATE INDEX IF NOT EXISTS ferry_serve_runs_started ON ferry_serve_runs (started_at)`,
	`CREATE TABLE IF NOT EXISTS ferry_serve_logs (
		run_id TEXT NOT NULL, seq BIGINT NOT NULL, at BIGINT NOT NULL, level TEXT NOT NULL, msg TEXT NOT NULL,
		stream TEXT, attrs TEXT, PRIMARY KEY (run_id, seq))`,
	`CREATE TABLE IF NOT EXISTS ferry_serve_drift (
		run_id TEXT NOT NULL, pipeline TEXT NOT NULL, stream TEXT NOT NULL, table_name TEXT NOT NULL,
		change TEXT NOT NULL, at BIGINT NOT NULL)`,
	`CREATE INDEX IF NOT EXISTS ferry_serve_drift_at ON ferry_serve_drift (pipeline, at)`,
	`CREATE TABLE IF NOT EXISTS ferry_serve_throughput (
		pipeline TEXT NOT NULL, minute BIGINT NOT NULL, records BIGINT NOT NULL, PRIMARY KEY (pipeline, minute))`,
	`CREATE TABLE IF NOT EXISTS ferry_serve_tokens (
		hash TEXT PRIMARY KEY, role TEXT NOT NULL, name TEXT NOT NULL, created_at BIGINT NOT NULL)`,
}

// NewerError reports a store written by a newer Ferry.
type NewerError struct{ Found, Known int }

func (e *NewerError) Error() string {
	return fmt.Sprintf("the metadata store is version %d, written by a newer Ferry; this one knows up to version %d: upgrade Ferry", e.Found, e.Known)
}

func (s *Store) migrate(ctx context.Context) error {
	for _, stmt := range schemaV1 {
		if _, err := s.db.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("create %s's tables: %w", s.where, err)
		}
	}
	var v string
	err := s.db.QueryRowContext(ctx, s.q(`SELECT value FROM ferry_serve_meta WHERE key = ?`), "schema_version").Scan(&v)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		_, err = s.db.ExecContext(ctx, s.q(`INSERT INTO ferry_serve_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING`), "schema_version", strconv.Itoa(Version))
		if err != nil {
			return fmt.Errorf("record %s's version: %w", s.where, err)
		}
	case err != nil:
		return fmt.Errorf("read %s's version: %w", s.where, err)
	default:
		if n, _ := strconv.Atoi(v); n > Version {
			return &NewerError{Found: n, Known: Version}
		}
	}
	return nil
}

// Run is a run as recorded (and as the control-plane API shows it).
type Run struct {
	ID       string      `json:"id"`
	Pipeline string      `json:"pipeline"`
	Trigger  string      `json:"trigger"`
	Status   string      `json:"status"`
	Started  time.Time   `json:"started_at"`
	Ended    *time.Time  `json:"ended_at"`
	Error    *string     `json:"error"`
	Streams  []StreamRun `json:"streams"`
	// Instance is the process that ran it (host:pid).
	Instance string `json:"instance"`
}

// StreamRun is what a run did to one stream.
type StreamRun struct {
	Name            string  `json:"name"`
	Table           string  `json:"table"`
	Status          string  `json:"status"`
	Records         int64   `json:"records"`
	Rejected        int64   `json:"rejected"`
	Requests        int64   `json:"requests"`
	Retries         int64   `json:"retries"`
	PartitionsDone  int64   `json:"partitions_done"`
	PartitionsTotal int64   `json:"partitions_total"`
	Error           *string `json:"error"`
	Drift           []Drift `json:"drift"`
}

// Drift is one change to a table's layout.
type Drift struct {
	Table  string `json:"table"`
	Change string `json:"change"`
}

// Run statuses beyond dest.Status: queued before the engine starts,
// running while it runs, skipped when a scheduled run found its streams
// busy.
const (
	Queued  = "queued"
	Running = "running"
	Skipped = "skipped"
)

func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(n int64) time.Time { return time.UnixMicro(n).UTC() }

// PutRun stores a run, replacing the one with the same id.
func (s *Store) PutRun(ctx context.Context, r *Run) error {
	streams, err := json.Marshal(r.Streams)
	if err != nil {
		return err
	}
	var ended sql.NullInt64
	if r.Ended != nil {
		ended = sql.NullInt64{Int64: micros(*r.Ended), Valid: true}
	}
	var msg sql.NullString
	if r.Error != nil {
		msg = sql.NullString{String: *r.Error, Valid: true}
	}
	_, err = s.db.ExecContext(ctx, s.q(`INSERT INTO ferry_serve_runs (id, pipeline, trigger_kind, status, started_at, ended_at, error, streams, instance)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET status = excluded.status, ended_at = excluded.ended_at, error = excluded.error, streams = excluded.streams`),
		r.ID, r.Pipeline, r.Trigger, r.Status, micros(r.Started), ended, msg, string(streams), r.Instance)
	if err != nil {
		return fmt.Errorf("record run %s in %s: %w", r.ID, s.where, err)
	}
	return nil
}

const runColumns = `id, pipeline, trigger_kind, status, started_at, ended_at, error, streams, instance`

func scanRun(sc interface{ Scan(...any) error }) (*Run, error) {
	var r Run
	var started int64
	var ended sql.NullInt64
	var msg sql.NullString
	var streams string
	if err := sc.Scan(&r.ID, &r.Pipeline, &r.Trigger, &r.Status, &started, &ended, &msg, &streams, &r.Instance); err != nil {
		return nil, err
	}
	r.Started = fromMicros(started)
	if ended.Valid {
		t := fromMicros(ended.Int64)
		r.Ended = &t
	}
	if msg.Valid {
		r.Error = &msg.String
	}
	if err := json.Unmarshal([]byte(streams), &r.Streams); err != nil {
		return nil, fmt.Errorf("run %s: unreadable streams: %w", r.ID, err)
	}
	return &r, nil
}

// GetRun returns a run, or ErrNotFound.
func (s *Store) GetRun(ctx context.Context, id string) (*Run, error) {
	r, err := scanRun(s.db.QueryRowContext(ctx, s.q(`SELECT `+runColumns+` FROM ferry_serve_runs WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read run %s from %s: %w", id, s.where, err)
	}
	return r, nil
}

// RunFilter selects runs; zero values select all.
type RunFilter struct {
	Pipeline string
	Status   string
	Trigger  string
	// Limit bounds the result (default 50, at most 1000).
	Limit int
}

// ListRuns returns runs, newest first.
func (s *Store) ListRuns(ctx context.Context, f RunFilter) ([]*Run, error) {
	var where []string
	var args []any
	if f.Pipeline != "" {
		where, args = append(where, "pipeline = ?"), append(args, f.Pipeline)
	}
	if f.Status != "" {
		where, args = append(where, "status = ?"), append(args, f.Status)
	}
	if f.Trigger != "" {
		where, args = append(where, "trigger_kind = ?"), append(args, f.Trigger)
	}
	stmt := `SELECT ` + runColumns + ` FROM ferry_serve_runs`
	if len(where) > 0 {
		stmt += " WHERE " + strings.Join(where, " AND ")
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 50
	}
	stmt += " ORDER BY started_at DESC, id DESC LIMIT " + strconv.Itoa(min(limit, 1000))
	rows, err := s.db.QueryContext(ctx, s.q(stmt), args...)
	if err != nil {
		return nil, fmt.Errorf("list runs in %s: %w", s.where, err)
	}
	defer rows.Close()
	out := []*Run{}
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// FailInterrupted marks the runs an earlier process on this host left
// queued or running (it was killed) as failed, saying so; alive reports
// whether a pid on this host still runs. It returns how many it marked.
func (s *Store) FailInterrupted(ctx context.Context, host string, alive func(pid int) bool) (int, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT `+runColumns+` FROM ferry_serve_runs WHERE status IN (?, ?)`), Queued, Running)
	if err != nil {
		return 0, fmt.Errorf("list unfinished runs in %s: %w", s.where, err)
	}
	var stale []*Run
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			rows.Close()
			return 0, err
		}
		h, pidText, ok := strings.Cut(r.Instance, ":")
		pid, perr := strconv.Atoi(pidText)
		if ok && perr == nil && h == host && !alive(pid) {
			stale = append(stale, r)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	now := time.Now().UTC()
	for _, r := range stale {
		msg := "the ferry serve process running it ended before the run did (what was committed stays; the next run resumes)"
		r.Status, r.Ended, r.Error = "failed", &now, &msg
		for i := range r.Streams {
			if st := r.Streams[i].Status; st == Running || st == Queued || st == "" {
				r.Streams[i].Status = "failed"
			}
		}
		if err := s.PutRun(ctx, r); err != nil {
			return 0, err
		}
	}
	return len(stale), nil
}

// LogLine is one log message of a run.
type LogLine struct {
	Seq    int64     `json:"seq"`
	Time   time.Time `json:"time"`
	Level  string    `json:"level"`
	Msg    string    `json:"msg"`
	Stream *string   `json:"stream"`
	// Attrs holds the message's other attributes, as JSON.
	Attrs json.RawMessage `json:"attrs,omitempty"`
}

// AppendLogs stores log lines of a run (their Seq numbers are the
// caller's, increasing).
func (s *Store) AppendLogs(ctx context.Context, runID string, lines []LogLine) error {
	if len(lines) == 0 {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store logs of run %s in %s: %w", runID, s.where, err)
	}
	defer tx.Rollback()
	stmt := s.q(`INSERT INTO ferry_serve_logs (run_id, seq, at, level, msg, stream, attrs) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, seq) DO NOTHING`)
	for _, l := range lines {
		var stream sql.NullString
		if l.Stream != nil {
			stream = sql.NullString{String: *l.Stream, Valid: true}
		}
		var attrs sql.NullString
		if len(l.Attrs) > 0 {
			attrs = sql.NullString{String: string(l.Attrs), Valid: true}
		}
		if _, err := tx.ExecContext(ctx, stmt, runID, l.Seq, micros(l.Time), l.Level, l.Msg, stream, attrs); err != nil {
			return fmt.Errorf("store logs of run %s in %s: %w", runID, s.where, err)
		}
	}
	return tx.Commit()
}

// Logs returns a run's log lines with Seq > after, in order, at most
// limit (default 1000).
func (s *Store) Logs(ctx context.Context, runID string, after int64, limit int) ([]LogLine, error) {
	if limit <= 0 || limit > 5000 {
		limit = 1000
	}
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT seq, at, level, msg, stream, attrs FROM ferry_serve_logs WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT `+strconv.Itoa(limit)), runID, after)
	if err != nil {
		return nil, fmt.Errorf("read logs of run %s from %s: %w", runID, s.where, err)
	}
	defer rows.Close()
	out := []LogLine{}
	for rows.Next() {
		var l LogLine
		var at int64
		var stream, attrs sql.NullString
		if err := rows.Scan(&l.Seq, &at, &l.Level, &l.Msg, &stream, &attrs); err != nil {
			return nil, err
		}
		l.Time = fromMicros(at)
		if stream.Valid {
			l.Stream = &stream.String
		}
		if attrs.Valid {
			l.Attrs = json.RawMessage(attrs.String)
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

// DriftEvent is a table layout change a run made.
type DriftEvent struct {
	RunID    string    `json:"run_id"`
	Pipeline string    `json:"pipeline"`
	Stream   string    `json:"stream"`
	Table    string    `json:"table"`
	Change   string    `json:"change"`
	At       time.Time `json:"at"`
}

// AddDrift stores layout changes.
func (s *Store) AddDrift(ctx context.Context, events []DriftEvent) error {
	for _, e := range events {
		if _, err := s.db.ExecContext(ctx, s.q(`INSERT INTO ferry_serve_drift (run_id, pipeline, stream, table_name, change, at) VALUES (?, ?, ?, ?, ?, ?)`),
			e.RunID, e.Pipeline, e.Stream, e.Table, e.Change, micros(e.At)); err != nil {
			return fmt.Errorf("record drift of run %s in %s: %w", e.RunID, s.where, err)
		}
	}
	return nil
}

// Drift returns layout changes, newest first, of one pipeline ("" for
// all), at most limit (default 100).
func (s *Store) Drift(ctx context.Context, pipeline string, limit int) ([]DriftEvent, error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	stmt := `SELECT run_id, pipeline, stream, table_name, change, at FROM ferry_serve_drift`
	var args []any
	if pipeline != "" {
		stmt += ` WHERE pipeline = ?`
		args = append(args, pipeline)
	}
	rows, err := s.db.QueryContext(ctx, s.q(stmt+` ORDER BY at DESC LIMIT `+strconv.Itoa(limit)), args...)
	if err != nil {
		return nil, fmt.Errorf("read drift from %s: %w", s.where, err)
	}
	defer rows.Close()
	out := []DriftEvent{}
	for rows.Next() {
		var e DriftEvent
		var at int64
		if err := rows.Scan(&e.RunID, &e.Pipeline, &e.Stream, &e.Table, &e.Change, &at); err != nil {
			return nil, err
		}
		e.At = fromMicros(at)
		out = append(out, e)
	}
	return out, rows.Err()
}

// AddThroughput adds records synced by a pipeline to the minute of at.
func (s *Store) AddThroughput(ctx context.Context, pipeline string, at time.Time, records int64) error {
	minute := at.UTC().Truncate(time.Minute)
	_, err := s.db.ExecContext(ctx, s.q(`INSERT INTO ferry_serve_throughput (pipeline, minute, records) VALUES (?, ?, ?)
		ON CONFLICT (pipeline, minute) DO UPDATE SET records = ferry_serve_throughput.records + excluded.records`), pipeline, micros(minute), records)
	if err != nil {
		return fmt.Errorf("record throughput in %s: %w", s.where, err)
	}
	return nil
}

// Point is the records synced in one minute.
type Point struct {
	T       time.Time `json:"t"`
	Records int64     `json:"records"`
}

// Throughput returns the records per minute since since, of one
// pipeline ("" for all), oldest first; minutes without records are
// absent.
func (s *Store) Throughput(ctx context.Context, pipeline string, since time.Time) ([]Point, error) {
	stmt := `SELECT minute, SUM(records) FROM ferry_serve_throughput WHERE minute >= ?`
	args := []any{micros(since.UTC().Truncate(time.Minute))}
	if pipeline != "" {
		stmt += ` AND pipeline = ?`
		args = append(args, pipeline)
	}
	rows, err := s.db.QueryContext(ctx, s.q(stmt+` GROUP BY minute ORDER BY minute`), args...)
	if err != nil {
		return nil, fmt.Errorf("read throughput from %s: %w", s.where, err)
	}
	defer rows.Close()
	var out []Point
	for rows.Next() {
		var m, n int64
		if err := rows.Scan(&m, &n); err != nil {
			return nil, err
		}
		out = append(out, Point{T: fromMicros(m), Records: n})
	}
	return out, rows.Err()
}

// Token is an API token as stored: the SHA-256 of the token, never the
// token.
type Token struct {
	Hash    string    `json:"hash"` // hex
	Role    string    `json:"role"`
	Name    string    `json:"name"`
	Created time.Time `json:"created_at"`
}

// AddToken stores a token's hash.
func (s *Store) AddToken(ctx context.Context, t Token) error {
	_, err := s.db.ExecContext(ctx, s.q(`INSERT INTO ferry_serve_tokens (hash, role, name, created_at) VALUES (?, ?, ?, ?)`), t.Hash, t.Role, t.Name, micros(t.Created))
	if err != nil {
		return fmt.Errorf("store the token in %s: %w", s.where, err)
	}
	return nil
}

// Tokens returns every stored token hash.
func (s *Store) Tokens(ctx context.Context) ([]Token, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT hash, role, name, created_at FROM ferry_serve_tokens ORDER BY created_at`)
	if err != nil {
		return nil, fmt.Errorf("read tokens from %s: %w", s.where, err)
	}
	defer rows.Close()
	var out []Token
	for rows.Next() {
		var t Token
		var c int64
		if err := rows.Scan(&t.Hash, &t.Role, &t.Name, &c); err != nil {
			return nil, err
		}
		t.Created = fromMicros(c)
		out = append(out, t)
	}
	return out, rows.Err()
}
