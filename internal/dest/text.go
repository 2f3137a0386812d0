package dest

import (
	"strconv"
	"time"
)

// Text is the canonical text of a value a Reader returns: true or false,
// integers and floats in their shortest form, timestamps in RFC 3339 with
// nanoseconds in UTC, strings as they are. ok is false for nil and for any
// other type, which callers render as they need (NULL, an empty CSV cell,
// JSON).
func Text(v any) (s string, ok bool) {
	switch x := v.(type) {
	case bool:
		return strconv.FormatBool(x), true
	case int64:
		return strconv.FormatInt(x, 10), true
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), true
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano), true
	case string:
		return x, true
	}
	return "", false
}
