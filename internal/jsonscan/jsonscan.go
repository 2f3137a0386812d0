// Package jsonscan reads JSON documents in place, for Ferry's hot path:
// selecting records from a response (jsonpath) and scanning each record
// into typed columns (normalize). A Scanner validates as strictly as
// encoding/json/jsontext does by default — RFC 8259 syntax, UTF-8 text,
// escapes that decode to whole characters, no object repeating a member
// name (compared after unescaping) — except that it allows at most
// MaxDepth levels of nesting, not 10000, and it hands out values as
// slices of the input, never copies.
//
// Skim is the one unvalidated operation: it finds where a value ends from
// its brackets and quotes alone, for records that are validated strictly
// later, one by one, so that a malformed record is rejected alone. It
// still stops at MaxDepth.
package jsonscan

import (
	"bytes"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/ferry-dev/ferry/internal/schema"
)

// MaxDepth is how deeply arrays and objects may nest, in every operation
// of a Scanner (and so in everything Ferry reads: responses, records,
// nested fields): the outermost value is level 1. jsontext allows 10000;
// API data rarely passes 20 levels, and a low bound keeps hostile input
// from costing stack, time (flattening walks nested values once per
// level) and child tables. Deeper input fails with an error wrapping
// ErrTooDeep, at the offset of the bracket that goes too deep.
const MaxDepth = 1000

var (
	// ErrEnd is returned when the input ends inside a value.
	ErrEnd = errors.New("unexpected end of JSON input (truncated?)")
	// ErrTooDeep is wrapped by the error for input nested deeper than
	// MaxDepth.
	ErrTooDeep = fmt.Errorf("JSON nested deeper than %d levels", MaxDepth)
	// ErrDuplicateName is wrapped by the error for an object that repeats
	// a member name.
	ErrDuplicateName = errors.New("duplicate key")
)

// SyntaxError is invalid JSON at an offset of the input.
type SyntaxError struct {
	Offset int
	Msg    string
	// Err is ErrTooDeep or ErrDuplicateName for those errors, else nil.
	Err error
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("%s at byte %d", e.Msg, e.Offset) }

// Unwrap returns Err.
func (e *SyntaxError) Unwrap() error { return e.Err }

// Scanner reads one document. The zero value reads an empty document;
// Reset starts another.
type Scanner struct {
	b []byte
	i int
	// LaxUTF8 accepts invalid UTF-8 inside strings (jsontext's
	// AllowInvalidUTF8); escapes are still checked. Names then compare as
	// jsontext compares them, with invalid bytes and unpaired surrogates
	// read as U+FFFD.
	LaxUTF8 bool
	// AllowDuplicateNames accepts objects that repeat a member name (the
	// last one wins), as jsontext's option of that name does. By default
	// a repeated name is an error wrapping ErrDuplicateName: inside every
	// value Value reads, and among the members of an object opened with
	// Begin (not BeginUnchecked).
	AllowDuplicateNames bool

	depth   int         // containers open around the position
	esc     bool        // the last name read needs unescaping to compare
	checked []openNames // objects opened by Begin whose names are checked
	names   names       // their member names (and Value's, while it reads)
}

// openNames is an object opened by Begin: its nesting level and where its
// names start in Scanner.names.
type openNames struct{ depth, start int }

// Reset starts reading b.
func (s *Scanner) Reset(b []byte) {
	s.b, s.i, s.depth = b, 0, 0
	s.checked = s.checked[:0]
	s.names.reset()
	s.names.src = b
}

// Offset returns the position of the next byte to read.
func (s *Scanner) Offset() int { return s.i }

func (s *Scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *Scanner) errorf(format string, args ...any) error {
	return &SyntaxError{Offset: s.i, Msg: fmt.Sprintf(format, args...)}
}

// tooDeep is the error for a container opened at s.i beyond MaxDepth.
func (s *Scanner) tooDeep() error {
	return &SyntaxError{Offset: s.i, Msg: ErrTooDeep.Error(), Err: ErrTooDeep}
}

