package sqldest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/record"
)

var _ dest.Leaser = stateStore{}

// Leases live in the leases table, one row per (pipeline, stream, slice):
// the newest token, its holder, when it expires, and when a commit last
// checked it. Every operation on a lease first updates its row, which
// takes the row's lock (PostgreSQL, MySQL; SQLite locks the database),
// and only then reads it: a commit's check and a takeover serialise, and
// the read sees the newest token even under MySQL's repeatable read (a
// transaction reads its own writes).

// lockLease takes the row lock of a lease (when the row exists) and
// reads it.
func (x *Destination) lockLease(ctx context.Context, q Queryer, pipeline, stream, slice string) (token int64, holder dest.Holder, expires time.Time, found bool, err error) {
	d := x.d
	where := fmt.Sprintf("%s = %s AND %s = %s AND %s = %s", d.Quote("pipeline"), d.Placeholder(2), d.Quote("stream"), d.Placeholder(3), d.Quote("slice"), d.Placeholder(4))
	if err = q.Exec(ctx, fmt.Sprintf("UPDATE %s SET %s = %s WHERE %s", d.Table(dest.LeasesTable), d.Quote("checked_at"), d.Placeholder(1), where), d.Time(time.Now()), pipeline, stream, slice); err != nil {
		return 0, holder, expires, false, err
	}
	rows, err := q.Query(ctx, fmt.Sprintf("SELECT %s, %s, %s FROM %s WHERE %s = %s AND %s = %s AND %s = %s",
		d.Quote("token"), d.Quote("holder"), d.Quote("expires_at"), d.Table(dest.LeasesTable),
		d.Quote("pipeline"), d.Placeholder(1), d.Quote("stream"), d.Placeholder(2), d.Quote("slice"), d.Placeholder(3)), pipeline, stream, slice)
	if err != nil {
		return 0, holder, expires, false, err
	}
	defer rows.Close()
	if !rows.Next() {
		return 0, holder, expires, false, rows.Err()
	}
	var raw string
	var at any
	if err = rows.Scan(&token, &raw, &at); err != nil {
		return 0, holder, expires, false, err
	}
	_ = json.Unmarshal([]byte(raw), &holder)
	return token, holder, scanTime(at), true, rows.Err()
}

// inTx runs f in a transaction, committing when it returns nil.
func (x *Destination) inTx(ctx context.Context, f func(tx Tx) error) error {
	tx, err := x.db.Begin(ctx)
	if err != nil {
		return x.classify(err)
	}
	if err := f(tx); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return x.classify(err)
	}
	return x.classify(tx.Commit(ctx))
}

// Acquire takes the lease of a stream (or of a slice of it).
func (s stateStore) Acquire(ctx context.Context, pipeline, stream, slice string, holder dest.Holder, ttl time.Duration) (dest.Lease, error) {
	x := s.x
	if x.readOnly {
		return dest.Lease{}, dest.ErrReadOnly
	}
	d := x.d
	l := dest.Lease{Pipeline: pipeline, Stream: stream, Slice: slice, Holder: holder}
	raw, _ := json.Marshal(holder)
	err := x.inTx(ctx, func(tx Tx) error {
		token, cur, expires, found, err := x.lockLease(ctx, tx, pipeline, stream, slice)
		if err != nil {
			return fmt.Errorf("take the lease of stream %s: %w", stream, err)
		}
		now := time.Now()
		if found && now.Before(expires) && cur.RunID != holder.RunID {
			return &dest.LockedError{Pipeline: pipeline, Stream: stream, Holder: cur}
		}
		l.Token, l.Expires = token+1, now.Add(ttl)
		if !found {
			// Two first takers both insert: the second fails on the primary
			// key, and says the stream is taken.
			err = tx.Exec(ctx, fmt.Sprintf("INSERT INTO %s (%s, %s, %s, %s, %s, %s, %s) VALUES (%s)", d.Table(dest.LeasesTable),
				d.Quote("pipeline"), d.Quote("stream"), d.Quote("slice"), d.Quote("token"), d.Quote("holder"), d.Quote("expires_at"), d.Quote("checked_at"), placeholders(d, 7)),
				pipeline, stream, slice, l.Token, string(raw), d.Time(l.Expires), d.Time(now))
			if err != nil {
				return fmt.Errorf("take the lease of stream %s: %w", stream, err)
			}
			return nil
		}
		return tx.Exec(ctx, fmt.Sprintf("UPDATE %s SET %s = %s, %s = %s, %s = %s WHERE %s = %s AND %s = %s AND %s = %s", d.Table(dest.LeasesTable),
			d.Quote("token"), d.Placeholder(1), d.Quote("holder"), d.Placeholder(2), d.Quote("expires_at"), d.Placeholder(3),
			d.Quote("pipeline"), d.Placeholder(4), d.Quote("stream"), d.Placeholder(5), d.Quote("slice"), d.Placeholder(6)),
			l.Token, string(raw), d.Time(l.Expires), pipeline, stream, slice)
	})
	return l, err
}

