package normalize

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/ferry-dev/ferry/internal/cursor"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/schema"
)

// Typed converts rows a source already has typed (a database's) to a
// table's layout, without a JSON round trip: it names and adds columns,
// widens types, applies the schema policy and fills Ferry's metadata
// columns, exactly as the JSON path does, through the same Normalizer.
// It is not safe for concurrent use.
type Typed struct {
	n *Normalizer
}

// NewTyped returns a converter of typed pages into n's table.
func NewTyped(n *Normalizer) *Typed { return &Typed{n: n} }

// Convert turns a page's Chunk (named by the source's columns) into a
// chunk of the table; f, when not nil, keeps or drops each row as for
// JSON records.
func (t *Typed) Convert(p *record.Page, f *cursor.Filter) (*record.Chunk, Result, error) {
	n := t.n
	src := p.Chunk
	var res Result
	n.changes = n.changes[:0]
	// Columns: each source column is a data column of the table.
	idx := make([]int, len(src.Table.Columns))
	for j, col := range src.Table.Columns {
		i, known := n.byKey[col.Name]
		typ := col.Type
		if h, ok := n.hints[col.Name]; ok {
			typ = h
		}
		switch {
		case !known && n.restricted:
			switch n.opts.Policy {
			case schema.Freeze:
				return nil, res, &SchemaError{Table: n.table.Name, Changes: []schema.Change{{Kind: schema.Added, Column: schema.Normalize(col.Name), To: typ}}, Key: col.Name, Value: "(typed rows)"}
			default: // discard_row and discard_value: the column's values are dropped
				idx[j] = -1
				continue
			}
		case !known:
			i = n.addColumn(col.Name, []string{col.Name}, typ, false)
		default:
			if ct := n.table.Columns[i].Type; !ct.Contains(typ) {
				nt := schema.Widen(ct, typ)
				if n.restricted {
					if n.opts.Policy == schema.Freeze {
						return nil, res, &SchemaError{Table: n.table.Name, Changes: []schema.Change{{Kind: schema.Widened, Column: n.table.Columns[i].Name, From: ct, To: nt}}, Key: col.Name, Value: "(typed rows)"}
					}
					idx[j] = -1
					continue
				}
				n.widen(i, nt)
			}
		}
		idx[j] = i
	}
	c := record.NewChunk(n.handOut(), src.Len)
	c.Source = p.Request
	if n.cursorIdx < 0 && n.opts.Cursor != "" {
		if i, ok := n.byKey[n.opts.Cursor]; ok {
			n.cursorIdx = i
		}
	}
	srcCol := make([]int, len(n.table.Columns)) // table column → source column, -1 for none
	for i := range srcCol {
		srcCol[i] = -1
	}
	for j, i := range idx {
		if i >= 0 {
			srcCol[i] = j
		}
	}
	var buf []byte
	for r := 0; r < src.Len; r++ {
		if f != nil {
			cur, hasCur := t.cursor(src, srcCol, r)
			if n.opts.Cursor != "" && !hasCur {
				res.NoCursor++
			}
			key, hasKey := t.key(src, srcCol, r)
			var raw []byte
			if !hasKey {
				buf = src.AppendJSON(buf[:0], r)
				raw = buf
			}
			if !f.Keep(cur, hasCur, key, hasKey, raw) {
				res.Filtered++
				continue
			}
		}
		for i, col := range n.table.Columns {
			v := &c.Cols[i]
			switch {
			case i == n.metaAt:
				v.AppendInt(p.FetchedAt, nil)
			case i == n.metaRun:
				v.AppendBytes(n.runID)
			case srcCol[i] < 0:
				v.AppendNull(col.Type)
			default:
				if err := appendTyped(c, v, col.Type, src, srcCol[i], r); err != nil {
					return nil, res, fmt.Errorf("column %s: %w", col.Name, err)
				}
			}
		}
		op := record.Upsert
		if r < len(src.Ops) {
			op = src.Ops[r]
		}
		c.Ops = append(c.Ops, op)
		c.Raw = append(c.Raw, nil)
		c.Len++
	}
	res.Rows = c.Len
	res.Changes = append(res.Changes, n.changes...)
	n.changes = n.changes[:0]
	return c, res, nil
}

