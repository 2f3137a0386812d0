package schema

import (
	"time"
	"unsafe"
)

// maxFloatDigits is the number of significant decimal digits any float64
// round-trips exactly; numbers with more are kept as Decimal.
const maxFloatDigits = 15

// ClassifyNumber returns the narrowest type that holds the JSON number
// literal num exactly: Int for integers that fit in int64, Float for
// numbers with a fraction or exponent and at most 15 significant digits
// within float64's range, Decimal otherwise. It returns Unknown when num is
// not a valid JSON number.
func ClassifyNumber(num []byte) Type {
	i := 0
	if i < len(num) && num[i] == '-' {
		i++
	}
	if i >= len(num) {
		return Unknown
	}
	intStart := i
	if num[i] == '0' {
		i++
	} else if num[i] >= '1' && num[i] <= '9' {
		for i < len(num) && num[i] >= '0' && num[i] <= '9' {
			i++
		}
	} else {
		return Unknown
	}
	intEnd := i
	fracStart, fracEnd := i, i
	if i < len(num) && num[i] == '.' {
		i++
		fracStart = i
		for i < len(num) && num[i] >= '0' && num[i] <= '9' {
			i++
		}
		if i == fracStart {
			return Unknown
		}
		fracEnd = i
	}
	exp, hasExp := 0, false
	if i < len(num) && (num[i] == 'e' || num[i] == 'E') {
		hasExp = true
		i++
		neg := false
		if i < len(num) && (num[i] == '+' || num[i] == '-') {
			neg = num[i] == '-'
			i++
		}
		start := i
		for i < len(num) && num[i] >= '0' && num[i] <= '9' {
			if exp < 100000 {
				exp = exp*10 + int(num[i]-'0')
			}
			i++
		}
		if i == start {
			return Unknown
		}
		if neg {
			exp = -exp
		}
	}
	if i != len(num) {
		return Unknown
	}
	if !hasExp && fracEnd == fracStart {
		if _, ok := ParseInt(num); ok {
			return Int
		}
		return Decimal
	}
	// Count significant digits and the decimal exponent of the first one.
	digits := 0
	firstExp := 0 // power of ten of the most significant non-zero digit
	seen := false
	trailingZeros := 0
	for j := intStart; j < intEnd; j++ {
		if num[j] != '0' || seen {
			if !seen {
				firstExp = intEnd - j - 1
			}
			seen = true
			digits++
			if num[j] == '0' {
				trailingZeros++
			} else {
				trailingZeros = 0
			}
		}
	}
	for j := fracStart; j < fracEnd; j++ {
		if num[j] != '0' || seen {
			if !seen {
				firstExp = -(j - fracStart + 1)
			}
			seen = true
			digits++
			if num[j] == '0' {
				trailingZeros++
			} else {
				trailingZeros = 0
			}
		}
	}
	if !seen {
		return Float // zero
	}
	digits -= trailingZeros
	mag := firstExp + exp
	if digits > maxFloatDigits || mag > 300 || mag < -300 {
		return Decimal
	}
	return Float
}

// ParseInt parses a JSON integer literal without allocating. ok is false
// when num is not an integer or does not fit in int64.
func ParseInt(num []byte) (v int64, ok bool) {
	if len(num) == 0 {
		return 0, false
	}
	neg := num[0] == '-'
	i := 0
	if neg {
		i = 1
		if len(num) == 1 {
			return 0, false
		}
	}
	if num[i] == '0' && len(num) > i+1 {
		return 0, false
	}
	var u uint64
	for ; i < len(num); i++ {
		c := num[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if u > (1<<63)/10 {
			return 0, false
		}
		u = u*10 + uint64(c-'0')
		if u > 1<<63 {
			return 0, false
		}
	}
	if neg {
		return -int64(u), true // -(1<<63) wraps to itself, which is MinInt64
	}
	if u > 1<<63-1 {
		return 0, false
	}
	return int64(u), true
}

// ParseTimestamp parses an RFC 3339 date-time ("2024-05-01T12:30:00Z",
// with an optional fraction of up to six digits and a numeric offset) and
// returns it as microseconds since the Unix epoch. Strings with a finer
// fraction are not timestamps to Ferry: storing them would truncate them.
func ParseTimestamp(s []byte) (micros int64, ok bool) {
	// Cheap shape check before time.Parse: YYYY-MM-DDTHH:MM:SS…
	if len(s) < 20 || len(s) > 35 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' {
		return 0, false
	}
	switch s[19] {
	case ',':
		// time.Parse takes a comma before the fraction; RFC 3339 does not,
		// and the value would not print back the same. Keep it as text.
		return 0, false
	case '.':
		n := 0
		for j := 20; j < len(s) && s[j] >= '0' && s[j] <= '9'; j++ {
			n++
		}
		if n == 0 || n > 6 {
			return 0, false
		}
	}
	t, err := time.Parse(time.RFC3339Nano, unsafe.String(unsafe.SliceData(s), len(s)))
	if err != nil {
		return 0, false
	}
	us := t.UnixMicro()
	if us < minTimestamp || us > maxTimestamp {
		// An offset moved it out of years 0000–9999 in UTC, where it
		// would no longer print as RFC 3339. Keep it as text.
		return 0, false
	}
	return us, true
}

// The range of timestamps that print as RFC 3339 in UTC.
var (
	minTimestamp = time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()
	maxTimestamp = time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC).UnixMicro()
)

// FormatTimestamp renders microseconds since the epoch as RFC 3339 in UTC
// with as many fraction digits as needed (none for whole seconds).
func FormatTimestamp(dst []byte, micros int64) []byte {
	return time.UnixMicro(micros).UTC().AppendFormat(dst, time.RFC3339Nano)
}
