package record

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/ferry-dev/ferry/internal/schema"
)

// Chunk is a batch of rows for one table in columnar form: one Vector per
// column of Table, all of length Len. Values of type Text, Decimal and JSON
// alias the response bodies they came from or the chunk's own arena, so a
// chunk keeps those alive until it is written and dropped.
type Chunk struct {
	// Table is the exact layout the rows were built for.
	Table *schema.Table
	// Len is the number of rows.
	Len int
	// Cols holds one vector per column of Table, in the same order.
	Cols []Vector
	// Ops holds one operation per row.
	Ops []Op
	// Raw holds each row's source record (JSON), for rejections by the
	// database. It aliases the response bodies.
	Raw [][]byte
	// Rejects are records that could not become rows, to be stored in the
	// rejected-records table in the same transaction as the rows.
	Rejects []Reject
	// Checkpoints become durable with the rows of this chunk. They are in
	// order; for the same partition, the last one wins.
	Checkpoints []Checkpoint
	// Children holds rows for child tables (unnested arrays), linked to the
	// rows of this chunk by key.
	Children []*Chunk
	// Source describes where the rows came from, for messages.
	Source string
	// Flush asks the engine to commit right after writing the chunk
	// (Page.Flush). Destinations ignore it.
	Flush bool
	// Acks are the acknowledgements of the pages the rows came from
	// (Page.Ack): the engine calls them after the commit that covers the
	// chunk. Destinations ignore them.
	Acks []func(error)

	arena Arena
}

// Reject is a record that did not become a row, and why.
type Reject struct {
	Stream    string
	Partition string
	Reason    string
	// Record is the record's raw JSON (the whole record, even when only one
	// value was rejected).
	Record []byte
	// Column names the offending column when one value was at fault.
	Column string
}

// Vector holds the values of one column. Which slice is used depends on the
// column's type: Ints for Bool (0 or 1), Int and Timestamp (microseconds
// since the epoch, UTC); Floats for Float; Bytes for Decimal (the exact
// number as text), Text and JSON. Nulls[i] is true when row i is NULL; the
// typed slice then holds a zero value at i.
//
// Int, Float and Timestamp vectors built by the normalizer also keep each
// value's source text in Bytes, so that a column widened to Decimal or Text
// in the middle of a chunk holds exactly what the source sent. Writers
// ignore Bytes for those types.
type Vector struct {
	Nulls  []bool
	Ints   []int64
	Floats []float64
	Bytes  [][]byte
}

// NewChunk returns an empty chunk for table with room for capacity rows.
func NewChunk(table *schema.Table, capacity int) *Chunk {
	c := &Chunk{Table: table, Cols: make([]Vector, len(table.Columns)), Ops: make([]Op, 0, capacity)}
	for i, col := range table.Columns {
		c.Cols[i].reserve(col.Type, capacity)
	}
	return c
}

func (v *Vector) reserve(t schema.Type, n int) {
	v.Nulls = make([]bool, 0, n)
	switch Storage(t) {
	case StoreInt:
		v.Ints = make([]int64, 0, n)
	case StoreFloat:
		v.Floats = make([]float64, 0, n)
	}
	if t != schema.Unknown {
		v.Bytes = make([][]byte, 0, n)
	}
}

// StorageKind says which slice of a Vector holds a type's values.
type StorageKind uint8

// Storage kinds.
const (
	StoreNone StorageKind = iota
	StoreInt
	StoreFloat
	StoreBytes
)

// Storage returns where values of type t are kept in a Vector.
func Storage(t schema.Type) StorageKind {
	switch t {
	case schema.Bool, schema.Int, schema.Timestamp:
		return StoreInt
	case schema.Float:
		return StoreFloat
	case schema.Decimal, schema.Text, schema.JSON:
		return StoreBytes
	}
	return StoreNone
}

// AppendNull appends a NULL to a vector of type t.
func (v *Vector) AppendNull(t schema.Type) {
	v.Nulls = append(v.Nulls, true)
	switch Storage(t) {
	case StoreInt:
		v.Ints = append(v.Ints, 0)
		v.Bytes = append(v.Bytes, nil)
	case StoreFloat:
		v.Floats = append(v.Floats, 0)
		v.Bytes = append(v.Bytes, nil)
	case StoreBytes:
		v.Bytes = append(v.Bytes, nil)
	}
}

// AppendInt appends to a Bool, Int or Timestamp vector; text is the value's
// source text (may be nil).
func (v *Vector) AppendInt(x int64, text []byte) {
	v.Nulls = append(v.Nulls, false)
	v.Ints = append(v.Ints, x)
	v.Bytes = append(v.Bytes, text)
}

// AppendFloat appends to a Float vector; text is the value's source text
// (may be nil).
func (v *Vector) AppendFloat(x float64, text []byte) {
	v.Nulls = append(v.Nulls, false)
	v.Floats = append(v.Floats, x)
	v.Bytes = append(v.Bytes, text)
}

