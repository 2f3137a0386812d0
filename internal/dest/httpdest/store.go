package httpdest

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/ferry-dev/ferry/internal/schema"
)

// Tables of reverse ETL, in the destination's database.
const (
	// DeliveredTable holds, per pipeline, stream and key, the hash of the
	// row last delivered, the API's id for it, and the pass that saw it.
	DeliveredTable = schema.MetaPrefix + "delivered"
	passTable      = schema.MetaPrefix + "delivered_passes"
	// baseTable holds, for two-way sync, the last version of each row both
	// sides agreed on.
	baseTable = schema.MetaPrefix + "sync_base"
	// ConflictsTable records every conflict of two-way sync with both
	// versions, the base, and what was done.
	ConflictsTable = schema.MetaPrefix + "conflicts"
)

func (l *Letters) serial() string {
	if l.pg {
		return "BIGSERIAL PRIMARY KEY"
	}
	return "INTEGER PRIMARY KEY AUTOINCREMENT"
}

// base returns the agreed version of a row (JSON), "" when none.
func (l *Letters) base(ctx context.Context, pipeline, stream, key string) (string, error) {
	var row string
	err := l.db.QueryRowContext(ctx, fmt.Sprintf("SELECT row_json FROM %s WHERE pipeline = %s AND stream = %s AND change_key = %s", baseTable, l.ph(1), l.ph(2), l.ph(3)), pipeline, stream, key).Scan(&row)
	if err == sql.ErrNoRows {
		return "", nil
	}
	return row, err
}

// setBase stores the agreed version of a row ("" forgets it).
func (l *Letters) setBase(ctx context.Context, pipeline, stream, key, row string) error {
	if row == "" {
		_, err := l.db.ExecContext(ctx, fmt.Sprintf("DELETE FROM %s WHERE pipeline = %s AND stream = %s AND change_key = %s", baseTable, l.ph(1), l.ph(2), l.ph(3)), pipeline, stream, key)
		return err
	}
	_, err := l.db.ExecContext(ctx, fmt.Sprintf("INSERT INTO %s (pipeline, stream, change_key, row_json) VALUES (%s) ON CONFLICT (pipeline, stream, change_key) DO UPDATE SET row_json = excluded.row_json", baseTable, l.phs(1, 4)), pipeline, stream, key, row)
	return err
}

// Conflict is one recorded conflict of two-way sync.
type Conflict struct {
	ID                            int64
	Pipeline, Stream, Key, Policy string
	Fields                        string // the fields both sides changed (JSON list)
	Base, Local, Remote           string // the three versions (JSON)
	Resolution, Result            string // what was done, and the row that resulted (JSON; "" when parked)
	CreatedAt                     string
}

// addConflict records a conflict.
func (l *Letters) addConflict(ctx context.Context, c Conflict) error {
	_, err := l.db.ExecContext(ctx, fmt.Sprintf("INSERT INTO %s (pipeline, stream, change_key, policy, fields, base, local, remote, resolution, result, created_at) VALUES (%s)", ConflictsTable, l.phs(1, 11)),
		c.Pipeline, c.Stream, c.Key, c.Policy, c.Fields, c.Base, c.Local, c.Remote, c.Resolution, c.Result, c.CreatedAt)
	return err
}

// Conflicts lists a pipeline's recorded conflicts, oldest first.
func (l *Letters) Conflicts(ctx context.Context, pipeline string) ([]Conflict, error) {
	rows, err := l.db.QueryContext(ctx, fmt.Sprintf("SELECT id, pipeline, stream, change_key, policy, fields, base, local, remote, resolution, result, created_at FROM %s WHERE pipeline = %s ORDER BY id", ConflictsTable, l.ph(1)), pipeline)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Conflict
	for rows.Next() {
		var c Conflict
		if err := rows.Scan(&c.ID, &c.Pipeline, &c.Stream, &c.Key, &c.Policy, &c.Fields, &c.Base, &c.Local, &c.Remote, &c.Resolution, &c.Result, &c.CreatedAt); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// delivered is what was last delivered for one key.
type delivered struct {
	hash, remote string
}

func (l *Letters) createSyncTables(ctx context.Context) error {
	for _, ddl := range []string{
		fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (pipeline TEXT NOT NULL, stream TEXT NOT NULL, change_key TEXT NOT NULL, hash TEXT NOT NULL, remote_id TEXT NOT NULL, pass TEXT NOT NULL, PRIMARY KEY (pipeline, stream, change_key))`, DeliveredTable),
		fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (pipeline TEXT NOT NULL, stream TEXT NOT NULL, pass TEXT NOT NULL, PRIMARY KEY (pipeline, stream))`, passTable),
		fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (pipeline TEXT NOT NULL, stream TEXT NOT NULL, change_key TEXT NOT NULL, row_json TEXT NOT NULL, PRIMARY KEY (pipeline, stream, change_key))`, baseTable),
		fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (id %s, pipeline TEXT NOT NULL, stream TEXT NOT NULL, change_key TEXT NOT NULL, policy TEXT NOT NULL, fields TEXT NOT NULL, base TEXT NOT NULL, local TEXT NOT NULL, remote TEXT NOT NULL, resolution TEXT NOT NULL, result TEXT NOT NULL, created_at TEXT NOT NULL)`, ConflictsTable, l.serial()),
	} {
		if _, err := l.db.ExecContext(ctx, ddl); err != nil {
			return fmt.Errorf("%s: %w", l.Target, err)
		}
	}
	return nil
}

