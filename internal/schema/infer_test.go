package schema

import (
	"encoding/json"
	"math"
	"math/big"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestClassifyNumber(t *testing.T) {
	tests := map[string]Type{
		"0": Int, "-0": Int, "42": Int, "-9223372036854775808": Int, "9223372036854775807": Int,
		"9223372036854775808": Decimal, "123456789012345678901234567890": Decimal,
		"1.5": Float, "1e3": Float, "-2.5E-3": Float, "0.1": Float, "123456789012345.0": Float,
		"1234567890123456.7": Decimal, "0.1000000000000000055511151231257827": Decimal, "1e400": Decimal, "1e-400": Decimal,
		"01": Unknown, "1.": Unknown, ".5": Unknown, "+1": Unknown, "1e": Unknown, "": Unknown, "-": Unknown, "NaN": Unknown,
	}
	for in, want := range tests {
		if got := ClassifyNumber([]byte(in)); got != want {
			t.Errorf("ClassifyNumber(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestWiden(t *testing.T) {
	types := []Type{Unknown, Bool, Int, Float, Decimal, Timestamp, Text, JSON}
	for _, a := range types {
		for _, b := range types {
			w := Widen(a, b)
			if w != Widen(b, a) {
				t.Errorf("Widen(%s, %s) is not commutative", a, b)
			}
			if !w.Contains(a) || !w.Contains(b) {
				t.Errorf("Widen(%s, %s) = %s does not contain both", a, b, w)
			}
			for _, c := range types {
				if Widen(Widen(a, b), c) != Widen(a, Widen(b, c)) {
					t.Errorf("Widen is not associative on %s, %s, %s", a, b, c)
				}
			}
		}
	}
	for _, tc := range []struct{ a, b, want Type }{{Int, Float, Float}, {Float, Decimal, Decimal}, {Int, Decimal, Decimal}, {Bool, Int, Text}, {Timestamp, Text, Text}, {JSON, Int, Text}} {
		if got := Widen(tc.a, tc.b); got != tc.want {
			t.Errorf("Widen(%s, %s) = %s, want %s", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestNormalize(t *testing.T) {
	tests := map[string]string{
		"id": "id", "createdAt": "created_at", "HTTPCode": "http_code", "userID": "user_id", "Price ($)": "price",
		`"; DROP TABLE x;--`: "drop_table_x", "a.b": "a_b", "2fa": "_2fa", "_ferry_run_id": "__ferry_run_id",
		"Émile": "émile", "日本語": "日本語", "__init__": "__init__", "": "col_811c9dc5", "$$$": "col_" + shortHash("$$$"),
	}
	for in, want := range tests {
		if got := Normalize(in); got != want {
			t.Errorf("Normalize(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNamerCollisions(t *testing.T) {
	n := NewNamer(20)
	a, b, c := n.Name("Name"), n.Name("name"), n.Name("NAME")
	if a != "name" || b == a || c == a || c == b {
		t.Fatalf("names = %q %q %q", a, b, c)
	}
	if n.Name("name") != b {
		t.Fatal("a key's name changed")
	}
	long := n.Name("a_very_long_key_name_indeed_more_than_twenty")
	if len(long) > 20 {
		t.Fatalf("%q is longer than 20 bytes", long)
	}
}

func TestParseTimestamp(t *testing.T) {
	for _, c := range []struct {
		in   string
		ok   bool
		want string // FormatTimestamp of the result
	}{
		{"2024-05-01T12:30:00Z", true, "2024-05-01T12:30:00Z"},
		{"2024-05-01T12:30:00.123456+02:00", true, "2024-05-01T10:30:00.123456Z"},
		{"2024-05-01T12:30:00.5-01:30", true, "2024-05-01T14:00:00.5Z"},
		{"0000-01-01T00:00:00Z", true, "0000-01-01T00:00:00Z"},
		{"2024-01-01T00:00:00.1234567Z", false, ""}, // finer than µs
		{"2024-01-01T00:00:00,5Z", false, ""},       // comma is not RFC 3339
		{"0000-01-01T00:00:00,0000001Z", false, ""}, // found by FuzzClassify
		{"0000-01-01T00:00:00.0+00:10", false, ""},  // year -1 in UTC; found by FuzzClassify
		{"9999-12-31T23:59:59-00:01", false, ""},    // year 10000 in UTC
		{"9999-12-31T23:59:59.999999Z", true, "9999-12-31T23:59:59.999999Z"},
		{"0000-01-01T00:10:00+00:10", true, "0000-01-01T00:00:00Z"},
		{"2024-01-01T00:00:00.Z", false, ""},
		{"2024-02-30T00:00:00Z", false, ""},
		{"2024-01-01 00:00:00Z", false, ""},
		{"2024-01-01T00:00:00", false, ""},
	} {
		us, ok := ParseTimestamp([]byte(c.in))
		if ok != c.ok {
			t.Errorf("ParseTimestamp(%q) ok = %v, want %v", c.in, ok, c.ok)
			continue
		}
		if ok {
			if got := string(FormatTimestamp(nil, us)); got != c.want {
				t.Errorf("ParseTimestamp(%q) formats as %s, want %s", c.in, got, c.want)
			}
		}
	}
}

// FuzzClassify checks number classification against math/big and
// strconv, and timestamp recognition against time.Parse.
func FuzzClassify(f *testing.F) {
	for _, s := range []string{"0", "-1.5e10", "123456789012345678901234567890", "0.1", "1e400", "2024-05-01T12:30:00.123456+02:00", "2024-02-30T00:00:00Z", "2024-01-01T00:00:00.1234567Z", "0000-01-01T00:00:00,0000001Z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := []byte(s)
		typ := ClassifyNumber(b)
		valid := json.Valid(b) && len(b) > 0 && (b[0] == '-' || (b[0] >= '0' && b[0] <= '9')) && strings.TrimSpace(s) == s
		if (typ != Unknown) != valid {
			t.Fatalf("ClassifyNumber(%q) = %s, but JSON number validity is %v", s, typ, valid)
		}
		switch typ {
		case Int:
			v, ok := ParseInt(b)
			r, _ := new(big.Rat).SetString(s)
			if !ok || r.Cmp(new(big.Rat).SetInt64(v)) != 0 {
				t.Fatalf("Int %q parsed as %d", s, v)
			}
		case Float:
			f, err := strconv.ParseFloat(s, 64)
			if err != nil || math.IsInf(f, 0) {
				t.Fatalf("Float %q does not parse: %v", s, err)
			}
			// At most 15 significant digits: the float round-trips the value.
			r, ok := new(big.Rat).SetString(s)
			back, _ := new(big.Rat).SetString(strconv.FormatFloat(f, 'g', 15, 64))
			if ok && back != nil && r.Cmp(back) != 0 {
				t.Fatalf("Float %q does not survive float64: %v", s, f)
			}
		}
		if us, ok := ParseTimestamp(b); ok {
			ts, err := time.Parse(time.RFC3339Nano, s)
			if err != nil || ts.UnixMicro() != us || ts.Nanosecond()%1000 != 0 {
				t.Fatalf("ParseTimestamp(%q) = %d, time.Parse says %v %v", s, us, ts, err)
			}
			if back, ok := ParseTimestamp(FormatTimestamp(nil, us)); !ok || back != us {
				t.Fatalf("ParseTimestamp(%q) = %d does not survive FormatTimestamp (%d, %v)", s, us, back, ok)
			}
		}
	})
}
