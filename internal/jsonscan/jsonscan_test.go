package jsonscan

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/go-json-experiment/json/jsontext"
)

// valid reports whether a Scanner accepts b as one JSON value.
func valid(b []byte, lax bool) bool {
	s := Scanner{LaxUTF8: lax}
	s.Reset(b)
	if _, err := s.Value(); err != nil {
		return false
	}
	return s.End() == nil
}

func TestValidity(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{`{"a":1,"b":[true,false,null,"x",-0.5e+3,{}],"c":{"d":"\u00e9\ud83d\ude00\n"}}`, true},
		{` {"a" : 1 } `, true},
		{`{"a":1,"a":2}`, false},
		{`{"a":01}`, false},
		{`{"a":1,}`, false},
		{`{"a" 1}`, false},
		{`{"a":"\ud83d"}`, false},
		{`{"a":"\ude00"}`, false},
		{"{\"a\":\"\xff\"}", false},
		{"{\"a\":\"\x01\"}", false},
		{`{"a":"\x"}`, false},
		{`{"a":tru}`, false},
		{`{"a":1} x`, false},
		{"\"\"\x00", false},
		{`[1,2`, false},
		{``, false},
	} {
		if got := valid([]byte(tc.in), false); got != tc.ok {
			t.Errorf("%q: valid = %v, want %v", tc.in, got, tc.ok)
		}
	}
	if !valid([]byte("{\"a\":\"\xff\"}"), true) || !valid([]byte(`"\ud83d"`), true) {
		t.Error("LaxUTF8 refused invalid UTF-8")
	}
}

func TestWalk(t *testing.T) {
	var s Scanner
	s.Reset([]byte(` {"data": [ {"id":1}, "x" , [2] ], "more" : true} `))
	if err := s.Begin(); err != nil {
		t.Fatal(err)
	}
	name, ok, err := s.Name(true)
	if err != nil || !ok || string(name) != `"data"` {
		t.Fatalf("Name = %q %v %v", name, ok, err)
	}
	if err := s.BeginArray(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for first := true; ; first = false {
		ok, err := s.Next(first)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		v, err := s.Skim()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(v))
	}
	if len(got) != 3 || got[0] != `{"id":1}` || got[1] != `"x"` || got[2] != `[2]` {
		t.Fatalf("elements = %q", got)
	}
	name, v, ok, err := s.Member(false)
	if err != nil || !ok || string(name) != `"more"` || string(v) != "true" {
		t.Fatalf("Member = %q %q %v %v", name, v, ok, err)
	}
	if _, ok, err := s.Name(false); ok || err != nil {
		t.Fatalf("end of object: %v %v", ok, err)
	}
	if err := s.End(); err != nil {
		t.Fatal(err)
	}
}

// FuzzValue checks that a Scanner accepts exactly what jsontext accepts
// (by default, and with duplicate names allowed; in strict and lax UTF-8
// modes), except for input nested deeper than MaxDepth, which it refuses
// with ErrTooDeep; that walking an object member by member checks names
// as Value does; and that Skim agrees on where valid values end.
func FuzzValue(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `[1,"x",{"b":null}]`, `"\ud83d\ude00"`, `-1.5e-3`, `{"a":[[[]]]}`, "\"\xff\"", `"a\\"`, `["\"]"]`,
		`{"a":1,"a":2}`, `{"a":1,"\u0061":2}`, "{\"\xff\":1,\"\xfe\":2}", `{"\ud800":1,"\udbff":2}`, "{\"\xef\xbf\xbd\":1,\"\\ud800\":2}",
		`{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":10,"k11":11,"k12":12,"k13":13,"k14":14,"k15":15,"k16":16,"k17":{"k1":1},"k1\u0030":0}`,
		string(nest(MaxDepth)), string(nest(MaxDepth + 1))} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		tooDeep := depth(b) > MaxDepth
		for _, lax := range []bool{false, true} {
			for _, dups := range []bool{false, true} {
				opts := []jsontext.Options{jsontext.AllowDuplicateNames(dups), jsontext.AllowInvalidUTF8(lax)}
				want := jsontext.Value(b).IsValid(opts...)
				s := Scanner{LaxUTF8: lax, AllowDuplicateNames: dups}
				s.Reset(b)
				_, err := s.Value()
				if err == nil {
					err = s.End()
				}
				switch {
				case want && tooDeep:
					if !errors.Is(err, ErrTooDeep) {
						t.Fatalf("%q lax=%v dups=%v: %d levels accepted (%v)", b, lax, dups, depth(b), err)
					}
				case (err == nil) != want:
					t.Fatalf("%q lax=%v dups=%v: scanner says %v, jsontext says %v", b, lax, dups, err, want)
				}
				if want && !tooDeep && !dups {
					// The same answer member by member.
					s.Reset(b)
					if err := walk(&s); err != nil {
						t.Fatalf("%q lax=%v: walk: %v", b, lax, err)
					}
				}
			}
		}
		if jsontext.Value(b).IsValid(jsontext.AllowDuplicateNames(true)) && !tooDeep {
			var s Scanner
			s.Reset(b)
			v, err := s.Skim()
			if err != nil || !bytes.Equal(v, bytes.TrimSpace(b)) {
				t.Fatalf("Skim(%q) = %q, %v", b, v, err)
			}
		}
	})
}

