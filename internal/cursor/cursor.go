// Package cursor holds what incremental syncs mean, apart from any source
// or record format: cursor values and how they compare, where a read
// starts (saved cursor, lookback, exclusive filters), and the filter that
// drops records a sync already has while keeping every record it does
// not — by cursor, by the identity of the records at the saved cursor, and
// by the identities of records an API repeats within a pass.
//
// The engine owns the filter and the state it is built from; converters
// (the JSON normalizer, typed database rows) call Keep once per row.
package cursor

import (
	"bytes"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/ferry-dev/ferry/internal/schema"
)

// Value is a value of a stream's cursor field. Raw may alias a response
// body: a Value kept beyond the call that produced it must be Clone'd.
type Value struct {
	// Type is Timestamp, Int, Float, Decimal or Text.
	Type schema.Type
	// Int holds an Int value or a Timestamp in microseconds.
	Int int64
	// Float holds a Float value.
	Float float64
	// Raw is the value as the source wrote it (without JSON quotes).
	Raw []byte
}

// Text returns the value as the source wrote it.
func (v Value) Text() string { return string(v.Raw) }

// Clone returns a copy that aliases nothing.
func (v Value) Clone() Value {
	v.Raw = bytes.Clone(v.Raw)
	return v
}

// IsZero reports whether v holds no value.
func (v Value) IsZero() bool { return v.Type == schema.Unknown && len(v.Raw) == 0 }

// Parse reads a cursor from its text, as stored in state or written in a
// connector's incremental.start: an RFC 3339 timestamp, a number, or any
// other text.
func Parse(text string) Value {
	b := []byte(text)
	if us, ok := schema.ParseTimestamp(b); ok {
		return Value{Type: schema.Timestamp, Int: us, Raw: b}
	}
	switch schema.ClassifyNumber(b) {
	case schema.Int:
		v, _ := schema.ParseInt(b)
		return Value{Type: schema.Int, Int: v, Raw: b}
	case schema.Float:
		f, _ := new(big.Float).SetString(text)
		v, _ := f.Float64()
		return Value{Type: schema.Float, Float: v, Raw: b}
	case schema.Decimal:
		return Value{Type: schema.Decimal, Raw: b}
	}
	return Value{Type: schema.Text, Raw: b}
}

func numeric(t schema.Type) bool { return t == schema.Int || t == schema.Float || t == schema.Decimal }

// Compare orders two cursors: timestamps by instant, numbers by value, and
// anything else by text.
func (v Value) Compare(o Value) int {
	switch {
	case v.Type == schema.Timestamp && o.Type == schema.Timestamp, v.Type == schema.Int && o.Type == schema.Int:
		return cmpInt(v.Int, o.Int)
	case v.Type == schema.Float && o.Type == schema.Float:
		switch {
		case v.Float < o.Float:
			return -1
		case v.Float > o.Float:
			return 1
		}
		return 0
	case numeric(v.Type) && numeric(o.Type):
		a, okA := new(big.Rat).SetString(string(v.Raw))
		b, okB := new(big.Rat).SetString(string(o.Raw))
		if okA && okB {
			return a.Cmp(b)
		}
	}
	return bytes.Compare(v.Raw, o.Raw)
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

// CompareText orders cursor texts as stored in state; "" is the smallest.
func CompareText(a, b string) int {
	switch {
	case a == b:
		return 0
	case a == "":
		return -1
	case b == "":
		return 1
	}
	return Parse(a).Compare(Parse(b))
}

// Lookback widens an incremental read behind the saved cursor: a duration
// for timestamp cursors, an amount for numeric ones.
type Lookback struct {
	Duration time.Duration
	Amount   int64
	IsAmount bool
}

// Before returns the cursor moved back by the lookback, or an error when
// the lookback does not fit the cursor's type.
func (lb Lookback) Before(cursor string) (string, error) {
	if lb.Duration == 0 && lb.Amount == 0 {
		return cursor, nil
	}
	c := Parse(cursor)
	switch {
	case c.Type == schema.Timestamp && !lb.IsAmount:
		return time.UnixMicro(c.Int - lb.Duration.Microseconds()).UTC().Format(time.RFC3339Nano), nil
	case c.Type == schema.Int && lb.IsAmount:
		return strconv.FormatInt(c.Int-lb.Amount, 10), nil
	case c.Type == schema.Timestamp:
		return "", &LookbackError{Msg: "lookback " + strconv.FormatInt(lb.Amount, 10) + " is a number but cursor " + strconv.Quote(cursor) + " is a timestamp: write it as a duration such as 2h"}
	default:
		return "", &LookbackError{Msg: "lookback " + lb.Duration.String() + " is a duration but cursor " + strconv.Quote(cursor) + " is not a timestamp"}
	}
}

// LookbackError reports a lookback that does not fit the cursor.
type LookbackError struct{ Msg string }

func (e *LookbackError) Error() string { return e.Msg }

// Granule returns the start of the granule before the one cursor falls
// in: for an API whose filter is exclusive (> since), asking from there
// returns every record that shares the cursor's granule. A cursor that is
// not a timestamp moves back by one unit for integers and is otherwise
// unchanged.
func Granule(cursor string, granularity time.Duration) string {
	c := Parse(cursor)
	switch c.Type {
	case schema.Timestamp:
		g := granularity.Microseconds()
		if g <= 0 {
			g = 1
		}
		start := c.Int - ((c.Int%g)+g)%g // floor to the granule
		return time.UnixMicro(start - g).UTC().Format(time.RFC3339Nano)
	case schema.Int:
		return strconv.FormatInt(c.Int-1, 10)
	}
	return strings.Clone(cursor)
}
