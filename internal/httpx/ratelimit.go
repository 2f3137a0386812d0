package httpx

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// APIs say how much of their rate limit is left in response headers, and
// the client reads them to slow down before the limit rather than after:
// once a response says no request is left in the window, further
// attempts wait for the window to reset (or, when that is later than
// Config.MaxRetryAfter allows, fail with a *LimitError, which a source
// turns into a clean early stop). The shapes understood are
//
//   - X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset (GitHub,
//     Twitter, Okta, Reddit: the reset in epoch seconds, epoch
//     milliseconds, seconds from now or an HTTP date, told apart by size);
//   - the IETF fields RateLimit and RateLimit-Policy, in the structured
//     form of the later drafts (RateLimit: "default";r=50;t=30 and
//     RateLimit-Policy: "default";q=100;w=60) and the dictionary form of
//     the earlier ones (RateLimit: limit=100, remaining=50, reset=30);
//   - RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset (the first
//     IETF drafts, seconds from now);
//   - any other header names a connector configures (RateLimitHeaders).

// Limits is what a response says about the client's rate limit.
type Limits struct {
	// Limit is the number of requests the window allows (0 if unknown).
	Limit int64
	// Remaining is the number of requests left in the window; Known
	// says whether the response said.
	Remaining int64
	Known     bool
	// Reset is when the window resets (zero if unknown).
	Reset time.Time
	// Header names the header the limits were read from, for messages
	// ("X-RateLimit-Remaining").
	Header string
}

// Exhausted reports whether no request is left before Reset.
func (l Limits) Exhausted(now time.Time) bool {
	return l.Known && l.Remaining <= 0 && l.Reset.After(now)
}

// Reset formats of RateLimitHeaders.ResetFormat.
const (
	ResetAuto     = ""          // by size: epoch milliseconds, epoch seconds or seconds from now; or an HTTP date
	ResetEpoch    = "epoch"     // seconds since 1970
	ResetEpochMS  = "epoch_ms"  // milliseconds since 1970
	ResetSeconds  = "seconds"   // seconds from now
	ResetHTTPDate = "http_date" // an HTTP date
)

// RateLimitHeaders names the headers of an API that spells its rate
// limit its own way. Empty names are not read.
type RateLimitHeaders struct {
	Limit, Remaining, Reset string
	// ResetFormat is how Reset is written (ResetAuto and the other
	// Reset constants).
	ResetFormat string
}

// ParseLimits reads the rate limit a response reports, from custom
// header names when custom is not nil, else from the usual ones. It
// reports false when the response says nothing about a remaining count.
func ParseLimits(h http.Header, now time.Time, custom *RateLimitHeaders) (Limits, bool) {
	if custom != nil {
		return headerLimits(h, now, custom.Limit, custom.Remaining, custom.Reset, custom.ResetFormat)
	}
	if l, ok := headerLimits(h, now, "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", ResetAuto); ok {
		return l, true
	}
	if v := h.Values("RateLimit"); len(v) > 0 {
		if l, ok := parseIETF(strings.Join(v, ","), strings.Join(h.Values("RateLimit-Policy"), ","), now); ok {
			return l, true
		}
	}
	return headerLimits(h, now, "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", ResetSeconds)
}

// headerLimits reads three headers, one number each.
func headerLimits(h http.Header, now time.Time, limit, remaining, reset, format string) (Limits, bool) {
	if remaining == "" {
		return Limits{}, false
	}
	rem, ok := parseCount(firstValue(h.Get(remaining)))
	if !ok {
		return Limits{}, false
	}
	l := Limits{Remaining: rem, Known: true, Header: remaining}
	if limit != "" {
		l.Limit, _ = parseCount(firstValue(h.Get(limit)))
	}
	if reset != "" {
		l.Reset, _ = ParseReset(h.Get(reset), format, now)
	}
	return l, true
}

// firstValue returns the first number of a header some APIs repeat or
// annotate ("5000, 5000", "100;w=60").
func firstValue(v string) string {
	if i := strings.IndexAny(v, ",;"); i >= 0 {
		v = v[:i]
	}
	return strings.TrimSpace(v)
}

// parseCount parses a non-negative count; "12.0" is 12, a negative one 0.
func parseCount(v string) (int64, bool) {
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return max(n, 0), true
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	return int64(max(0, min(f, math.MaxInt64/2))), true
}

// Epoch boundaries that tell a reset's format apart in ResetAuto: no
// window is a billion seconds long, and no epoch second count is near a
// trillion before the year 33658.
const (
	epochSeconds = 1e9
	epochMillis  = 1e12
)