// walk reads the value at s member by member, element by element.
func walk(s *Scanner) error {
	switch s.Peek() {
	case '{':
		if err := s.Begin(); err != nil {
			return err
		}
		for first := true; ; first = false {
			_, ok, err := s.Name(first)
			if err != nil || !ok {
				return err
			}
			if err := walk(s); err != nil {
				return err
			}
		}
	case '[':
		if err := s.BeginArray(); err != nil {
			return err
		}
		for first := true; ; first = false {
			ok, err := s.Next(first)
			if err != nil || !ok {
				return err
			}
			if err := walk(s); err != nil {
				return err
			}
		}
	}
	_, err := s.Value()
	return err
}

// depth returns how deeply b nests, by its brackets outside strings.
func depth(b []byte) int {
	d, top, in := 0, 0, false
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
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

// nest returns depth nested arrays around a 1.
func nest(depth int) []byte {
	return []byte(strings.Repeat("[", depth) + "1" + strings.Repeat("]", depth))
}

func TestMaxDepth(t *testing.T) {
	want := fmt.Sprintf("JSON nested deeper than %d levels at byte %d", MaxDepth, MaxDepth)
	if !valid(nest(MaxDepth), false) {
		t.Fatalf("%d levels refused", MaxDepth)
	}
	deep := nest(MaxDepth + 1)
	// Value, Skim, and the member-by-member walk all stop at the limit.
	var s Scanner
	s.Reset(deep)
	if _, err := s.Value(); !errors.Is(err, ErrTooDeep) || err.Error() != want {
		t.Errorf("Value error = %v, want %q", err, want)
	}
	s.Reset(deep)
	if _, err := s.Skim(); !errors.Is(err, ErrTooDeep) || err.Error() != want {
		t.Errorf("Skim error = %v, want %q", err, want)
	}
	s.Reset(deep)
	var err error
	for err == nil {
		err = s.BeginArray()
	}
	if !errors.Is(err, ErrTooDeep) || err.Error() != want {
		t.Errorf("BeginArray error = %v, want %q", err, want)
	}
	// The limit counts the levels opened member by member too.
	s.Reset([]byte(`{"a":` + string(nest(MaxDepth)) + `}`))
	if err := s.Begin(); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Name(true); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if _, err := s.Skim(); !errors.Is(err, ErrTooDeep) {
		t.Errorf("Skim inside an object: %v, want ErrTooDeep", err)
	}
	// 200 KB of brackets and of object chains fail fast, at the limit.
	for _, doc := range []string{strings.Repeat("[", 200<<10), strings.Repeat(`{"a":`, 40<<10)} {
		s.Reset([]byte(doc))
		_, err := s.Value()
		var se *SyntaxError
		if !errors.As(err, &se) || !errors.Is(err, ErrTooDeep) || se.Offset > 5*MaxDepth+5 {
			t.Errorf("%.10s…: %v", doc, err)
		}
	}
}

func TestDuplicateNames(t *testing.T) {
	wide := func(dup bool) string {
		var b strings.Builder
		b.WriteString(`{"x":{`)
		for i := 0; i < 300; i++ {
			fmt.Fprintf(&b, `"k%d":%d,`, i, i)
		}
		if dup {
			b.WriteString(`"k\u0031\u00307":0,`)
		}
		b.WriteString(`"end":{"k1":1}}}`)
		return b.String()
	}
	for _, tc := range []struct {
		in, dup string // dup: the duplicate name reported, "" if valid
	}{
		{`{"id":2,"id":3}`, "id"},
		{`{"id":1,"\u0069d":2}`, "id"},
		{`{"a":{"b":1,"c":{"b":2}},"b":3}`, ""},
		{`[{"a":1},{"a":2}]`, ""},
		{`{"a":[{"x":1,"y":2,"x":3}]}`, "x"},
		{`{"é":1,"\u00e9":2}`, "é"},
		{`{"\ud83d\ude00":1,"😀":2}`, "😀"},
		{`{"a\/b":1,"a/b":2}`, "a/b"},
		{`{"a":1,"b":{"a":1,"b":2},"c":3}`, ""},
		{wide(false), ""},
		{wide(true), "k107"},
	} {
		var s Scanner
		s.Reset([]byte(tc.in))
		_, err := s.Value()
		if tc.dup == "" {
			if err != nil {
				t.Errorf("%.40s: %v", tc.in, err)
			}
			continue
		}
		if !errors.Is(err, ErrDuplicateName) || !strings.HasPrefix(err.Error(), fmt.Sprintf("duplicate key %q at byte ", tc.dup)) {
			t.Errorf("%.40s: error %v, want duplicate key %q", tc.in, err, tc.dup)
		}
		s = Scanner{AllowDuplicateNames: true}
		s.Reset([]byte(tc.in))
		if _, err := s.Value(); err != nil {
			t.Errorf("%.40s with AllowDuplicateNames: %v", tc.in, err)
		}
	}
	// A long duplicate name is excerpted in the message.
	long := strings.Repeat("n", 5000)
	var s Scanner
	s.Reset([]byte(`{"` + long + `":1,"` + long + `":2}`))
	if _, err := s.Value(); !errors.Is(err, ErrDuplicateName) || len(err.Error()) > 120 {
		t.Errorf("long name: %d bytes: %.200v", len(err.Error()), err)
	}
}

// walkNames reads an object member by member, skipping values.
func walkNames(s *Scanner, begin func() error) error {
	if err := begin(); err != nil {
		return err
	}
	for first := true; ; first = false {
		_, ok, err := s.Name(first)
		if err != nil || !ok {
			return err
		}
		if _, err := s.Value(); err != nil {
			return err
		}
	}
}

func TestDuplicateNamesWalk(t *testing.T) {
	var s Scanner
	s.Reset([]byte(`{"a":1,"b":{"c":1},"a":2}`))
	if err := walkNames(&s, s.Begin); !errors.Is(err, ErrDuplicateName) {
		t.Errorf("Begin: %v, want a duplicate name", err)
	}
	// BeginUnchecked leaves the object's own names to the caller; the
	// values inside it are still checked.
	s.Reset([]byte(`{"a":1,"b":{"c":1},"a":2}`))
	if err := walkNames(&s, s.BeginUnchecked); err != nil {
		t.Errorf("BeginUnchecked: %v", err)
	}
	s.Reset([]byte(`{"a":1,"b":{"c":1,"c":2}}`))
	if err := walkNames(&s, s.BeginUnchecked); !errors.Is(err, ErrDuplicateName) {
		t.Errorf("BeginUnchecked, nested duplicate: %v", err)
	}
	// Names for callers that check names themselves.
	var ns Names
	for round := 0; round < 2; round++ {
		ns.Reset()
		for i := 0; i < 100; i++ {
			if ns.Add([]byte(fmt.Sprintf(`"k%d"`, i))) {
				t.Fatalf("k%d reported twice", i)
			}
		}
		if !ns.Add([]byte(`"\u006b42"`)) || !ns.Add([]byte(`"k0"`)) || ns.Add([]byte(`"k100"`)) {
			t.Fatal("Names missed or invented a duplicate")
		}
	}
}
