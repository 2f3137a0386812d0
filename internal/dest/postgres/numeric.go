package postgres

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// PostgreSQL's limits on a numeric value.
const (
	maxNumericIntDigits  = 131072 // decimal digits before the point
	maxNumericFracDigits = 16383  // decimal digits after the point (the display scale)
)

var errNotNumber = errors.New("not a decimal number")

// decimal is a parsed decimal number: the significant digits, where the
// point falls among them, and PostgreSQL's display scale. It aliases the
// text it was parsed from.
type decimal struct {
	neg bool
	// The significant digits are intPart followed by fracPart, without
	// skip leading zeros and keep trailing ones.
	intPart, fracPart []byte
	skip, keep        int
	// point is how many of the significant digits come before the decimal
	// point (negative or beyond their count for very small or large
	// numbers).
	point int64
	// dscale is how many digits after the point PostgreSQL shows, as its
	// own parser computes it: the fraction's digits less the exponent.
	dscale int64
}

// parseDecimal parses a decimal number as PostgreSQL's numeric input does
// (an optional sign, digits with an optional point, an optional exponent),
// without allocating.
func parseDecimal(s []byte) (decimal, error) {
	var d decimal
	i := 0
	if i < len(s) && (s[i] == '-' || s[i] == '+') {
		d.neg = s[i] == '-'
		i++
	}
	start := i
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	d.intPart = s[start:i]
	if i < len(s) && s[i] == '.' {
		i++
		start = i
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		d.fracPart = s[start:i]
	}
	if len(d.intPart)+len(d.fracPart) == 0 {
		return d, errNotNumber
	}
	var exp int64
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		neg := false
		if i < len(s) && (s[i] == '-' || s[i] == '+') {
			neg = s[i] == '-'
			i++
		}
		start = i
		for i < len(s) && isDigit(s[i]) {
			if exp < 1<<40 { // saturate: anything this large overflows numeric anyway
				exp = exp*10 + int64(s[i]-'0')
			}
			i++
		}
		if i == start {
			return d, errNotNumber
		}
		if neg {
			exp = -exp
		}
	}
	if i != len(s) {
		return d, errNotNumber
	}
	n := len(d.intPart) + len(d.fracPart)
	for d.skip < n && d.digit(d.skip) == 0 {
		d.skip++
	}
	d.keep = n
	for d.keep > d.skip && d.digit(d.keep-1) == 0 {
		d.keep--
	}
	d.point = int64(len(d.intPart)) + exp - int64(d.skip)
	d.dscale = max(0, int64(len(d.fracPart))-exp)
	return d, nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// digit returns the i-th digit of the mantissa (integer part then fraction).
func (d *decimal) digit(i int) int {
	if i < len(d.intPart) {
		return int(d.intPart[i] - '0')
	}
	return int(d.fracPart[i-len(d.intPart)] - '0')
}

func (d *decimal) zero() bool { return d.keep == d.skip }

// check reports a value PostgreSQL's numeric type cannot hold.
func (d *decimal) check() error {
	if !d.zero() && d.point > maxNumericIntDigits {
		return fmt.Errorf("number has more than %d digits before the decimal point, the most PostgreSQL's numeric holds", maxNumericIntDigits)
	}
	if d.dscale > maxNumericFracDigits {
		return fmt.Errorf("number has more than %d digits after the decimal point, the most PostgreSQL's numeric holds", maxNumericFracDigits)
	}
	return nil
}

// floorDiv4 divides by 4 rounding towards negative infinity.
func floorDiv4(x int64) int64 {
	if x >= 0 {
		return x / 4
	}
	return -((-x + 3) / 4)
}

var pow10 = [4]int{1, 10, 100, 1000}

// appendNumeric appends the binary wire form of numeric text s (without
// the length prefix): ndigits, weight, sign and display scale, then
// base-10000 digits, most significant first. It refuses text that is not a
// number and numbers PostgreSQL cannot hold.
func appendNumeric(dst, s []byte) ([]byte, error) {
	d, err := parseDecimal(s)
	if err != nil {
		return dst, err
	}
	if err := d.check(); err != nil {
		return dst, err
	}
	var sign uint16
	if d.neg && !d.zero() {
		sign = 0x4000
	}
	if d.zero() {
		return binary.BigEndian.AppendUint64(dst, uint64(d.dscale)), nil // 0 digits, weight 0, positive
	}
	p0 := d.point - 1                               // power of ten of the first significant digit
	pLast := d.point - int64(d.keep-d.skip)         // power of ten of the last one
	weight, last := floorDiv4(p0), floorDiv4(pLast) // their base-10000 positions
	ndigits := weight - last + 1
	dst = binary.BigEndian.AppendUint16(dst, uint16(ndigits))
	dst = binary.BigEndian.AppendUint16(dst, uint16(int16(weight)))
	dst = binary.BigEndian.AppendUint16(dst, sign)
	dst = binary.BigEndian.AppendUint16(dst, uint16(d.dscale))
	group, acc := weight, 0
	for i := d.skip; i < d.keep; i++ {
		p := p0 - int64(i-d.skip)
		g := floorDiv4(p)
		if g != group {
			dst = binary.BigEndian.AppendUint16(dst, uint16(acc))
			group, acc = g, 0
		}
		acc += d.digit(i) * pow10[p-4*g]
	}
	return binary.BigEndian.AppendUint16(dst, uint16(acc)), nil
}
