package httpx

import (
	"math"
	"net/http"
	"strconv"
	"testing"
	"time"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in     string
		want   time.Duration
		wantOK bool
	}{
		{"120", 2 * time.Minute, true},
		{" 3 ", 3 * time.Second, true},
		{"0", 0, true},
		{"1.5", 1500 * time.Millisecond, true},
		{"99999999999999999999", maxDelay, true},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{"Sunday, 01-Jun-25 12:00:30 GMT", 30 * time.Second, true}, // RFC 850
		{"Sun Jun  1 12:00:45 2025", 45 * time.Second, true},       // asctime
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},     // past
		{"", 0, false},
		{"-5", 0, false},
		{"1e3", 0, false},
		{"soon", 0, false},
		{"1.", 0, false},
		{"NaN", 0, false},
	}
	for _, tt := range tests {
		got, ok := parseRetryAfter(tt.in, now)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("parseRetryAfter(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"0", "120", "1.5", "-1", "99999999999999999999", "Sun, 01 Jun 2025 12:00:00 GMT", "garbage", "1e400", "0x10"} {
		f.Add(s)
	}
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		d, ok := parseRetryAfter(v, now)
		if d < 0 {
			t.Fatalf("parseRetryAfter(%q) = %v, negative", v, d)
		}
		if !ok && d != 0 {
			t.Fatalf("parseRetryAfter(%q) = %v, false; want 0 when not ok", v, d)
		}
		if allDigits(v) && len(v) <= 9 {
			n, _ := strconv.Atoi(v)
			if !ok || d != time.Duration(n)*time.Second {
				t.Fatalf("parseRetryAfter(%q) = %v, %v; want %ds", v, d, ok, n)
			}
		}
	})
}

func TestBackoffCap(t *testing.T) {
	const initial, ceiling = 100 * time.Millisecond, time.Second
	want := []time.Duration{100, 200, 400, 800, 1000, 1000, 1000}
	for i, w := range want {
		if got := backoffCap(i+1, initial, ceiling); got != w*time.Millisecond {
			t.Errorf("backoffCap(%d) = %v, want %v", i+1, got, w*time.Millisecond)
		}
	}
	for _, attempt := range []int{64, 1000, math.MaxInt} {
		if got := backoffCap(attempt, initial, ceiling); got != ceiling {
			t.Errorf("backoffCap(%d) = %v, want the cap %v", attempt, got, ceiling)
		}
	}
	if got := backoffCap(100, time.Duration(math.MaxInt64/3), time.Duration(math.MaxInt64)); got != time.Duration(math.MaxInt64) {
		t.Errorf("backoffCap near overflow = %v, want MaxInt64", got)
	}
}

func TestFullJitter(t *testing.T) {
	const initial, ceiling = 10 * time.Millisecond, 300 * time.Millisecond
	prevMax := time.Duration(0)
	for attempt := 1; attempt <= 8; attempt++ {
		limit := backoffCap(attempt, initial, ceiling)
		lo, hi := limit, time.Duration(0)
		for range 5000 {
			d := fullJitter(limit)
			if d < 0 || d > limit {
				t.Fatalf("attempt %d: fullJitter(%v) = %v, outside [0, %v]", attempt, limit, d, limit)
			}
			lo, hi = min(lo, d), max(hi, d)
		}
		// Uniform over [0, limit]: 5000 samples cover both ends.
		if lo > limit/20 || hi < limit-limit/20 {
			t.Errorf("attempt %d: samples span [%v, %v], want about [0, %v]", attempt, lo, hi, limit)
		}
		if hi < prevMax-prevMax/10 {
			t.Errorf("attempt %d: longest sleep %v shrank from %v", attempt, hi, prevMax)
		}
		prevMax = hi
	}
	if prevMax > ceiling {
		t.Errorf("longest sleep %v above MaxBackoff %v", prevMax, ceiling)
	}
	if got := fullJitter(0); got != 0 {
		t.Errorf("fullJitter(0) = %v", got)
	}
	if got := fullJitter(time.Duration(math.MaxInt64)); got < 0 {
		t.Errorf("fullJitter(MaxInt64) = %v", got)
	}
}
