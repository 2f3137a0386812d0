// Package jsonpath selects values from JSON documents with short dotted
// paths such as "data", "paging.next.after" or "data.customers.edges.*.node".
//
// A path is a list of segments separated by dots. A segment names an object
// member, indexes an array when it is a decimal number, or is "*" to match
// every member of an object or every element of an array. A backslash
// escapes the next character, so `a\.b` names the single key "a.b". The
// empty path (or "$") selects the whole document.
//
// Selection walks the document once for any number of paths, validating it
// as it goes, and hands out values that alias the input without copying.
package jsonpath

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/ferry-dev/ferry/internal/jsonscan"
)

// Path is a compiled path.
type Path struct {
	raw  string
	segs []segment
	// Spread makes Scan visit the elements of a matched array instead of
	// the array itself. Record selectors use it.
	Spread bool
	// Announce makes Scan call visit with a nil value when a Spread path
	// matches an array, before its elements, and when a "*" segment meets
	// an empty array or object, so that a path matching no records can be
	// told from a missing one.
	Announce bool
	// Skim makes Scan delimit a Spread path's elements (or the object it
	// matches, taken as the one element) by structure alone, for callers
	// that validate each element themselves.
	Skim bool
}

type segment struct {
	name  string
	index int // >= 0 when name is a decimal number
	any   bool
}

// Compile parses a path.
func Compile(s string) (*Path, error) {
	p := &Path{raw: s}
	if s == "" || s == "$" {
		return p, nil
	}
	s = strings.TrimPrefix(s, "$.")
	var cur strings.Builder
	escaped := false
	flush := func(pos int) error {
		name := cur.String()
		cur.Reset()
		if name == "" {
			return fmt.Errorf("path %q: empty segment at offset %d", p.raw, pos)
		}
		seg := segment{name: name, index: -1}
		if name == "*" && !escaped {
			seg.any = true
		} else if n, err := strconv.Atoi(name); err == nil && n >= 0 && strconv.Itoa(n) == name {
			seg.index = n
		}
		p.segs = append(p.segs, seg)
		escaped = false
		return nil
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\':
			if i+1 >= len(s) {
				return nil, fmt.Errorf("path %q: trailing backslash", p.raw)
			}
			i++
			cur.WriteByte(s[i])
			escaped = true
		case c == '.':
			if err := flush(i); err != nil {
				return nil, err
			}
		default:
			cur.WriteByte(c)
		}
	}
	if err := flush(len(s)); err != nil {
		return nil, err
	}
	return p, nil
}

// MustCompile is Compile for paths known to be valid; it panics otherwise.
func MustCompile(s string) *Path {
	p, err := Compile(s)
	if err != nil {
		panic(err)
	}
	return p
}

// String returns the path as written.
func (p *Path) String() string { return p.raw }

// Len returns the number of segments.
func (p *Path) Len() int { return len(p.segs) }

// Wildcard reports whether the path contains a "*" segment.
func (p *Path) Wildcard() bool {
	for _, s := range p.segs {
		if s.any {
			return true
		}
	}
	return false
}

// ErrNotJSON wraps every syntax error found in a document.
var ErrNotJSON = errors.New("invalid JSON")

// Scan walks doc once and calls visit(i, v) for each value v matched by
// paths[i], in document order. v aliases doc. Scan fails with an error
// wrapping ErrNotJSON when doc is not exactly one valid JSON value
// (invalid UTF-8 in strings is accepted: the records holding it are
// refused one by one later), and stops at the first error visit returns.
// An object repeating a member name (compared after unescaping) is not
// valid: which of two "next_cursor" members is meant cannot be told (the
// error also wraps jsonscan.ErrDuplicateName), and neither is a document
// nested deeper than jsonscan.MaxDepth (jsonscan.ErrTooDeep).
// The elements of a Skim path are delimited without being validated, so
// such an element may repeat names; the caller validates it.
func Scan(doc []byte, paths []*Path, visit func(i int, v []byte) error) error {
	live := make([]int, 0, len(paths))
	for i := range paths {
		live = append(live, i)
	}
	s := scanner{paths: paths, visit: visit}
	s.s.LaxUTF8 = true
	s.s.Reset(doc)
	if err := s.value(0, live); err != nil {
		return err
	}
	return wrapSyntax(s.s.End())
}

type scanner struct {
	s     jsonscan.Scanner
	paths []*Path
	visit func(int, []byte) error
}

// value handles the next value of the document at the given depth, with
// live holding the paths whose first depth segments matched so far.
func (s *scanner) value(depth int, live []int) error {
	var done, deeper []int
	for _, i := range live {
		if len(s.paths[i].segs) == depth {
			done = append(done, i)
		} else {
			deeper = append(deeper, i)
		}
	}
	kind := s.s.Peek()
	if kind == 0 {
		return wrapSyntax(jsonscan.ErrEnd)
	}
	if len(done) == 0 && len(deeper) == 0 {
		_, err := s.s.Value()
		return wrapSyntax(err)
	}
	if len(done) > 0 {
		// Spreading paths over an array we would otherwise only descend into.
		if len(deeper) == 0 && kind == '[' && allSpread(s.paths, done) {
			return s.spread(done)
		}
		var v []byte
		var err error
		if len(deeper) == 0 && kind == '{' && allSkim(s.paths, done) {
			// One object as the one record: its validator checks it.
			v, err = s.s.Skim()
		} else {
			v, err = s.s.Value()
		}
		if err != nil {
			return wrapSyntax(err)
		}
		for _, i := range done {
			if err := s.emit(i, v); err != nil {
				return err
			}
		}
		if len(deeper) > 0 && (kind == '{' || kind == '[') {
			return s.sub(v, depth, deeper)
		}
		return nil
	}
	switch kind {
	case '{':
		return s.object(depth, deeper)
	case '[':
		return s.array(depth, deeper)
	}
	_, err := s.s.Value()
	return wrapSyntax(err)
}