// AppendBytes appends to a Decimal, Text or JSON vector. b must stay
// unchanged while the chunk lives.
func (v *Vector) AppendBytes(b []byte) {
	v.Nulls = append(v.Nulls, false)
	v.Bytes = append(v.Bytes, b)
}

// Truncate drops rows from n on, to undo a partly appended row.
func (v *Vector) Truncate(n int) {
	if len(v.Nulls) > n {
		v.Nulls = v.Nulls[:n]
	}
	if len(v.Ints) > n {
		v.Ints = v.Ints[:n]
	}
	if len(v.Floats) > n {
		v.Floats = v.Floats[:n]
	}
	if len(v.Bytes) > n {
		v.Bytes = v.Bytes[:n]
	}
}

// Arena returns the chunk's arena for bytes that do not alias an input.
func (c *Chunk) Arena() *Arena { return &c.arena }

// Value returns the value at row i of column j as a Go value for database
// drivers: nil, bool, int64, float64, string (Decimal, Text, JSON) or
// time.Time (Timestamp, UTC). It allocates; bulk paths read the vectors
// directly.
func (c *Chunk) Value(i, j int) any {
	v := &c.Cols[j]
	if v.Nulls[i] {
		return nil
	}
	switch c.Table.Columns[j].Type {
	case schema.Bool:
		return v.Ints[i] != 0
	case schema.Int:
		return v.Ints[i]
	case schema.Timestamp:
		return time.UnixMicro(v.Ints[i]).UTC()
	case schema.Float:
		return v.Floats[i]
	case schema.Decimal, schema.Text, schema.JSON:
		return string(v.Bytes[i])
	}
	return nil
}

// AppendText appends the value at row i of column j rendered as text (the
// form a Text column would hold) and reports whether it was non-NULL.
func (c *Chunk) AppendText(dst []byte, i, j int) ([]byte, bool) {
	v := &c.Cols[j]
	if v.Nulls[i] {
		return dst, false
	}
	switch c.Table.Columns[j].Type {
	case schema.Bool:
		return strconv.AppendBool(dst, v.Ints[i] != 0), true
	case schema.Int:
		return strconv.AppendInt(dst, v.Ints[i], 10), true
	case schema.Timestamp:
		return schema.FormatTimestamp(dst, v.Ints[i]), true
	case schema.Float:
		return strconv.AppendFloat(dst, v.Floats[i], 'g', -1, 64), true
	case schema.Decimal, schema.Text, schema.JSON:
		return append(dst, v.Bytes[i]...), true
	}
	return dst, false
}

// Arena hands out byte slices from large blocks so that many small values
// cost few allocations. Slices it returns stay valid for the arena's life:
// blocks are never reallocated.
type Arena struct {
	block []byte
}

const arenaBlock = 64 << 10

// Alloc returns a zero-length slice with capacity for n bytes.
func (a *Arena) Alloc(n int) []byte {
	if n > arenaBlock/4 {
		return make([]byte, 0, n)
	}
	if cap(a.block)-len(a.block) < n {
		a.block = make([]byte, 0, arenaBlock)
	}
	start := len(a.block)
	a.block = a.block[:start+n]
	return a.block[start : start : start+n]
}

// Copy returns a copy of b held by the arena.
func (a *Arena) Copy(b []byte) []byte {
	return append(a.Alloc(len(b)), b...)
}

// AppendJSON appends row i as a JSON object of the chunk's columns, NULL
// as null, timestamps as RFC 3339 strings, decimals as numbers.
func (c *Chunk) AppendJSON(dst []byte, i int) []byte {
	dst = append(dst, '{')
	for j, col := range c.Table.Columns {
		if j > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, col.Name)
		dst = append(dst, ':')
		v := &c.Cols[j]
		if v.Nulls[i] {
			dst = append(dst, "null"...)
			continue
		}
		switch col.Type {
		case schema.Bool:
			dst = strconv.AppendBool(dst, v.Ints[i] != 0)
		case schema.Int:
			dst = strconv.AppendInt(dst, v.Ints[i], 10)
		case schema.Float:
			dst = strconv.AppendFloat(dst, v.Floats[i], 'g', -1, 64)
		case schema.Decimal, schema.JSON:
			dst = append(dst, v.Bytes[i]...)
		case schema.Timestamp:
			dst = append(dst, '"')
			dst = schema.FormatTimestamp(dst, v.Ints[i])
			dst = append(dst, '"')
		default:
			dst = appendJSONString(dst, string(v.Bytes[i]))
		}
	}
	return append(dst, '}')
}

// RowJSON returns the source record of row i: Raw[i] when the chunk has
// it, the row rendered as JSON otherwise.
func (c *Chunk) RowJSON(i int) []byte {
	if i < len(c.Raw) && c.Raw[i] != nil {
		return c.Raw[i]
	}
	return c.AppendJSON(nil, i)
}

func appendJSONString(dst []byte, s string) []byte {
	b, _ := json.Marshal(s) // a string always encodes
	return append(dst, b...)
}
