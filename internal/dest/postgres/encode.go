package postgres

import (
	"bytes"
	"encoding/binary"
	"math"
	"unicode/utf8"

	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/schema"
)

// copyHeader starts PostgreSQL's binary COPY format: the signature, no
// flags, no header extension.
const copyHeader = "PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00"

// copyTrailer ends it: a field count of -1.
const copyTrailer = "\xff\xff"

// pgEpochMicros is 2000-01-01T00:00:00Z, PostgreSQL's timestamp origin, in
// microseconds since the Unix epoch.
const pgEpochMicros = 946684800000000

// maxJSONDepth is the deepest nesting Ferry sends to jsonb: PostgreSQL's
// parser recurses and stops at its stack limit (about 10,000 levels with
// the default max_stack_depth of 2MB), and Ferry's JSON reader stops at
// 10,000 too.
const maxJSONDepth = 10000

// maxIndexKeyBytes bounds the key of a row written to a table with a
// unique index: a B-tree entry holds at most about 2700 bytes.
const maxIndexKeyBytes = 2600

// Wire encodings of a column, chosen from its logical type and the type
// the column has in the database.
type wire uint8

const (
	wireNull wire = iota // always NULL (columns of unknown type)
	wireBool
	wireInt8
	wireFloat8
	wireNumeric
	wireTimestamp
	wireText
	wireJSONB
	wireJSON // a json column: the text without jsonb's version byte
)

// rowEncoder writes rows of chunks in the binary COPY format. It refuses,
// instead of sending, the values PostgreSQL would reject, so that one bad
// value cannot fail a whole COPY.
type rowEncoder struct {
	wires []wire
	keys  []int // primary key columns: never NULL
	// index is true when the table has a unique index on the key.
	index bool
	// ordinal appends one more column: the row's arrival number.
	ordinal bool
}

