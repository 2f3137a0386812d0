package tableapi

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"math"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ferry-dev/ferry/internal/schema"
)

// format is a representation of rows.
type format struct {
	name        string
	contentType string
	newEncoder  func(b *bytes.Buffer, pl *plan) encoder
}

// encoder writes rows into a body.
type encoder interface {
	begin()
	row(row []any, pl *plan, kids []map[string][]map[string]any, i int)
	end()
	single(row []any, pl *plan, kids []map[string][]map[string]any)
}

var (
	formatJSON  = format{"json", "application/json", func(b *bytes.Buffer, _ *plan) encoder { return &jsonEncoder{b: b} }}
	formatJSONL = format{"jsonl", "application/jsonl", func(b *bytes.Buffer, _ *plan) encoder { return &jsonEncoder{b: b, lines: true} }}
	formatCSV   = format{"csv", "text/csv; charset=utf-8", newCSVEncoder}
)

// negotiate picks the format the Accept header prefers: JSON (the
// default, and for */*), JSON Lines (application/jsonl,
// application/x-ndjson) or CSV (text/csv).
func negotiate(r *http.Request) (format, error) {
	accept := r.Header.Get("Accept")
	if accept == "" {
		return formatJSON, nil
	}
	best, bestQ := format{}, -1.0
	for _, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		q := 1.0
		if s, ok := params["q"]; ok {
			if v, err := strconv.ParseFloat(s, 64); err == nil {
				q = v
			}
		}
		var f format
		switch mt {
		case "application/json", "*/*", "application/*":
			f = formatJSON
		case "application/jsonl", "application/x-ndjson", "application/x-jsonlines", "application/jsonlines":
			f = formatJSONL
		case "text/csv", "text/*":
			f = formatCSV
		default:
			continue
		}
		if q > bestQ && q > 0 {
			best, bestQ = f, q
		}
	}
	if bestQ < 0 {
		return format{}, &httpError{status: http.StatusNotAcceptable, message: "the table API answers application/json, application/jsonl (or application/x-ndjson) and text/csv"}
	}
	return best, nil
}

// jsonEncoder writes a JSON array of objects, or JSON Lines.
type jsonEncoder struct {
	b     *bytes.Buffer
	lines bool
	n     int
}

func (e *jsonEncoder) begin() {
	if !e.lines {
		e.b.WriteByte('[')
	}
}

func (e *jsonEncoder) row(row []any, pl *plan, kids []map[string][]map[string]any, i int) {
	if !e.lines && e.n > 0 {
		e.b.WriteByte(',')
	}
	e.n++
	e.object(row, pl, kids)
	if e.lines {
		e.b.WriteByte('\n')
	}
}

func (e *jsonEncoder) end() {
	if !e.lines {
		e.b.WriteString("]\n")
	}
}

func (e *jsonEncoder) single(row []any, pl *plan, kids []map[string][]map[string]any) {
	e.object(row, pl, kids)
	e.b.WriteByte('\n')
}

func (e *jsonEncoder) object(row []any, pl *plan, kids []map[string][]map[string]any) {
	b := e.b
	b.WriteByte('{')
	for j, c := range pl.out {
		if j > 0 {
			b.WriteByte(',')
		}
		b.WriteString(c.jsonKey())
		writeJSONValue(b, c.typ, row[j])
	}
	for k, c := range pl.expand {
		if len(pl.out) > 0 || k > 0 {
			b.WriteByte(',')
		}
		writeJSONString(b, c.expand)
		b.WriteByte(':')
		id, _ := row[pl.rowID].(string)
		writeChildren(b, c, kids[k][id])
	}
	b.WriteByte('}')
}

// writeChildren writes child rows as a JSON array of objects in the
// child table's column order.
func writeChildren(b *bytes.Buffer, c *childTable, rows []map[string]any) {
	b.WriteByte('[')
	for i, r := range rows {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('{')
		for j := range c.cols {
			if j > 0 {
				b.WriteByte(',')
			}
			writeJSONString(b, c.cols[j].name)
			b.WriteByte(':')
			writeJSONValue(b, c.cols[j].typ, r[c.cols[j].name])
		}
		b.WriteByte('}')
	}
	b.WriteByte(']')
}

// writeJSONString writes s as a JSON string: as it is when it needs no
// escaping (the common case), through encoding/json otherwise.
func writeJSONString(b *bytes.Buffer, s string) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 || c == '<' || c == '>' || c == '&' {
			enc, _ := json.Marshal(s)
			b.Write(enc)
			return
		}
	}
	b.WriteByte('"')
	b.WriteString(s)
	b.WriteByte('"')
}

// writeJSONValue writes a value as its type is shown: JSON columns as
// their JSON, decimals as strings (no digit lost), timestamps as RFC 3339.
func writeJSONValue(b *bytes.Buffer, t schema.Type, v any) {
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(x))
	case int64:
		var buf [24]byte
		b.Write(strconv.AppendInt(buf[:0], x, 10))
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			b.WriteString("null")
			return
		}
		var buf [32]byte
		b.Write(strconv.AppendFloat(buf[:0], x, 'g', -1, 64))
	case time.Time:
		b.WriteByte('"')
		var buf [40]byte
		b.Write(x.UTC().AppendFormat(buf[:0], time.RFC3339Nano))
		b.WriteByte('"')
	case string:
		if t == schema.JSON && json.Valid([]byte(x)) {
			b.WriteString(x)
			return
		}
		writeJSONString(b, x)
	default:
		enc, err := json.Marshal(x)
		if err != nil {
			b.WriteString("null")
			return
		}
		b.Write(enc)
	}
}

// csvEncoder writes a header line and one line per row; expanded child
// rows go in a column of their own as a JSON array.
type csvEncoder struct {
	w      *csv.Writer
	header []string
	rec    []string
}

func newCSVEncoder(b *bytes.Buffer, pl *plan) encoder {
	e := &csvEncoder{w: csv.NewWriter(b)}
	for _, c := range pl.out {
		e.header = append(e.header, c.name)
	}
	for _, c := range pl.expand {
		e.header = append(e.header, c.expand)
	}
	return e
}

func (e *csvEncoder) begin() { e.w.Write(e.header) }

func (e *csvEncoder) row(row []any, pl *plan, kids []map[string][]map[string]any, _ int) {
	e.rec = e.rec[:0]
	for j := range pl.out {
		e.rec = append(e.rec, csvText(row[j]))
	}
	for k, c := range pl.expand {
		var b bytes.Buffer
		id, _ := row[pl.rowID].(string)
		writeChildren(&b, c, kids[k][id])
		e.rec = append(e.rec, b.String())
	}
	e.w.Write(e.rec)
	e.w.Flush()
}

func (e *csvEncoder) end() { e.w.Flush() }

func (e *csvEncoder) single(row []any, pl *plan, kids []map[string][]map[string]any) {
	e.begin()
	e.row(row, pl, kids, 0)
}

// csvText renders a value in a CSV cell: null is empty.
func csvText(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case bool:
		return strconv.FormatBool(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case string:
		return x
	}
	b, _ := json.Marshal(v)
	return string(b)
}
