package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ferry-dev/ferry/internal/workqueue"
)

// Coord is the coordination database (PostgreSQL) that workers and
// enqueuers share: runs and the status of their items, the workers'
// heartbeats, and the scheduler lease. It holds no sync state (each
// pipeline keeps its own, where its file says).
type Coord struct {
	pool *pgxpool.Pool
}

// Item statuses.
const (
	Queued    = "queued"
	Running   = "running"
	Succeeded = "succeeded"
	Failed    = "failed" // this delivery failed; it is delivered again
	Dead      = "dead"   // failed on every delivery, dead-lettered
)

var coordTables = []string{
	`CREATE TABLE IF NOT EXISTS _ferry_work_runs (
		run_id text PRIMARY KEY,
		pipeline text NOT NULL,
		trigger text NOT NULL,
		created_at timestamptz NOT NULL DEFAULT now())`,
	`CREATE TABLE IF NOT EXISTS _ferry_work_items (
		item_id text PRIMARY KEY,
		run_id text NOT NULL REFERENCES _ferry_work_runs (run_id) ON DELETE CASCADE,
		item jsonb NOT NULL,
		status text NOT NULL,
		attempts int NOT NULL DEFAULT 0,
		retries int NOT NULL DEFAULT 0,
		worker text NOT NULL DEFAULT '',
		rows bigint NOT NULL DEFAULT 0,
		error text NOT NULL DEFAULT '',
		fenced int NOT NULL DEFAULT 0,
		started_at timestamptz,
		updated_at timestamptz NOT NULL DEFAULT now())`,
	`CREATE INDEX IF NOT EXISTS _ferry_work_items_run ON _ferry_work_items (run_id)`,
	`CREATE TABLE IF NOT EXISTS _ferry_workers (
		worker_id text PRIMARY KEY,
		host text NOT NULL,
		pid int NOT NULL,
		started_at timestamptz NOT NULL,
		heartbeat_at timestamptz NOT NULL,
		status text NOT NULL,
		item text NOT NULL DEFAULT '',
		item_since timestamptz,
		rows bigint NOT NULL DEFAULT 0,
		items_done bigint NOT NULL DEFAULT 0,
		items_failed bigint NOT NULL DEFAULT 0)`,
	`CREATE TABLE IF NOT EXISTS _ferry_scheduler (
		name text PRIMARY KEY,
		holder text NOT NULL,
		token bigint NOT NULL,
		expires_at timestamptz NOT NULL)`,
}

// OpenCoord connects to the coordination database and creates its tables.
func OpenCoord(ctx context.Context, url string) (*Coord, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("--state: %w", err)
	}
	cfg.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("--state: %w", err)
	}
	c := &Coord{pool: pool}
	// Tables are created under an advisory lock: concurrent CREATE ... IF
	// NOT EXISTS of one table can fail on PostgreSQL's catalog keys.
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(7250001)"); err != nil {
			return err
		}
		for _, s := range coordTables {
			if _, err := tx.Exec(ctx, s); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("create the coordination tables: %w", err)
	}
	return c, nil
}

// Close releases the connections.
func (c *Coord) Close() { c.pool.Close() }

// createRun records a run and its items; created is false when the run
// was recorded before (the same trigger): then nothing changes.
func (c *Coord) createRun(ctx context.Context, runID, pipeline, trigger string, items []workqueue.Item) (created bool, err error) {
	err = pgx.BeginFunc(ctx, c.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO _ferry_work_runs (run_id, pipeline, trigger) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, runID, pipeline, trigger)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return nil
		}
		created = true
		for _, it := range items {
			raw, _ := json.Marshal(it)
			if _, err := tx.Exec(ctx, `INSERT INTO _ferry_work_items (item_id, run_id, item, status) VALUES ($1, $2, $3, $4)`, it.ID, runID, raw, Queued); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("record run %s: %w", runID, err)
	}
	return created, nil
}