// duplicate is the error for the repeated name token at b[at:s.i].
func (s *Scanner) duplicate(at int) error {
	return &SyntaxError{Offset: at, Msg: "duplicate key " + QuoteName(s.b[at:s.i]), Err: ErrDuplicateName}
}

// Peek returns the next non-space byte, or 0 at the end (a NUL byte,
// never valid outside a string, also reads as 0).
func (s *Scanner) Peek() byte {
	s.ws()
	if s.i >= len(s.b) {
		return 0
	}
	return s.b[s.i]
}

// Begin consumes an object's opening brace. Unless AllowDuplicateNames,
// Name then fails on a name the object already had.
func (s *Scanner) Begin() error {
	if err := s.open('{', "an object"); err != nil {
		return err
	}
	if !s.AllowDuplicateNames {
		s.checked = append(s.checked, openNames{depth: s.depth, start: len(s.names.list)})
	}
	return nil
}

// BeginUnchecked is Begin for a caller that checks the object's member
// names itself (the normalizer does, with its columns): Name does not
// compare them. The values inside the object are checked as usual.
func (s *Scanner) BeginUnchecked() error { return s.open('{', "an object") }

// BeginArray consumes an array's opening bracket.
func (s *Scanner) BeginArray() error { return s.open('[', "an array") }

func (s *Scanner) open(c byte, what string) error {
	switch s.Peek() {
	case c:
		if s.depth >= MaxDepth {
			return s.tooDeep()
		}
		s.i++
		s.depth++
		return nil
	case 0:
		return ErrEnd
	}
	return s.errorf("expected %s", what)
}

// closeObject ends the object opened at the current depth.
func (s *Scanner) closeObject() {
	if n := len(s.checked); n > 0 && s.checked[n-1].depth == s.depth {
		s.names.pop(s.checked[n-1].start)
		s.checked = s.checked[:n-1]
	}
	s.depth--
}

// Name reads the next member name of the object being read, with the
// comma before it (unless first) and the colon after it. It returns the
// name's raw string token, quotes included; ok is false once the closing
// brace is consumed. The member's value is read next, with Value, Skim,
// Begin or BeginArray.
func (s *Scanner) Name(first bool) (name []byte, ok bool, err error) {
	c := s.Peek()
	if c == '}' {
		s.i++
		s.closeObject()
		return nil, false, nil
	}
	if !first {
		if c != ',' {
			if c == 0 {
				return nil, false, ErrEnd
			}
			return nil, false, s.errorf("invalid character %q after an object member", c)
		}
		s.i++
		c = s.Peek()
	}
	if c != '"' {
		if c == 0 {
			return nil, false, ErrEnd
		}
		return nil, false, s.errorf("invalid character %q where an object name should start", c)
	}
	start := s.i
	s.esc = false
	if err := s.str(); err != nil {
		return nil, false, err
	}
	name = s.b[start:s.i]
	if n := len(s.checked); n > 0 && s.checked[n-1].depth == s.depth && s.names.add(s.checked[n-1].start, start, s.i, s.esc) {
		return nil, false, s.duplicate(start)
	}
	if c := s.Peek(); c != ':' {
		if c == 0 {
			return nil, false, ErrEnd
		}
		return nil, false, s.errorf("invalid character %q after an object name", c)
	}
	s.i++
	return name, true, nil
}

// Member reads the next member of the object being read: its raw name and
// its raw, validated value. ok is false once the closing brace is consumed.
func (s *Scanner) Member(first bool) (name, value []byte, ok bool, err error) {
	name, ok, err = s.Name(first)
	if !ok || err != nil {
		return nil, nil, ok, err
	}
	value, err = s.Value()
	return name, value, err == nil, err
}