// appendRow appends row r of c. On refusal it returns the offending column
// and the reason, and the caller truncates dst back.
func (e *rowEncoder) appendRow(dst []byte, c *record.Chunk, r int, ord int64) ([]byte, int, string) {
	n := len(e.wires)
	if e.ordinal {
		n++
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	for j, w := range e.wires {
		v := &c.Cols[j]
		if w == wireNull || v.Nulls[r] {
			dst = append(dst, 0xff, 0xff, 0xff, 0xff)
			continue
		}
		switch w {
		case wireBool:
			b := byte(0)
			if v.Ints[r] != 0 {
				b = 1
			}
			dst = append(dst, 0, 0, 0, 1, b)
		case wireInt8:
			dst = append(dst, 0, 0, 0, 8)
			dst = binary.BigEndian.AppendUint64(dst, uint64(v.Ints[r]))
		case wireFloat8:
			dst = append(dst, 0, 0, 0, 8)
			dst = binary.BigEndian.AppendUint64(dst, math.Float64bits(v.Floats[r]))
		case wireTimestamp:
			dst = append(dst, 0, 0, 0, 8)
			dst = binary.BigEndian.AppendUint64(dst, uint64(v.Ints[r]-pgEpochMicros))
		case wireText:
			s := v.Bytes[r]
			if why := checkText(s); why != "" {
				return dst, j, why
			}
			dst = binary.BigEndian.AppendUint32(dst, uint32(len(s)))
			dst = append(dst, s...)
		case wireJSONB, wireJSON:
			s := v.Bytes[r]
			if why := checkJSONB(s); why != "" {
				return dst, j, why
			}
			if w == wireJSONB {
				dst = binary.BigEndian.AppendUint32(dst, uint32(len(s)+1))
				dst = append(dst, 1) // jsonb format version
			} else {
				dst = binary.BigEndian.AppendUint32(dst, uint32(len(s)))
			}
			dst = append(dst, s...)
		case wireNumeric:
			at := len(dst)
			dst = append(dst, 0, 0, 0, 0)
			var err error
			if dst, err = appendNumeric(dst, v.Bytes[r]); err != nil {
				return dst, j, err.Error()
			}
			binary.BigEndian.PutUint32(dst[at:], uint32(len(dst)-at-4))
		}
	}
	if e.ordinal {
		dst = append(dst, 0, 0, 0, 8)
		dst = binary.BigEndian.AppendUint64(dst, uint64(ord))
	}
	size := 0
	for _, j := range e.keys {
		if c.Cols[j].Nulls[r] {
			return dst, j, "the primary key value is null"
		}
		if w := e.wires[j]; w == wireText || w == wireNumeric || w == wireJSONB || w == wireJSON {
			size += len(c.Cols[j].Bytes[r])
		} else {
			size += 8
		}
	}
	if e.index && size > maxIndexKeyBytes {
		return dst, e.keys[len(e.keys)-1], "the primary key is longer than PostgreSQL's index entries allow (about 2700 bytes)"
	}
	return dst, -1, ""
}

// checkText reports why PostgreSQL would refuse text s, or "".
func checkText(s []byte) string {
	if plainASCII(s) {
		return ""
	}
	if bytes.IndexByte(s, 0) >= 0 {
		return "text contains the character U+0000 (NUL), which PostgreSQL cannot store"
	}
	if !utf8.Valid(s) {
		return "text is not valid UTF-8"
	}
	return ""
}

// plainASCII reports whether s is ASCII without NUL bytes, eight bytes at
// a time: the common case, which needs no closer look.
func plainASCII(s []byte) bool {
	const hi, lo = 0x8080808080808080, 0x0101010101010101
	i := 0
	for ; i+8 <= len(s); i += 8 {
		w := binary.LittleEndian.Uint64(s[i:])
		if w&hi != 0 || (w-lo)&^w&hi != 0 {
			return false
		}
	}
	for ; i < len(s); i++ {
		if c := s[i]; c == 0 || c >= 0x80 {
			return false
		}
	}
	return true
}

// Byte classes for checkJSONB.
const (
	jsonOther = iota
	jsonQuote
	jsonOpen
	jsonClose
	jsonNumber
	jsonEscape
	jsonControl
)

var (
	outsideClass [256]uint8 // between values
	insideClass  [256]uint8 // within strings
)

func init() {
	outsideClass['"'] = jsonQuote
	outsideClass['['], outsideClass['{'] = jsonOpen, jsonOpen
	outsideClass[']'], outsideClass['}'] = jsonClose, jsonClose
	outsideClass['-'] = jsonNumber
	for c := '0'; c <= '9'; c++ {
		outsideClass[c] = jsonNumber
	}
	insideClass['"'] = jsonQuote
	insideClass['\\'] = jsonEscape
	for c := 0; c < 0x20; c++ {
		insideClass[c] = jsonControl
	}
}

const unpairedSurrogate = "JSON string contains an unpaired UTF-16 surrogate escape, which PostgreSQL's jsonb refuses"

// checkJSONB reports why PostgreSQL's jsonb would refuse the JSON text s,
// or "". s is valid JSON (the normalizer checked it); what jsonb adds is:
// no \u0000 escape, no unpaired surrogate escape, numbers within numeric's
// range, and bounded nesting.
func checkJSONB(s []byte) string {
	if !plainASCII(s) && !utf8.Valid(s) {
		return "JSON text is not valid UTF-8"
	}
	if !needsScan(s) {
		return ""
	}
	depth := 0
	for i := 0; i < len(s); i++ {
		switch outsideClass[s[i]] {
		case jsonOther:
		case jsonQuote:
			for i++; i < len(s); i++ {
				k := insideClass[s[i]]
				if k == jsonOther {
					continue
				}
				if k == jsonQuote {
					break
				}
				if k == jsonControl {
					return "JSON string contains an unescaped control character"
				}
				// An escape.
				if i+1 >= len(s) || s[i+1] != 'u' {
					i++
					continue
				}
				cp, ok := hex4(s, i+2)
				if !ok {
					return "JSON string contains an invalid \\u escape"
				}
				i += 5
				switch {
				case cp == 0:
					return "JSON string contains \\u0000, which PostgreSQL's jsonb cannot store"
				case cp >= 0xDC00 && cp <= 0xDFFF:
					return unpairedSurrogate
				case cp >= 0xD800 && cp <= 0xDBFF:
					if i+2 >= len(s) || s[i+1] != '\\' || s[i+2] != 'u' {
						return unpairedSurrogate
					}
					if lo, ok := hex4(s, i+3); !ok || lo < 0xDC00 || lo > 0xDFFF {
						return unpairedSurrogate
					}
					i += 6
				}
			}
		case jsonOpen:
			if depth++; depth > maxJSONDepth {
				return "JSON is nested more than 10000 levels deep"
			}
		case jsonClose:
			depth--
		case jsonNumber:
			j, exp := i+1, false
			for j < len(s) {
				c := s[j]
				if c == 'e' || c == 'E' {
					exp = true
				} else if !isDigit(c) && c != '.' && c != '+' && c != '-' {
					break
				}
				j++
			}
			if exp || j-i > maxNumericFracDigits {
				if d, err := parseDecimal(s[i:j]); err == nil {
					if err := d.check(); err != nil {
						return "JSON " + err.Error()
					}
				}
			}
			i = j - 1
		}
	}
	return ""
}

// needsScan reports whether JSON text s may hold something jsonb refuses:
// an escape, a number with an exponent, a number or nesting too long.
// Most JSON has none, and SIMD searches tell it faster than a scan.
func needsScan(s []byte) bool {
	if len(s) > maxNumericFracDigits || bytes.IndexByte(s, '\\') >= 0 {
		return true
	}
	for _, e := range [2]byte{'e', 'E'} {
		for i := 0; ; i++ {
			k := bytes.IndexByte(s[i:], e)
			if k < 0 {
				break
			}
			i += k
			if i > 0 && isDigit(s[i-1]) {
				return true // an exponent, or a string such as "1e" that merely looks like one
			}
		}
	}
	return false
}

// hex4 reads four hex digits at s[i:].
func hex4(s []byte, i int) (rune, bool) {
	if i < 0 || i+4 > len(s) {
		return 0, false
	}
	var r rune
	for _, c := range s[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// wireFor picks the encoding of a column of logical type t stored in a
// column of database type oid; ok is false when Ferry cannot write it.
func wireFor(t schema.Type, oid uint32) (wire, bool) {
	switch t {
	case schema.Unknown:
		return wireNull, true
	case schema.Bool:
		return wireBool, oid == oidBool
	case schema.Int:
		return wireInt8, oid == oidInt8
	case schema.Float:
		return wireFloat8, oid == oidFloat8
	case schema.Decimal:
		return wireNumeric, oid == oidNumeric
	case schema.Timestamp:
		return wireTimestamp, oid == oidTimestamptz || oid == oidTimestamp
	case schema.Text:
		return wireText, oid == oidText || oid == oidVarchar || oid == oidBpchar
	case schema.JSON:
		if oid == oidJSON {
			return wireJSON, true
		}
		return wireJSONB, oid == oidJSONB
	}
	return wireNull, false
}

// Type OIDs of the built-in types Ferry writes.
const (
	oidBool        = 16
	oidInt8        = 20
	oidText        = 25
	oidJSON        = 114
	oidFloat8      = 701
	oidBpchar      = 1042
	oidVarchar     = 1043
	oidTimestamp   = 1114
	oidTimestamptz = 1184
	oidNumeric     = 1700
	oidJSONB       = 3802
)
