package jsonl

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/schema"
)

// Layout returns the layout recorded in a table's sidecar, nil if the
// table does not exist.
func (d *Destination) Layout(_ context.Context, table string) (*schema.Table, error) {
	s, err := d.sidecar(table)
	if err != nil || s == nil {
		return nil, err
	}
	return s.Layout, nil
}

func (d *Destination) sidecar(table string) (*sidecar, error) {
	p, err := d.path(table, layoutExt)
	if err != nil {
		return nil, err
	}
	return readSidecar(p)
}

// Count returns the committed rows of a table (lines, deletes included),
// -1 if it does not exist. The rejected table always exists, as it does
// in a database: empty until something is rejected.
func (d *Destination) Count(ctx context.Context, table string) (int64, error) {
	if table == dest.RejectedTable {
		var n int64
		err := d.ReadRows(ctx, table, nil, func([]string, []any) error { n++; return nil })
		return n, err
	}
	s, err := d.sidecar(table)
	if err != nil || s == nil {
		return -1, err
	}
	return s.Rows, nil
}

// ReadRows reads a table's committed lines back as rows: the columns of
// its layout, typed as Reader says, then _ferry_op ("delete" on a line
// holding a deleted row, nil otherwise). A line written before a column
// was widened is read as the wider type (a number in a column widened to
// text is its text). _ferry_rejected reads too, with the SQL
// destinations' columns, and has no rows until something is rejected.
func (d *Destination) ReadRows(_ context.Context, table string, orderBy []string, fn func(cols []string, row []any) error) error {
	path, err := d.path(table, dataExt)
	if err != nil {
		return err
	}
	var cols []schema.Column
	var limit int64
	var f *os.File
	if table == dest.RejectedTable {
		cols = rejectColumns
		if f, err = os.Open(path); errors.Is(err, fs.ErrNotExist) {
			return nil // nothing was ever rejected
		} else if err != nil {
			return fmt.Errorf("jsonl: table %s: %w", table, err)
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return fmt.Errorf("jsonl: %w", err)
		}
		if limit, err = completeLength(f, fi.Size()); err != nil { // not a line being appended
			return fmt.Errorf("jsonl: read %s: %w", path, err)
		}
	} else {
		s, err := d.sidecar(table)
		if err != nil {
			return err
		}
		if s == nil {
			return fmt.Errorf("jsonl: table %s does not exist in %s: %w", table, d.dir, fs.ErrNotExist)
		}
		cols, limit = append(slices.Clone(s.Layout.Columns), schema.Column{Name: OpColumn, Type: schema.Text}), s.Bytes
		// The sidecar is replaced only after the lines it counts are
		// durable: the file holds at least limit bytes.
		if f, err = os.Open(path); err != nil {
			return fmt.Errorf("jsonl: table %s: %w", table, err)
		}
		defer f.Close()
	}
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.Name
	}
	var order []int
	for _, o := range orderBy {
		i := slices.Index(names, o)
		if i < 0 {
			return fmt.Errorf("jsonl: table %s has no column %s to order by", table, o)
		}
		order = append(order, i)
	}
	var all [][]any
	r := bufio.NewReaderSize(io.LimitReader(f, limit), 64<<10)
	for n := 1; ; n++ {
		line, err := r.ReadBytes('\n')
		if len(line) == 0 && err == io.EOF {
			break
		}
		if err != nil && err != io.EOF {
			return fmt.Errorf("jsonl: read %s: %w", path, err)
		}
		row, err := decodeLine(line, cols)
		if err != nil {
			return fmt.Errorf("jsonl: %s line %d: %w (the file was changed outside Ferry?)", path, n, err)
		}
		if order == nil {
			if err := fn(names, row); err != nil {
				return err
			}
			continue
		}
		all = append(all, row)
	}
	slices.SortStableFunc(all, func(a, b []any) int {
		for _, i := range order {
			if c := compare(a[i], b[i], cols[i].Type); c != 0 {
				return c
			}
		}
		return 0
	})
	for _, row := range all {
		if err := fn(names, row); err != nil {
			return err
		}
	}
	return nil
}

// decodeLine decodes one line into the values of cols.
func decodeLine(line []byte, cols []schema.Column) ([]any, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(line, &obj); err != nil {
		return nil, fmt.Errorf("not a JSON object: %v", err)
	}
	row := make([]any, len(cols))
	for i, c := range cols {
		v, err := decodeValue(obj[c.Name], c.Type)
		if err != nil {
			return nil, fmt.Errorf("column %s: %v", c.Name, err)
		}
		row[i] = v
	}
	return row, nil
}

// decodeValue reads a value written for a column of type t, or of a type
// t was widened from.
func decodeValue(raw json.RawMessage, t schema.Type) (any, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	text := string(raw)
	isString := raw[0] == '"'
	if isString {
		if err := json.Unmarshal(raw, &text); err != nil {
			return nil, err
		}
	}
	switch t {
	case schema.Bool:
		b, err := strconv.ParseBool(text)
		if err != nil || (text != "true" && text != "false") {
			return nil, fmt.Errorf("%s is not a boolean", raw)
		}
		return b, nil
	case schema.Int:
		n, err := strconv.ParseInt(text, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s is not an integer", raw)
		}
		return n, nil
	case schema.Float:
		f, err := strconv.ParseFloat(text, 64)
		if err != nil {
			return nil, fmt.Errorf("%s is not a number", raw)
		}
		return f, nil
	case schema.Timestamp:
		ts, err := time.Parse(time.RFC3339Nano, text)
		if err != nil || !isString {
			return nil, fmt.Errorf("%s is not an RFC 3339 timestamp", raw)
		}
		return ts.UTC(), nil
	case schema.JSON:
		return string(raw), nil
	}
	// Decimal and Text: the number's digits, the string's content, or the
	// JSON of a value written before the column became text.
	return text, nil
}

// compare orders values of a column of type t read back: nil first;
// numbers by value, decimals exactly.
func compare(a, b any, t schema.Type) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return -1
	case b == nil:
		return 1
	}
	switch x := a.(type) {
	case bool:
		if y, ok := b.(bool); ok {
			switch {
			case x == y:
				return 0
			case !x:
				return -1
			}
			return 1
		}
	case int64:
		switch y := b.(type) {
		case int64:
			return cmp.Compare(x, y)
		case float64:
			return cmp.Compare(float64(x), y)
		}
	case float64:
		switch y := b.(type) {
		case float64:
			return cmp.Compare(x, y)
		case int64:
			return cmp.Compare(x, float64(y))
		}
	case time.Time:
		if y, ok := b.(time.Time); ok {
			return x.Compare(y)
		}
	case string:
		if y, ok := b.(string); ok {
			if t == schema.Decimal {
				rx, okx := new(big.Rat).SetString(x)
				ry, oky := new(big.Rat).SetString(y)
				if okx && oky {
					if c := rx.Cmp(ry); c != 0 {
						return c
					}
				}
			}
			return cmp.Compare(x, y)
		}
	}
	return cmp.Compare(fmt.Sprintf("%T", a), fmt.Sprintf("%T", b))
}