// checkFence fails with a *dest.FencedError unless l is still the newest
// lease of its stream; the row stays locked until q's transaction ends.
func (x *Destination) checkFence(ctx context.Context, q Queryer, l dest.Lease) error {
	token, _, _, _, err := x.lockLease(ctx, q, l.Pipeline, l.Stream, l.Slice)
	if err != nil {
		return fmt.Errorf("check the lease of stream %s: %w", l.Stream, err)
	}
	if token != l.Token {
		return &dest.FencedError{Pipeline: l.Pipeline, Stream: l.Stream, Slice: l.Slice, Token: l.Token, Current: token}
	}
	return nil
}

// Renew extends a lease that is still the newest.
func (s stateStore) Renew(ctx context.Context, l dest.Lease, ttl time.Duration) (dest.Lease, error) {
	x := s.x
	d := x.d
	err := x.inTx(ctx, func(tx Tx) error {
		if err := x.checkFence(ctx, tx, l); err != nil {
			return err
		}
		l.Expires = time.Now().Add(ttl)
		return tx.Exec(ctx, fmt.Sprintf("UPDATE %s SET %s = %s WHERE %s = %s AND %s = %s AND %s = %s", d.Table(dest.LeasesTable),
			d.Quote("expires_at"), d.Placeholder(1), d.Quote("pipeline"), d.Placeholder(2), d.Quote("stream"), d.Placeholder(3), d.Quote("slice"), d.Placeholder(4)),
			d.Time(l.Expires), l.Pipeline, l.Stream, l.Slice)
	})
	return l, err
}

// Release ends a lease that is still the newest; a superseded one is
// left alone.
func (s stateStore) Release(ctx context.Context, l dest.Lease) error {
	x := s.x
	d := x.d
	err := x.inTx(ctx, func(tx Tx) error {
		if err := x.checkFence(ctx, tx, l); err != nil {
			return err
		}
		return tx.Exec(ctx, fmt.Sprintf("UPDATE %s SET %s = %s WHERE %s = %s AND %s = %s AND %s = %s", d.Table(dest.LeasesTable),
			d.Quote("expires_at"), d.Placeholder(1), d.Quote("pipeline"), d.Placeholder(2), d.Quote("stream"), d.Placeholder(3), d.Quote("slice"), d.Placeholder(4)),
			d.Time(time.Unix(0, 0)), l.Pipeline, l.Stream, l.Slice)
	})
	var fe *dest.FencedError
	if errors.As(err, &fe) {
		return nil
	}
	return err
}

// SaveFenced saves states in one transaction with the lease's check.
func (s stateStore) SaveFenced(ctx context.Context, l dest.Lease, runID string, states []record.Checkpoint) error {
	x := s.x
	if x.readOnly {
		return dest.ErrReadOnly
	}
	return x.inTx(ctx, func(tx Tx) error {
		if err := x.checkFence(ctx, tx, l); err != nil {
			return err
		}
		return saveStates(ctx, tx, x.d, l.Pipeline, runID, "", states)
	})
}