// itemsOf returns a run's items with the given statuses (all when none).
func (c *Coord) itemsOf(ctx context.Context, runID string, statuses ...string) ([]ItemStatus, error) {
	q := `SELECT item, status, attempts, retries, worker, rows, error, fenced, started_at, updated_at FROM _ferry_work_items WHERE run_id = $1`
	args := []any{runID}
	if len(statuses) > 0 {
		q += ` AND status = ANY($2)`
		args = append(args, statuses)
	}
	rows, err := c.pool.Query(ctx, q+` ORDER BY item->>'stream', item->>'slice'`, args...)
	if err != nil {
		return nil, fmt.Errorf("items of run %s: %w", runID, err)
	}
	defer rows.Close()
	var out []ItemStatus
	for rows.Next() {
		var s ItemStatus
		var raw []byte
		var started *time.Time
		if err := rows.Scan(&raw, &s.Status, &s.Attempts, &s.Retries, &s.Worker, &s.Rows, &s.Error, &s.Fenced, &started, &s.Updated); err != nil {
			return nil, err
		}
		if started != nil {
			s.Started = *started
		}
		_ = json.Unmarshal(raw, &s.Item)
		out = append(out, s)
	}
	return out, rows.Err()
}

// ItemStatus is where one item of a run stands.
type ItemStatus struct {
	Item     workqueue.Item `json:"item"`
	Status   string         `json:"status"`
	Attempts int            `json:"attempts"`
	Retries  int            `json:"retries"`
	Worker   string         `json:"worker"`
	Rows     int64          `json:"rows"`
	Error    string         `json:"error,omitempty"`
	// Fenced counts the commits of this item refused by fencing (a worker
	// that lost its lease).
	Fenced int `json:"fenced"`
	// Started is when a worker first took the item.
	Started time.Time `json:"started,omitzero"`
	Updated time.Time `json:"updated"`
}

// RunStatus is where a run stands: its items.
type RunStatus struct {
	Run   string       `json:"run"`
	Items []ItemStatus `json:"items"`
}

// Done reports whether every item succeeded.
func (r RunStatus) Done() bool {
	for _, it := range r.Items {
		if it.Status != Succeeded {
			return false
		}
	}
	return len(r.Items) > 0
}

// Settled reports whether no item is queued or running any more (each
// succeeded or is dead).
func (r RunStatus) Settled() bool {
	for _, it := range r.Items {
		if it.Status != Succeeded && it.Status != Dead {
			return false
		}
	}
	return true
}

// Count returns how many items have the status.
func (r RunStatus) Count(status string) int {
	n := 0
	for _, it := range r.Items {
		if it.Status == status {
			n++
		}
	}
	return n
}

// Run returns where a run stands.
func (c *Coord) Run(ctx context.Context, runID string) (RunStatus, error) {
	items, err := c.itemsOf(ctx, runID)
	if err == nil && len(items) == 0 {
		err = fmt.Errorf("no run %s in the coordination database", runID)
	}
	return RunStatus{Run: runID, Items: items}, err
}

