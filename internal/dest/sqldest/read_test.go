package sqldest

import (
	"database/sql/driver"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/schema"
)

// valuer is a driver.Valuer, as some drivers scan into (pgtype values).
type valuer struct {
	v   driver.Value
	err error
}

func (v valuer) Value() (driver.Value, error) { return v.v, v.err }

// TestConvertValue: whatever a driver scanned (SQLite's int64 booleans
// and text timestamps, PostgreSQL's typed values, MySQL's bytes), a value
// comes back as the Go value of its logical type, as Chunk.Value gives
// it.
func TestConvertValue(t *testing.T) {
	at := time.Date(2024, 5, 1, 12, 30, 0, 123456000, time.UTC)
	plus2 := time.FixedZone("+02", 2*3600)
	tests := []struct {
		typ  schema.Type
		in   any
		want any
	}{
		{schema.Int, nil, nil},
		{schema.Text, valuer{v: nil}, nil},

		{schema.Bool, true, true},
		{schema.Bool, int64(1), true},
		{schema.Bool, int64(0), false},
		{schema.Bool, []byte("1"), true},
		{schema.Bool, "t", true},
		{schema.Bool, "FALSE", false},
		{schema.Bool, []byte("f"), false},

		{schema.Int, int64(-7), int64(-7)},
		{schema.Int, int32(7), int64(7)},
		{schema.Int, []byte("9223372036854775807"), int64(9223372036854775807)},
		{schema.Int, "42", int64(42)},
		{schema.Int, valuer{v: int64(5)}, int64(5)},

		{schema.Float, 1.5, 1.5},
		{schema.Float, float32(0.5), 0.5},
		{schema.Float, int64(3), 3.0},
		{schema.Float, []byte("-2.25"), -2.25},
		{schema.Float, "1e300", 1e300},

		{schema.Decimal, []byte("12.50"), "12.50"},
		{schema.Decimal, "-0.000000001", "-0.000000001"},
		{schema.Decimal, int64(12), "12"},
		{schema.Decimal, 0.25, "0.25"},
		{schema.Decimal, valuer{v: "99.99"}, "99.99"},

		{schema.Text, "héllo", "héllo"},
		{schema.Text, []byte("bytes"), "bytes"},
		{schema.Text, int64(1), "1"},
		{schema.Text, 2.5, "2.5"},
		{schema.Text, true, "true"},
		{schema.Text, at.In(plus2), "2024-05-01T12:30:00.123456Z"},

		{schema.Timestamp, at.In(plus2), at},
		{schema.Timestamp, "2024-05-01T12:30:00.123456Z", at},
		{schema.Timestamp, []byte("2024-05-01T14:30:00.123456+02:00"), at},
		{schema.Timestamp, "2024-05-01 14:30:00.123456+02", at},
		{schema.Timestamp, "2024-05-01 14:30:00.123456+02:00", at},
		{schema.Timestamp, []byte("2024-05-01 12:30:00.123456"), at},

		{schema.JSON, []byte(`{"a": [1, 2], "b": {"c": null}}`), `{"a":[1,2],"b":{"c":null}}`},
		{schema.JSON, `[ ]`, `[]`},
		{schema.JSON, `not json`, `not json`},
		{schema.JSON, map[string]any{"k": 1}, `{"k":1}`},

		{schema.Unknown, []byte("raw"), "raw"},
		{schema.Unknown, int64(3), int64(3)},
		{schema.Unknown, at, at},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s from %T %v", tt.typ, tt.in, tt.in), func(t *testing.T) {
			got, err := convertValue(tt.typ, tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("convertValue = %#v (%T), want %#v (%T)", got, got, tt.want, tt.want)
			}
			if ts, ok := got.(time.Time); ok && ts.Location() != time.UTC {
				t.Fatalf("timestamp %v is not in UTC", ts)
			}
		})
	}
}

func TestConvertValueRefuses(t *testing.T) {
	broken := errors.New("broken valuer")
	tests := []struct {
		typ  schema.Type
		in   any
		want string
	}{
		{schema.Bool, "maybe", "value maybe (string) is not a bool"},
		{schema.Int, []byte("1.5"), "value [49 46 53] ([]uint8) is not a int"},
		{schema.Int, 1.5, "value 1.5 (float64) is not a int"},
		{schema.Float, "one", "value one (string) is not a float"},
		{schema.Timestamp, "yesterday", "value yesterday (string) is not a timestamp"},
		{schema.Timestamp, int64(0), "value 0 (int64) is not a timestamp"},
		{schema.Text, valuer{err: broken}, "broken valuer"},
	}
	for _, tt := range tests {
		got, err := convertValue(tt.typ, tt.in)
		if err == nil || err.Error() != tt.want {
			t.Errorf("convertValue(%s, %#v) = %#v, %v; want the error %q", tt.typ, tt.in, got, err, tt.want)
		}
	}
}
