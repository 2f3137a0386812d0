package jsonpath

import (
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
	"unsafe"
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
	f.Fuzz(func(t *testing.T, doc []byte, path string) {
		p, err := Compile(path)
		if err != nil || len(doc) > 1<<16 {
			return
		}
		var got []string
		scanErr := Scan(doc, []*Path{p}, func(_ int, v []byte) error {
			got = append(got, string(v))
			return nil
		})
		want, refErr := reference(doc, p)
		if refErr != nil {
			if scanErr == nil && json.Valid(doc) {
				t.Fatalf("reference failed (%v) but Scan succeeded", refErr)
			}
			return
		}
		if scanErr != nil {
			// Both accept duplicate names and invalid UTF-8.
			t.Fatalf("Scan(%q, %q) = %v, but encoding/json accepts the document", doc, path, scanErr)
		}
		if !utf8.Valid(doc) || strings.Contains(string(doc), `\u`) {
			return // encoding/json replaces invalid text; Scan hands it out raw
		}
		if hasDuplicateNames(doc) {
			return // encoding/json merges duplicates differently for wildcards
		}
		g, w := canonical(got), canonical(want)
		if strconv.Quote(strings.Join(g, "\x00")) != strconv.Quote(strings.Join(w, "\x00")) {
			t.Fatalf("Scan(%q, %q)\n got %q\nwant %q", doc, path, g, w)
		}
	})
}

// hasDuplicateNames reports whether any object in doc repeats a name.
func hasDuplicateNames(doc []byte) bool {
	var dup bool
	var walk func(d *json.Decoder) bool
	walk = func(d *json.Decoder) bool {
		tok, err := d.Token()
		if err != nil {
			return false
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for d.More() {
				k, err := d.Token()
				if err != nil {
					return false
				}
				ks, _ := k.(string)
				if seen[ks] {
					dup = true
				}
				seen[ks] = true
				if !walk(d) {
					return false
				}
			}
			_, err = d.Token()
			return err == nil
		case json.Delim('['):
			for d.More() {
				if !walk(d) {
					return false
				}
			}
			_, err = d.Token()
			return err == nil
		}
		return true
	}
	walk(json.NewDecoder(strings.NewReader(string(doc))))
	return dup
}
