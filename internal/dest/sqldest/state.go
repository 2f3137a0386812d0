package sqldest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/record"
)

// partitionHash keys a partition in the state table with a bounded value.
func partitionHash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

type stateStore struct{ x *Destination }

func (s stateStore) Load(ctx context.Context, pipeline, stream, partition string) (json.RawMessage, error) {
	if !s.x.meta {
		return nil, nil
	}
	raw, err := s.load(ctx, pipeline, stream, partition)
	return raw, s.x.classify(err)
}

func (s stateStore) load(ctx context.Context, pipeline, stream, partition string) (json.RawMessage, error) {
	d := s.x.d
	rows, err := s.x.db.Query(ctx, fmt.Sprintf("SELECT %s FROM %s WHERE %s = %s AND %s = %s AND %s = %s",
		d.Quote("state"), d.Table(dest.StateTable), d.Quote("pipeline"), d.Placeholder(1), d.Quote("stream"), d.Placeholder(2), d.Quote("partition_hash"), d.Placeholder(3)),
		pipeline, stream, partitionHash(partition))
	if err != nil {
		return nil, fmt.Errorf("load state of %s/%s: %w", pipeline, stream, err)
	}
	defer rows.Close()
	if !rows.Next() {
		return nil, rows.Err()
	}
	var raw string
	if err := rows.Scan(&raw); err != nil {
		return nil, err
	}
	return json.RawMessage(raw), rows.Err()
}

func (s stateStore) List(ctx context.Context, pipeline, stream string) ([]dest.StateEntry, error) {
	if !s.x.meta {
		return nil, nil
	}
	d := s.x.d
	query := fmt.Sprintf("SELECT %s, %s, %s, %s, %s FROM %s WHERE %s = %s",
		d.Quote("stream"), d.Quote("partition_key"), d.Quote("state"), d.Quote("run_id"), d.Quote("updated_at"), d.Table(dest.StateTable), d.Quote("pipeline"), d.Placeholder(1))
	args := []any{pipeline}
	if stream != "" {
		query += fmt.Sprintf(" AND %s = %s", d.Quote("stream"), d.Placeholder(2))
		args = append(args, stream)
	}
	query += fmt.Sprintf(" ORDER BY %s, %s", d.Quote("stream"), d.Quote("partition_key"))
	rows, err := s.x.db.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list state of %s: %w", pipeline, err)
	}
	defer rows.Close()
	var out []dest.StateEntry
	for rows.Next() {
		var e dest.StateEntry
		var st, run string
		var at any
		if err := rows.Scan(&e.Stream, &e.Partition, &st, &run, &at); err != nil {
			return nil, err
		}
		e.State, e.RunID, e.UpdatedAt = json.RawMessage(st), run, scanTime(at)
		out = append(out, e)
	}
	return out, rows.Err()
}

// scanTime reads a timestamp scanned into an any from any driver.
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

func (s stateStore) Reset(ctx context.Context, pipeline, stream string) (int, error) {
	if s.x.readOnly {
		return 0, dest.ErrReadOnly
	}
	d := s.x.d
	before, err := s.List(ctx, pipeline, stream)
	if err != nil {
		return 0, err
	}
	query := fmt.Sprintf("DELETE FROM %s WHERE %s = %s", d.Table(dest.StateTable), d.Quote("pipeline"), d.Placeholder(1))
	args := []any{pipeline}
	if stream != "" {
		query += fmt.Sprintf(" AND %s = %s", d.Quote("stream"), d.Placeholder(2))
		args = append(args, stream)
	}
	if err := s.x.db.Exec(ctx, query, args...); err != nil {
		return 0, fmt.Errorf("reset state of %s: %w", pipeline, err)
	}
	return len(before), nil
}

// Save stores partition states outside any stream's transaction.
func (s stateStore) Save(ctx context.Context, pipeline, runID string, states []record.Checkpoint) error {
	if s.x.readOnly {
		return dest.ErrReadOnly
	}
	return s.x.classify(saveStates(ctx, s.x.db, s.x.d, pipeline, runID, "", states))
}

// saveStates upserts the last state of each partition among states; a
// checkpoint without a stream belongs to defaultStream.
func saveStates(ctx context.Context, q Queryer, d Dialect, pipeline, runID, defaultStream string, states []record.Checkpoint) error {
	if len(states) == 0 {
		return nil
	}
	last := map[string]int{}
	for i, c := range states {
		last[c.Stream+"\x00"+c.Partition] = i
	}
	stmt := d.Upsert(dest.StateTable, []string{"pipeline", "stream", "partition_hash", "partition_key", "state", "run_id", "updated_at"}, []string{"pipeline", "stream", "partition_hash"})
	now := d.Time(time.Now())
	for i, c := range states {
		if last[c.Stream+"\x00"+c.Partition] != i {
			continue
		}
		stream := c.Stream
		if stream == "" {
			stream = defaultStream
		}
		if err := q.Exec(ctx, stmt, pipeline, stream, partitionHash(c.Partition), c.Partition, string(c.State), runID, now); err != nil {
			return fmt.Errorf("save state of %s: %w", stream, err)
		}
	}
	return nil
}

