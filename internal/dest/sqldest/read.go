package sqldest

import (
	"bytes"
	"context"
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ferry-dev/ferry/internal/schema"
)

// Count returns a table's row count, or -1 when it does not exist.
func (x *Destination) Count(ctx context.Context, table string) (int64, error) {
	_, ok, err := x.d.Columns(ctx, x.db, table)
	if err != nil || !ok {
		return -1, err
	}
	rows, err := x.db.Query(ctx, "SELECT COUNT(*) FROM "+x.d.Table(table))
	if err != nil {
		return -1, fmt.Errorf("count rows of %s: %w", table, err)
	}
	defer rows.Close()
	var n int64
	if rows.Next() {
		if err := rows.Scan(&n); err != nil {
			return -1, err
		}
	}
	return n, rows.Err()
}

// Query runs a query and renders every value as text.
func (x *Destination) Query(ctx context.Context, query string) ([]string, [][]string, error) {
	cq, ok := x.db.(interface {
		QueryColumns(ctx context.Context, query string) ([]string, [][]string, error)
	})
	if !ok {
		return nil, nil, fmt.Errorf("%s does not support ad-hoc queries", x.d.Name())
	}
	return cq.QueryColumns(ctx, query)
}

// Layout returns the layout Ferry recorded for a table, nil if none.
func (x *Destination) Layout(ctx context.Context, table string) (*schema.Table, error) {
	if !x.meta {
		return nil, nil
	}
	return x.loadLayout(ctx, x.db, table)
}

// ReadRows calls fn with each row of a table, its values converted by
// the table's recorded layout to the Go values Chunk.Value gives (a table
// without a recorded layout is read with the values the driver gives).
func (x *Destination) ReadRows(ctx context.Context, table string, orderBy []string, fn func(cols []string, row []any) error) error {
	layout, err := x.Layout(ctx, table)
	if err != nil {
		return err
	}
	dbCols, ok, err := x.d.Columns(ctx, x.db, table)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("table %s does not exist", table)
	}
	var cols []string
	var types []schema.Type
	if layout != nil {
		for _, c := range layout.Columns {
			if _, ok := dbCols[c.Name]; ok {
				cols = append(cols, c.Name)
				types = append(types, c.Type)
			}
		}
	} else {
		cols = slices.Sorted(maps.Keys(dbCols))
		types = make([]schema.Type, len(cols))
	}
	q := fmt.Sprintf("SELECT %s FROM %s", quoteList(x.d, cols), x.d.Table(table))
	if len(orderBy) > 0 {
		q += " ORDER BY " + quoteList(x.d, orderBy)
	}
	rows, err := x.db.Query(ctx, q)
	if err != nil {
		return fmt.Errorf("read %s: %w", table, err)
	}
	defer rows.Close()
	raw := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range raw {
		ptrs[i] = &raw[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return fmt.Errorf("read %s: %w", table, err)
		}
		row := make([]any, len(cols))
		for i, v := range raw {
			if row[i], err = convertValue(types[i], v); err != nil {
				return fmt.Errorf("read %s: column %s: %w", table, cols[i], err)
			}
		}
		if err := fn(cols, row); err != nil {
			return err
		}
	}
	return rows.Err()
}

// timeLayouts are the text forms SQL drivers give timestamps in.
var timeLayouts = []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999-07", "2006-01-02 15:04:05.999999-07:00", "2006-01-02 15:04:05.999999", "2006-01-02T15:04:05.000000Z"}

// ConvertValue turns a value as a driver scanned it into the Go value for
// logical type t, as ReadRows gives it: nil, bool, int64, float64, string
// (decimals, text, JSON) or time.Time in UTC. Other readers of Ferry's
// tables (the table API) use it so that every database reads alike.
func ConvertValue(t schema.Type, v any) (any, error) { return convertValue(t, v) }

// convertValue turns a value as a driver scanned it into the Go value
// for logical type t (Unknown: the driver's value, bytes as a string).
func convertValue(t schema.Type, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	if vl, ok := v.(driver.Valuer); ok {
		dv, err := vl.Value()
		if err != nil {
			return nil, err
		}
		v = dv
		if v == nil {
			return nil, nil
		}
	}
	text := ""
	switch x := v.(type) {
	case []byte:
		text = string(x)
	case string:
		text = x
	}
	switch t {
	case schema.Bool:
		switch x := v.(type) {
		case bool:
			return x, nil
		case int64:
			return x != 0, nil
		}
		switch strings.ToLower(text) {
		case "1", "t", "true":
			return true, nil
		case "0", "f", "false":
			return false, nil
		}
	case schema.Int:
		switch x := v.(type) {
		case int64:
			return x, nil
		case int32:
			return int64(x), nil
		}
		if n, err := strconv.ParseInt(text, 10, 64); err == nil {
			return n, nil
		}
	case schema.Float:
		switch x := v.(type) {
		case float64:
			return x, nil
		case float32:
			return float64(x), nil
		case int64:
			return float64(x), nil
		}
		if f, err := strconv.ParseFloat(text, 64); err == nil {
			return f, nil
		}
	case schema.Decimal, schema.Text:
		switch x := v.(type) {
		case []byte, string:
			return text, nil
		case int64:
			return strconv.FormatInt(x, 10), nil
		case float64:
			return strconv.FormatFloat(x, 'g', -1, 64), nil
		case bool:
			return strconv.FormatBool(x), nil
		case time.Time:
			return x.UTC().Format(time.RFC3339Nano), nil
		}
	case schema.Timestamp:
		if x, ok := v.(time.Time); ok {
			return x.UTC(), nil
		}
		for _, l := range timeLayouts {
			if ts, err := time.Parse(l, text); err == nil {
				return ts.UTC(), nil
			}
		}
	case schema.JSON:
		switch v.(type) {
		case []byte, string:
			var buf bytes.Buffer
			if err := json.Compact(&buf, []byte(text)); err == nil {
				return buf.String(), nil
			}
			return text, nil
		default:
			b, err := json.Marshal(v)
			return string(b), err
		}
	case schema.Unknown:
		if b, ok := v.([]byte); ok {
			return string(b), nil
		}
		return v, nil
	}
	return nil, fmt.Errorf("value %v (%T) is not a %s", v, v, t)
}
