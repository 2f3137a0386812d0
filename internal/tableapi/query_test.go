package tableapi

import (
	"net/url"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ferry-dev/ferry/internal/dest/postgres"
	"github.com/ferry-dev/ferry/internal/dest/sqlite"
	"github.com/ferry-dev/ferry/internal/schema"
)

func TestParseFilter(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Filter
	}{
		{"eq.5", Filter{Column: "c", Op: OpEq, Values: []string{"5"}}},
		{"not.eq.a.b", Filter{Column: "c", Op: OpEq, Not: true, Values: []string{"a.b"}}},
		{`in.(a,"b,c","d\"e",)`, Filter{Column: "c", Op: OpIn, Values: []string{"a", "b,c", `d"e`, ""}}},
		{"in.()", Filter{Column: "c", Op: OpIn, Values: []string{}}},
		{"is.null", Filter{Column: "c", Op: OpIs, Values: []string{"null"}}},
		{`like.a*b_\*`, Filter{Column: "c", Op: OpLike, Values: []string{`a*b_\*`}, Pattern: []PatternPart{{Literal: "a"}, {Any: true}, {Literal: "b"}, {One: true}, {Literal: "*"}}}},
	} {
		got, err := ParseFilter("c", c.in)
		if err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		if got.Column != c.want.Column || got.Op != c.want.Op || got.Not != c.want.Not || !slices.Equal(got.Values, c.want.Values) || !slices.Equal(got.Pattern, c.want.Pattern) {
			t.Errorf("%s: got %+v, want %+v", c.in, got, c.want)
		}
	}
	for _, bad := range []string{"5", "approx.5", "in.a,b", `in.("a)`, `in.("a"b)`, "is.maybe", "not.5"} {
		if _, err := ParseFilter("c", bad); err == nil {
			t.Errorf("%s parses", bad)
		}
	}
}

func TestPatterns(t *testing.T) {
	p := ParsePattern(`100\%*a_[x]?`)
	if got := likePattern(p); got != `100\%%a_[x]?` {
		t.Errorf("like: %s", got)
	}
	if got := globPattern(p); got != `100%*a?[[]x][?]` {
		t.Errorf("glob: %s", got)
	}
}

func TestKeyset(t *testing.T) {
	id := &column{name: "id", typ: schema.Int, key: true}
	note := &column{name: "note", typ: schema.Text, nullable: true}
	for _, c := range []struct {
		d     flavor
		terms []keysetTerm
		want  string
		args  int
	}{
		{flavor{sqlite.Dialect{}, "sqlite"}, []keysetTerm{{c: id, value: int64(5)}}, `"id" > ?`, 1},
		{flavor{postgres.Dialect{Schema: "s"}, "postgres"}, []keysetTerm{{c: note, desc: true, value: "b"}, {c: id, value: int64(5)}}, `("note" < $1) OR ("note" = $2 AND "id" > $3)`, 3},
		{flavor{sqlite.Dialect{}, "sqlite"}, []keysetTerm{{c: note}, {c: id, value: int64(5)}}, `"note" IS NULL AND "id" > ?`, 1},
		{flavor{sqlite.Dialect{}, "sqlite"}, []keysetTerm{{c: note, desc: true}, {c: id, value: int64(5)}}, `("note" IS NOT NULL) OR ("note" IS NULL AND "id" > ?)`, 1},
		{flavor{sqlite.Dialect{}, "sqlite"}, []keysetTerm{{c: note, value: "b"}, {c: id, value: int64(5)}}, `(("note" > ? OR "note" IS NULL)) OR ("note" = ? AND "id" > ?)`, 3},
	} {
		b := &builder{f: c.d}
		if got := b.keyset(c.terms); got != c.want || len(b.args) != c.args {
			t.Errorf("keyset = %s (%d args), want %s (%d)", got, len(b.args), c.want, c.args)
		}
	}
}

func TestCursorRoundTrip(t *testing.T) {
	a, b := "x,\"y", "2"
	c := EncodeCursor("orders", "name,id", []*string{&a, nil, &b})
	got, err := DecodeCursor(c, "orders", "name,id", 3)
	if err != nil || *got[0] != a || got[1] != nil || *got[2] != b {
		t.Fatalf("round trip: %v %v", got, err)
	}
	for _, bad := range []struct{ table, order string }{{"other", "name,id"}, {"orders", "id"}} {
		if _, err := DecodeCursor(c, bad.table, bad.order, 3); err == nil {
			t.Errorf("a cursor of orders by name,id is accepted for %s by %s", bad.table, bad.order)
		}
	}
}

// FuzzParseRequest: no query string makes the parser panic, and what it
// accepts names only valid filters.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{"id=eq.5", "select=a,b&order=a.desc,b", "x=in.(a,\"b,c\")&limit=3", "name=like.*a_\\*", "cursor=abc&expand=items", "a=not.is.null", "=", "%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		r, err := ParseRequest(q)
		if err != nil {
			return
		}
		for _, flt := range r.Filters {
			if !slices.Contains(ops, flt.Op) || flt.Column == "" || slices.Contains(reserved, flt.Column) {
				t.Fatalf("accepted filter %+v", flt)
			}
			if flt.Op != OpIn && len(flt.Values) != 1 {
				t.Fatalf("filter %+v has %d values", flt, len(flt.Values))
			}
			if flt.Op == OpLike || flt.Op == OpILike {
				b := &builder{f: flavor{sqlite.Dialect{}, "sqlite"}}
				b.like(&column{name: flt.Column, typ: schema.Text}, flt.Pattern, flt.Op == OpILike)
				if len(b.args) != 1 {
					t.Fatalf("a pattern binds %d arguments", len(b.args))
				}
			}
		}
		for _, o := range r.Order {
			if o.Column == "" || strings.Contains(o.Column, ",") {
				t.Fatalf("accepted order %+v", o)
			}
		}
	})
}

// FuzzDecodeCursor: any string is refused or decodes to the table, order
// and count asked for.
func FuzzDecodeCursor(f *testing.F) {
	v := "5"
	f.Add(EncodeCursor("orders", "id", []*string{&v}))
	f.Add("e30")
	f.Add("!!!")
	f.Fuzz(func(t *testing.T, s string) {
		vals, err := DecodeCursor(s, "orders", "id", 1)
		if err != nil {
			return
		}
		if len(vals) != 1 {
			t.Fatalf("%d values", len(vals))
		}
		if vals[0] != nil && !utf8.ValidString(*vals[0]) {
			// Harmless (values are checked as filters are) but JSON never
			// yields invalid UTF-8.
			t.Fatalf("invalid UTF-8 %q", *vals[0])
		}
	})
}