// Next moves to the next element of the array being read, consuming the
// comma before it unless first; ok is false once the closing bracket is
// consumed. The element is read next.
func (s *Scanner) Next(first bool) (ok bool, err error) {
	c := s.Peek()
	if c == ']' {
		s.i++
		s.depth--
		return false, nil
	}
	if !first {
		if c != ',' {
			if c == 0 {
				return false, ErrEnd
			}
			return false, s.errorf("invalid character %q after an array element", c)
		}
		s.i++
	}
	if s.Peek() == 0 {
		return false, ErrEnd
	}
	return true, nil
}

// End checks that nothing but whitespace follows.
func (s *Scanner) End() error {
	s.ws()
	if s.i < len(s.b) {
		return s.errorf("invalid character %q after the top-level value", s.b[s.i])
	}
	return nil
}

// Value consumes the next value, validating it, and returns its bytes.
func (s *Scanner) Value() ([]byte, error) {
	s.ws()
	start := s.i
	if err := s.value(s.depth); err != nil {
		return nil, err
	}
	return s.b[start:s.i], nil
}

func (s *Scanner) value(depth int) error {
	if s.i >= len(s.b) {
		return ErrEnd
	}
	switch c := s.b[s.i]; {
	case c == '"':
		return s.str()
	case c == '{':
		return s.container(depth, '}')
	case c == '[':
		return s.container(depth, ']')
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		start, i := s.i, s.i
		for i < len(s.b) {
			c := s.b[i]
			if (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E' {
				i++
				continue
			}
			break
		}
		if schema.ClassifyNumber(s.b[start:i]) == schema.Unknown {
			return s.errorf("invalid number")
		}
		s.i = i
		return nil
	default:
		return s.errorf("invalid character %q at the start of a value", c)
	}
}

func (s *Scanner) literal(lit string) error {
	if len(s.b)-s.i < len(lit) {
		if string(s.b[s.i:]) == lit[:len(s.b)-s.i] {
			return ErrEnd
		}
		return s.errorf("invalid literal")
	}
	if string(s.b[s.i:s.i+len(lit)]) != lit {
		return s.errorf("invalid literal")
	}
	s.i += len(lit)
	return nil
}

// container consumes an object or array whose opening byte is at s.i,
// inside depth others.
func (s *Scanner) container(depth int, close byte) error {
	if depth >= MaxDepth {
		return s.tooDeep()
	}
	check := close == '}' && !s.AllowDuplicateNames
	names := len(s.names.list)
	s.i++
	for n := 0; ; n++ {
		c := s.Peek()
		if c == close {
			s.i++
			if check {
				s.names.pop(names)
			}
			return nil
		}
		if c == 0 {
			return ErrEnd
		}
		if n > 0 {
			if c != ',' {
				return s.errorf("invalid character %q after a value", c)
			}
			s.i++
			s.ws()
		}
		if close == '}' {
			if s.i >= len(s.b) {
				return ErrEnd
			}
			if s.b[s.i] != '"' {
				return s.errorf("invalid character %q where an object name should start", s.b[s.i])
			}
			at := s.i
			s.esc = false
			if err := s.str(); err != nil {
				return err
			}
			if check {
				if len(s.names.list) == names { // the first name: nothing to compare
					s.names.list = append(s.names.list, nameEntry{at, s.i, s.esc})
				} else if s.names.add(names, at, s.i, s.esc) {
					return s.duplicate(at)
				}
			}
			if c := s.Peek(); c != ':' {
				if c == 0 {
					return ErrEnd
				}
				return s.errorf("invalid character %q after an object name", c)
			}
			s.i++
			s.ws()
		}
		if err := s.value(depth + 1); err != nil {
			return err
		}
	}
}

