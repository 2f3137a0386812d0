package normalize

import (
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
