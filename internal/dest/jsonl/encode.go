package jsonl

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/schema"
)

// OpColumn is the key that marks a line holding a deleted row.
const OpColumn = schema.MetaPrefix + "op"

// noisy are the metadata columns metadata: false leaves out. The columns
// linking unnested rows to their parents stay: without them a child row
// belongs to nothing.
var noisy = map[string]bool{schema.ColExtractedAt: true, schema.ColRunID: true}

// encoder writes the rows of chunks of one layout as lines.
type encoder struct {
	layout *schema.Table
	cols   []int // the columns written on an upserted row's line
	del    []int // the columns written on a deleted row's line
}

func newEncoder(t *schema.Table, metadata bool) *encoder {
	e := &encoder{layout: t}
	var meta []int
	for j, c := range t.Columns {
		if !metadata && c.Origin == schema.FromMeta && noisy[c.Name] {
			continue
		}
		e.cols = append(e.cols, j)
		if c.Origin == schema.FromMeta && noisy[c.Name] {
			meta = append(meta, j)
		}
	}
	// A delete carries the row's key (all of it when the table has none)
	// and, with metadata, when and by which run it was seen.
	for _, k := range t.PrimaryKey {
		if j := t.Index(k); j >= 0 {
			e.del = append(e.del, j)
		}
	}
	if len(e.del) == 0 {
		e.del = e.cols
	} else {
		e.del = append(e.del, meta...)
	}
	return e
}

// appendLine appends row i of c as one line, newline included.
func (e *encoder) appendLine(dst []byte, c *record.Chunk, i int) []byte {
	cols := e.cols
	dst = append(dst, '{')
	if i < len(c.Ops) && c.Ops[i] == record.Delete {
		cols = e.del
		dst = append(dst, `"`+OpColumn+`":"delete"`...)
		if len(cols) > 0 {
			dst = append(dst, ',')
		}
	}
	for n, j := range cols {
		if n > 0 {
			dst = append(dst, ',')
		}
		col := &c.Table.Columns[j]
		dst = appendString(dst, col.Name)
		dst = append(dst, ':')
		dst = appendValue(dst, col.Type, &c.Cols[j], i)
	}
	return append(dst, '}', '\n')
}

// appendValue appends the JSON of row i of a vector of type t.
func appendValue(dst []byte, t schema.Type, v *record.Vector, i int) []byte {
	if v.Nulls[i] {
		return append(dst, "null"...)
	}
	switch t {
	case schema.Bool:
		return strconv.AppendBool(dst, v.Ints[i] != 0)
	case schema.Int:
		return strconv.AppendInt(dst, v.Ints[i], 10)
	case schema.Float:
		f := v.Floats[i]
		if math.IsNaN(f) || math.IsInf(f, 0) {
			// JSON has no such numbers: the text ParseFloat reads back.
			return appendString(dst, strconv.FormatFloat(f, 'g', -1, 64))
		}
		return strconv.AppendFloat(dst, f, 'g', -1, 64)
	case schema.Timestamp:
		dst = append(dst, '"')
		dst = schema.FormatTimestamp(dst, v.Ints[i])
		return append(dst, '"')
	case schema.Decimal:
		if schema.ClassifyNumber(v.Bytes[i]) != schema.Unknown {
			return append(dst, v.Bytes[i]...) // every digit, as the source sent it
		}
		return appendString(dst, string(v.Bytes[i]))
	case schema.JSON:
		return appendJSON(dst, v.Bytes[i])
	case schema.Text:
		return appendString(dst, string(v.Bytes[i]))
	}
	return append(dst, "null"...)
}

// appendJSON appends a JSON value inline, compacted so that it stays on
// one line; a value that is not valid JSON is written as a string.
func appendJSON(dst, raw []byte) []byte {
	b := bytes.NewBuffer(dst)
	if err := json.Compact(b, raw); err != nil {
		return appendString(dst, string(raw))
	}
	return b.Bytes()
}

const hex = "0123456789abcdef"

// appendString appends s as a JSON string: quotes, backslashes and
// control characters escaped, invalid UTF-8 replaced by U+FFFD, nothing
// else escaped (no HTML escaping: the lines are for people and tools).
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// rejectLine is a line of the rejected-records file, the columns of
// the SQL destinations' rejected table.
type rejectLine struct {
	RunID, Pipeline, Stream, Table, PartitionKey, Reason, Column, RejectedAt string
}

// rejectColumns are the keys of a rejected-records line, in order, with
// their types (for reading it back).
var rejectColumns = []schema.Column{
	{Name: "run_id", Type: schema.Text}, {Name: "pipeline", Type: schema.Text}, {Name: "stream", Type: schema.Text},
	{Name: "table_name", Type: schema.Text}, {Name: "partition_key", Type: schema.Text}, {Name: "reason", Type: schema.Text},
	{Name: "column_name", Type: schema.Text}, {Name: "record", Type: schema.JSON}, {Name: "rejected_at", Type: schema.Timestamp},
}

// appendReject appends a rejected record as one line: the record inline
// when it is JSON, as a string otherwise.
func appendReject(dst []byte, l rejectLine, rec []byte) []byte {
	dst = append(dst, '{')
	for i, v := range []string{l.RunID, l.Pipeline, l.Stream, l.Table, l.PartitionKey, l.Reason, l.Column} {
		dst = appendString(dst, rejectColumns[i].Name)
		dst = append(dst, ':')
		dst = appendString(dst, v)
		dst = append(dst, ',')
	}
	dst = append(dst, `"record":`...)
	if len(bytes.TrimSpace(rec)) == 0 {
		dst = append(dst, "null"...)
	} else {
		dst = appendJSON(dst, rec)
	}
	dst = append(dst, `,"rejected_at":`...)
	dst = appendString(dst, l.RejectedAt)
	return append(dst, '}', '\n')
}
