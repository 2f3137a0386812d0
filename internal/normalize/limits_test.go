package normalize

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/internal/jsonscan"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/schema"
)

// records builds a page of the given records, as they are.
func records(recs ...string) *record.Page {
	p := &record.Page{Stream: "s", Request: "GET /x", FetchedAt: 1700000000000000}
	for _, r := range recs {
		p.Records = append(p.Records, []byte(r))
	}
	return p
}

// reasons returns the chunk's rejects as record → reason.
func reasons(c *record.Chunk) map[string]string {
	out := map[string]string{}
	for _, r := range c.Rejects {
		out[string(r.Record)] = r.Reason
	}
	return out
}

// TestDuplicateKeys: a record repeating a key, at any level and however
// the key is escaped, is rejected with the key; the primary key cannot be
// overwritten by a second "id".
func TestDuplicateKeys(t *testing.T) {
	wide := `{"id":9`
	for i := 0; i < 200; i++ {
		wide += fmt.Sprintf(`,"k%d":%d`, i, i)
	}
	for _, nested := range []schema.Nesting{schema.NestJSON, schema.Flatten, schema.Unnest} {
		t.Run(string(nested), func(t *testing.T) {
			n := mustNew(t, Options{PrimaryKey: []string{"id"}, Nested: nested})
			want := map[string]string{
				`{"id":2,"id":3}`:                        `duplicate key "id"`,
				`{"id":1,"\u0069d":2}`:                   `duplicate key "id"`,
				`{"id":4,"x":null,"x":5}`:                `duplicate key "x"`,
				`{"id":5,"x":6,"x":null}`:                `duplicate key "x"`,
				`{"id":6,"gone":null,"gone":null}`:       `duplicate key "gone"`,
				`{"id":7,"m":{"a":1},"m":{"b":2}}`:       `duplicate key "m"`,
				`{"id":8,"m":{"a":1,"b":{"c":1,"c":2}}}`: `duplicate key "c" at byte 30`,
				wide + `,"k7":0}`:                        `duplicate key "k7"`,
				`{"id":10,"l":[{"a":1,"a":2}]}`:          `duplicate key "a" at byte 21`,
			}
			p := records(`{"id":1,"x":1,"m":{"a":1,"b":{"c":1}}}`)
			for rec := range want {
				p.Records = append(p.Records, []byte(rec))
			}
			p.Records = append(p.Records, []byte(`{"id":11,"\u0078":2,"y":{"a":1,"\u0062":2},"gone":null}`), []byte(wide+"}"))
			c, res, err := n.Page(p, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := reasons(c); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("rejects:\n got %v\nwant %v", got, want)
			}
			if res.Rows != 3 || c.Len != 3 {
				t.Errorf("rows = %d, want 3", res.Rows)
			}
		})
	}
}

// TestDeepRecord: a record nested deeper than jsonscan.MaxDepth is
// rejected with the offset, however nested fields are stored, and the
// records around it are kept.
func TestDeepRecord(t *testing.T) {
	chain := strings.Repeat(`{"a":`, 40000) // 200 KB
	list := strings.Repeat(`[{"a":`, 30000)
	brackets := strings.Repeat("[", 200<<10)
	for _, nested := range []schema.Nesting{schema.NestJSON, schema.Flatten, schema.Unnest} {
		n := mustNew(t, Options{PrimaryKey: []string{"id"}, Nested: nested, MaxDepth: 1 << 20})
		deep := map[string]string{
			`{"id":2,"x":` + chain:    `record is not valid JSON: JSON nested deeper than 1000 levels at byte 5007`,
			`{"id":3,"x":` + list:     `record is not valid JSON: JSON nested deeper than 1000 levels at byte 3007`,
			`{"id":4,"x":` + brackets: `record is not valid JSON: JSON nested deeper than 1000 levels at byte 1011`,
			chain:                     `record is not valid JSON: JSON nested deeper than 1000 levels at byte 5000`,
		}
		p := records(`{"id":1,"x":{"a":{"a":1}}}`)
		for rec := range deep {
			p.Records = append(p.Records, []byte(rec))
		}
		p.Records = append(p.Records, []byte(`{"id":5,"x":`+strings.Repeat(`{"a":`, 998)+"1"+strings.Repeat("}", 998)+"}"))
		c, res, err := n.Page(p, nil)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for rec, why := range reasons(c) {
			got[rec[:min(len(rec), 40<<10)]] = why
		}
		for rec, why := range deep {
			if got[rec[:min(len(rec), 40<<10)]] != why {
				t.Errorf("%s: %.20s…: reason %q, want %q", nested, rec, got[rec[:min(len(rec), 40<<10)]], why)
			}
		}
		if res.Rows != 2 || res.Rejected != len(deep) {
			t.Errorf("%s: %d rows, %d rejected", nested, res.Rows, res.Rejected)
		}
		// Flattening and unnesting stop at the limit too.
		if len(n.Table().Columns) > jsonscan.MaxDepth+10 || len(n.Children()) > jsonscan.MaxDepth {
			t.Errorf("%s: %d columns, %d child tables", nested, len(n.Table().Columns), len(n.Children()))
		}
	}
}

