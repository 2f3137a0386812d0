// Package change reads the rows of a chunk as changes to deliver to an
// API or an event stream: the operation, the key, the row's values, and,
// for change-data-capture sources, the change's position at the source,
// its commit time and the row's before image.
//
// Change-data-capture sources carry the last three in data columns with
// fixed names (ColPosition, ColCommittedAt, ColBefore), so that they flow
// through the normal typed path and land as columns when the destination
// is a database. Destinations of changes take them out of the row.
package change

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/schema"
)

// Columns change-data-capture sources add to every row.
const (
	// ColPosition is the change's position at the source (a PostgreSQL LSN
	// with the change's index in its transaction, a binlog GTID and event
	// index), unique per change and the same each time the change is read
	// again: idempotency keys and de-duplication ids derive from it.
	ColPosition = "_cdc_position"
	// ColCommittedAt is when the source committed the change (timestamp).
	ColCommittedAt = "_cdc_committed_at"
	// ColBefore is the row before an update or delete (JSON), when the
	// source has it (PostgreSQL REPLICA IDENTITY FULL, MySQL binlog_row_image
	// FULL).
	ColBefore = "_cdc_before"
)

// Change is one row of a chunk as a change.
type Change struct {
	Op record.Op
	// KeyJSON is the primary key columns as a JSON object, keys sorted by
	// name (canonical: the same change always has the same text).
	KeyJSON []byte
	// RowJSON is every data column as a JSON object, in the table's order.
	RowJSON []byte
	// Before is the row before the change (JSON), nil when unknown.
	Before json.RawMessage
	// Position is the source position ("" for sources without one).
	Position    string
	CommittedAt string

	r *Reader
	c *record.Chunk
	i int
}

// Fields returns the key columns' and every data column's values, for
// templates: nil, bool, int64, float64, string, json.Number (decimals) or
// decoded JSON; timestamps as RFC 3339 strings.
func (ch *Change) Fields() (key, row map[string]any) {
	r := ch.r
	key, row = make(map[string]any, len(r.key)), make(map[string]any, len(r.data))
	for _, j := range r.data {
		row[r.t.Columns[j].Name] = Value(ch.c, ch.i, j)
	}
	for _, j := range r.key {
		key[r.t.Columns[j].Name] = Value(ch.c, ch.i, j)
	}
	return key, row
}

// KeyValues returns the key's values as text in primary key order, for
// paths.
func (ch *Change) KeyValues() []string {
	out := make([]string, len(ch.r.keyOrder))
	for n, j := range ch.r.keyOrder {
		b, _ := ch.c.AppendText(nil, ch.i, j)
		out[n] = string(b)
	}
	return out
}

// OpName names an operation for requests and events: insert, update,
// delete, or upsert when the source does not say.
func OpName(op record.Op) string { return op.String() }

// Reader turns the rows of chunks of one table layout into changes.
type Reader struct {
	t                    *schema.Table
	data                 []int // data columns
	key                  []int // key columns, sorted by name
	keyOrder             []int // key columns in primary key order
	names                [][]byte
	pos, committed, befo int
}

// NewReader prepares to read chunks built for table t.
func NewReader(t *schema.Table) *Reader {
	r := &Reader{t: t, pos: -1, committed: -1, befo: -1, names: make([][]byte, len(t.Columns))}
	for j, c := range t.Columns {
		r.names[j] = strconv.AppendQuote(nil, c.Name)
		switch {
		case c.Origin == schema.FromMeta:
		case c.Name == ColPosition:
			r.pos = j
		case c.Name == ColCommittedAt:
			r.committed = j
		case c.Name == ColBefore:
			r.befo = j
		default:
			r.data = append(r.data, j)
		}
	}
	for _, k := range t.PrimaryKey {
		if j := t.Index(k); j >= 0 {
			r.keyOrder = append(r.keyOrder, j)
		}
	}
	r.key = append([]int(nil), r.keyOrder...)
	slices.SortFunc(r.key, func(a, b int) int { return strings.Compare(t.Columns[a].Name, t.Columns[b].Name) })
	return r
}

