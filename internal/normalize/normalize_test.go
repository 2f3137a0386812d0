package normalize

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/ferry-dev/ferry/internal/cursor"
	"github.com/ferry-dev/ferry/internal/jsonpath"
	"github.com/ferry-dev/ferry/internal/jsonscan"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/schema"
)

// page builds a page from a JSON array of records, delimiting them as the
// REST source does.
func page(t testing.TB, body string) *record.Page {
	t.Helper()
	p := &record.Page{Stream: "s", Body: []byte(body), Request: "GET /x", FetchedAt: 1700000000000000}
	path := jsonpath.MustCompile("")
	path.Spread, path.Skim = true, true
	if err := jsonpath.Scan(p.Body, []*jsonpath.Path{path}, func(_ int, v []byte) error {
		p.Records = append(p.Records, v)
		return nil
	}); err != nil {
		t.Fatalf("page %q: %v", body, err)
	}
	return p
}

// rows renders a chunk as column=value lines per row, for comparisons.
func rows(c *record.Chunk) []string {
	var out []string
	for r := 0; r < c.Len; r++ {
		var parts []string
		for j, col := range c.Table.Columns {
			if col.Origin == schema.FromMeta || col.Name == schema.ColParentRowID {
				continue
			}
			b, ok := c.AppendText(nil, r, j)
			if !ok {
				continue
			}
			parts = append(parts, fmt.Sprintf("%s:%s=%s", col.Name, col.Type, b))
		}
		out = append(out, strings.Join(parts, " "))
	}
	return out
}