// cursor returns row r's cursor value.
func (t *Typed) cursor(src *record.Chunk, srcCol []int, r int) (cursor.Value, bool) {
	n := t.n
	if n.cursorIdx < 0 || srcCol[n.cursorIdx] < 0 {
		return cursor.Value{}, false
	}
	j := srcCol[n.cursorIdx]
	v := &src.Cols[j]
	if v.Nulls[r] {
		return cursor.Value{}, false
	}
	switch typ := src.Table.Columns[j].Type; record.Storage(typ) {
	case record.StoreInt:
		out := cursor.Value{Type: typ, Int: v.Ints[r]}
		if typ == schema.Timestamp {
			out.Raw = schema.FormatTimestamp(nil, v.Ints[r])
		} else {
			out.Raw = strconv.AppendInt(nil, v.Ints[r], 10)
		}
		if typ == schema.Bool {
			out.Type = schema.Text
		}
		return out, true
	case record.StoreFloat:
		return cursor.Value{Type: schema.Float, Float: v.Floats[r], Raw: strconv.AppendFloat(nil, v.Floats[r], 'g', -1, 64)}, true
	default:
		return cursor.Parse(string(v.Bytes[r])), true
	}
}

// key returns the hash of row r's primary key, as the JSON path computes
// it for the same values.
func (t *Typed) key(src *record.Chunk, srcCol []int, r int) (uint64, bool) {
	n := t.n
	if len(n.pk) == 0 {
		return 0, false
	}
	h := uint64(14695981039346656037)
	mix := func(b byte) {
		h ^= uint64(b)
		h *= 1099511628211
	}
	for _, i := range n.pk {
		if i < 0 || srcCol[i] < 0 {
			return 0, false
		}
		j := srcCol[i]
		v := &src.Cols[j]
		if v.Nulls[r] {
			return 0, false
		}
		typ := src.Table.Columns[j].Type
		mix(byte(typ))
		switch record.Storage(typ) {
		case record.StoreInt:
			for k := 0; k < 8; k++ {
				mix(byte(v.Ints[r] >> (8 * k)))
			}
		case record.StoreFloat:
			for _, b := range strconv.AppendFloat(nil, v.Floats[r], 'g', -1, 64) {
				mix(b)
			}
		default:
			for _, b := range v.Bytes[r] {
				mix(b)
			}
		}
		mix(0xff)
	}
	return h, true
}

// appendTyped appends value r of source column j to v, of type to.
func appendTyped(c *record.Chunk, v *record.Vector, to schema.Type, src *record.Chunk, j, r int) error {
	sv := &src.Cols[j]
	if sv.Nulls[r] {
		v.AppendNull(to)
		return nil
	}
	from := src.Table.Columns[j].Type
	switch {
	case from == to:
		switch record.Storage(to) {
		case record.StoreInt:
			v.AppendInt(sv.Ints[r], nil)
		case record.StoreFloat:
			v.AppendFloat(sv.Floats[r], nil)
		default:
			v.AppendBytes(sv.Bytes[r])
		}
	case to == schema.Float && from == schema.Int:
		v.AppendFloat(float64(sv.Ints[r]), nil)
	case record.Storage(to) == record.StoreBytes:
		text, _ := src.AppendText(c.Arena().Alloc(32)[:0], r, j)
		if to == schema.JSON && from == schema.Text {
			q, err := jsontext.AppendQuote(c.Arena().Alloc(len(text) + 2)[:0], text)
			if err != nil {
				return err
			}
			text = q
		}
		v.AppendBytes(text)
	default:
		return errors.New("cannot convert " + from.String() + " to " + to.String())
	}
	return nil
}

// Keys returns the top-level keys of a JSON object record, in order (nil
// when it is not an object), for messages.
func Keys(rec []byte) []string {
	d := jsontext.NewDecoder(bytes.NewReader(rec))
	if tok, err := d.ReadToken(); err != nil || tok.Kind() != '{' {
		return nil
	}
	var out []string
	for d.PeekKind() != '}' {
		tok, err := d.ReadToken()
		if err != nil {
			return out
		}
		out = append(out, tok.String())
		if err := d.SkipValue(); err != nil {
			return out
		}
	}
	return out
}
