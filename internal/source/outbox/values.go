package outbox

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/schema"
)

// appendValue appends a driver value to a vector of type t.
func appendValue(c *record.Chunk, vec *record.Vector, t schema.Type, v any) error {
	if v == nil {
		vec.AppendNull(t)
		return nil
	}
	s := ""
	switch x := v.(type) {
	case []byte:
		s = string(x)
	case string:
		s = x
	case time.Time:
		if t == schema.Timestamp {
			vec.AppendInt(x.UTC().UnixMicro(), nil)
			return nil
		}
		s = x.UTC().Format(time.RFC3339Nano)
	case int64:
		switch t {
		case schema.Int, schema.Bool:
			vec.AppendInt(x, nil)
			return nil
		case schema.Float:
			vec.AppendFloat(float64(x), nil)
			return nil
		}
		s = strconv.FormatInt(x, 10)
	case float64:
		if t == schema.Float {
			vec.AppendFloat(x, nil)
			return nil
		}
		s = strconv.FormatFloat(x, 'g', -1, 64)
	case bool:
		if t == schema.Bool {
			vec.AppendInt(map[bool]int64{false: 0, true: 1}[x], nil)
			return nil
		}
		s = strconv.FormatBool(x)
	default:
		s = fmt.Sprint(v)
	}
	switch t {
	case schema.Int, schema.Bool:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return err
		}
		vec.AppendInt(n, nil)
	case schema.Float:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return err
		}
		vec.AppendFloat(f, nil)
	case schema.Timestamp:
		for _, l := range []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999", "2006-01-02"} {
			if tm, err := time.Parse(l, s); err == nil {
				vec.AppendInt(tm.UTC().UnixMicro(), nil)
				return nil
			}
		}
		return fmt.Errorf("%q is not a timestamp", s)
	case schema.JSON:
		if !json.Valid([]byte(s)) {
			// A payload that is not JSON goes as a JSON string.
			b, _ := json.Marshal(s)
			vec.AppendBytes(c.Arena().Copy(b))
			return nil
		}
		vec.AppendBytes(c.Arena().Copy([]byte(s)))
	default:
		vec.AppendBytes(c.Arena().Copy([]byte(s)))
	}
	return nil
}