// Locker takes named locks that are released when the process ends, even
// by a crash: advisory locks on a dedicated connection, file locks.
type Locker interface {
	// TryLock takes the lock named key without waiting; ok is false when
	// someone else holds it.
	TryLock(ctx context.Context, key string) (release func(), ok bool, err error)
}

// DialectChecker is implemented by dialects with checks of their own for
// Destination.Check (schema exists, privileges).
type DialectChecker interface {
	Check(ctx context.Context, db DB) (string, error)
}

// LockKey is the name of the lock of one stream of a pipeline: bounded
// and free of any character a lock name could not hold.
func LockKey(pipeline, stream string) string {
	sum := sha256.Sum256([]byte(pipeline + "\x00" + stream))
	return "ferry_" + hex.EncodeToString(sum[:16])
}

// lockPatience is how long Lock keeps trying a taken lock whose holder
// is alive, and endedPatience how long when the holder is a process of
// this host that has ended (or no holder was recorded): the server still
// holds a killed run's lock until it notices the session gone, and a
// session killed inside a large transaction ends only once the database
// has rolled that transaction back.
var lockPatience, endedPatience = 3 * time.Second, 60 * time.Second

// onEndedHolder, when set (by tests), is called when Lock starts waiting
// longer for the lock of a holder that has ended.
var onEndedHolder func(pipeline, stream string)

// Lock takes a stream's lock and records its holder, so that a run that
// finds the lock taken can say by whom.
func (s stateStore) Lock(ctx context.Context, pipeline, stream string, holder dest.Holder) (func(), error) {
	x := s.x
	if x.readOnly {
		return nil, dest.ErrReadOnly
	}
	if x.locker == nil {
		return nil, fmt.Errorf("the %s destination cannot lock streams", x.d.Name())
	}
	var release func()
	start := time.Now()
	deadline := start.Add(lockPatience)
	extended := false
	for {
		var ok bool
		var err error
		release, ok, err = x.locker.TryLock(ctx, LockKey(pipeline, stream))
		if err != nil {
			return nil, x.classify(fmt.Errorf("lock stream %s: %w", stream, err))
		}
		if ok || ctx.Err() != nil {
			break
		}
		if time.Now().After(deadline) {
			if extended {
				break
			}
			extended = true
			h, err := s.holder(ctx, pipeline, stream)
			if err != nil || !ended(h) {
				break
			}
			deadline = start.Add(endedPatience)
			if onEndedHolder != nil {
				onEndedHolder(pipeline, stream)
			}
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	if release == nil {
		le := &dest.LockedError{Pipeline: pipeline, Stream: stream}
		le.Holder, _ = s.holder(ctx, pipeline, stream)
		return nil, le
	}
	raw, _ := json.Marshal(holder)
	stmt := x.d.Upsert(dest.LocksTable, []string{"pipeline", "stream", "holder", "since"}, []string{"pipeline", "stream"})
	if err := x.db.Exec(ctx, stmt, pipeline, stream, string(raw), x.d.Time(holder.Since)); err != nil {
		release()
		return nil, x.classify(fmt.Errorf("record the holder of the lock of stream %s: %w", stream, err))
	}
	return release, nil
}

// holder reads who last took a stream's lock.
func (s stateStore) holder(ctx context.Context, pipeline, stream string) (dest.Holder, error) {
	d := s.x.d
	var h dest.Holder
	rows, err := s.x.db.Query(ctx, fmt.Sprintf("SELECT %s FROM %s WHERE %s = %s AND %s = %s",
		d.Quote("holder"), d.Table(dest.LocksTable), d.Quote("pipeline"), d.Placeholder(1), d.Quote("stream"), d.Placeholder(2)), pipeline, stream)
	if err != nil {
		return h, err
	}
	defer rows.Close()
	if rows.Next() {
		var raw string
		if err := rows.Scan(&raw); err != nil {
			return h, err
		}
		_ = json.Unmarshal([]byte(raw), &h)
	}
	return h, rows.Err()
}

// ended reports whether a lock's recorded holder is known to have ended:
// none was recorded (a run killed between taking the lock and recording
// itself), or it is a process of this host that no longer exists.
func ended(h dest.Holder) bool {
	if h.RunID == "" {
		return true
	}
	host, err := os.Hostname()
	if err != nil || h.Host != host || h.PID <= 0 {
		return false
	}
	p, err := os.FindProcess(h.PID)
	if err != nil {
		return true
	}
	err = p.Signal(syscall.Signal(0))
	return err != nil && !errors.Is(err, syscall.EPERM) // EPERM: alive, another user's
}
