// Package schedule parses cron expressions and computes when they fire.
//
// The syntax is the classic five fields, minute hour day-of-month month
// day-of-week, each a list of values, ranges (1-5), steps (*/15, 10-40/10)
// or *, with month and weekday names (jan, mon) and the shorthands
// @yearly, @monthly, @weekly, @daily, @hourly. A sixth leading field of
// seconds is accepted too (it lets tests fire every second). As in Vixie
// cron, when both day-of-month and day-of-week are restricted, a day
// matching either fires.
//
// It is written here rather than taken from a library: the maintained
// parsers are not available to this build, and the one that is
// (robfig/cron) is unmaintained. The parser is small and fuzzed.
package schedule

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Cron is a parsed cron expression.
type Cron struct {
	expr                          string
	second, minute, hour, dom, mo uint64 // bit i set: value i matches
	dow                           uint64
	domStar, dowStar              bool
}

type field struct {
	name     string
	min, max int
	names    map[string]int
}

var (
	fSecond = field{name: "second", min: 0, max: 59}
	fMinute = field{name: "minute", min: 0, max: 59}
	fHour   = field{name: "hour", min: 0, max: 23}
	fDom    = field{name: "day of month", min: 1, max: 31}
	fMonth  = field{name: "month", min: 1, max: 12, names: map[string]int{
		"jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6, "jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12}}
	fDow = field{name: "day of week", min: 0, max: 7, names: map[string]int{
		"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}}
)

var shorthands = map[string]string{
	"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
	"@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}

// Parse parses a cron expression of five fields (or six, seconds first).
func Parse(expr string) (*Cron, error) {
	s := strings.TrimSpace(expr)
	if full, ok := shorthands[strings.ToLower(s)]; ok {
		s = full
	}
	fs := strings.Fields(s)
	c := &Cron{expr: strings.Join(fs, " ")}
	switch len(fs) {
	case 5:
		c.second = 1
	case 6:
		var err error
		if c.second, _, err = parseField(fs[0], fSecond); err != nil {
			return nil, err
		}
		fs = fs[1:]
	default:
		return nil, fmt.Errorf("cron expression %q has %d fields: want 5 (minute hour day-of-month month day-of-week), or 6 with seconds first", expr, len(fs))
	}
	var err error
	if c.minute, _, err = parseField(fs[0], fMinute); err != nil {
		return nil, err
	}
	if c.hour, _, err = parseField(fs[1], fHour); err != nil {
		return nil, err
	}
	if c.dom, c.domStar, err = parseField(fs[2], fDom); err != nil {
		return nil, err
	}
	if c.mo, _, err = parseField(fs[3], fMonth); err != nil {
		return nil, err
	}
	if c.dow, c.dowStar, err = parseField(fs[4], fDow); err != nil {
		return nil, err
	}
	if c.dow&(1<<7) != 0 { // 7 is Sunday too
		c.dow |= 1
	}
	if !c.possible() {
		return nil, fmt.Errorf("cron expression %q never fires (no such day)", expr)
	}
	return c, nil
}

// possible reports whether some day of some month matches (30 February
// never comes).
func (c *Cron) possible() bool {
	if c.domStar || !c.dowStar {
		return true // some weekday always comes
	}
	days := [13]int{0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}
	for m := 1; m <= 12; m++ {
		if c.mo&(1<<m) == 0 {
			continue
		}
		for d := 1; d <= days[m]; d++ {
			if c.dom&(1<<d) != 0 {
				return true
			}
		}
	}
	return false
}

func parseField(s string, f field) (uint64, bool, error) {
	var bits uint64
	star := false
	for part := range strings.SplitSeq(s, ",") {
		if part == "" {
			return 0, false, fmt.Errorf("cron %s field %q: empty list item", f.name, s)
		}
		rng, stepText, hasStep := strings.Cut(part, "/")
		step := 1
		if hasStep {
			n, err := strconv.Atoi(stepText)
			if err != nil || n < 1 || n > f.max {
				return 0, false, fmt.Errorf("cron %s field %q: step %q must be a number from 1 to %d", f.name, s, stepText, f.max)
			}
			step = n
		}
		lo, hi := f.min, f.max
		switch {
		case rng == "*":
			if !hasStep {
				star = true
			}
			if f.max == 7 { // day of week: * is 0-6
				hi = 6
			}
		default:
			a, b, isRange := strings.Cut(rng, "-")
			var err error
			if lo, err = value(a, f); err != nil {
				return 0, false, fmt.Errorf("cron %s field %q: %w", f.name, s, err)
			}
			hi = lo
			if isRange {
				if hi, err = value(b, f); err != nil {
					return 0, false, fmt.Errorf("cron %s field %q: %w", f.name, s, err)
				}
				if hi < lo {
					return 0, false, fmt.Errorf("cron %s field %q: range %s goes backwards", f.name, s, rng)
				}
			} else if hasStep {
				hi = f.max // 5/15 means 5-max/15
			}
		}
		for v := lo; v <= hi; v += step {
			bits |= 1 << v
		}
	}
	return bits, star, nil
}

func value(s string, f field) (int, error) {
	if n, ok := f.names[strings.ToLower(s)]; ok {
		return n, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < f.min || n > f.max {
		return 0, fmt.Errorf("%q is not a %s from %d to %d", s, f.name, f.min, f.max)
	}
	return n, nil
}

// String returns the expression as parsed (fields separated by one space).
func (c *Cron) String() string { return c.expr }

// Next returns the first time after t (strictly) that the expression
// matches, in t's location, or the zero time if none comes within five
// years.
func (c *Cron) Next(t time.Time) time.Time {
	t = t.Truncate(time.Second).Add(time.Second)
	end := t.AddDate(5, 0, 0)
	for t.Before(end) {
		next, ok := c.step(t)
		if ok {
			return t
		}
		if !next.After(t) { // a daylight-saving jump sent it back
			next = t.Add(time.Second)
		}
		t = next
	}
	return time.Time{}
}

// step returns true when t matches, else a later time to try (the start
// of the next month, day, hour, minute or second that may match).
func (c *Cron) step(t time.Time) (time.Time, bool) {
	switch {
	case c.mo&(1<<int(t.Month())) == 0:
		return time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, t.Location()), false
	case !c.dayMatches(t):
		return time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, t.Location()), false
	case c.hour&(1<<t.Hour()) == 0:
		return time.Date(t.Year(), t.Month(), t.Day(), t.Hour()+1, 0, 0, 0, t.Location()), false
	case c.minute&(1<<t.Minute()) == 0:
		return t.Truncate(time.Minute).Add(time.Minute), false
	case c.second&(1<<t.Second()) == 0:
		return t.Add(time.Second), false
	}
	return t, true
}

func (c *Cron) dayMatches(t time.Time) bool {
	dom := c.dom&(1<<t.Day()) != 0
	dow := c.dow&(1<<int(t.Weekday())) != 0
	if c.domStar || c.dowStar {
		return dom && dow
	}
	return dom || dow
}