// Runs lists the latest runs' ids, newest first.
func (c *Coord) Runs(ctx context.Context, limit int) ([]string, error) {
	rows, err := c.pool.Query(ctx, `SELECT run_id FROM _ferry_work_runs ORDER BY created_at DESC LIMIT $1`, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

func (c *Coord) itemStatus(ctx context.Context, itemID string) (string, error) {
	var s string
	err := c.pool.QueryRow(ctx, `SELECT status FROM _ferry_work_items WHERE item_id = $1`, itemID).Scan(&s)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	return s, err
}

func (c *Coord) setItem(ctx context.Context, itemID, status, worker string, attempt int, rows int64, errText string) error {
	_, err := c.pool.Exec(ctx, `UPDATE _ferry_work_items SET status = $2, worker = $3, attempts = GREATEST(attempts, $4), rows = $5, error = $6, updated_at = now(),
		started_at = CASE WHEN $2 = 'running' THEN COALESCE(started_at, now()) ELSE started_at END WHERE item_id = $1`,
		itemID, status, worker, attempt, rows, errText)
	return err
}

func (c *Coord) noteFenced(ctx context.Context, itemID string) error {
	_, err := c.pool.Exec(ctx, `UPDATE _ferry_work_items SET fenced = fenced + 1 WHERE item_id = $1`, itemID)
	return err
}

// requeue marks failed and dead items queued again and returns them with
// their retry number.
func (c *Coord) requeue(ctx context.Context, runID string) ([]workqueue.Item, []int, error) {
	rows, err := c.pool.Query(ctx, `UPDATE _ferry_work_items SET status = $2, retries = retries + 1, error = '', updated_at = now()
		WHERE run_id = $1 AND status IN ($3, $4) RETURNING item, retries`, runID, Queued, Failed, Dead)
	if err != nil {
		return nil, nil, fmt.Errorf("retry run %s: %w", runID, err)
	}
	defer rows.Close()
	var items []workqueue.Item
	var retries []int
	for rows.Next() {
		var raw []byte
		var n int
		if err := rows.Scan(&raw, &n); err != nil {
			return nil, nil, err
		}
		var it workqueue.Item
		_ = json.Unmarshal(raw, &it)
		items, retries = append(items, it), append(retries, n)
	}
	return items, retries, rows.Err()
}

// WorkerInfo is a worker's last heartbeat.
type WorkerInfo struct {
	ID          string    `json:"id"`
	Host        string    `json:"host"`
	PID         int       `json:"pid"`
	Started     time.Time `json:"started"`
	Heartbeat   time.Time `json:"heartbeat"`
	Status      string    `json:"status"` // idle, working, stopping, stopped
	Item        string    `json:"item,omitempty"`
	ItemSince   time.Time `json:"item_since,omitzero"`
	Rows        int64     `json:"rows"`
	ItemsDone   int64     `json:"items_done"`
	ItemsFailed int64     `json:"items_failed"`
}

func (c *Coord) heartbeat(ctx context.Context, w WorkerInfo) error {
	var since any
	if !w.ItemSince.IsZero() {
		since = w.ItemSince
	}
	_, err := c.pool.Exec(ctx, `INSERT INTO _ferry_workers (worker_id, host, pid, started_at, heartbeat_at, status, item, item_since, rows, items_done, items_failed)
		VALUES ($1, $2, $3, $4, now(), $5, $6, $7, $8, $9, $10)
		ON CONFLICT (worker_id) DO UPDATE SET heartbeat_at = now(), status = EXCLUDED.status, item = EXCLUDED.item, item_since = EXCLUDED.item_since,
			rows = EXCLUDED.rows, items_done = EXCLUDED.items_done, items_failed = EXCLUDED.items_failed`,
		w.ID, w.Host, w.PID, w.Started, w.Status, w.Item, since, w.Rows, w.ItemsDone, w.ItemsFailed)
	return err
}

// Workers lists the workers that sent a heartbeat within the last
// `within` (all when zero), by id.
func (c *Coord) Workers(ctx context.Context, within time.Duration) ([]WorkerInfo, error) {
	q := `SELECT worker_id, host, pid, started_at, heartbeat_at, status, item, item_since, rows, items_done, items_failed FROM _ferry_workers`
	var args []any
	if within > 0 {
		q += ` WHERE heartbeat_at > now() - $1::interval`
		args = append(args, fmt.Sprintf("%d milliseconds", within.Milliseconds()))
	}
	rows, err := c.pool.Query(ctx, q+` ORDER BY worker_id`, args...)
	if err != nil {
		return nil, fmt.Errorf("list workers: %w", err)
	}
	defer rows.Close()
	var out []WorkerInfo
	for rows.Next() {
		var w WorkerInfo
		var since *time.Time
		if err := rows.Scan(&w.ID, &w.Host, &w.PID, &w.Started, &w.Heartbeat, &w.Status, &w.Item, &since, &w.Rows, &w.ItemsDone, &w.ItemsFailed); err != nil {
			return nil, err
		}
		if since != nil {
			w.ItemSince = *since
		}
		out = append(out, w)
	}
	return out, rows.Err()
}

// Leader takes or renews the lease called name for holder, for ttl, and
// reports whether holder has it: only the holder of the scheduler lease
// turns schedules into work items. The database's clock decides expiry.
func (c *Coord) Leader(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	var got string
	err := c.pool.QueryRow(ctx, `INSERT INTO _ferry_scheduler AS s (name, holder, token, expires_at) VALUES ($1, $2, 1, now() + $3::interval)
		ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at,
			token = CASE WHEN s.holder = EXCLUDED.holder THEN s.token ELSE s.token + 1 END
		WHERE s.holder = EXCLUDED.holder OR s.expires_at < now()
		RETURNING holder`, name, holder, fmt.Sprintf("%d milliseconds", ttl.Milliseconds())).Scan(&got)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("scheduler lease %s: %w", name, err)
	}
	return got == holder, nil
}