// Table returns the layout the reader reads.
func (r *Reader) Table() *schema.Table { return r.t }

// Read returns row i of c (built for the reader's table) as a change.
func (r *Reader) Read(c *record.Chunk, i int) Change {
	ch := Change{Op: record.Upsert, r: r, c: c, i: i}
	if i < len(c.Ops) {
		ch.Op = c.Ops[i]
	}
	buf := make([]byte, 0, 64+32*len(r.data))
	buf = append(buf, '{')
	for n, j := range r.data {
		if n > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, r.names[j]...)
		buf = append(buf, ':')
		buf = appendJSON(buf, c, i, j)
	}
	ch.RowJSON = append(buf, '}')
	kb := make([]byte, 0, 16+16*len(r.key))
	kb = append(kb, '{')
	for n, j := range r.key {
		if n > 0 {
			kb = append(kb, ',')
		}
		kb = append(kb, r.names[j]...)
		kb = append(kb, ':')
		kb = appendJSON(kb, c, i, j)
	}
	ch.KeyJSON = append(kb, '}')
	if r.pos >= 0 && !c.Cols[r.pos].Nulls[i] {
		ch.Position = string(c.Cols[r.pos].Bytes[i])
	}
	if r.committed >= 0 && !c.Cols[r.committed].Nulls[i] {
		ch.CommittedAt = string(schema.FormatTimestamp(nil, c.Cols[r.committed].Ints[i]))
	}
	if r.befo >= 0 && !c.Cols[r.befo].Nulls[i] {
		ch.Before = json.RawMessage(c.Cols[r.befo].Bytes[i])
	}
	return ch
}

// Value returns row i of column j as a template value: timestamps as RFC
// 3339 text, decimals as json.Number, JSON decoded.
func Value(c *record.Chunk, i, j int) any {
	v := &c.Cols[j]
	if v.Nulls[i] {
		return nil
	}
	switch c.Table.Columns[j].Type {
	case schema.Timestamp:
		return string(schema.FormatTimestamp(nil, v.Ints[i]))
	case schema.Decimal:
		return json.Number(v.Bytes[i])
	case schema.JSON:
		var x any
		if err := json.Unmarshal(v.Bytes[i], &x); err != nil {
			return string(v.Bytes[i])
		}
		return x
	}
	return c.Value(i, j)
}

// appendJSON appends row i of column j as JSON.
func appendJSON(dst []byte, c *record.Chunk, i, j int) []byte {
	v := &c.Cols[j]
	if v.Nulls[i] {
		return append(dst, "null"...)
	}
	switch c.Table.Columns[j].Type {
	case schema.Bool:
		return strconv.AppendBool(dst, v.Ints[i] != 0)
	case schema.Int:
		return strconv.AppendInt(dst, v.Ints[i], 10)
	case schema.Float:
		return strconv.AppendFloat(dst, v.Floats[i], 'g', -1, 64)
	case schema.Decimal, schema.JSON:
		return append(dst, v.Bytes[i]...)
	case schema.Timestamp:
		dst = append(dst, '"')
		dst = schema.FormatTimestamp(dst, v.Ints[i])
		return append(dst, '"')
	}
	return AppendString(dst, v.Bytes[i])
}

// AppendString appends b as a JSON string (invalid UTF-8 becomes U+FFFD,
// as encoding/json does).
func AppendString(dst, b []byte) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(b); {
		c := b[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			dst = append(dst, b[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, b[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, b[start:]...)
	return append(dst, '"')
}

// ID returns a stable identifier of a change for idempotency keys and
// de-duplication: from the stream, the source position and the key when
// the source has positions (every delivery of the same change has the
// same id), from the stream, the key and the row's content otherwise (the
// same row version has the same id).
func ID(stream string, ch Change) string {
	h := sha256.New()
	h.Write([]byte(stream))
	h.Write([]byte{0})
	h.Write(ch.KeyJSON)
	h.Write([]byte{0})
	if ch.Position != "" {
		h.Write([]byte(ch.Position))
	} else {
		h.Write([]byte(ch.Op.String()))
		h.Write([]byte{0})
		h.Write(ch.RowJSON)
	}
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0])[:16])
}

