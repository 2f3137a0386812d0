package jsonscan

import (
	"bytes"
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
		{`{"a":1,"a":2}`, true},
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
// (with duplicate names allowed, in strict and lax UTF-8 modes), and that
// Skim agrees on where valid values end.
func FuzzValue(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `[1,"x",{"b":null}]`, `"\ud83d\ude00"`, `-1.5e-3`, `{"a":[[[]]]}`, "\"\xff\"", `"a\\"`, `["\"]"]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		strict := jsontext.Value(b).IsValid(jsontext.AllowDuplicateNames(true))
		if got := valid(b, false); got != strict {
			t.Fatalf("%q: scanner says %v, jsontext says %v", b, got, strict)
		}
		lax := jsontext.Value(b).IsValid(jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
		if got := valid(b, true); got != lax {
			t.Fatalf("%q lax: scanner says %v, jsontext says %v", b, got, lax)
		}
		if strict {
			var s Scanner
			s.Reset(b)
			v, err := s.Skim()
			if err != nil || !bytes.Equal(v, bytes.TrimSpace(b)) {
				t.Fatalf("Skim(%q) = %q, %v", b, v, err)
			}
		}
	})
}
