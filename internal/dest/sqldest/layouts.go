package sqldest

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/schema"
)

// loadLayout reads the layout Ferry recorded for a table.
func (x *Destination) loadLayout(ctx context.Context, q Queryer, table string) (*schema.Table, error) {
	rows, err := q.Query(ctx, fmt.Sprintf("SELECT %s FROM %s WHERE %s = %s", x.d.Quote("layout"), x.d.Table(dest.TablesTable), x.d.Quote("table_name"), x.d.Placeholder(1)), table)
	if err != nil {
		return nil, fmt.Errorf("read layout of table %s: %w", table, err)
	}
	defer rows.Close()
	if !rows.Next() {
		return nil, rows.Err()
	}
	var raw string
	if err := rows.Scan(&raw); err != nil {
		return nil, err
	}
	var t schema.Table
	if err := json.Unmarshal([]byte(raw), &t); err != nil {
		return nil, fmt.Errorf("layout of table %s in %s is unreadable: %w", table, dest.TablesTable, err)
	}
	return &t, rows.Err()
}

// saveLayout records the layout of table (live, or the staging table
// that will replace live). The layout is named for live, so a resumed
// full refresh finds the staged child tables it has to swap in.
func (x *Destination) saveLayout(ctx context.Context, q Queryer, table, live, pipeline, stream string, t *schema.Table) error {
	cp := t.Clone()
	cp.Name = live
	b, err := json.Marshal(cp)
	if err != nil {
		return err
	}
	stmt := x.d.Upsert(dest.TablesTable, []string{"table_name", "pipeline", "stream", "layout", "updated_at"}, []string{"table_name"})
	if err := q.Exec(ctx, stmt, table, pipeline, stream, string(b), x.d.Time(time.Now())); err != nil {
		return fmt.Errorf("record layout of table %s: %w", table, err)
	}
	return nil
}

// storedLayout is a layout recorded in the tables table: Table is the
// physical table it describes, Layout.Name the live table it is (or
// will replace).
type storedLayout struct {
	Table  string
	Layout *schema.Table
}

// streamLayouts reads the layouts recorded for a stream's tables, parents
// before children.
func (x *Destination) streamLayouts(ctx context.Context, pipeline, stream string) ([]storedLayout, error) {
	d := x.d
	rows, err := x.db.Query(ctx, fmt.Sprintf("SELECT %s, %s FROM %s WHERE %s = %s AND %s = %s ORDER BY %s",
		d.Quote("table_name"), d.Quote("layout"), d.Table(dest.TablesTable), d.Quote("pipeline"), d.Placeholder(1), d.Quote("stream"), d.Placeholder(2), d.Quote("table_name")),
		pipeline, stream)
	if err != nil {
		return nil, fmt.Errorf("read layouts of stream %s: %w", stream, err)
	}
	defer rows.Close()
	var out []storedLayout
	for rows.Next() {
		var name, raw string
		if err := rows.Scan(&name, &raw); err != nil {
			return nil, err
		}
		var t schema.Table
		if err := json.Unmarshal([]byte(raw), &t); err != nil {
			return nil, fmt.Errorf("the layout of table %s in %s is unreadable: %w", name, dest.TablesTable, err)
		}
		out = append(out, storedLayout{name, &t})
	}
	// Parents before children: shorter names first works because a child
	// table's name extends its parent's.
	slices.SortStableFunc(out, func(a, b storedLayout) int { return len(a.Layout.Name) - len(b.Layout.Name) })
	return out, rows.Err()
}

func (x *Destination) deleteLayout(ctx context.Context, q Queryer, table string) error {
	return q.Exec(ctx, fmt.Sprintf("DELETE FROM %s WHERE %s = %s", x.d.Table(dest.TablesTable), x.d.Quote("table_name"), x.d.Placeholder(1)), table)
}
