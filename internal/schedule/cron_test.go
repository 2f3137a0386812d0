package schedule

import (
	"strings"
	"testing"
	"time"
)

func TestNext(t *testing.T) {
	base := time.Date(2026, 3, 14, 10, 7, 30, 0, time.UTC) // a Saturday
	cases := []struct {
		expr, want string
	}{
		{"* * * * *", "2026-03-14T10:08:00Z"},
		{"*/5 * * * *", "2026-03-14T10:10:00Z"},
		{"7 * * * *", "2026-03-14T11:07:00Z"},
		{"0 0 * * *", "2026-03-15T00:00:00Z"},
		{"@hourly", "2026-03-14T11:00:00Z"},
		{"@daily", "2026-03-15T00:00:00Z"},
		{"@monthly", "2026-04-01T00:00:00Z"},
		{"@yearly", "2027-01-01T00:00:00Z"},
		{"0 9 * * mon-fri", "2026-03-16T09:00:00Z"},
		{"0 9 * * 7", "2026-03-15T09:00:00Z"},    // 7 is Sunday
		{"0 0 13 * fri", "2026-03-20T00:00:00Z"}, // either day matches
		{"0 0 29 feb *", "2028-02-29T00:00:00Z"},
		{"10-40/10 * * * *", "2026-03-14T10:10:00Z"},
		{"5/20 * * * *", "2026-03-14T10:25:00Z"},
		{"0 12 1,15 * *", "2026-03-15T12:00:00Z"},
		{"* * * * * *", "2026-03-14T10:07:31Z"},
		{"*/10 * * * * *", "2026-03-14T10:07:40Z"},
	}
	for _, c := range cases {
		cr, err := Parse(c.expr)
		if err != nil {
			t.Fatalf("%s: %v", c.expr, err)
		}
		if got := cr.Next(base).Format(time.RFC3339); got != c.want {
			t.Errorf("%s: next after %s = %s, want %s", c.expr, base.Format(time.RFC3339), got, c.want)
		}
	}
}

func TestNextIsStrictlyLater(t *testing.T) {
	cr, _ := Parse("*/5 * * * *")
	at := time.Date(2026, 1, 1, 0, 5, 0, 0, time.UTC)
	if got := cr.Next(at); !got.Equal(at.Add(5 * time.Minute)) {
		t.Fatalf("next after a firing time = %s, want five minutes later", got)
	}
}

func TestParseErrors(t *testing.T) {
	cases := map[string]string{
		"* * * *":         "has 4 fields",
		"60 * * * *":      `"60" is not a minute from 0 to 59`,
		"* 24 * * *":      "hour",
		"* * 0 * *":       "day of month",
		"* * * 13 *":      "month",
		"* * * * 8":       "day of week",
		"*/0 * * * *":     "step",
		"5-1 * * * *":     "goes backwards",
		"1,,2 * * * *":    "empty list item",
		"0 0 30 feb *":    "never fires",
		"x * * * *":       `"x" is not a minute`,
		"* * * * * * * *": "has 8 fields",
	}
	for expr, want := range cases {
		_, err := Parse(expr)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", expr, err, want)
		}
	}
}

func TestDaylightSaving(t *testing.T) {
	loc, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skip("no time zone database")
	}
	cr, _ := Parse("30 2 * * *") // 02:30 does not exist on 2026-03-29
	got := cr.Next(time.Date(2026, 3, 28, 12, 0, 0, 0, loc))
	if got.IsZero() || got.Before(time.Date(2026, 3, 29, 0, 0, 0, 0, loc)) {
		t.Fatalf("next = %s", got)
	}
}

// FuzzParse checks that any expression either fails to parse or yields
// a schedule whose next firing is later and matches the expression.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"* * * * *", "*/5 1-3 * jan-mar mon", "0 0 29 feb *", "@daily", "1,2,3 * * * * *", "0 0 31 4 *", "5/7 */3 1-31/2 * 0-7"} {
		f.Add(s)
	}
	base := time.Date(2026, 5, 17, 13, 45, 10, 0, time.UTC)
	f.Fuzz(func(t *testing.T, expr string) {
		c, err := Parse(expr)
		if err != nil {
			return
		}
		n := c.Next(base)
		if n.IsZero() {
			return // possible for a date that comes less than every five years
		}
		if !n.After(base) {
			t.Fatalf("%q: next %s is not after %s", expr, n, base)
		}
		if _, ok := c.step(n); !ok {
			t.Fatalf("%q: next %s does not match", expr, n)
		}
		if again, err := Parse(c.String()); err != nil || !again.Next(base).Equal(n) {
			t.Fatalf("%q: reparsing %q gives %v", expr, c.String(), err)
		}
	})
}
