package postgres

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/big"
	"strings"
	"testing"
)

// decodeNumeric reads the binary numeric form back: the exact value and
// the display scale. It checks the form's invariants on the way.
func decodeNumeric(t testing.TB, b []byte) (*big.Rat, int) {
	t.Helper()
	if len(b) < 8 {
		t.Fatalf("numeric of %d bytes", len(b))
	}
	ndigits := int(binary.BigEndian.Uint16(b))
	weight := int(int16(binary.BigEndian.Uint16(b[2:])))
	sign := binary.BigEndian.Uint16(b[4:])
	dscale := int(binary.BigEndian.Uint16(b[6:]))
	if len(b) != 8+2*ndigits {
		t.Fatalf("numeric has %d digits in %d bytes", ndigits, len(b))
	}
	if sign != 0 && sign != 0x4000 {
		t.Fatalf("sign %#x", sign)
	}
	if dscale > maxNumericFracDigits {
		t.Fatalf("dscale %d", dscale)
	}
	v := new(big.Int)
	base := big.NewInt(10000)
	for i := 0; i < ndigits; i++ {
		d := binary.BigEndian.Uint16(b[8+2*i:])
		if d >= 10000 {
			t.Fatalf("digit %d is %d", i, d)
		}
		if (i == 0 || i == ndigits-1) && d == 0 {
			t.Fatalf("leading or trailing zero digit in %x", b)
		}
		v.Mul(v, base).Add(v, big.NewInt(int64(d)))
	}
	if ndigits == 0 && (weight != 0 || sign != 0) {
		t.Fatalf("zero with weight %d sign %#x", weight, sign)
	}
	r := new(big.Rat).SetInt(v)
	// v holds digits 10000^weight … 10000^(weight-ndigits+1).
	shift := weight - ndigits + 1
	p := new(big.Rat).SetInt(new(big.Int).Exp(base, big.NewInt(int64(abs(shift))), nil))
	if shift >= 0 {
		r.Mul(r, p)
	} else {
		r.Quo(r, p)
	}
	if sign == 0x4000 {
		r.Neg(r)
	}
	return r, dscale
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

func TestNumericEncoding(t *testing.T) {
	for _, tc := range []struct {
		in     string
		wire   string // ndigits weight sign dscale digits…, as %d
		refuse bool
	}{
		{in: "0", wire: "0 0 0 0"},
		{in: "-0", wire: "0 0 0 0"},
		{in: "0.000", wire: "0 0 0 3"},
		{in: "0e999999999", wire: "0 0 0 0"},
		{in: "1", wire: "1 0 0 0 1"},
		{in: "-1", wire: "1 0 16384 0 1"},
		{in: "12.50", wire: "2 0 0 2 12 5000"},
		{in: "10000", wire: "1 1 0 0 1"},
		{in: "9999", wire: "1 0 0 0 9999"},
		{in: "123456789", wire: "3 2 0 0 1 2345 6789"},
		{in: "0.0001", wire: "1 -1 0 4 1"},
		{in: "0.00001", wire: "1 -2 0 5 1000"},
		{in: "1e5", wire: "1 1 0 0 10"},
		{in: "1E+5", wire: "1 1 0 0 10"},
		{in: "1.5e-3", wire: "1 -1 0 4 15"},
		{in: "-1.5e3", wire: "1 0 16384 0 1500"},
		{in: "1.50e1", wire: "1 0 0 1 15"},
		{in: "00012.3400", wire: "2 0 0 4 12 3400"},
		{in: "+.5", wire: "1 -1 0 1 5000"},
		{in: "5.", wire: "1 0 0 0 5"},
		{in: "1e400", wire: "1 100 0 0 1"},
		{in: "1e-16383", wire: "1 -4096 0 16383 10"},
		{in: "1e131071", wire: "1 32767 0 0 1000"},
		{in: "1e131072", refuse: true},
		{in: "1e-16384", refuse: true},
		{in: "1.5e-16383", refuse: true},
		{in: "0.000e-20000", refuse: true},
		{in: "1e2147483648", refuse: true},
		{in: "", refuse: true},
		{in: "-", refuse: true},
		{in: ".", refuse: true},
		{in: "1e", refuse: true},
		{in: "1.2.3", refuse: true},
		{in: "NaN", refuse: true},
		{in: "Infinity", refuse: true},
		{in: " 1", refuse: true},
		{in: "0x10", refuse: true},
	} {
		b, err := appendNumeric(nil, []byte(tc.in))
		if tc.refuse {
			if err == nil {
				t.Errorf("%q: encoded as %x, want a refusal", tc.in, b)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		var f []string
		for i := 0; i < 4; i++ {
			f = append(f, fmt.Sprint(int16(binary.BigEndian.Uint16(b[2*i:]))))
		}
		f[2] = fmt.Sprint(binary.BigEndian.Uint16(b[4:]))
		for i := 8; i < len(b); i += 2 {
			f = append(f, fmt.Sprint(binary.BigEndian.Uint16(b[i:])))
		}
		if got := strings.Join(f, " "); got != tc.wire {
			t.Errorf("%q: wire %s, want %s", tc.in, got, tc.wire)
		}
		checkAgainstBig(t, tc.in, b)
	}
}

// checkAgainstBig compares an encoding with math/big's reading of the
// text and with PostgreSQL's display scale rule.
func checkAgainstBig(t testing.TB, in string, b []byte) {
	t.Helper()
	got, dscale := decodeNumeric(t, b)
	want, ok := new(big.Rat).SetString(strings.TrimPrefix(in, "+"))
	if !ok {
		return
	}
	if got.Cmp(want) != 0 {
		t.Fatalf("%q decodes to %s", in, got.FloatString(20))
	}
	d, _ := parseDecimal([]byte(in))
	if int64(dscale) != d.dscale {
		t.Fatalf("%q: dscale %d, want %d", in, dscale, d.dscale)
	}
}

// FuzzNumeric checks the encoder against math/big: whatever text it
// accepts must decode to the same number.
func FuzzNumeric(f *testing.F) {
	for _, s := range []string{"0", "-1", "12.50", "1e5", "1.5e-3", "0.0001", "123456789012345678901234567890.123456789", "-9.99e-7", "000.000100"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > 300 {
			return
		}
		d, err := parseDecimal([]byte(s))
		if err != nil {
			return
		}
		if d.point > 5000 || d.point < -5000 || d.dscale > 5000 {
			return // valid, but too slow for math/big in a fuzz loop
		}
		b, err := appendNumeric(nil, []byte(s))
		if err != nil {
			if d.check() == nil {
				t.Fatalf("%q: %v", s, err)
			}
			return
		}
		checkAgainstBig(t, s, b)
	})
}

// TestNumericMatchesPostgres copies values in with the binary encoder and
// compares PostgreSQL's rendering with its rendering of the same text.
func TestNumericMatchesPostgres(t *testing.T) {
	ctx := context.Background()
	c := adminConn(t)
	defer c.Close(ctx)
	values := []string{"0", "-0", "0.000", "1", "-1", "12.50", "10000", "0.0001", "0.00001", "1e5", "1.5e-3", "-1.5e3", "1.50e1",
		"00012.3400", "+.5", "5.", "1e400", "-1e-400", "123456789012345678901234567890.123456789",
		"0.1000000000000000055511151231257827", "-99999999999999999999.99", "9999.9999", "1e-16383", "1e131071",
		strings.Repeat("9", 1000) + "." + strings.Repeat("9", 1000)}
	if _, err := c.Exec(ctx, "CREATE TEMPORARY TABLE nums (i int, n numeric)"); err != nil {
		t.Fatal(err)
	}
	buf := []byte(copyHeader)
	for i, v := range values {
		buf = append(buf, 0, 2, 0, 0, 0, 4)
		buf = binary.BigEndian.AppendUint32(buf, uint32(i))
		at := len(buf)
		buf = append(buf, 0, 0, 0, 0)
		var err error
		if buf, err = appendNumeric(buf, []byte(v)); err != nil {
			t.Fatalf("%q: %v", v, err)
		}
		binary.BigEndian.PutUint32(buf[at:], uint32(len(buf)-at-4))
	}
	buf = append(buf, copyTrailer...)
	if _, err := c.PgConn().CopyFrom(ctx, strings.NewReader(string(buf)), "COPY nums FROM STDIN (FORMAT binary)"); err != nil {
		t.Fatal(err)
	}
	for i, v := range values {
		var got, want string
		if err := c.QueryRow(ctx, "SELECT n::text, $2::numeric::text FROM nums WHERE i = $1", i, v).Scan(&got, &want); err != nil {
			t.Fatalf("%q: %v", v, err)
		}
		if got != want {
			t.Errorf("%q: PostgreSQL shows the binary value as %.60q, the text as %.60q", v, got, want)
		}
	}
}