// lookup returns what was delivered for keys.
func (l *Letters) lookup(ctx context.Context, pipeline, stream string, keys []string) (map[string]delivered, error) {
	out := make(map[string]delivered, len(keys))
	for start := 0; start < len(keys); start += 500 {
		part := keys[start:min(len(keys), start+500)]
		args := []any{pipeline, stream}
		ph := make([]string, len(part))
		for i, k := range part {
			args = append(args, k)
			ph[i] = l.ph(3 + i)
		}
		rows, err := l.db.QueryContext(ctx, fmt.Sprintf("SELECT change_key, hash, remote_id FROM %s WHERE pipeline = %s AND stream = %s AND change_key IN (%s)", DeliveredTable, l.ph(1), l.ph(2), strings.Join(ph, ", ")), args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var k string
			var d delivered
			if err := rows.Scan(&k, &d.hash, &d.remote); err != nil {
				rows.Close()
				return nil, err
			}
			out[k] = d
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// record stores what was delivered, and which keys a pass saw, in one
// transaction.
func (l *Letters) record(ctx context.Context, pipeline, stream, pass string, got map[string]delivered, seen []string) error {
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	up := fmt.Sprintf(`INSERT INTO %s (pipeline, stream, change_key, hash, remote_id, pass) VALUES (%s) ON CONFLICT (pipeline, stream, change_key) DO UPDATE SET hash = excluded.hash, remote_id = CASE WHEN excluded.remote_id = '' THEN %s.remote_id ELSE excluded.remote_id END, pass = excluded.pass`,
		DeliveredTable, l.phs(1, 6), DeliveredTable)
	for k, d := range got {
		if _, err := tx.ExecContext(ctx, up, pipeline, stream, k, d.hash, d.remote, pass); err != nil {
			return err
		}
	}
	touch := fmt.Sprintf("UPDATE %s SET pass = %s WHERE pipeline = %s AND stream = %s AND change_key = %s", DeliveredTable, l.ph(1), l.ph(2), l.ph(3), l.ph(4))
	for _, k := range seen {
		if _, ok := got[k]; ok {
			continue
		}
		if _, err := tx.ExecContext(ctx, touch, pass, pipeline, stream, k); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// unseen returns the keys delivered before and not seen by pass.
func (l *Letters) unseen(ctx context.Context, pipeline, stream, pass string) (map[string]delivered, error) {
	rows, err := l.db.QueryContext(ctx, fmt.Sprintf("SELECT change_key, hash, remote_id FROM %s WHERE pipeline = %s AND stream = %s AND pass <> %s", DeliveredTable, l.ph(1), l.ph(2), l.ph(3)), pipeline, stream, pass)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]delivered{}
	for rows.Next() {
		var k string
		var d delivered
		if err := rows.Scan(&k, &d.hash, &d.remote); err != nil {
			return nil, err
		}
		out[k] = d
	}
	return out, rows.Err()
}

// forget removes keys (deleted at the API).
func (l *Letters) forget(ctx context.Context, pipeline, stream string, keys []string) error {
	for _, k := range keys {
		if _, err := l.db.ExecContext(ctx, fmt.Sprintf("DELETE FROM %s WHERE pipeline = %s AND stream = %s AND change_key = %s", DeliveredTable, l.ph(1), l.ph(2), l.ph(3)), pipeline, stream, k); err != nil {
			return err
		}
	}
	return nil
}

// pass returns the pass a stream's reads belong to: the stored one when a
// pass is resumed, runID for a new pass (stored).
func (l *Letters) pass(ctx context.Context, pipeline, stream, runID string, resume bool) (string, error) {
	var p string
	err := l.db.QueryRowContext(ctx, fmt.Sprintf("SELECT pass FROM %s WHERE pipeline = %s AND stream = %s", passTable, l.ph(1), l.ph(2)), pipeline, stream).Scan(&p)
	if err != nil && err != sql.ErrNoRows {
		return "", err
	}
	if resume && p != "" {
		return p, nil
	}
	_, err = l.db.ExecContext(ctx, fmt.Sprintf("INSERT INTO %s (pipeline, stream, pass) VALUES (%s) ON CONFLICT (pipeline, stream) DO UPDATE SET pass = excluded.pass", passTable, l.phs(1, 3)), pipeline, stream, runID)
	return runID, err
}