func allSpread(paths []*Path, idx []int) bool {
	for _, i := range idx {
		if !paths[i].Spread {
			return false
		}
	}
	return true
}

func allSkim(paths []*Path, idx []int) bool {
	for _, i := range idx {
		if !paths[i].Spread || !paths[i].Skim {
			return false
		}
	}
	return true
}

// spread visits each element of the array at the scanner's position.
func (s *scanner) spread(idx []int) error {
	if err := s.s.BeginArray(); err != nil {
		return wrapSyntax(err)
	}
	skim := true
	for _, i := range idx {
		if s.paths[i].Announce {
			if err := s.visit(i, nil); err != nil {
				return err
			}
		}
		skim = skim && s.paths[i].Skim
	}
	for first := true; ; first = false {
		ok, err := s.s.Next(first)
		if err != nil {
			return wrapSyntax(err)
		}
		if !ok {
			return nil
		}
		var v []byte
		if skim {
			v, err = s.s.Skim()
		} else {
			v, err = s.s.Value()
		}
		if err != nil {
			return wrapSyntax(err)
		}
		for _, i := range idx {
			if err := s.visit(i, v); err != nil {
				return err
			}
		}
	}
}

// emit visits v for path i, spreading arrays for Spread paths.
func (s *scanner) emit(i int, v []byte) error {
	if !s.paths[i].Spread || len(v) == 0 || v[0] != '[' {
		return s.visit(i, v)
	}
	return Scan(v, []*Path{{segs: nil, Spread: true, Announce: s.paths[i].Announce}}, func(_ int, e []byte) error { return s.visit(i, e) })
}

// sub scans the already read value v for the paths in idx that go deeper.
func (s *scanner) sub(v []byte, depth int, idx []int) error {
	rest := make([]*Path, len(idx))
	for k, i := range idx {
		p := *s.paths[i]
		p.segs = p.segs[depth:]
		rest[k] = &p
	}
	return Scan(v, rest, func(k int, e []byte) error { return s.visit(idx[k], e) })
}

func (s *scanner) object(depth int, live []int) error {
	if err := s.s.Begin(); err != nil {
		return wrapSyntax(err)
	}
	var match []int
	for first := true; ; first = false {
		name, ok, err := s.s.Name(first)
		if err != nil {
			return wrapSyntax(err)
		}
		if !ok {
			if first {
				return s.announceEmpty(depth, live)
			}
			return nil
		}
		match = match[:0]
		for _, i := range live {
			seg := s.paths[i].segs[depth]
			if seg.any || nameEquals(name, seg.name) {
				match = append(match, i)
			}
		}
		if err := s.value(depth+1, match); err != nil {
			return err
		}
	}
}

func (s *scanner) array(depth int, live []int) error {
	if err := s.s.BeginArray(); err != nil {
		return wrapSyntax(err)
	}
	var match []int
	for n := 0; ; n++ {
		ok, err := s.s.Next(n == 0)
		if err != nil {
			return wrapSyntax(err)
		}
		if !ok {
			if n == 0 {
				return s.announceEmpty(depth, live)
			}
			return nil
		}
		match = match[:0]
		for _, i := range live {
			seg := s.paths[i].segs[depth]
			if seg.any || seg.index == n {
				match = append(match, i)
			}
		}
		if err := s.value(depth+1, match); err != nil {
			return err
		}
	}
}

// announceEmpty announces the paths whose "*" segment at depth met an
// empty array or object: they match, with nothing to select.
func (s *scanner) announceEmpty(depth int, live []int) error {
	for _, i := range live {
		if p := s.paths[i]; p.Announce && p.segs[depth].any {
			if err := s.visit(i, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// nameEquals compares a raw JSON string token with an unescaped name.
func nameEquals(raw []byte, name string) bool {
	if len(raw) < 2 {
		return false
	}
	inner := raw[1 : len(raw)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return string(inner) == name
	}
	u, err := jsontext.AppendUnquote(nil, raw)
	return err == nil && string(u) == name
}

func wrapSyntax(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrNotJSON, err)
}

// Lookup returns the value at p in doc. found is false when some segment is
// absent; for a path with wildcards it returns the first match.
func Lookup(doc []byte, p *Path) (v []byte, found bool, err error) {
	stop := errors.New("stop")
	err = Scan(doc, []*Path{p}, func(_ int, x []byte) error {
		v, found = x, true
		return stop
	})
	if err == stop {
		err = nil
	}
	return v, found, err
}
