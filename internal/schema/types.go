// Package schema describes destination tables independently of any SQL
// dialect: the logical column types Ferry infers from JSON, how one type
// widens into another when the data changes, how JSON keys become safe
// identifiers, and how two versions of a table differ.
//
// Every SQL destination shares this package; a dialect only says how it
// spells each logical type.
package schema

import (
	"fmt"
	"strings"
)

// Type is a logical column type. The zero value, Unknown, is the type of a
// column for which only nulls have been seen.
type Type uint8

// The logical types, from the narrowest to the widest. Numbers widen along
// Int → Float → Decimal; any other mismatch widens to Text.
const (
	Unknown   Type = iota // only nulls seen so far
	Bool                  // true or false
	Int                   // integer that fits in int64
	Float                 // IEEE 754 float64; only numbers with at most 15 significant digits
	Decimal               // exact decimal number kept as its text (big integers, long fractions, decimal strings)
	Timestamp             // instant from an RFC 3339 string, kept in UTC with microsecond precision
	Text                  // UTF-8 text
	JSON                  // nested object or array, kept as JSON text
)

var typeNames = [...]string{
	Unknown:   "unknown",
	Bool:      "bool",
	Int:       "int",
	Float:     "float",
	Decimal:   "decimal",
	Timestamp: "timestamp",
	Text:      "text",
	JSON:      "json",
}

// String returns the name used in specs, state and messages.
func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// ParseType parses a type name as written in a connector's column hints.
func ParseType(s string) (Type, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "bool", "boolean":
		return Bool, nil
	case "int", "integer", "bigint":
		return Int, nil
	case "float", "double", "number":
		return Float, nil
	case "decimal", "numeric":
		return Decimal, nil
	case "timestamp", "datetime", "date-time":
		return Timestamp, nil
	case "text", "string":
		return Text, nil
	case "json", "object", "array":
		return JSON, nil
	}
	return Unknown, fmt.Errorf("unknown column type %q (want one of bool, int, float, decimal, timestamp, text, json)", s)
}

// MarshalText implements encoding.TextMarshaler so types persist by name.
func (t Type) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (t *Type) UnmarshalText(b []byte) error {
	if string(b) == "unknown" {
		*t = Unknown
		return nil
	}
	v, err := ParseType(string(b))
	if err != nil {
		return err
	}
	*t = v
	return nil
}

// numeric reports whether t is on the Int → Float → Decimal chain.
func (t Type) numeric() bool { return t == Int || t == Float || t == Decimal }

// Widen returns the narrowest type that can hold every value of a and b
// without loss. It is commutative and associative, Unknown is its identity,
// and Text absorbs everything.
func Widen(a, b Type) Type {
	switch {
	case a == b:
		return a
	case a == Unknown:
		return b
	case b == Unknown:
		return a
	case a.numeric() && b.numeric():
		return max(a, b)
	}
	return Text
}

// Contains reports whether every value of type v can be stored in a column
// of type t without changing the column.
func (t Type) Contains(v Type) bool { return Widen(t, v) == t }
