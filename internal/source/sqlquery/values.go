package sqlquery

import (
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/schema"
)

// TypeOf maps a database's type name (as database/sql reports it) to a
// logical type. Unknown types are text, so nothing is lost.
func TypeOf(dbType string) schema.Type {
	t := strings.ToUpper(strings.TrimSpace(dbType))
	if i := strings.IndexByte(t, '('); i >= 0 {
		t = t[:i]
	}
	switch t {
	case "BOOL", "BOOLEAN":
		return schema.Bool
	case "INT2", "INT4", "INT8", "SMALLINT", "INTEGER", "INT", "BIGINT", "MEDIUMINT", "TINYINT", "YEAR",
		"UNSIGNED TINYINT", "UNSIGNED SMALLINT", "UNSIGNED MEDIUMINT", "UNSIGNED INT":
		return schema.Int
	case "FLOAT4", "FLOAT8", "REAL", "DOUBLE", "FLOAT", "DOUBLE PRECISION":
		return schema.Float
	case "NUMERIC", "DECIMAL", "UNSIGNED BIGINT":
		return schema.Decimal
	case "TIMESTAMPTZ", "TIMESTAMP", "DATETIME", "DATE":
		return schema.Timestamp
	case "JSON", "JSONB":
		return schema.JSON
	case "":
		return schema.Unknown // SQLite expressions: typed by their values
	}
	return schema.Text
}

// binary reports whether a database type holds bytes (sent as base64).
func binary(dbType string) bool {
	switch strings.ToUpper(dbType) {
	case "BYTEA", "BLOB", "TINYBLOB", "MEDIUMBLOB", "LONGBLOB", "BINARY", "VARBINARY":
		return true
	}
	return false
}

// columns describes the result columns of a query.
type columns struct {
	names  []string
	types  []schema.Type
	binary []bool
}

func describe(cts []*sql.ColumnType) columns {
	var c columns
	for _, ct := range cts {
		c.names = append(c.names, ct.Name())
		c.types = append(c.types, TypeOf(ct.DatabaseTypeName()))
		c.binary = append(c.binary, binary(ct.DatabaseTypeName()))
	}
	return c
}

// valueType returns the logical type of a value a driver returned, for
// columns of unknown type.
func valueType(v any) schema.Type {
	switch v.(type) {
	case int64, int32, int:
		return schema.Int
	case float64, float32:
		return schema.Float
	case bool:
		return schema.Bool
	case time.Time:
		return schema.Timestamp
	}
	return schema.Text
}

// timeLayouts are the text forms of timestamps a driver may return as
// text (SQLite keeps them as text).
var timeLayouts = []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05.999999999", "2006-01-02"}

func parseTime(s string) (time.Time, bool) {
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// appendValue appends driver value v to vector vec of type t.
func appendValue(c *record.Chunk, vec *record.Vector, t schema.Type, v any, bin bool) error {
	if v == nil {
		vec.AppendNull(t)
		return nil
	}
	switch t {
	case schema.Bool:
		switch x := v.(type) {
		case bool:
			vec.AppendInt(b2i(x), nil)
			return nil
		case int64:
			vec.AppendInt(b2i(x != 0), nil)
			return nil
		}
	case schema.Int:
		switch x := v.(type) {
		case int64:
			vec.AppendInt(x, nil)
			return nil
		case []byte, string:
			if n, err := strconv.ParseInt(str(x), 10, 64); err == nil {
				vec.AppendInt(n, nil)
				return nil
			}
		}
	case schema.Float:
		switch x := v.(type) {
		case float64:
			vec.AppendFloat(x, nil)
			return nil
		case float32:
			vec.AppendFloat(float64(x), nil)
			return nil
		case int64:
			vec.AppendFloat(float64(x), nil)
			return nil
		case []byte, string:
			if f, err := strconv.ParseFloat(str(x), 64); err == nil {
				vec.AppendFloat(f, nil)
				return nil
			}
		}
	case schema.Timestamp:
		switch x := v.(type) {
		case time.Time:
			vec.AppendInt(x.UTC().UnixMicro(), nil)
			return nil
		case []byte, string:
			if tm, ok := parseTime(str(x)); ok {
				vec.AppendInt(tm.UTC().UnixMicro(), nil)
				return nil
			}
		}
	case schema.JSON:
		b := c.Arena().Copy([]byte(str(v)))
		if !json.Valid(b) {
			return fmt.Errorf("value is not JSON: %.60q", b)
		}
		vec.AppendBytes(b)
		return nil
	case schema.Decimal, schema.Text:
		var b []byte
		switch x := v.(type) {
		case []byte:
			if bin {
				b = base64.StdEncoding.AppendEncode(c.Arena().Alloc(base64.StdEncoding.EncodedLen(len(x)))[:0], x)
			} else {
				b = c.Arena().Copy(x)
			}
		case string:
			b = c.Arena().Copy([]byte(x))
		case time.Time:
			b = schema.FormatTimestamp(c.Arena().Alloc(32)[:0], x.UTC().UnixMicro())
		case int64:
			b = strconv.AppendInt(c.Arena().Alloc(20)[:0], x, 10)
		case float64:
			b = strconv.AppendFloat(c.Arena().Alloc(24)[:0], x, 'g', -1, 64)
		case bool:
			b = strconv.AppendBool(c.Arena().Alloc(5)[:0], x)
		default:
			b = c.Arena().Copy([]byte(fmt.Sprint(x)))
		}
		vec.AppendBytes(b)
		return nil
	}
	return fmt.Errorf("value %v (%T) is not a %s", v, v, t)
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func str(v any) string {
	switch x := v.(type) {
	case []byte:
		return string(x)
	case string:
		return x
	}
	return fmt.Sprint(v)
}

// param converts a value kept in a position or state (text) back to what
// the driver compares with a column of type t.
func param(t schema.Type, s string) any {
	switch t {
	case schema.Int:
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n
		}
	case schema.Float:
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			return f
		}
	case schema.Timestamp:
		if tm, ok := parseTime(s); ok {
			return tm.UTC()
		}
	case schema.Bool:
		if b, err := strconv.ParseBool(s); err == nil {
			return b
		}
	}
	return s
}

// text renders a driver value as the text param reads back.
func text(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case []byte:
		return string(x)
	}
	return fmt.Sprint(v)
}
