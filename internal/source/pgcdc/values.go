package pgcdc

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/schema"
)

// Type OIDs of PostgreSQL's built-in types Ferry maps to other than text.
const (
	oidBool        = 16
	oidBytea       = 17
	oidInt8        = 20
	oidInt2        = 21
	oidInt4        = 23
	oidOID         = 26
	oidJSON        = 114
	oidFloat4      = 700
	oidFloat8      = 701
	oidDate        = 1082
	oidTimestamp   = 1114
	oidTimestamptz = 1184
	oidNumeric     = 1700
	oidJSONB       = 3802
)

// typeOf maps a type OID to a logical type.
func typeOf(oid uint32) schema.Type {
	switch oid {
	case oidBool:
		return schema.Bool
	case oidInt2, oidInt4, oidInt8, oidOID:
		return schema.Int
	case oidFloat4, oidFloat8:
		return schema.Float
	case oidNumeric:
		return schema.Decimal
	case oidDate, oidTimestamp, oidTimestamptz:
		return schema.Timestamp
	case oidJSON, oidJSONB:
		return schema.JSON
	}
	return schema.Text
}

var timeLayouts = []string{"2006-01-02 15:04:05.999999-07:00", "2006-01-02 15:04:05.999999-07", "2006-01-02 15:04:05.999999", "2006-01-02"}

// parseTime reads PostgreSQL's text form of a date or timestamp (the
// session is in UTC, so timestamptz values end in +00).
func parseTime(s string) (time.Time, error) {
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a timestamp Ferry can store (infinity and BC dates are not)", s)
}

// appendText appends PostgreSQL's text form of a value of type oid to
// vec (of the logical type typeOf(oid)).
func appendText(c *record.Chunk, vec *record.Vector, oid uint32, text []byte) error {
	switch typeOf(oid) {
	case schema.Bool:
		vec.AppendInt(b2i(len(text) > 0 && text[0] == 't'), nil)
	case schema.Int:
		n, err := strconv.ParseInt(string(text), 10, 64)
		if err != nil {
			return err
		}
		vec.AppendInt(n, nil)
	case schema.Float:
		f, err := strconv.ParseFloat(string(text), 64)
		if err != nil {
			return err
		}
		vec.AppendFloat(f, nil)
	case schema.Timestamp:
		t, err := parseTime(string(text))
		if err != nil {
			return err
		}
		vec.AppendInt(t.UnixMicro(), nil)
	case schema.Decimal:
		if _, err := strconv.ParseFloat(string(text), 64); err != nil {
			return fmt.Errorf("numeric %q is not a number Ferry can store", text)
		}
		vec.AppendBytes(c.Arena().Copy(text))
	case schema.JSON:
		vec.AppendBytes(c.Arena().Copy(text))
	default:
		if oid == oidBytea && len(text) >= 2 && text[0] == '\\' && text[1] == 'x' {
			raw := make([]byte, hex.DecodedLen(len(text)-2))
			if _, err := hex.Decode(raw, text[2:]); err != nil {
				return err
			}
			text = base64.StdEncoding.AppendEncode(nil, raw)
		}
		vec.AppendBytes(c.Arena().Copy(text))
	}
	return nil
}

// jsonValue returns a value's JSON form, for before images.
func jsonValue(oid uint32, text []byte) json.RawMessage {
	switch typeOf(oid) {
	case schema.Bool:
		if len(text) > 0 && text[0] == 't' {
			return json.RawMessage("true")
		}
		return json.RawMessage("false")
	case schema.Int, schema.Decimal:
		if _, err := strconv.ParseFloat(string(text), 64); err == nil {
			return json.RawMessage(text)
		}
	case schema.Float:
		if f, err := strconv.ParseFloat(string(text), 64); err == nil && !strings.ContainsAny(string(text), "NnIi") {
			return json.RawMessage(strconv.FormatFloat(f, 'g', -1, 64))
		}
	case schema.JSON:
		if json.Valid(text) {
			return json.RawMessage(text)
		}
	case schema.Timestamp:
		if t, err := parseTime(string(text)); err == nil {
			b, _ := json.Marshal(string(schema.FormatTimestamp(nil, t.UnixMicro())))
			return b
		}
	}
	b, _ := json.Marshal(string(text))
	return b
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