// plain marks the bytes a string can hold as they are: printable ASCII
// other than the quote and the backslash.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// str consumes a string whose opening quote is at s.i. It sets s.esc (for
// callers that cleared it) when the string must be unescaped to be
// compared: it has escapes, or non-ASCII bytes under LaxUTF8 (which may be
// invalid).
func (s *Scanner) str() error {
	b := s.b
	i := s.i + 1
	for i < len(b) {
		c := b[i]
		if plain[c] {
			i++
			continue
		}
		switch {
		case c == '"':
			s.i = i + 1
			return nil
		case c == '\\':
			s.i = i
			if err := s.escape(); err != nil {
				return err
			}
			i = s.i
			s.esc = true
		case c < 0x20:
			s.i = i
			return s.errorf("invalid control character %q in a string", c)
		case s.LaxUTF8:
			i++
			s.esc = true
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size <= 1 {
				s.i = i
				return s.errorf("invalid UTF-8 in a string")
			}
			i += size
		}
	}
	s.i = i
	return ErrEnd
}

// escape consumes one escape sequence; \u escapes must form whole
// characters (a high surrogate followed by a low one) unless LaxUTF8.
func (s *Scanner) escape() error {
	if s.i+1 >= len(s.b) {
		return ErrEnd
	}
	switch s.b[s.i+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		s.i += 2
		return nil
	case 'u':
		r, ok := s.hex4(s.i + 2)
		if !ok {
			if s.i+6 > len(s.b) {
				return ErrEnd
			}
			return s.errorf("invalid \\u escape")
		}
		s.i += 6
		if s.LaxUTF8 {
			return nil
		}
		switch {
		case r >= 0xD800 && r < 0xDC00:
			if s.i+1 >= len(s.b) || s.b[s.i] != '\\' || s.b[s.i+1] != 'u' {
				return s.errorf("unpaired surrogate in \\u escape")
			}
			lo, ok := s.hex4(s.i + 2)
			if !ok || lo < 0xDC00 || lo >= 0xE000 {
				return s.errorf("invalid surrogate pair in \\u escape")
			}
			s.i += 6
		case r >= 0xDC00 && r < 0xE000:
			return s.errorf("unpaired surrogate in \\u escape")
		}
		return nil
	}
	return s.errorf("invalid escape %q", s.b[s.i+1])
}

func (s *Scanner) hex4(at int) (rune, bool) {
	if at+4 > len(s.b) {
		return 0, false
	}
	var r rune
	for _, c := range s.b[at : at+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	return r, true
}

// Skim consumes the next value by its structure alone — brackets, quotes
// and escapes — without validating it, and returns its bytes. It is for
// values validated strictly afterwards; it fails only when the input ends
// inside the value, or nests deeper than MaxDepth (counting the levels
// open around it).
func (s *Scanner) Skim() ([]byte, error) {
	s.ws()
	start := s.i
	b := s.b
	i := s.i
	if i >= len(b) {
		return nil, ErrEnd
	}
	switch b[i] {
	case '"':
		end, ok := skipString(b, i)
		if !ok {
			return nil, ErrEnd
		}
		s.i = end
		return b[start:end], nil
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				end, ok := skipString(b, i)
				if !ok {
					return nil, ErrEnd
				}
				i = end
				continue
			case '{', '[':
				depth++
				if s.depth+depth > MaxDepth {
					s.i = i
					return nil, s.tooDeep()
				}
			case '}', ']':
				depth--
				if depth == 0 {
					s.i = i + 1
					return b[start:s.i], nil
				}
			}
			i++
		}
		return nil, ErrEnd
	}
	// A scalar: up to the next delimiter.
	for i < len(b) {
		switch b[i] {
		case ',', ']', '}', ' ', '\t', '\n', '\r':
			s.i = i
			return b[start:i], nil
		}
		i++
	}
	s.i = i
	return b[start:i], nil
}

// skipString returns the offset after the string starting at b[i] == '"'.
func skipString(b []byte, i int) (int, bool) {
	i++
	for {
		q := bytes.IndexByte(b[i:], '"')
		if q < 0 {
			return len(b), false
		}
		q += i
		// Escaped when preceded by an odd number of backslashes.
		n := 0
		for k := q - 1; k >= i && b[k] == '\\'; k-- {
			n++
		}
		if n%2 == 0 {
			return q + 1, true
		}
		i = q + 1
	}
}
