package jsonpath

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
	"unsafe"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/ferry-dev/ferry/internal/jsonscan"
)

func TestCompile(t *testing.T) {
	tests := []struct {
		in      string
		segs    []string
		wantErr string
	}{
		{in: "", segs: nil},
		{in: "$", segs: nil},
		{in: "data", segs: []string{"data"}},
		{in: "$.data.items", segs: []string{"data", "items"}},
		{in: "paging.next.after", segs: []string{"paging", "next", "after"}},
		{in: "items.*", segs: []string{"items", "*"}},
		{in: `a\.b.c`, segs: []string{"a.b", "c"}},
		{in: "a..b", wantErr: "empty segment"},
		{in: "a.", wantErr: "empty segment"},
		{in: `a\`, wantErr: "trailing backslash"},
	}
	for _, tt := range tests {
		p, err := Compile(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Compile(%q) error = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("Compile(%q): %v", tt.in, err)
		}
		var got []string
		for _, s := range p.segs {
			got = append(got, s.name)
		}
		if !reflect.DeepEqual(got, tt.segs) {
			t.Errorf("Compile(%q) segments = %q, want %q", tt.in, got, tt.segs)
		}
	}
}

func collect(t *testing.T, doc string, spread bool, paths ...string) ([][]string, error) {
	t.Helper()
	ps := make([]*Path, len(paths))
	for i, s := range paths {
		ps[i] = MustCompile(s)
		ps[i].Spread = spread
	}
	out := make([][]string, len(paths))
	err := Scan([]byte(doc), ps, func(i int, v []byte) error {
		out[i] = append(out[i], string(v))
		return nil
	})
	return out, err
}

func TestScan(t *testing.T) {
	doc := `{"data":[{"id":1},{"id":2,"x":{"y":[1,2]}}],"paging":{"next":{"after":"abc"}},"has_more":true,"a.b":5,"esc\u0061ped":"ok"}`
	tests := []struct {
		paths  []string
		spread bool
		want   [][]string
	}{
		{paths: []string{"data"}, spread: true, want: [][]string{{`{"id":1}`, `{"id":2,"x":{"y":[1,2]}}`}}},
		{paths: []string{"data"}, want: [][]string{{`[{"id":1},{"id":2,"x":{"y":[1,2]}}]`}}},
		{paths: []string{"data.*.id"}, want: [][]string{{"1", "2"}}},
		{paths: []string{"data.1.id"}, want: [][]string{{"2"}}},
		{paths: []string{"paging.next.after", "has_more", "data.*.x.y.*"}, want: [][]string{{`"abc"`}, {"true"}, {"1", "2"}}},
		{paths: []string{`a\.b`}, want: [][]string{{"5"}}},
		{paths: []string{"escaped"}, want: [][]string{{`"ok"`}}},
		{paths: []string{"missing.x"}, want: [][]string{nil}},
		// A value both selected and descended into.
		{paths: []string{"paging", "paging.next.after"}, want: [][]string{{`{"next":{"after":"abc"}}`}, {`"abc"`}}},
		{paths: []string{""}, want: [][]string{{doc}}},
	}
	for _, tt := range tests {
		got, err := collect(t, doc, tt.spread, tt.paths...)
		if err != nil {
			t.Fatalf("%v: %v", tt.paths, err)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%v spread=%v:\n got %q\nwant %q", tt.paths, tt.spread, got, tt.want)
		}
	}
}

func TestScanAliasesInput(t *testing.T) {
	doc := []byte(`{"data":[{"id":1},{"id":2}]}`)
	p := MustCompile("data")
	p.Spread = true
	err := Scan(doc, []*Path{p}, func(_ int, v []byte) error {
		start := uintptr(unsafe.Pointer(unsafe.SliceData(doc)))
		at := uintptr(unsafe.Pointer(unsafe.SliceData(v)))
		if at < start || at >= start+uintptr(len(doc)) {
			t.Errorf("value %q does not alias the input", v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestScanInvalid(t *testing.T) {
	for _, doc := range []string{
		``,
		`<html><body>Bad gateway</body></html>`,
		`{"data":[{"id":1},{"id":`,
		`{"data":[{"id":1}]} trailing`,
		`{"data":[1,2,]}`,
	} {
		_, err := collect(t, doc, true, "data")
		if !errors.Is(err, ErrNotJSON) {
			t.Errorf("Scan(%q) error = %v, want ErrNotJSON", doc, err)
		}
	}
}

// TestScanDuplicateKeys: a response repeating a key is refused, on the way
// to the records or the pagination fields and anywhere else Scan reads;
// records that are only delimited (Skim) are left to their validator.
func TestScanDuplicateKeys(t *testing.T) {
	for doc, want := range map[string]string{
		`{"data":[],"next_cursor":"a","next_cursor":"b"}`:      `invalid JSON: duplicate key "next_cursor" at byte 29`,
		`{"data":[],"next_cursor":"a","next_\u0063ursor":"b"}`: `invalid JSON: duplicate key "next_cursor" at byte 29`,
		`{"data":{"items":[]},"data":{"items":[{"id":1}]}}`:    `invalid JSON: duplicate key "data" at byte 21`,
		`{"data":[],"meta":{"a":1,"a":2}}`:                     `invalid JSON: duplicate key "a" at byte 25`,
		`{"data":[],"paging":{"next":{"after":1,"after":2}}}`:  `invalid JSON: duplicate key "after" at byte 39`,
	} {
		rec, next := MustCompile("data"), MustCompile("next_cursor")
		rec.Spread, rec.Skim = true, true
		err := Scan([]byte(doc), []*Path{rec, next, MustCompile("paging.next")}, func(int, []byte) error { return nil })
		if !errors.Is(err, ErrNotJSON) || !errors.Is(err, jsonscan.ErrDuplicateName) || err.Error() != want {
			t.Errorf("Scan(%s) error = %v, want %q", doc, err, want)
		}
	}
	for doc, path := range map[string]string{`{"data":[{"id":1,"id":2}]}`: "data", `{"data":{"id":1,"id":2}}`: "data", `{"id":1,"id":2}`: ""} {
		p := MustCompile(path)
		p.Spread, p.Skim = true, true
		var recs []string
		if err := Scan([]byte(doc), []*Path{p}, func(_ int, v []byte) error {
			recs = append(recs, string(v))
			return nil
		}); err != nil || len(recs) != 1 {
			t.Fatalf("%s: a skimmed record with a duplicate key: %v %q", doc, err, recs)
		}
	}
}

// TestScanDeep: 200 KB of nesting fails cleanly at jsonscan.MaxDepth, in
// every mode of Scan and in Lookup.
func TestScanDeep(t *testing.T) {
	want := fmt.Sprintf("invalid JSON: JSON nested deeper than %d levels at byte ", jsonscan.MaxDepth)
	for _, doc := range []string{
		strings.Repeat("[", 200<<10),
		`{"data":` + strings.Repeat("[", 200<<10),
		`{"data":[` + strings.Repeat(`{"a":`, 40<<10),
		`{"meta":` + strings.Repeat(`{"a":`, 40<<10),
		strings.Repeat(`{"a":`, 40<<10),
	} {
		for _, path := range []string{"", "data", "a.a.a", "*.*"} {
			for _, skim := range []bool{false, true} {
				p := MustCompile(path)
				p.Spread, p.Announce, p.Skim = true, true, skim
				err := Scan([]byte(doc), []*Path{p}, func(int, []byte) error { return nil })
				if !errors.Is(err, jsonscan.ErrTooDeep) || !strings.HasPrefix(err.Error(), want) {
					t.Errorf("Scan(%.12s…, %q, skim=%v) = %.200v", doc, path, skim, err)
				}
			}
			if _, _, err := Lookup([]byte(doc), MustCompile(strings.TrimPrefix(path+".x", "."))); !errors.Is(err, jsonscan.ErrTooDeep) {
				t.Errorf("Lookup(%.12s…, %q) = %.200v", doc, path, err)
			}
		}
	}
}

func TestAnnounce(t *testing.T) {
	for doc, want := range map[string]int{`{"data":[]}`: 1, `{"data":[1,2]}`: 3, `{"x":1}`: 0, `{"data":null}`: 1} {
		p := MustCompile("data")
		p.Spread, p.Announce = true, true
		calls := 0
		if err := Scan([]byte(doc), []*Path{p}, func(int, []byte) error { calls++; return nil }); err != nil {
			t.Fatal(err)
		}
		if calls != want {
			t.Errorf("%s: %d visits, want %d", doc, calls, want)
		}
	}
}

// TestEmptyWildcard: a "*" meeting an empty array or object matches with
// nothing to select (a GraphQL connection with no edges), and says so.
func TestEmptyWildcard(t *testing.T) {
	for doc, want := range map[string][]string{
		`{"data":{"products":{"edges":[],"pageInfo":{"hasNextPage":false}}}}`: {"<nil>"},
		`{"data":{"products":{"edges":{},"pageInfo":{}}}}`:                    {"<nil>"},
		`{"data":{"products":{"edges":[{"node":{"id":1}}]}}}`:                 {`{"id":1}`},
		`{"data":{"products":{"edges":[{"node":[]}]}}}`:                       {"<nil>"},
		`{"data":{"products":{"edges":[{"cursor":"x"}]}}}`:                    nil,
		`{"data":{"products":null}}`:                                          nil,
	} {
		p := MustCompile("data.products.edges.*.node")
		p.Spread, p.Announce, p.Skim = true, true, true
		var got []string
		if err := Scan([]byte(doc), []*Path{p}, func(_ int, v []byte) error {
			if v == nil {
				got = append(got, "<nil>")
			} else {
				got = append(got, string(v))
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: visits %q, want %q", doc, got, want)
		}
		if err := Missing([]byte(doc), p); (err == nil) != (len(want) > 0) {
			t.Errorf("%s: Missing = %v", doc, err)
		}
	}
}

func TestMissing(t *testing.T) {
	many := `{"data":{`
	for i := 0; i < 30; i++ {
		many += fmt.Sprintf(`"key%d":%d,`, i, i)
	}
	many += `"` + strings.Repeat("long", 100) + `":1,"odd, key":2}}`
	odd := `{"data":{"` + strings.Repeat("long", 100) + `":1,"odd, key":2,"":3,"k":4}}`
	for _, tc := range []struct{ doc, path, want string }{
		{`{"data":{"products":{"edges":[]},"pageInfo":{}}}`, "data.prodcts.edges.*.node",
			`path "data.prodcts.edges.*.node" not found: "data" has keys products, pageInfo`},
		{`{"errors":[{"message":"denied"}],"data":null}`, "data.products.edges.*.node",
			`path "data.products.edges.*.node" not found: "data" is null`},
		{`{"error":"rate limited"}`, "data", `path "data" not found: the top level has keys error`},
		{`[1,2]`, "data", `path "data" not found: the top level is an array of 2 elements, not an object`},
		{`{"data":{}}`, "data.items", `path "data.items" not found: "data" is an empty object`},
		{`{"data":"x"}`, "data.items", `path "data.items" not found: "data" is a string, not an object`},
		{`{"data":{"items":[1,2]}}`, "data.items.5", `path "data.items.5" not found: "data.items" has 2 elements, no element 5`},
		{`{"data":{"edges":[{"cursor":"a"},{"node":{"x":1},"cursor":"b"}]}}`, "data.edges.*.node.id",
			`path "data.edges.*.node.id" not found: "data.edges.1.node" has keys x`},
		{`{"a.b":{"c":1}}`, `a\.b.d`, `path "a\\.b.d" not found: "a\\.b" has keys c`},
		{odd, "data.x", `path "data.x" not found: "data" has keys longlonglonglonglonglonglonglonglonglong…, "odd, key", "", k`},
		{many, "data.x", `path "data.x" not found: "data" has 32 keys: key0, key1, key2, key3, key4, key5, key6, key7, key8, key9, …`},
	} {
		err := Missing([]byte(tc.doc), MustCompile(tc.path))
		var nf *NotFoundError
		if !errors.As(err, &nf) || err.Error() != tc.want {
			t.Errorf("Missing(%.40s, %q) = %v\n want %s", tc.doc, tc.path, err, tc.want)
		}
	}
	if err := Missing([]byte(`{"data":[]}`), MustCompile("data")); err != nil {
		t.Errorf("Missing on a match = %v", err)
	}
}

func TestLookup(t *testing.T) {
	doc := []byte(`{"meta":{"total":42,"next":null}}`)
	v, ok, err := Lookup(doc, MustCompile("meta.total"))
	if err != nil || !ok || string(v) != "42" {
		t.Fatalf("Lookup = %q %v %v", v, ok, err)
	}
	_, ok, err = Lookup(doc, MustCompile("meta.prev"))
	if err != nil || ok {
		t.Fatalf("Lookup(missing) = %v %v", ok, err)
	}
}

// reference selects with encoding/json, for the fuzzer.
func reference(doc []byte, p *Path) ([]string, error) {
	if !json.Valid(doc) {
		return nil, errors.New("invalid JSON")
	}
	var root any
	dec := json.NewDecoder(strings.NewReader(string(doc)))
	dec.UseNumber()
	if err := dec.Decode(&root); err != nil {
		return nil, err
	}
	cur := []any{root}
	for _, seg := range p.segs {
		var next []any
		for _, v := range cur {
			switch x := v.(type) {
			case map[string]any:
				if seg.any {
					// Map order is lost; the fuzzer compares sorted results.
					for _, e := range x {
						next = append(next, e)
					}
				} else if e, ok := x[seg.name]; ok {
					next = append(next, e)
				}
			case []any:
				for i, e := range x {
					if seg.any || seg.index == i {
						next = append(next, e)
					}
				}
			}
		}
		cur = next
	}
	var out []string
	for _, v := range cur {
		b, _ := json.Marshal(v)
		out = append(out, string(b))
	}
	return out, nil
}

func canonical(vals []string) []string {
	out := make([]string, 0, len(vals))
	for _, v := range vals {
		var x any
		d := json.NewDecoder(strings.NewReader(v))
		d.UseNumber()
		if err := d.Decode(&x); err != nil {
			out = append(out, "!"+v)
			continue
		}
		b, _ := json.Marshal(x)
		out = append(out, string(b))
	}
	sortStrings(out)
	return out
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func FuzzScan(f *testing.F) {
	f.Add([]byte(`{"data":[{"id":1},{"id":2}],"next":"x"}`), "data.*.id")
	f.Add([]byte(`[1,[2,3],{"a":{"b":4}}]`), "*.a.b")
	f.Add([]byte(`{"a":{"a":{"a":1}}}`), "a.a")
	f.Add([]byte(`{"k\u00e9y":[true,false,null]}`), "kéy.1")
	f.Add([]byte(`{"a":1,"a":2}`), "a")
	f.Add([]byte(`{"a":{"b":[],"c":{}},"d":[{}]}`), "*.*.x")
	f.Add([]byte(`{"data":{"edges":[{"cursor":1},{"node":{"x":1}}]}}`), "data.edges.*.node.id")
	f.Add([]byte(strings.Repeat("[", jsonscan.MaxDepth+1)+strings.Repeat("]", jsonscan.MaxDepth+1)), "*")
	f.Fuzz(func(t *testing.T, doc []byte, path string) {
		p, err := Compile(path)
		if err != nil || len(doc) > 1<<16 {
			return
		}
		p.Announce = true
		var got []string
		announced := false
		scanErr := Scan(doc, []*Path{p}, func(_ int, v []byte) error {
			if v == nil {
				announced = true
			} else {
				got = append(got, string(v))
			}
			return nil
		})
		if len(got) == 0 && !announced && scanErr == nil {
			// Missing explains, briefly, exactly when nothing matched.
			err := Missing(doc, p)
			if err == nil {
				t.Fatalf("Scan(%q, %q) matched nothing, Missing says it matches", doc, path)
			}
			if len(err.Error()) > 3000 {
				t.Fatalf("Missing(%q, %q): %d bytes", doc, path, len(err.Error()))
			}
		} else if scanErr == nil {
			if err := Missing(doc, p); err != nil {
				t.Fatalf("Scan(%q, %q) matched, Missing says %v", doc, path, err)
			}
		}
		lax := jsontext.AllowInvalidUTF8(true)
		if jsontext.Value(doc).IsValid(lax, jsontext.AllowDuplicateNames(true)) {
			switch {
			case depth(doc) > jsonscan.MaxDepth:
				if !errors.Is(scanErr, jsonscan.ErrTooDeep) {
					t.Fatalf("Scan(%q): %d levels: %v", doc, depth(doc), scanErr)
				}
				return
			case !jsontext.Value(doc).IsValid(lax):
				if !errors.Is(scanErr, jsonscan.ErrDuplicateName) {
					t.Fatalf("Scan(%q) = %v, want a duplicate name", doc, scanErr)
				}
				return
			}
		}
		want, refErr := reference(doc, p)
		if refErr != nil {
			if scanErr == nil && json.Valid(doc) {
				t.Fatalf("reference failed (%v) but Scan succeeded", refErr)
			}
			return
		}
		if scanErr != nil {
			// Both accept invalid UTF-8.
			t.Fatalf("Scan(%q, %q) = %v, but encoding/json accepts the document", doc, path, scanErr)
		}
		if !utf8.Valid(doc) || strings.Contains(string(doc), `\u`) {
			return // encoding/json replaces invalid text; Scan hands it out raw
		}
		g, w := canonical(got), canonical(want)
		if strconv.Quote(strings.Join(g, "\x00")) != strconv.Quote(strings.Join(w, "\x00")) {
			t.Fatalf("Scan(%q, %q)\n got %q\nwant %q", doc, path, g, w)
		}
	})
}

// depth returns how deeply doc nests, by its brackets outside strings.
func depth(doc []byte) int {
	d, top, in := 0, 0, false
	for i := 0; i < len(doc); i++ {
		switch c := doc[i]; {
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