// ParseReset parses when a rate-limit window resets, written in format
// (a Reset constant). The result is never before now.
func ParseReset(v, format string, now time.Time) (time.Time, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return time.Time{}, false
	}
	if format == ResetHTTPDate || (format == ResetAuto && !startsNumeric(v)) {
		t, err := http.ParseTime(v)
		if err != nil {
			return time.Time{}, false
		}
		return later(t, now), true
	}
	f, err := strconv.ParseFloat(firstValue(v), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
		return time.Time{}, false
	}
	switch format {
	case ResetAuto:
		switch {
		case f >= epochMillis:
			format = ResetEpochMS
		case f >= epochSeconds:
			format = ResetEpoch
		default:
			format = ResetSeconds
		}
	case ResetEpoch, ResetEpochMS, ResetSeconds:
	default:
		return time.Time{}, false
	}
	const maxSeconds = float64(maxDelay/time.Second) / 2
	switch format {
	case ResetEpochMS:
		f /= 1000
		fallthrough
	case ResetEpoch:
		if f > maxSeconds {
			return time.Time{}, false
		}
		sec, frac := math.Modf(f)
		return later(time.Unix(int64(sec), int64(frac*1e9)), now), true
	default:
		if f > maxSeconds {
			f = maxSeconds
		}
		return now.Add(time.Duration(math.Ceil(f * float64(time.Second)))), true
	}
}

func startsNumeric(v string) bool { return v != "" && (v[0] >= '0' && v[0] <= '9' || v[0] == '.') }

func later(t, now time.Time) time.Time {
	if t.Before(now) {
		return now
	}
	return t
}

// parseIETF reads the RateLimit and RateLimit-Policy fields. Of several
// policies it returns the one with the fewest requests left.
func parseIETF(field, policy string, now time.Time) (Limits, bool) {
	items := parseSFList(field)
	if len(items) == 0 {
		return Limits{}, false
	}
	// The dictionary form of the early drafts: limit=, remaining=, reset=.
	dict := map[string]string{}
	for _, it := range items {
		if it.value != "" && !it.quoted {
			dict[strings.ToLower(it.name)] = it.value
		}
	}
	if rem, ok := dict["remaining"]; ok {
		n, ok := parseCount(rem)
		if !ok {
			return Limits{}, false
		}
		l := Limits{Remaining: n, Known: true, Header: "RateLimit"}
		l.Limit, _ = parseCount(dict["limit"])
		l.Reset, _ = ParseReset(dict["reset"], ResetSeconds, now)
		if l.Limit == 0 {
			for _, p := range parseSFList(policy) {
				if q, ok := parseCount(p.name); ok && !p.quoted {
					l.Limit = q
					break
				}
			}
		}
		return l, true
	}
	// The structured form: "name";r=remaining;t=reset, and the policy's
	// "name";q=quota;w=window.
	quotas := map[string]int64{}
	for _, p := range parseSFList(policy) {
		if q, ok := parseCount(p.params["q"]); ok {
			quotas[p.name] = q
		}
	}
	var best Limits
	found := false
	for _, it := range items {
		rem, ok := parseCount(it.params["r"])
		if !ok {
			continue
		}
		l := Limits{Remaining: rem, Known: true, Limit: quotas[it.name], Header: "RateLimit"}
		l.Reset, _ = ParseReset(it.params["t"], ResetSeconds, now)
		if !found || l.Remaining < best.Remaining {
			best, found = l, true
		}
	}
	return best, found
}

// sfItem is a member of a structured-field list (RFC 8941), as far as
// rate-limit fields need: a token, number or quoted string, an optional
// =value (dictionary members), and ;key=value parameters.
type sfItem struct {
	name   string
	quoted bool
	value  string
	params map[string]string
}

// parseSFList splits a structured-field list or dictionary leniently:
// members that do not parse are skipped, not fatal.
func parseSFList(s string) []sfItem {
	var out []sfItem
	for _, member := range splitOutsideQuotes(s, ',') {
		parts := splitOutsideQuotes(member, ';')
		if len(parts) == 0 {
			continue
		}
		head := strings.TrimSpace(parts[0])
		if head == "" {
			continue
		}
		it := sfItem{params: map[string]string{}}
		if name, val, ok := strings.Cut(head, "="); ok && !strings.HasPrefix(head, `"`) {
			it.name, it.value = strings.TrimSpace(name), unquote(strings.TrimSpace(val))
		} else if strings.HasPrefix(head, `"`) {
			it.name, it.quoted = unquote(head), true
		} else {
			it.name = head
		}
		for _, p := range parts[1:] {
			k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
			if k = strings.ToLower(strings.TrimSpace(k)); k != "" {
				it.params[k] = unquote(strings.TrimSpace(v))
			}
		}
		out = append(out, it)
	}
	return out
}

// splitOutsideQuotes splits s at sep, except inside double quotes.
func splitOutsideQuotes(s string, sep byte) []string {
	var out []string
	quoted, escaped, start := false, false, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case escaped:
			escaped = false
		case c == '\\' && quoted:
			escaped = true
		case c == '"':
			quoted = !quoted
		case c == sep && !quoted:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// unquote removes the quotes of a structured-field string.
func unquote(s string) string {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return s
	}
	var b strings.Builder
	for i := 1; i < len(s)-1; i++ {
		if s[i] == '\\' && i+1 < len(s)-1 {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