// AppendItem appends the default JSON form of a change, as batches and
// messages carry it: {"op","key","idempotency_key","data","before",
// "position","committed_at"} (and "stream" when given).
func AppendItem(dst []byte, stream string, ch Change, id string) []byte {
	dst = append(dst, `{"op":"`...)
	dst = append(dst, ch.Op.String()...)
	dst = append(dst, `","key":`...)
	dst = append(dst, ch.KeyJSON...)
	dst = append(dst, `,"idempotency_key":"`...)
	dst = append(dst, id...)
	dst = append(dst, `","data":`...)
	if ch.Op == record.Delete {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, ch.RowJSON...)
	}
	if ch.Before != nil {
		dst = append(dst, `,"before":`...)
		dst = append(dst, ch.Before...)
	}
	if ch.Position != "" {
		dst = append(dst, `,"position":`...)
		dst = AppendString(dst, []byte(ch.Position))
	}
	if ch.CommittedAt != "" {
		dst = append(dst, `,"committed_at":"`...)
		dst = append(dst, ch.CommittedAt...)
		dst = append(dst, '"')
	}
	if stream != "" {
		dst = append(dst, `,"stream":`...)
		dst = AppendString(dst, []byte(stream))
	}
	return append(dst, '}')
}

// FromKey returns a delete of the row with the given key (a JSON object of
// the key columns), for destinations that find keys gone from a source:
// its columns are typed from the JSON values.
func FromKey(keyJSON []byte, op record.Op) (Change, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(keyJSON, &m); err != nil {
		return Change{}, fmt.Errorf("key %s: %w", keyJSON, err)
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	t := &schema.Table{Name: "keys", PrimaryKey: names}
	for _, n := range names {
		typ := schema.Text
		v := m[n]
		switch {
		case len(v) > 0 && (v[0] == '-' || (v[0] >= '0' && v[0] <= '9')):
			typ = schema.Decimal
			if _, err := strconv.ParseInt(string(v), 10, 64); err == nil {
				typ = schema.Int
			}
		case string(v) == "true" || string(v) == "false":
			typ = schema.Bool
		}
		t.Columns = append(t.Columns, schema.Column{Name: n, Type: typ})
	}
	c := record.NewChunk(t, 1)
	for j, n := range names {
		v := m[n]
		switch t.Columns[j].Type {
		case schema.Int:
			x, _ := strconv.ParseInt(string(v), 10, 64)
			c.Cols[j].AppendInt(x, nil)
		case schema.Bool:
			c.Cols[j].AppendInt(map[bool]int64{false: 0, true: 1}[string(v) == "true"], nil)
		case schema.Decimal:
			c.Cols[j].AppendBytes(v)
		default:
			var s string
			if json.Unmarshal(v, &s) != nil {
				s = string(v)
			}
			c.Cols[j].AppendBytes([]byte(s))
		}
	}
	c.Ops = append(c.Ops, op)
	c.Len = 1
	return NewReader(t).Read(c, 0), nil
}

// DataJSON returns the row's data columns as JSON values, by the name the
// source gave them (the column's path), leaving out Ferry's columns of the
// source table (_ferry_…) and the CDC columns: the fields an API knows.
func (ch *Change) DataJSON() map[string]json.RawMessage {
	r := ch.r
	out := make(map[string]json.RawMessage, len(r.data))
	for _, j := range r.data {
		col := r.t.Columns[j]
		name := col.Name
		if len(col.Path) > 0 {
			name = col.Path[0]
		}
		if strings.HasPrefix(name, schema.MetaPrefix) {
			continue
		}
		out[name] = appendJSON(nil, ch.c, ch.i, j)
	}
	return out
}

// SourceValue returns the JSON of the column the source named name
// (its path), and whether the row has that column.
func (ch *Change) SourceValue(name string) (json.RawMessage, bool) {
	r := ch.r
	for _, j := range r.data {
		col := r.t.Columns[j]
		if (len(col.Path) > 0 && col.Path[0] == name) || col.Name == name {
			return appendJSON(nil, ch.c, ch.i, j), true
		}
	}
	return nil, false
}
