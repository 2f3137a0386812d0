// Package jsonscan reads JSON documents in place, for Ferry's hot path:
// selecting records from a response (jsonpath) and scanning each record
// into typed columns (normalize). A Scanner validates as strictly as
// encoding/json/jsontext does by default — RFC 8259 syntax, UTF-8 text,
// escapes that decode to whole characters — except that duplicate names
// are allowed (the last one wins), and it hands out values as slices of
// the input, never copies.
//
// Skim is the one unvalidated operation: it finds where a value ends from
// its brackets and quotes alone, for records that are validated strictly
// later, one by one, so that a malformed record is rejected alone.
package jsonscan

import (
	"bytes"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/ferry-dev/ferry/internal/schema"
)

// MaxDepth bounds nesting, as jsontext does.
const MaxDepth = 10000

// ErrEnd is returned when the input ends inside a value.
var ErrEnd = errors.New("unexpected end of JSON input (truncated?)")

// SyntaxError is invalid JSON at an offset of the input.
type SyntaxError struct {
	Offset int
	Msg    string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("%s at offset %d", e.Msg, e.Offset) }

// Scanner reads one document. The zero value reads an empty document;
// Reset starts another.
type Scanner struct {
	b []byte
	i int
	// LaxUTF8 accepts invalid UTF-8 inside strings (jsontext's
	// AllowInvalidUTF8); escapes are still checked.
	LaxUTF8 bool
}

// Reset starts reading b.
func (s *Scanner) Reset(b []byte) { s.b, s.i = b, 0 }

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

// Peek returns the next non-space byte, or 0 at the end (a NUL byte,
// never valid outside a string, also reads as 0).
func (s *Scanner) Peek() byte {
	s.ws()
	if s.i >= len(s.b) {
		return 0
	}
	return s.b[s.i]
}

// Begin consumes an object's opening brace.
func (s *Scanner) Begin() error { return s.open('{', "an object") }

// BeginArray consumes an array's opening bracket.
func (s *Scanner) BeginArray() error { return s.open('[', "an array") }

func (s *Scanner) open(c byte, what string) error {
	switch s.Peek() {
	case c:
		s.i++
		return nil
	case 0:
		return ErrEnd
	}
	return s.errorf("expected %s", what)
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
	if err := s.str(); err != nil {
		return nil, false, err
	}
	name = s.b[start:s.i]
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
	if err := s.value(0); err != nil {
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

// container consumes an object or array whose opening byte is at s.i.
func (s *Scanner) container(depth int, close byte) error {
	if depth >= MaxDepth {
		return s.errorf("nested too deeply")
	}
	s.i++
	for n := 0; ; n++ {
		c := s.Peek()
		if c == close {
			s.i++
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
			if err := s.str(); err != nil {
				return err
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

// str consumes a string whose opening quote is at s.i.
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
		case c < 0x20:
			s.i = i
			return s.errorf("invalid control character %q in a string", c)
		case s.LaxUTF8:
			i++
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
// inside the value or brackets do not balance.
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
				if depth > MaxDepth {
					s.i = i
					return nil, s.errorf("nested too deeply")
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