func mustNew(t testing.TB, o Options) *Normalizer {
	t.Helper()
	if o.Table == "" {
		o.Table = "t"
	}
	n, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestInferTypes(t *testing.T) {
	n := mustNew(t, Options{PrimaryKey: []string{"id"}, RunID: "run1"})
	c, res, err := n.Page(page(t, `[
		{"id": 1, "name": "Ann", "ok": true, "score": 1.5, "big": 123456789012345678901234567890,
		 "long": 0.1000000000000000055511151231257827, "at": "2024-05-01T12:30:00.123456+02:00",
		 "tags": ["a","b"], "addr": {"city": "Oslo"}, "nothing": null, "esc": "line\nbreak \u00e9",
		 "zip": "01234"}
	]`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows != 1 || res.Rejected != 0 {
		t.Fatalf("result = %+v, rejects %+v", res, c.Rejects)
	}
	want := `id:int=1 name:text=Ann ok:bool=true score:float=1.5 big:decimal=123456789012345678901234567890 ` +
		`long:decimal=0.1000000000000000055511151231257827 at:timestamp=2024-05-01T10:30:00.123456Z ` +
		`tags:json=["a","b"] addr:json={"city": "Oslo"} esc:text=line` + "\n" + `break é zip:text=01234`
	if got := rows(c); len(got) != 1 || got[0] != want {
		t.Fatalf("row:\n got %q\nwant %q", got, want)
	}
	if n.Table().Index("nothing") >= 0 {
		t.Fatalf("a null-only field became a column")
	}
	if got := n.Table().PrimaryKey; len(got) != 1 || got[0] != "id" {
		t.Fatalf("primary key = %v", got)
	}
	// Metadata columns are filled.
	at := c.Table.Index(schema.ColExtractedAt)
	run := c.Table.Index(schema.ColRunID)
	if c.Cols[at].Ints[0] != 1700000000000000 || string(c.Cols[run].Bytes[0]) != "run1" {
		t.Fatalf("metadata not filled")
	}
}

func TestWidening(t *testing.T) {
	tests := []struct {
		name   string
		values []string
		want   schema.Type
		texts  []string
	}{
		{"int to float", []string{"1", "2.5"}, schema.Float, []string{"1", "2.5"}},
		{"int to decimal", []string{"1", "99999999999999999999"}, schema.Decimal, []string{"1", "99999999999999999999"}},
		{"float to decimal keeps source text", []string{"1.25", "3.14159265358979323846"}, schema.Decimal, []string{"1.25", "3.14159265358979323846"}},
		{"float gets a huge int", []string{"1.5", "9007199254740993"}, schema.Decimal, []string{"1.5", "9007199254740993"}},
		{"int to text", []string{"7", `"seven"`}, schema.Text, []string{"7", "seven"}},
		{"bool to text", []string{"true", "3"}, schema.Text, []string{"true", "3"}},
		{"timestamp to text keeps source", []string{`"2024-01-01T10:00:00+02:00"`, `"soon"`}, schema.Text, []string{"2024-01-01T10:00:00+02:00", "soon"}},
		{"json to text", []string{`{"a":1}`, `"x"`}, schema.Text, []string{`{"a":1}`, "x"}},
		{"null first", []string{"null", "5"}, schema.Int, []string{"", "5"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Both in one page (widen inside a chunk) and across pages.
			for _, split := range []bool{false, true} {
				n := mustNew(t, Options{})
				var recs []string
				for i, v := range tt.values {
					recs = append(recs, fmt.Sprintf(`{"i":%d,"v":%s}`, i, v))
				}
				var chunks []*record.Chunk
				if split {
					for _, r := range recs {
						c, _, err := n.Page(page(t, "["+r+"]"), nil)
						if err != nil {
							t.Fatal(err)
						}
						chunks = append(chunks, c)
					}
				} else {
					c, _, err := n.Page(page(t, "["+strings.Join(recs, ",")+"]"), nil)
					if err != nil {
						t.Fatal(err)
					}
					chunks = append(chunks, c)
				}
				col := n.Table().Column("v")
				if col == nil || col.Type != tt.want {
					t.Fatalf("split=%v: column v = %+v, want type %s", split, col, tt.want)
				}
				if split {
					continue // earlier chunks keep their own layout
				}
				c := chunks[0]
				j := c.Table.Index("v")
				for r, want := range tt.texts {
					got, _ := c.AppendText(nil, r, j)
					if string(got) != want {
						t.Errorf("row %d = %q, want %q", r, got, want)
					}
				}
			}
		})
	}
}

func TestRejects(t *testing.T) {
	n := mustNew(t, Options{PrimaryKey: []string{"id"}, Hints: map[string]schema.Type{"amount": schema.Decimal}})
	c, res, err := n.Page(page(t, `[{"id":1,"amount":"12.50"},{"name":"no id"},[1,2],"str",{"id":2,"amount":"twelve"},{"id":3,"amount":7}]`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows != 2 || res.Rejected != 4 {
		t.Fatalf("rows %d rejected %d: %+v", res.Rows, res.Rejected, c.Rejects)
	}
	reasons := []string{}
	for _, r := range c.Rejects {
		reasons = append(reasons, r.Reason)
	}
	want := []string{
		`missing primary key field "id"`,
		"record is a JSON array, not an object",
		"record is a JSON string, not an object",
		`column amount: value "twelve": not a number`,
	}
	if strings.Join(reasons, "|") != strings.Join(want, "|") {
		t.Fatalf("reasons:\n got %q\nwant %q", reasons, want)
	}
	// The hinted column is created when its field first appears, after id.
	if got := rows(c); got[0] != "id:int=1 amount:decimal=12.50" || got[1] != "id:int=3 amount:decimal=7" {
		t.Fatalf("rows = %q", got)
	}
	if string(c.Rejects[0].Record) != `{"name":"no id"}` {
		t.Fatalf("raw payload not kept: %q", c.Rejects[0].Record)
	}
}

func TestHostileKeys(t *testing.T) {
	long := strings.Repeat("k", 200)
	n := mustNew(t, Options{MaxIdentLen: 63})
	_, _, err := n.Page(page(t, `[{"\"; DROP TABLE x;--": 1, "select": 2, "Name": "a", "name": "b", "NAME": "c",
		"日本語": 3, "`+long+`": 4, "`+long+`x": 5, "_ferry_run_id": "mine", "": 6, "a.b": 7}]`), nil)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, c := range n.Table().Columns {
		if seen[strings.ToLower(c.Name)] {
			t.Fatalf("duplicate column name %q", c.Name)
		}
		seen[strings.ToLower(c.Name)] = true
		if len(c.Name) > 63 {
			t.Fatalf("column %q longer than 63 bytes", c.Name)
		}
	}
	for _, want := range []string{"drop_table_x", "select", "name", "日本語", "__ferry_run_id", "a_b"} {
		if !seen[want] {
			t.Errorf("no column %q in %v", want, n.Table().Columns)
		}
	}
	// Names are deterministic: a fresh normalizer names them the same.
	n2 := mustNew(t, Options{MaxIdentLen: 63})
	n2.Page(page(t, `[{"NAME": "c", "name": "b", "Name": "a"}]`), nil)
	n3 := mustNew(t, Options{MaxIdentLen: 63, Existing: n2.Table()})
	n3.Page(page(t, `[{"Name": "a", "NAME": "c", "name": "b"}]`), nil)
	if fmt.Sprint(n2.Table().Columns) != fmt.Sprint(n3.Table().Columns) {
		t.Fatalf("names changed between runs:\n%v\n%v", n2.Table().Columns, n3.Table().Columns)
	}
}

func TestCursorFilter(t *testing.T) {
	n := mustNew(t, Options{Cursor: "updated_at"})
	min := cursor.Parse("2024-01-02T00:00:00Z")
	p := page(t, `[{"id":1,"updated_at":"2024-01-01T00:00:00Z"},{"id":2,"updated_at":"2024-01-02T00:00:00Z"},{"id":3,"updated_at":"2024-01-03T00:00:00+01:00"},{"id":4}]`)
	f := &cursor.Filter{Min: &min}
	_, res, err := n.Page(p, f)
	if err != nil {
		t.Fatal(err)
	}
	max := f.Max()
	if res.Rows != 3 || res.Filtered != 1 || max.Cursor != "2024-01-03T00:00:00+01:00" {
		t.Fatalf("inclusive: %+v %+v", res, max)
	}
	if len(max.Seen()) != 1 || !max.Seen()[cursor.Hash(p.Records[2])] {
		t.Fatalf("AtMax = %v", max.Seen())
	}
	if res.NoCursor != 1 {
		t.Fatalf("rows without a cursor = %d, want 1", res.NoCursor)
	}
	// Boundary: of the records at the saved cursor, drop those seen before
	// (without a primary key, a record is known by its content).
	seen := map[uint64]bool{cursor.Hash(p.Records[1]): true}
	_, res, _ = n.Page(p, &cursor.Filter{Min: &min, Boundary: &min, Seen: seen})
	if res.Rows != 2 || res.Filtered != 2 {
		t.Fatalf("boundary: %+v", res)
	}
	changed := page(t, `[{"id":2,"updated_at":"2024-01-02T00:00:00Z","v":"new"}]`)
	_, res, _ = n.Page(changed, &cursor.Filter{Min: &min, Boundary: &min, Seen: seen})
	if res.Rows != 1 {
		t.Fatalf("a changed record at the boundary was dropped: %+v", res)
	}
	// With a primary key, a record is known by its key: one that merely
	// gained a field is still the record the last sync stored.
	k := mustNew(t, Options{Cursor: "updated_at", PrimaryKey: []string{"id"}})
	first := &cursor.Filter{}
	if _, _, err := k.Page(page(t, `[{"id":2,"updated_at":"2024-01-02T00:00:00Z"}]`), first); err != nil {
		t.Fatal(err)
	}
	_, res, _ = k.Page(changed, &cursor.Filter{Min: &min, Boundary: &min, Seen: first.Max().Seen()})
	if res.Rows != 0 || res.Filtered != 1 {
		t.Fatalf("a record that gained a field at the boundary was taken again: %+v", res)
	}
	// Nested cursor.
	n = mustNew(t, Options{Cursor: "meta.seq"})
	f = &cursor.Filter{}
	_, _, _ = n.Page(page(t, `[{"meta":{"seq":9}},{"meta":{"seq":10}},{"meta":{"seq":2}}]`), f)
	if m := f.Max(); m.Cursor != "10" {
		t.Fatalf("nested max = %+v", m)
	}
}

func TestCursorCompare(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"2024-01-01T00:00:00Z", "2024-01-01T01:00:00+02:00", 1},
		{"9", "10", -1},
		{"1.5", "10", -1},
		{"100000000000000000000", "99999999999999999999", 1},
		{"abc", "abd", -1},
		{"5", "5", 0},
	}
	for _, tt := range tests {
		if got := cursor.Parse(tt.a).Compare(cursor.Parse(tt.b)); got != tt.want {
			t.Errorf("Compare(%s, %s) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestPolicies(t *testing.T) {
	base := mustNew(t, Options{PrimaryKey: []string{"id"}})
	if _, _, err := base.Page(page(t, `[{"id":1,"n":1}]`), nil); err != nil {
		t.Fatal(err)
	}
	existing := base.Table()
	input := `[{"id":2,"n":2,"extra":"x"},{"id":3,"n":"three"}]`

	n := mustNew(t, Options{PrimaryKey: []string{"id"}, Existing: existing, Policy: schema.Freeze})
	_, _, err := n.Page(page(t, input), nil)
	if err == nil || !strings.Contains(err.Error(), `+ extra text`) || !strings.Contains(err.Error(), "frozen") {
		t.Fatalf("freeze error = %v", err)
	}

	n = mustNew(t, Options{PrimaryKey: []string{"id"}, Existing: existing, Policy: schema.DiscardRow})
	c, res, err := n.Page(page(t, input), nil)
	if err != nil || res.Rows != 0 || res.Rejected != 2 {
		t.Fatalf("discard_row: %v %+v %+v", err, res, c.Rejects)
	}

	n = mustNew(t, Options{PrimaryKey: []string{"id"}, Existing: existing, Policy: schema.DiscardValue})
	c, res, err = n.Page(page(t, input), nil)
	if err != nil || res.Rows != 2 || res.Rejected != 2 {
		t.Fatalf("discard_value: %v %+v %+v", err, res, c.Rejects)
	}
	if got := rows(c); got[0] != "id:int=2 n:int=2" || got[1] != "id:int=3" {
		t.Fatalf("discard_value rows = %q", got)
	}
	if n.Table().Index("extra") >= 0 || n.Table().Column("n").Type != schema.Int {
		t.Fatalf("table changed under discard_value: %+v", n.Table().Columns)
	}
}

func TestFlatten(t *testing.T) {
	n := mustNew(t, Options{Nested: "flatten", MaxDepth: 2})
	c, _, err := n.Page(page(t, `[{"id":1,"a":{"b":{"c":{"d":1}},"e":2},"list":[1,2]}]`), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := `id:int=1 a__b__c:json={"d":1} a__e:int=2 list:json=[1,2]`
	if got := rows(c); got[0] != want {
		t.Fatalf("flattened row = %q, want %q", got[0], want)
	}
}

func TestParentFields(t *testing.T) {
	n := mustNew(t, Options{ParentFields: []string{"customers_id"}, PrimaryKey: []string{"customers_id", "id"}})
	p := page(t, `[{"id":"o1","customers_id":999},{"id":"o2"}]`)
	p.Partition = &record.Partition{Key: `{"id":7}`, Fields: []record.Field{{Name: "customers_id", Value: json.RawMessage("7")}}}
	c, res, err := n.Page(p, nil)
	if err != nil || res.Rows != 2 {
		t.Fatalf("%v %+v", err, res)
	}
	got := rows(c)
	if !strings.HasPrefix(got[0], "customers_id:int=7 id:text=o1") || !strings.HasPrefix(got[1], "customers_id:int=7 id:text=o2") {
		t.Fatalf("rows = %q", got)
	}
	if fmt.Sprint(n.Table().PrimaryKey) != "[customers_id id]" {
		t.Fatalf("pk = %v", n.Table().PrimaryKey)
	}
}

// reference decodes a record with encoding/json for the fuzzer.
func reference(rec []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(rec))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return nil, err
	}
	return m, nil
}

// checkValue compares a chunk value with the reference decoding.
func checkValue(t *testing.T, col schema.Column, c *record.Chunk, r, j int, ref any) {
	t.Helper()
	v := &c.Cols[j]
	if ref == nil {
		if !v.Nulls[r] {
			t.Fatalf("column %s row %d: want NULL", col.Name, r)
		}
		return
	}
	if v.Nulls[r] {
		t.Fatalf("column %s row %d: NULL, want %v", col.Name, r, ref)
	}
	text, _ := c.AppendText(nil, r, j)
	switch col.Type {
	case schema.Bool:
		if b, ok := ref.(bool); !ok || (v.Ints[r] != 0) != b {
			t.Fatalf("column %s: bool %v, want %v", col.Name, v.Ints[r], ref)
		}
	case schema.Int:
		want, ok := new(big.Rat).SetString(ref.(json.Number).String())
		if !ok || want.Cmp(new(big.Rat).SetInt64(v.Ints[r])) != 0 {
			t.Fatalf("column %s: int %d, want %v", col.Name, v.Ints[r], ref)
		}
	case schema.Float:
		want, _ := strconv.ParseFloat(ref.(json.Number).String(), 64)
		if v.Floats[r] != want && !(math.IsNaN(want) && math.IsNaN(v.Floats[r])) {
			t.Fatalf("column %s: float %v, want %v", col.Name, v.Floats[r], want)
		}
	case schema.Decimal:
		if string(text) == ref.(json.Number).String() {
			return
		}
		a, okA := new(big.Rat).SetString(string(text))
		b, okB := new(big.Rat).SetString(ref.(json.Number).String())
		if !okA || !okB || a.Cmp(b) != 0 {
			t.Fatalf("column %s: decimal %s, want %v", col.Name, text, ref)
		}
	case schema.Timestamp:
		want, err := time.Parse(time.RFC3339Nano, ref.(string))
		if err != nil || want.UnixMicro() != v.Ints[r] {
			t.Fatalf("column %s: timestamp %d, want %v (%v)", col.Name, v.Ints[r], ref, err)
		}
	case schema.Text:
		if s, ok := ref.(string); ok {
			if s != string(text) {
				t.Fatalf("column %s: text %q, want %q", col.Name, text, s)
			}
			return
		}
		fallthrough
	case schema.JSON:
		var got any
		d := json.NewDecoder(bytes.NewReader(text))
		d.UseNumber()
		if err := d.Decode(&got); err != nil {
			t.Fatalf("column %s: %q is not JSON: %v", col.Name, text, err)
		}
		if fmt.Sprint(got) != fmt.Sprint(ref) {
			t.Fatalf("column %s: json %v, want %v", col.Name, got, ref)
		}
	}
}

// FuzzNormalize checks that every record either becomes a row holding the
// values encoding/json reads, or is rejected with a short reason exactly
// when it must be (not a valid object by jsontext's rules, duplicate keys
// included; nested too deeply; no primary key; more columns than the
// budget, which some inputs make small), and that nothing panics.
func FuzzNormalize(f *testing.F) {
	f.Add(`{"id":1,"a":"x","b":1.5,"c":true,"d":null,"e":{"f":[1]}}`, `{"id":2,"a":7,"b":"2024-01-01T00:00:00Z"}`)
	f.Add(`{"id":1,"t":"2024-02-29T23:59:60Z"}`, `{"id":1,"t":"2024-02-29T10:00:00.1234567Z"}`)
	f.Add(`{"id":"\u0000\ud83d\ude00","n":-0}`, `{"id":1e400,"n":123456789012345678901234567890}`)
	f.Add(`{"id":1,"x":1}`, `{"id":2,"x":1.0000000000000002}`)
	f.Add(`{"id":1,"x":"a","x":2}`, `[]`)
	f.Add(`{"id":1,"\u0069d":2}`, `{"id":3,"m":{"a":1,"b":{"a":2},"a":3}}`)
	f.Add(`{"id":1,"x":null,"x":2}`, `{"id":2,"`+strings.Repeat("k", 300)+`":1,"`+strings.Repeat("k", 300)+`":2}`)
	f.Add(`{"id":1,"x":`+strings.Repeat("[", 1001)+strings.Repeat("]", 1001)+`}`, `{"id":2}`)
	f.Fuzz(func(t *testing.T, a, b string) {
		body := "[" + a + "," + b + "]"
		if !json.Valid([]byte(body)) || len(body) > 4096 {
			return
		}
		opts := Options{PrimaryKey: []string{"id"}}
		if len(a)%3 == 0 {
			opts.MaxColumns = 3 + len(b)%5 // Ferry's two columns, and a few
		}
		n := mustNew(t, opts)
		// The records as given: a page's own nesting would count in
		// jsonpath's depth limit.
		p := &record.Page{Stream: "s", Records: [][]byte{[]byte(a), []byte(b)}}
		c, res, err := n.Page(p, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Rows+res.Rejected != len(p.Records) {
			t.Fatalf("rows %d + rejected %d != records %d", res.Rows, res.Rejected, len(p.Records))
		}
		if c.Table.Version != n.Table().Version {
			t.Fatalf("chunk table version %d != %d", c.Table.Version, n.Table().Version)
		}
		if opts.MaxColumns > 0 && len(n.Table().Columns) > opts.MaxColumns {
			t.Fatalf("%d columns, budget %d", len(n.Table().Columns), opts.MaxColumns)
		}
		reasons := map[*byte]string{}
		for _, rj := range c.Rejects {
			if len(rj.Reason) > maxReason {
				t.Fatalf("reason of %d bytes: %.100s…", len(rj.Reason), rj.Reason)
			}
			reasons[unsafe.SliceData(rj.Record)] = rj.Reason
		}
		r := 0
		for _, rec := range p.Records {
			reason, rejected := reasons[unsafe.SliceData(rec)]
			ref, err := reference(rec)
			id, hasID := ref["id"]
			want := err == nil && jsontext.Value(rec).IsValid() && nestDepth(rec) <= jsonscan.MaxDepth && hasID && id != nil
			if rejected == want && !(want && opts.MaxColumns > 0 && strings.HasPrefix(reason, "record has ")) {
				t.Fatalf("record %s: rejected %v (%s), want %v", rec, rejected, reason, !want)
			}
			if rejected {
				continue
			}
			for j, col := range c.Table.Columns {
				if col.Origin != schema.FromData {
					continue
				}
				var want any
				if len(col.Path) == 1 {
					want = ref[col.Path[0]]
				}
				checkValue(t, col, c, r, j, want)
			}
			r++
		}
		if r != c.Len {
			t.Fatalf("checked %d rows, chunk has %d", r, c.Len)
		}
	})
}

// nestDepth returns how deeply rec nests, by its brackets outside strings.
func nestDepth(rec []byte) int {
	d, top, in := 0, 0, false
	for i := 0; i < len(rec); i++ {
		switch c := rec[i]; {
		case in && c == '\\':
			i++
		case c == '"':
			in = !in
		case in:
		case c == '{' || c == '[':
			d++
			top = max(top, d)
		case c == '}' || c == ']':
			d--
		}
	}
	return top
}

func TestUnnest(t *testing.T) {
	n := mustNew(t, Options{PrimaryKey: []string{"id"}, Nested: schema.Unnest, MaxDepth: 2})
	c, res, err := n.Page(page(t, `[
		{"id":1,"items":[{"sku":"a","qty":1,"opts":[{"k":"x"}]},{"sku":"b","qty":2}],"tags":["red","blue"],"meta":{"notes":[1]}},
		{"id":2,"items":[],"tags":null},
		{"name":"no id","items":[{"sku":"lost"}]}
	]`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows != 2 || res.Rejected != 1 {
		t.Fatalf("result %+v", res)
	}
	byTable := map[string]*record.Chunk{}
	for _, ch := range c.Children {
		byTable[ch.Table.Name] = ch
	}
	names := []string{}
	for _, tb := range n.Children() {
		names = append(names, tb.Name)
	}
	if strings.Join(names, " ") != "t__items t__items__opts t__tags t__meta__notes" {
		t.Fatalf("child tables = %v", names)
	}
	rowID := func(ch *record.Chunk, r int) string {
		return string(ch.Cols[ch.Table.Index(schema.ColRowID)].Bytes[r])
	}
	items := byTable["t__items"]
	if items == nil || items.Len != 2 {
		t.Fatalf("items chunk = %+v", items)
	}
	got := rows(items)
	if got[0] != "_ferry_root_id:int=1 sku:text=a qty:int=1" || got[1] != "_ferry_root_id:int=1 sku:text=b qty:int=2" {
		t.Fatalf("items rows = %q", got)
	}
	// Links: parent row id, list index, and row ids all distinct.
	pid := items.Table.Index(schema.ColParentRowID)
	if string(items.Cols[pid].Bytes[0]) != rowID(c, 0) || string(items.Cols[pid].Bytes[1]) != rowID(c, 0) {
		t.Fatalf("items do not point at their parent row")
	}
	if li := items.Table.Index(schema.ColListIndex); items.Cols[li].Ints[0] != 0 || items.Cols[li].Ints[1] != 1 {
		t.Fatalf("list index = %v", items.Cols[li].Ints)
	}
	opts := byTable["t__items__opts"]
	if opts == nil || opts.Len != 1 || string(opts.Cols[opts.Table.Index(schema.ColParentRowID)].Bytes[0]) != rowID(items, 0) {
		t.Fatalf("grandchild rows wrong: %+v", opts)
	}
	if rk := opts.Table.RootKey; len(rk) != 1 || rk[0] != "_ferry_root_id" || opts.Table.Parent != "t__items" {
		t.Fatalf("grandchild links: root %v parent %q", opts.Table.RootKey, opts.Table.Parent)
	}
	tags := byTable["t__tags"]
	if got := rows(tags); len(got) != 2 || got[0] != "_ferry_root_id:int=1 value:text=red" {
		t.Fatalf("tags = %q", got)
	}
	// The rejected record's array produced nothing.
	for _, ch := range c.Children {
		for r := 0; r < ch.Len; r++ {
			if strings.Contains(string(ch.Raw[r]), "lost") {
				t.Fatalf("a rejected record's elements were kept")
			}
		}
	}
	// MaxDepth bounds nesting: a third level stays JSON.
	n = mustNew(t, Options{PrimaryKey: []string{"id"}, Nested: schema.Unnest, MaxDepth: 1})
	c, _, _ = n.Page(page(t, `[{"id":1,"items":[{"opts":[{"k":"x"}]}]}]`), nil)
	if len(c.Children) != 1 || c.Children[0].Table.Column("opts") == nil || c.Children[0].Table.Column("opts").Type != schema.JSON {
		t.Fatalf("depth 1: %+v", c.Children)
	}
}

// TestOps: a page's operations reach the rows; a deleted record needs
// only its key, and its unnested arrays make no child rows.
func TestOps(t *testing.T) {
	n := mustNew(t, Options{PrimaryKey: []string{"id"}, Nested: schema.Unnest})
	p := page(t, `[{"id":1,"items":[{"sku":"a"}]},{"id":2},{"id":3,"items":[{"sku":"b"}]}]`)
	p.Ops = []record.Op{record.Upsert, record.Delete, record.Delete}
	c, res, err := n.Page(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows != 3 || c.Ops[0] != record.Upsert || c.Ops[1] != record.Delete || c.Ops[2] != record.Delete {
		t.Fatalf("ops = %v (%d rows)", c.Ops, res.Rows)
	}
	if len(c.Children) != 1 || c.Children[0].Len != 1 {
		t.Fatalf("child rows: %d tables", len(c.Children))
	}
}