// wideRecord returns a record with an id and keys fields more.
func wideRecord(id, keys int, prefix string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `{"id":%d`, id)
	for i := 0; i < keys; i++ {
		fmt.Fprintf(&b, `,"%s%d":%d`, prefix, i, i)
	}
	b.WriteString("}")
	return b.String()
}

// TestWideRecord: a record with more fields than the table can take
// columns is rejected with a short reason, adding no column; the records
// around it become rows, and columns earlier records added stay.
func TestWideRecord(t *testing.T) {
	for _, max := range []int{1600, 0} {
		n := mustNew(t, Options{Table: "orders", PrimaryKey: []string{"id"}, MaxColumns: max})
		if _, _, err := n.Page(records(`{"id":1,"a":1,"b":"x"}`, wideRecord(2, 7, "c")), nil); err != nil {
			t.Fatal(err)
		}
		has := len(n.Table().Columns) // id a b c0…c6 and two of Ferry's
		wide := wideRecord(3, 9999, "k")
		c, res, err := n.Page(records(`{"id":4,"a":2,"new":true}`, wide, `{"id":5,"b":"y","c3":3,"newer":1.5}`), nil)
		if err != nil {
			t.Fatal(err)
		}
		limit := max
		if limit == 0 {
			limit = DefaultMaxColumns
		}
		want := fmt.Sprintf("record has 10000 fields; table orders can hold at most %d columns (has %d): the record would add 9999", limit, has+1)
		if res.Rows != 2 || res.Rejected != 1 || c.Rejects[0].Reason != want || string(c.Rejects[0].Record) != wide {
			t.Fatalf("rows %d, rejects %d: %q\nwant %q", res.Rows, res.Rejected, c.Rejects[0].Reason, want)
		}
		if got := len(n.Table().Columns); got != has+2 || n.Table().Index("newer") < 0 || n.Table().Index("k0") >= 0 {
			t.Fatalf("columns: %d (want %d)", got, has+2)
		}
		if got := rows(c); len(got) != 2 || got[1] != "id:int=5 b:text=y c3:int=3 newer:float=1.5" {
			t.Fatalf("rows = %q", got)
		}
	}
	// Without a budget, the wide record is taken (and fast: the columns
	// are added in place).
	n := mustNew(t, Options{Table: "orders", PrimaryKey: []string{"id"}, MaxColumns: -1})
	_, res, err := n.Page(records(wideRecord(3, 9999, "k")), nil)
	if err != nil || res.Rows != 1 || len(n.Table().Columns) != 2+10000 {
		t.Fatalf("no budget: %d rows, %v, %d columns", res.Rows, err, len(n.Table().Columns))
	}
	// A record that fits exactly is taken; one more column is too many.
	n = mustNew(t, Options{PrimaryKey: []string{"id"}, MaxColumns: 10})
	_, res, _ = n.Page(records(wideRecord(1, 7, "k"), wideRecord(2, 8, "k")), nil)
	if res.Rows != 1 || res.Rejected != 1 || len(n.Table().Columns) != 10 {
		t.Fatalf("at the limit: %+v, %d columns", res, len(n.Table().Columns))
	}
	// The child tables of unnested arrays have the same budget.
	n = mustNew(t, Options{PrimaryKey: []string{"id"}, Nested: schema.Unnest, MaxColumns: 11})
	c, res, err := n.Page(records(`{"id":1,"l":[`+wideRecord(1, 3, "k")+`,`+wideRecord(2, 20, "k")+`,5]}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows != 1 || res.Rejected != 1 || len(c.Children) != 1 || c.Children[0].Len != 2 ||
		c.Children[0].Rejects[0].Reason != "t__l element 1: record has 21 fields; table t__l can hold at most 11 columns (has 10): the record would add 17" {
		t.Fatalf("child budget: %+v %+v", res, c.Children)
	}
}

// TestManyColumnsLinear: adding columns within one page costs the same
// per column however many there are (the table is not copied for each).
func TestManyColumnsLinear(t *testing.T) {
	allocs := func(keys int) float64 {
		p := records(wideRecord(1, keys, "k"))
		return testing.AllocsPerRun(3, func() {
			n := mustNew(t, Options{PrimaryKey: []string{"id"}, MaxColumns: 10000})
			if _, res, err := n.Page(p, nil); err != nil || res.Rows != 1 {
				t.Fatal(res, err)
			}
		})
	}
	small, large := allocs(1000), allocs(4000)
	if large > 5*small {
		t.Fatalf("%.0f allocations for 1000 new columns, %.0f for 4000", small, large)
	}
	// Chunks handed out keep the layout they were built with.
	n := mustNew(t, Options{})
	c1, _, _ := n.Page(records(`{"a":1}`), nil)
	v1 := c1.Table.Version
	c2, _, _ := n.Page(records(`{"a":1.5,"b":2}`, `{"c":3}`), nil)
	if len(c1.Table.Columns) != 3 || c1.Table.Version != v1 || c1.Table.Column("a").Type != schema.Int {
		t.Fatalf("the first chunk's table changed: %+v", c1.Table)
	}
	if c2.Table != n.Table() || len(c2.Table.Columns) != 5 || c2.Table.Column("a").Type != schema.Float {
		t.Fatalf("second chunk: %+v", c2.Table)
	}
	tbl := n.Table()
	n.Page(records(`{"d":1}`), nil)
	if len(tbl.Columns) != 5 {
		t.Fatalf("a table returned by Table changed")
	}
}

// TestTypedKeepsLayouts: chunks from typed pages keep their layout too,
// whatever the next page adds.
func TestTypedKeepsLayouts(t *testing.T) {
	n := mustNew(t, Options{})
	typed := func(col string) *record.Page {
		src := record.NewChunk(&schema.Table{Columns: []schema.Column{{Name: col, Type: schema.Int}}}, 1)
		src.Cols[0].AppendInt(1, nil)
		src.Ops = append(src.Ops, record.Upsert)
		src.Len = 1
		return &record.Page{Stream: "s", Chunk: src}
	}
	c1, _, err := NewTyped(n).Convert(typed("a"), nil)
	if err != nil {
		t.Fatal(err)
	}
	c2, _, err := n.Page(records(`{"a":1.5,"b":1}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	c3, _, err := NewTyped(n).Convert(typed("c"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(c1.Table.Columns) != 3 || c1.Table.Column("a").Type != schema.Int || len(c2.Table.Columns) != 4 || len(c3.Table.Columns) != 5 {
		t.Fatalf("layouts changed: %v / %v / %v", c1.Table.Columns, c2.Table.Columns, c3.Table.Columns)
	}
}

// TestReasonsBounded: every reason is short, whatever the record holds.
func TestReasonsBounded(t *testing.T) {
	long := strings.Repeat("k", 10000)
	val := `"` + strings.Repeat("v", 10000) + `"`
	for _, tc := range []struct {
		opts Options
		recs []string
	}{
		{Options{PrimaryKey: []string{"id"}}, []string{`{"` + long + `":1,"` + long + `":2,"id":1}`, `{"` + long + `":1}`}},
		{Options{PrimaryKey: []string{"id"}, Nested: schema.Flatten}, []string{`{"id":1,"` + long + `":{"` + long + `":1,"` + long + `":2}}`}},
		{Options{Hints: map[string]schema.Type{long: schema.Int}}, []string{`{"` + long + `":` + val + `}`}},
		{Options{Policy: schema.DiscardRow, Existing: &schema.Table{Name: "t"}}, []string{`{"` + long + `":` + val + `}`}},
		{Options{Policy: schema.DiscardValue, Existing: &schema.Table{Name: "t"}}, []string{`{"` + long + `":` + val + `}`}},
		{Options{Nested: schema.Unnest, Table: long}, []string{`{"l":[{"` + long + `":1,"` + long + `":2}]}`}},
		{Options{MaxColumns: 3, Table: long}, []string{`{"a":1,"b":2}`}},
		{Options{}, []string{`{"a":"\ud800` + strings.Repeat("x", 10000) + `"}`, `{"a":1,` + val + `}`, val}},
	} {
		n := mustNew(t, tc.opts)
		c, res, err := n.Page(records(tc.recs...), nil)
		if err != nil {
			t.Fatal(err)
		}
		all := append([]record.Reject(nil), c.Rejects...)
		for _, ch := range c.Children {
			all = append(all, ch.Rejects...)
		}
		if len(all) == 0 || res.Rejected != len(all) {
			t.Errorf("%+v: %d rejects", tc.opts.Policy, len(all))
		}
		for _, r := range all {
			if len(r.Reason) > maxReason || r.Reason == "" {
				t.Errorf("reason of %d bytes: %.120s…", len(r.Reason), r.Reason)
			}
		}
	}
	// A frozen table's error is short too.
	n := mustNew(t, Options{Policy: schema.Freeze, Existing: &schema.Table{Name: "t"}})
	_, _, err := n.Page(records(`{"`+long+`":`+val+`}`), nil)
	var se *SchemaError
	if !errors.As(err, &se) || len(err.Error()) > 600 {
		t.Errorf("freeze error of %d bytes: %.200v", len(fmt.Sprint(err)), err)
	}
}
