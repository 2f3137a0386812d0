package normalize

import (
	"math/big"
	"strings"

	"github.com/ferry-dev/ferry/internal/schema"
)

// Cursor is a value of a stream's incremental cursor field.
type Cursor struct {
	// Type is Timestamp, Int, Float, Decimal or Text.
	Type schema.Type
	// Int holds an Int value or a Timestamp in microseconds.
	Int int64
	// Float holds a Float value.
	Float float64
	// Text is the value as the source wrote it (without JSON quotes).
	Text string
}

// ParseCursor reads a cursor from its text, as stored in state or written
// in a connector's incremental.start: an RFC 3339 timestamp, a number, or
// any other text.
func ParseCursor(text string) Cursor {
	b := []byte(text)
	if us, ok := schema.ParseTimestamp(b); ok {
		return Cursor{Type: schema.Timestamp, Int: us, Text: text}
	}
	switch schema.ClassifyNumber(b) {
	case schema.Int:
		v, _ := schema.ParseInt(b)
		return Cursor{Type: schema.Int, Int: v, Text: text}
	case schema.Float:
		f, _ := new(big.Float).SetString(text)
		v, _ := f.Float64()
		return Cursor{Type: schema.Float, Float: v, Text: text}
	case schema.Decimal:
		return Cursor{Type: schema.Decimal, Text: text}
	}
	return Cursor{Type: schema.Text, Text: text}
}

func numeric(t schema.Type) bool { return t == schema.Int || t == schema.Float || t == schema.Decimal }

// Compare orders two cursors: timestamps by instant, numbers by value, and
// anything else by text.
func (c Cursor) Compare(o Cursor) int {
	switch {
	case c.Type == schema.Timestamp && o.Type == schema.Timestamp:
		return cmpInt(c.Int, o.Int)
	case c.Type == schema.Int && o.Type == schema.Int:
		return cmpInt(c.Int, o.Int)
	case c.Type == schema.Float && o.Type == schema.Float:
		switch {
		case c.Float < o.Float:
			return -1
		case c.Float > o.Float:
			return 1
		}
		return 0
	case numeric(c.Type) && numeric(o.Type):
		a, okA := new(big.Rat).SetString(c.Text)
		b, okB := new(big.Rat).SetString(o.Text)
		if okA && okB {
			return a.Cmp(b)
		}
	}
	return strings.Compare(c.Text, o.Text)
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// IsZero reports whether c holds no value.
func (c Cursor) IsZero() bool { return c.Type == schema.Unknown && c.Text == "" }
