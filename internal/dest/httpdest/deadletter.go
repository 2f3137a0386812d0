package httpdest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/ferry-dev/ferry/internal/dest/sqlite"
	"github.com/ferry-dev/ferry/internal/schema"
)

// DeadLetterTable holds the changes an API refused for good.
const DeadLetterTable = schema.MetaPrefix + "dead_letters"

// DefaultDeadLetter is where dead letters go when the pipeline says nothing.
const DefaultDeadLetter = "sqlite:ferry-dlq.db"

// Letter is one change an API refused for good, with the request that
// carried it and the response.
type Letter struct {
	ID             int64
	Pipeline       string
	Stream         string
	RunID          string
	IdempotencyKey string
	// Key is the change's key as JSON; Position its source position.
	Key, Position string
	Method, URL   string
	// Header holds the request's headers as JSON (without credentials:
	// those are added again when the letter is replayed).
	Header string
	Body   string
	// Status and Response are the API's answer (the body's start);
	// Error says why the change was not delivered.
	Status    int
	Response  string
	Error     string
	CreatedAt time.Time
	// ReplayedAt is when a replay delivered the letter (zero: not yet).
	ReplayedAt time.Time
}

// Letters is a dead-letter store.
type Letters struct {
	db      *sql.DB
	pg      bool
	Target  string
	sqlPath string
}

// OpenLetters opens (creating if needed, unless readOnly) the dead-letter
// store raw names: sqlite:PATH (relative to dir) or postgres://….
func OpenLetters(ctx context.Context, raw, dir string, readOnly bool) (*Letters, error) {
	if raw == "" {
		raw = DefaultDeadLetter
	}
	l := &Letters{}
	switch {
	case strings.HasPrefix(raw, "postgres://"), strings.HasPrefix(raw, "postgresql://"):
		cc, err := pgx.ParseConfig(raw)
		if err != nil {
			return nil, errors.New("dead_letter: not a valid postgres:// url")
		}
		l.db, l.pg = stdlib.OpenDB(*cc), true
		l.Target = fmt.Sprintf("PostgreSQL %s:%d database %q", cc.Host, cc.Port, cc.Database)
	case strings.HasPrefix(raw, "sqlite:"):
		path := strings.TrimPrefix(strings.TrimPrefix(raw, "sqlite:"), "//")
		if !filepath.IsAbs(path) && dir != "" {
			path = filepath.Join(dir, path)
		}
		var err error
		if readOnly {
			l.db, err = sqlite.OpenReadOnly(path)
		} else {
			l.db, err = sqlite.OpenDB(path)
		}
		if err != nil {
			return nil, fmt.Errorf("dead_letter: %w", err)
		}
		l.Target, l.sqlPath = "SQLite "+path, path
	default:
		return nil, fmt.Errorf("dead_letter %q: want sqlite:PATH or postgres://…", raw)
	}
	if readOnly {
		return l, nil
	}
	id := "INTEGER PRIMARY KEY AUTOINCREMENT"
	ts := "TEXT"
	if l.pg {
		id, ts = "BIGSERIAL PRIMARY KEY", "TIMESTAMPTZ"
	}
	ddl := fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
		id %s, pipeline TEXT NOT NULL, stream TEXT NOT NULL, run_id TEXT NOT NULL,
		idempotency_key TEXT NOT NULL, change_key TEXT NOT NULL, position TEXT NOT NULL,
		method TEXT NOT NULL, url TEXT NOT NULL, headers TEXT NOT NULL, body TEXT NOT NULL,
		status INTEGER NOT NULL, response TEXT NOT NULL, error TEXT NOT NULL,
		created_at %s NOT NULL, replayed_at %s)`, DeadLetterTable, id, ts, ts)
	if _, err := l.db.ExecContext(ctx, ddl); err != nil {
		l.db.Close()
		return nil, fmt.Errorf("dead_letter %s: create %s: %w", l.Target, DeadLetterTable, err)
	}
	if err := l.createSyncTables(ctx); err != nil {
		l.db.Close()
		return nil, fmt.Errorf("dead_letter: %w", err)
	}
	return l, nil
}

// Close closes the store.
func (l *Letters) Close() error { return l.db.Close() }

func (l *Letters) ph(n int) string {
	if l.pg {
		return fmt.Sprintf("$%d", n)
	}
	return "?"
}

func (l *Letters) phs(from, n int) string {
	out := make([]string, n)
	for i := range out {
		out[i] = l.ph(from + i)
	}
	return strings.Join(out, ", ")
}

func (l *Letters) time(t time.Time) any {
	if l.pg {
		return t.UTC()
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// Add stores a letter durably.
func (l *Letters) Add(ctx context.Context, x Letter) error {
	q := fmt.Sprintf(`INSERT INTO %s (pipeline, stream, run_id, idempotency_key, change_key, position, method, url, headers, body, status, response, error, created_at) VALUES (%s)`, DeadLetterTable, l.phs(1, 14))
	_, err := l.db.ExecContext(ctx, q, x.Pipeline, x.Stream, x.RunID, x.IdempotencyKey, x.Key, x.Position, x.Method, x.URL, x.Header, x.Body, x.Status, x.Response, x.Error, l.time(time.Now()))
	if err != nil {
		return fmt.Errorf("store a dead letter in %s: %w", l.Target, err)
	}
	return nil
}

// List returns a pipeline's letters (of one stream unless ""), oldest
// first; pending only unless all.
func (l *Letters) List(ctx context.Context, pipeline, stream string, all bool) ([]Letter, error) {
	q := fmt.Sprintf(`SELECT id, pipeline, stream, run_id, idempotency_key, change_key, position, method, url, headers, body, status, response, error, created_at, replayed_at FROM %s WHERE pipeline = %s`, DeadLetterTable, l.ph(1))
	args := []any{pipeline}
	if stream != "" {
		q += " AND stream = " + l.ph(2)
		args = append(args, stream)
	}
	if !all {
		q += " AND replayed_at IS NULL"
	}
	rows, err := l.db.QueryContext(ctx, q+" ORDER BY id", args...)
	if err != nil {
		if strings.Contains(err.Error(), "no such table") {
			return nil, nil
		}
		return nil, fmt.Errorf("read dead letters from %s: %w", l.Target, err)
	}
	defer rows.Close()
	var out []Letter
	for rows.Next() {
		var x Letter
		var created, replayed any
		if err := rows.Scan(&x.ID, &x.Pipeline, &x.Stream, &x.RunID, &x.IdempotencyKey, &x.Key, &x.Position, &x.Method, &x.URL, &x.Header, &x.Body, &x.Status, &x.Response, &x.Error, &created, &replayed); err != nil {
			return nil, err
		}
		x.CreatedAt, x.ReplayedAt = scanTime(created), scanTime(replayed)
		out = append(out, x)
	}
	return out, rows.Err()
}

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

// Replayed marks a letter delivered by a replay.
func (l *Letters) Replayed(ctx context.Context, id int64) error {
	_, err := l.db.ExecContext(ctx, fmt.Sprintf("UPDATE %s SET replayed_at = %s WHERE id = %s", DeadLetterTable, l.ph(1), l.ph(2)), l.time(time.Now()), id)
	return err
}

// Failed records a replay's failure on a letter (it stays pending).
func (l *Letters) Failed(ctx context.Context, id int64, status int, response, msg string) error {
	_, err := l.db.ExecContext(ctx, fmt.Sprintf("UPDATE %s SET status = %s, response = %s, error = %s WHERE id = %s", DeadLetterTable, l.ph(1), l.ph(2), l.ph(3), l.ph(4)), status, response, msg, id)
	return err
}
