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
	"strconv"

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
	// Key holds the primary key columns' values; Row every data column's
	// (nil for a delete without values). Values are nil, bool, int64,
	// float64, string, json.Number (decimals) or any (decoded JSON);
	// timestamps are RFC 3339 strings.
	Key, Row map[string]any
	// RowJSON is Row as a JSON object, in the table's column order.
	RowJSON []byte
	// Before is the row before the change (JSON), nil when unknown.
	Before json.RawMessage
	// Position is the source position ("" for sources without one).
	Position    string
	CommittedAt string
}

// OpName names an operation for requests and events: insert, update,
// delete, or upsert when the source does not say.
func OpName(op record.Op) string { return op.String() }

// Reader turns the rows of chunks of one table layout into changes.
type Reader struct {
	t                    *schema.Table
	data                 []int // data columns
	key                  []int
	pos, committed, befo int
}

// NewReader prepares to read chunks built for table t.
func NewReader(t *schema.Table) *Reader {
	r := &Reader{t: t, pos: -1, committed: -1, befo: -1}
	for j, c := range t.Columns {
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
			r.key = append(r.key, j)
		}
	}
	return r
}

// Table returns the layout the reader reads.
func (r *Reader) Table() *schema.Table { return r.t }

// Read returns row i of c (built for the reader's table) as a change.
func (r *Reader) Read(c *record.Chunk, i int) Change {
	ch := Change{Op: record.Upsert, Key: make(map[string]any, len(r.key)), Row: make(map[string]any, len(r.data))}
	if i < len(c.Ops) {
		ch.Op = c.Ops[i]
	}
	buf := []byte{'{'}
	for n, j := range r.data {
		name := r.t.Columns[j].Name
		v := Value(c, i, j)
		ch.Row[name] = v
		if n > 0 {
			buf = append(buf, ',')
		}
		buf = strconv.AppendQuote(buf, name)
		buf = append(buf, ':')
		buf = appendJSON(buf, c, i, j)
	}
	ch.RowJSON = append(buf, '}')
	for _, j := range r.key {
		ch.Key[r.t.Columns[j].Name] = ch.Row[r.t.Columns[j].Name]
	}
	if r.pos >= 0 && !c.Cols[r.pos].Nulls[i] {
		ch.Position = string(c.Cols[r.pos].Bytes[i])
	}
	if r.committed >= 0 {
		if s, ok := Value(c, i, r.committed).(string); ok {
			ch.CommittedAt = s
		}
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
	b, _ := json.Marshal(string(v.Bytes[i]))
	return append(dst, b...)
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
	keyJSON, _ := json.Marshal(ch.Key) // map keys sorted: canonical
	h.Write(keyJSON)
	h.Write([]byte{0})
	if ch.Position != "" {
		h.Write([]byte(ch.Position))
	} else {
		h.Write([]byte(ch.Op.String()))
		h.Write([]byte{0})
		h.Write(ch.RowJSON)
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}
