package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/ferry-dev/ferry/internal/dest/sqldest"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/schema"
)

// maxVariables is SQLite's limit on bind parameters per statement.
const maxVariables = 32766

// loader writes rows with multi-row INSERT (or upsert) statements,
// prepared once per transaction and per batch size.
type loader struct {
	tx      *sql.Tx
	d       Dialect
	t       sqldest.Target
	cols    []string
	perStmt int
	stmts   map[int]*sql.Stmt
	del     *sql.Stmt
	where   string
	args    []any
	ts      []byte
}

// NewLoader returns a loader for the target.
func (d Dialect) NewLoader(tx sqldest.Tx, t sqldest.Target) (sqldest.Loader, error) {
	stx, ok := tx.(*sqldest.StdTx)
	if !ok {
		return nil, fmt.Errorf("sqlite: unexpected transaction type %T", tx)
	}
	l := &loader{tx: stx.Tx, d: d, t: t, stmts: map[int]*sql.Stmt{}}
	for _, c := range t.Layout.Columns {
		l.cols = append(l.cols, c.Name)
	}
	l.perStmt = max(1, min(500, maxVariables/max(1, len(l.cols))))
	if cur := t.Layout.Column(t.Layout.Cursor); t.Upsert && cur != nil {
		// The newest version wins: one without a cursor value ranks
		// lowest, and among equals the later one wins. Decimals are text
		// here and compare as numbers.
		c := d.Quote(cur.Name)
		oldV, newV := d.Table(t.Table)+"."+c, "excluded."+c
		isNull := oldV + " IS NULL"
		if cur.Type == schema.Decimal {
			oldV, newV = "CAST("+oldV+" AS NUMERIC)", "CAST("+newV+" AS NUMERIC)"
		}
		l.where = fmt.Sprintf("%s OR %s >= %s", isNull, newV, oldV)
	}
	return l, nil
}

func (l *loader) stmt(ctx context.Context, rows int) (*sql.Stmt, error) {
	if s, ok := l.stmts[rows]; ok {
		return s, nil
	}
	var key []string
	if l.t.Upsert {
		key = l.t.Layout.PrimaryKey
	}
	s, err := l.tx.PrepareContext(ctx, upsert(l.d, l.t.Table, l.cols, key, rows, l.where))
	if err != nil {
		return nil, err
	}
	l.stmts[rows] = s
	return s, nil
}

// Load writes the chunk's rows in order; deletes (dedup mode) run between
// the inserts around them.
// SQLite stores any text and number Ferry produces, so no row is refused.
func (l *loader) Load(ctx context.Context, c *record.Chunk) ([]sqldest.RowError, error) {
	start := 0
	for start < c.Len {
		if c.Ops[start] == record.Delete && l.t.Upsert {
			if err := l.delete(ctx, c, start); err != nil {
				return nil, err
			}
			start++
			continue
		}
		end := start
		for end < c.Len && end-start < l.perStmt && !(c.Ops[end] == record.Delete && l.t.Upsert) {
			end++
		}
		if err := l.insert(ctx, c, start, end); err != nil {
			return nil, err
		}
		start = end
	}
	return nil, nil
}

func (l *loader) insert(ctx context.Context, c *record.Chunk, from, to int) error {
	s, err := l.stmt(ctx, to-from)
	if err != nil {
		return err
	}
	l.args = l.args[:0]
	for r := from; r < to; r++ {
		for j := range l.cols {
			l.args = append(l.args, l.value(c, r, j))
		}
	}
	_, err = s.ExecContext(ctx, l.args...)
	if err != nil {
		return fmt.Errorf("insert rows %d–%d of %s: %w", from+1, to, c.Source, err)
	}
	return nil
}

func (l *loader) delete(ctx context.Context, c *record.Chunk, r int) error {
	if l.del == nil {
		var conds []string
		for _, k := range l.t.Layout.PrimaryKey {
			conds = append(conds, l.d.Quote(k)+" = ?")
		}
		s, err := l.tx.PrepareContext(ctx, fmt.Sprintf("DELETE FROM %s WHERE %s", l.d.Table(l.t.Table), strings.Join(conds, " AND ")))
		if err != nil {
			return err
		}
		l.del = s
	}
	args := make([]any, 0, len(l.t.Layout.PrimaryKey))
	for _, k := range l.t.Layout.PrimaryKey {
		args = append(args, l.value(c, r, c.Table.Index(k)))
	}
	_, err := l.del.ExecContext(ctx, args...)
	return err
}

// value converts one cell for the driver.
func (l *loader) value(c *record.Chunk, r, j int) any {
	v := &c.Cols[j]
	if v.Nulls[r] {
		return nil
	}
	switch c.Table.Columns[j].Type {
	case schema.Bool, schema.Int:
		return v.Ints[r]
	case schema.Float:
		return v.Floats[r]
	case schema.Timestamp:
		l.ts = time.UnixMicro(v.Ints[r]).UTC().AppendFormat(l.ts[:0], TimeLayout)
		return string(l.ts)
	case schema.Decimal, schema.Text, schema.JSON:
		return string(v.Bytes[r])
	}
	return nil
}

// Flush closes the prepared statements.
func (l *loader) Flush(context.Context) error {
	for k, s := range l.stmts {
		s.Close()
		delete(l.stmts, k)
	}
	if l.del != nil {
		l.del.Close()
		l.del = nil
	}
	return nil
}
