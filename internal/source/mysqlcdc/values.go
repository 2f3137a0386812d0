package mysqlcdc

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/schema"
)

var timeLayouts = []string{"2006-01-02 15:04:05.999999", "2006-01-02T15:04:05.999999Z07:00", "2006-01-02"}

// appendValue appends a value of column col, as the binlog decoder or the
// driver gave it, to vec.
func appendValue(c *record.Chunk, vec *record.Vector, col column, v any) error {
	if v == nil {
		vec.AppendNull(col.typ)
		return nil
	}
	switch col.dataType {
	case "enum":
		if n, ok := toInt(v); ok {
			if n == 0 || int(n) > len(col.values) {
				vec.AppendBytes(nil)
				return nil
			}
			vec.AppendBytes([]byte(col.values[n-1]))
			return nil
		}
	case "set":
		if n, ok := toInt(v); ok {
			var names []string
			for i, m := range col.values {
				if n&(1<<i) != 0 {
					names = append(names, m)
				}
			}
			vec.AppendBytes(c.Arena().Copy([]byte(strings.Join(names, ","))))
			return nil
		}
	}
	switch col.typ {
	case schema.Int:
		if n, ok := toInt(v); ok {
			if col.unsigned {
				n = unsigned(col.dataType, v, n)
			}
			vec.AppendInt(n, nil)
			return nil
		}
		if b, ok := v.([]byte); ok && col.dataType == "bit" { // the driver's bit(n): big-endian bytes
			var n int64
			for _, x := range b {
				n = n<<8 | int64(x)
			}
			vec.AppendInt(n, nil)
			return nil
		}
		if n, err := strconv.ParseInt(text(v), 10, 64); err == nil {
			vec.AppendInt(n, nil)
			return nil
		}
	case schema.Decimal:
		if n, ok := toInt(v); ok && col.unsigned {
			vec.AppendBytes(strconv.AppendUint(c.Arena().Alloc(20)[:0], uint64(n), 10))
			return nil
		}
		s := text(v)
		if _, err := strconv.ParseFloat(s, 64); err != nil {
			return fmt.Errorf("%q is not a number", s)
		}
		vec.AppendBytes(c.Arena().Copy([]byte(s)))
		return nil
	case schema.Float:
		switch x := v.(type) {
		case float32:
			vec.AppendFloat(float64(x), nil)
			return nil
		case float64:
			vec.AppendFloat(x, nil)
			return nil
		}
		if f, err := strconv.ParseFloat(text(v), 64); err == nil {
			vec.AppendFloat(f, nil)
			return nil
		}
	case schema.Timestamp:
		if t, ok := v.(time.Time); ok {
			vec.AppendInt(t.UTC().UnixMicro(), nil)
			return nil
		}
		s := text(v)
		if strings.HasPrefix(s, "0000-00-00") {
			vec.AppendNull(col.typ) // MySQL's zero date holds no time
			return nil
		}
		for _, l := range timeLayouts {
			if t, err := time.Parse(l, s); err == nil {
				vec.AppendInt(t.UTC().UnixMicro(), nil)
				return nil
			}
		}
		return fmt.Errorf("%q is not a timestamp", s)
	case schema.JSON:
		b := []byte(text(v))
		if len(b) == 0 {
			b = []byte("null")
		}
		if !json.Valid(b) {
			return fmt.Errorf("%.60q is not JSON", b)
		}
		vec.AppendBytes(c.Arena().Copy(b))
		return nil
	default:
		if b, ok := v.([]byte); ok && binaryType(col.dataType) {
			vec.AppendBytes(base64.StdEncoding.AppendEncode(c.Arena().Alloc(base64.StdEncoding.EncodedLen(len(b)))[:0], b))
			return nil
		}
		vec.AppendBytes(c.Arena().Copy([]byte(text(v))))
		return nil
	}
	return fmt.Errorf("value %v (%T) is not a %s", v, v, col.typ)
}

// unsigned reads a signed integer the binlog decoder returned for an
// unsigned column as the unsigned value it is.
func unsigned(dataType string, v any, n int64) int64 {
	if n >= 0 {
		return n
	}
	switch dataType {
	case "tinyint":
		return n & 0xFF
	case "smallint":
		return n & 0xFFFF
	case "mediumint":
		return n & 0xFFFFFF
	case "int", "integer":
		return n & 0xFFFFFFFF
	}
	return n
}

func toInt(v any) (int64, bool) {
	switch x := v.(type) {
	case int8:
		return int64(x), true
	case int16:
		return int64(x), true
	case int32:
		return int64(x), true
	case int64:
		return x, true
	case int:
		return int64(x), true
	case uint8:
		return int64(x), true
	case uint16:
		return int64(x), true
	case uint32:
		return int64(x), true
	case uint64:
		return int64(x), true
	}
	return 0, false
}

func text(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		return string(x)
	case time.Time:
		return x.UTC().Format("2006-01-02 15:04:05.999999")
	}
	return fmt.Sprint(v)
}

// beforeJSON renders a row image as a JSON object.
func beforeJSON(cols []column, vals []any) []byte {
	t := &schema.Table{}
	for _, c := range cols {
		t.Columns = append(t.Columns, schema.Column{Name: c.name, Type: c.typ})
	}
	c := record.NewChunk(t, 1)
	for j, col := range cols {
		var v any
		if j < len(vals) {
			v = vals[j]
		}
		if err := appendValue(c, &c.Cols[j], col, v); err != nil {
			c.Cols[j].Truncate(0)
			c.Cols[j].AppendNull(col.typ)
		}
	}
	c.Ops = append(c.Ops, record.Upsert)
	c.Len = 1
	return c.AppendJSON(nil, 0)
}
