package sqldest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/ferry-dev/ferry/internal/dest"
)

var _ dest.RejectKeeper = (*Destination)(nil)

// rejectedColumns are read back and matched on, in this order.
var rejectedColumns = []string{"run_id", "pipeline", "stream", "table_name", "partition_key", "reason", "column_name", "record"}

// RejectID is the id of a rejected record: a hash of what is stored.
func RejectID(r dest.Rejected) string {
	h := sha256.New()
	for _, v := range []string{r.RunID, r.Pipeline, r.Stream, r.Table, r.Partition, r.Reason, r.Column, r.Record} {
		h.Write([]byte(strconv.Itoa(len(v))))
		h.Write([]byte{0})
		h.Write([]byte(v))
	}
	return hex.EncodeToString(h.Sum(nil))[:24]
}

// Rejects returns a pipeline's rejected records, newest first.
func (x *Destination) Rejects(ctx context.Context, pipeline, stream string, limit int) ([]dest.Rejected, error) {
	if !x.meta {
		return nil, nil
	}
	d := x.d
	cols := make([]string, 0, len(rejectedColumns)+1)
	for _, c := range rejectedColumns {
		cols = append(cols, "COALESCE("+d.Quote(c)+", '')")
	}
	cols = append(cols, d.Quote("rejected_at"))
	query := fmt.Sprintf("SELECT %s FROM %s WHERE %s = %s", strings.Join(cols, ", "), d.Table(dest.RejectedTable), d.Quote("pipeline"), d.Placeholder(1))
	args := []any{pipeline}
	if stream != "" {
		query += fmt.Sprintf(" AND %s = %s", d.Quote("stream"), d.Placeholder(2))
		args = append(args, stream)
	}
	if limit <= 0 {
		limit = 100
	}
	query += fmt.Sprintf(" ORDER BY %s DESC LIMIT %d", d.Quote("rejected_at"), limit)
	rows, err := x.db.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("read the rejected records of %s: %w", pipeline, err)
	}
	defer rows.Close()
	var out []dest.Rejected
	for rows.Next() {
		var r dest.Rejected
		var at any
		if err := rows.Scan(&r.RunID, &r.Pipeline, &r.Stream, &r.Table, &r.Partition, &r.Reason, &r.Column, &r.Record, &at); err != nil {
			return nil, err
		}
		r.At = scanTime(at).UTC()
		r.ID = RejectID(r)
		out = append(out, r)
	}
	return out, rows.Err()
}

// DeleteRejects removes rejected records, every stored copy of each.
func (x *Destination) DeleteRejects(ctx context.Context, rs []dest.Rejected) (int, error) {
	if x.readOnly {
		return 0, dest.ErrReadOnly
	}
	d := x.d
	conds := make([]string, len(rejectedColumns))
	for i, c := range rejectedColumns {
		conds[i] = fmt.Sprintf("COALESCE(%s, '') = %s", d.Quote(c), d.Placeholder(i+1))
	}
	stmt := fmt.Sprintf("DELETE FROM %s WHERE %s", d.Table(dest.RejectedTable), strings.Join(conds, " AND "))
	total := 0
	for _, r := range rs {
		before, err := x.countRejects(ctx, r)
		if err != nil {
			return total, err
		}
		if err := x.db.Exec(ctx, stmt, r.RunID, r.Pipeline, r.Stream, r.Table, r.Partition, r.Reason, r.Column, r.Record); err != nil {
			return total, fmt.Errorf("remove a rejected record of %s: %w", r.Stream, err)
		}
		total += before
	}
	return total, nil
}

func (x *Destination) countRejects(ctx context.Context, r dest.Rejected) (int, error) {
	d := x.d
	conds := make([]string, len(rejectedColumns))
	for i, c := range rejectedColumns {
		conds[i] = fmt.Sprintf("COALESCE(%s, '') = %s", d.Quote(c), d.Placeholder(i+1))
	}
	rows, err := x.db.Query(ctx, fmt.Sprintf("SELECT COUNT(*) FROM %s WHERE %s", d.Table(dest.RejectedTable), strings.Join(conds, " AND ")),
		r.RunID, r.Pipeline, r.Stream, r.Table, r.Partition, r.Reason, r.Column, r.Record)
	if err != nil {
		return 0, fmt.Errorf("count rejected records of %s: %w", r.Stream, err)
	}
	defer rows.Close()
	var n int
	if rows.Next() {
		if err := rows.Scan(&n); err != nil {
			return 0, err
		}
	}
	return n, rows.Err()
}
