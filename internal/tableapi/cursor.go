package tableapi

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// cursorDoc is what a cursor holds: the table, the order it was made for
// and the last row's values of that order's columns, as text (nil for
// NULL). It is opaque to clients but not secret: a forged cursor is
// checked like a filter, column by column, and its values are bound.
type cursorDoc struct {
	Table  string    `json:"t"`
	Order  string    `json:"o"`
	Values []*string `json:"v"`
}

// maxCursorLen bounds a cursor's length before it is decoded.
const maxCursorLen = 8 << 10

// EncodeCursor returns the opaque cursor after a row.
func EncodeCursor(table, order string, values []*string) string {
	b, _ := json.Marshal(cursorDoc{Table: table, Order: order, Values: values})
	return base64.RawURLEncoding.EncodeToString(b)
}

// DecodeCursor reads a cursor made by EncodeCursor for the table and the
// order given, with n values.
func DecodeCursor(s, table, order string, n int) ([]*string, error) {
	if len(s) > maxCursorLen {
		return nil, paramErr(paramCursor, "is too long to be one of ours")
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, paramErr(paramCursor, "is not a cursor this API gave (take it from the Link header of the previous page)")
	}
	var c cursorDoc
	if err := json.Unmarshal(b, &c); err != nil || c.Table == "" {
		return nil, paramErr(paramCursor, "is not a cursor this API gave (take it from the Link header of the previous page)")
	}
	if c.Table != table {
		return nil, paramErr(paramCursor, "was given for table %s, not %s", c.Table, table)
	}
	if c.Order != order {
		return nil, paramErr(paramCursor, "was given for order %q, not %q: keep the order of the first page", c.Order, order)
	}
	if len(c.Values) != n {
		return nil, paramErr(paramCursor, "holds %d values, the order has %d columns", len(c.Values), n)
	}
	return c.Values, nil
}

// cursorText renders a value read from the table (as sqldest converts
// it) as the text a cursor keeps; nil stays nil.
func cursorText(v any) *string {
	var s string
	switch x := v.(type) {
	case nil:
		return nil
	case string:
		s = x
	case int64:
		s = strconv.FormatInt(x, 10)
	case float64:
		s = strconv.FormatFloat(x, 'g', -1, 64)
	case bool:
		s = strconv.FormatBool(x)
	case time.Time:
		s = x.UTC().Format(time.RFC3339Nano)
	default:
		s = fmt.Sprint(x)
	}
	return &s
}
