package httpx

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseLimits(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Add(kv[i], kv[i+1])
		}
		return h
	}
	for _, tc := range []struct {
		name   string
		h      http.Header
		custom *RateLimitHeaders
		want   Limits
		ok     bool
	}{
		{"github", hdr("X-RateLimit-Limit", "5000", "X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "1800000600"),
			nil, Limits{Limit: 5000, Remaining: 0, Known: true, Reset: now.Add(10 * time.Minute), Header: "X-RateLimit-Remaining"}, true},
		{"reddit seconds-until, floats", hdr("X-Ratelimit-Used", "1", "X-Ratelimit-Remaining", "599.0", "X-Ratelimit-Reset", "42"),
			nil, Limits{Remaining: 599, Known: true, Reset: now.Add(42 * time.Second), Header: "X-RateLimit-Remaining"}, true},
		{"epoch milliseconds", hdr("X-RateLimit-Remaining", "3", "X-RateLimit-Reset", "1800000001500"),
			nil, Limits{Remaining: 3, Known: true, Reset: now.Add(1500 * time.Millisecond), Header: "X-RateLimit-Remaining"}, true},
		{"ietf structured", hdr("RateLimit-Policy", `"burst";q=100;w=60, "daily";q=1000;w=86400`, "RateLimit", `"burst";r=7;t=30, "daily";r=900;t=3600`),
			nil, Limits{Limit: 100, Remaining: 7, Known: true, Reset: now.Add(30 * time.Second), Header: "RateLimit"}, true},
		{"ietf dictionary", hdr("RateLimit", "limit=100, remaining=0, reset=12"),
			nil, Limits{Limit: 100, Remaining: 0, Known: true, Reset: now.Add(12 * time.Second), Header: "RateLimit"}, true},
		{"ietf separate fields", hdr("RateLimit-Limit", "10", "RateLimit-Remaining", "2", "RateLimit-Reset", "5"),
			nil, Limits{Limit: 10, Remaining: 2, Known: true, Reset: now.Add(5 * time.Second), Header: "RateLimit-Remaining"}, true},
		{"custom", hdr("X-Quota-Left", "4", "X-Quota-Reset", "Wed, 15 Jan 2027 08:00:00 GMT"),
			&RateLimitHeaders{Remaining: "X-Quota-Left", Reset: "X-Quota-Reset", ResetFormat: ResetHTTPDate},
			Limits{Remaining: 4, Known: true, Reset: time.Date(2027, 1, 15, 8, 0, 0, 0, time.UTC), Header: "X-Quota-Left"}, true},
		{"none", hdr("X-Other", "1"), nil, Limits{}, false},
		{"garbage", hdr("X-RateLimit-Remaining", "lots"), nil, Limits{}, false},
	} {
		got, ok := ParseLimits(tc.h, now, tc.custom)
		if ok != tc.ok || got.Limit != tc.want.Limit || got.Remaining != tc.want.Remaining || got.Known != tc.want.Known ||
			!got.Reset.Equal(tc.want.Reset) || got.Header != tc.want.Header {
			t.Errorf("%s: got %+v %v, want %+v %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

func TestParseReset(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	for _, tc := range []struct {
		v, format string
		want      time.Duration
		ok        bool
	}{
		{"30", ResetAuto, 30 * time.Second, true},
		{"1799999000", ResetAuto, 0, true}, // in the past: now
		{"1800000030", ResetEpoch, 30 * time.Second, true},
		{"30", ResetEpoch, 0, true},
		{"1800000030000", ResetEpochMS, 30 * time.Second, true},
		{"2.5", ResetSeconds, 2500 * time.Millisecond, true},
		{"-1", ResetAuto, 0, false},
		{"soon", ResetAuto, 0, false},
		{"30", "weird", 0, false},
	} {
		got, ok := ParseReset(tc.v, tc.format, now)
		if ok != tc.ok || (ok && got.Sub(now) != tc.want) {
			t.Errorf("ParseReset(%q, %q) = %v %v, want +%v %v", tc.v, tc.format, got.Sub(now), ok, tc.want, tc.ok)
		}
	}
}

// FuzzParseLimits: no header value makes the parsers panic, and what
// they return is sane: a remaining count never negative, a reset never
// before now.
func FuzzParseLimits(f *testing.F) {
	for _, s := range []string{"5000", "0", "1800000600", "42.0", `"burst";r=7;t=30, "daily";r=900;t=3600`, "limit=100, remaining=0, reset=12",
		`"a\"b";q=1;w=2`, "Wed, 15 Jan 2027 08:00:00 GMT", "1e400", "-5", ",;=\"", "NaN"} {
		f.Add(s, s, "")
	}
	now := time.Unix(1_800_000_000, 0)
	f.Fuzz(func(t *testing.T, a, b, format string) {
		for _, h := range []http.Header{
			{"X-Ratelimit-Remaining": {a}, "X-Ratelimit-Reset": {b}, "X-Ratelimit-Limit": {a}},
			{"Ratelimit": {a}, "Ratelimit-Policy": {b}},
			{"Ratelimit-Remaining": {a}, "Ratelimit-Reset": {b}},
		} {
			for _, custom := range []*RateLimitHeaders{nil, {Remaining: "Ratelimit-Remaining", Reset: "Ratelimit-Reset", ResetFormat: format}} {
				l, ok := ParseLimits(h, now, custom)
				if !ok {
					continue
				}
				if l.Remaining < 0 || l.Limit < 0 || (!l.Reset.IsZero() && l.Reset.Before(now)) {
					t.Fatalf("ParseLimits(%v) = %+v", h, l)
				}
			}
		}
		if r, ok := ParseReset(a, format, now); ok && r.Before(now) {
			t.Fatalf("ParseReset(%q, %q) = %v, before now", a, format, r)
		}
	})
}

// githubAPI answers like GitHub: each response says how many requests
// are left of limit; once none is, it answers 403 with
// X-RateLimit-Remaining: 0 until the reset, reset after the first
// request.
type githubAPI struct {
	mu      sync.Mutex
	limit   int
	left    int
	reset   time.Time
	window  time.Duration
	refused atomic.Int64
	served  atomic.Int64
}

func (g *githubAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	now := time.Now()
	if g.reset.IsZero() || !now.Before(g.reset) {
		g.left, g.reset = g.limit, now.Add(g.window)
	}
	left := g.left
	if left > 0 {
		g.left--
	}
	reset := g.reset
	g.mu.Unlock()
	w.Header().Set("X-RateLimit-Limit", strconv.Itoa(g.limit))
	w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(reset.Add(999*time.Millisecond).Unix(), 10))
	if left == 0 {
		g.refused.Add(1)
		w.Header().Set("X-RateLimit-Remaining", "0")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, `{"message":"API rate limit exceeded for user ID 1.","documentation_url":"https://docs.github.com/rest/overview/resources-in-the-rest-api#rate-limiting"}`)
		return
	}
	g.served.Add(1)
	w.Header().Set("X-RateLimit-Remaining", strconv.Itoa(left-1))
	fmt.Fprint(w, `{}`)
}

// TestGitHubPrimaryLimitWaits: once a response says the limit is spent,
// the client waits for the reset instead of being refused; the one
// refusal it hears (a 403 with X-RateLimit-Remaining: 0) is a rate
// limit, retried after the reset.
func TestGitHubPrimaryLimitWaits(t *testing.T) {
	api := &githubAPI{limit: 3, window: time.Second}
	srv := newServer(t, api.ServeHTTP)
	cfg := fastConfig()
	c := New(cfg)
	start := time.Now()
	for i := range 5 {
		if _, err := c.Do(context.Background(), &Request{URL: srv.URL}, nil); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if api.refused.Load() != 0 {
		t.Fatalf("the client was refused %d times; it should wait for the reset it was told", api.refused.Load())
	}
	if time.Since(start) < 900*time.Millisecond {
		t.Fatalf("5 requests under a limit of 3 per second took %s: no wait", time.Since(start))
	}
	// A 403 without an earlier warning (another client spent the limit)
	// is a rate limit too.
	api2 := &githubAPI{limit: 0, window: time.Second}
	srv2 := newServer(t, api2.ServeHTTP)
	cfg.MaxAttempts = 2
	_, err := New(cfg).Do(context.Background(), &Request{URL: srv2.URL}, nil)
	var se *StatusError
	if !errors.As(err, &se) || se.Status != 403 || se.RetryAfter <= 0 || se.Attempts != cfg.MaxAttempts {
		t.Fatalf("a 403 with X-RateLimit-Remaining: 0 was not retried after its reset: %v", err)
	}
}

// TestGitHubPrimaryLimitTooLong: a reset later than MaxRetryAfter fails
// at once with a message naming the header and when it resets, and the
// next request does not even go out (a *LimitError).
func TestGitHubPrimaryLimitTooLong(t *testing.T) {
	api := &githubAPI{limit: 1, window: time.Hour}
	srv := newServer(t, api.ServeHTTP)
	cfg := fastConfig()
	cfg.MaxRetryAfter = time.Second
	c := New(cfg)
	if _, err := c.Do(context.Background(), &Request{URL: srv.URL}, nil); err != nil {
		t.Fatal(err)
	}
	_, err := c.Do(context.Background(), &Request{URL: srv.URL}, nil)
	var le *LimitError
	if !errors.As(err, &le) || le.Rule != "X-RateLimit-Remaining: 0" || le.Wait < 59*time.Minute || !strings.Contains(err.Error(), "resets at") {
		t.Fatalf("err = %v", err)
	}
	if api.refused.Load() != 0 || api.served.Load() != 1 {
		t.Fatalf("served %d, refused %d: the second request should not have gone out", api.served.Load(), api.refused.Load())
	}
	// Told by a refusal instead: a StatusError saying when it resets.
	api2 := &githubAPI{limit: 0, window: time.Hour}
	srv2 := newServer(t, api2.ServeHTTP)
	_, err = New(cfg).Do(context.Background(), &Request{URL: srv2.URL}, nil)
	var se *StatusError
	if !errors.As(err, &se) || se.RetryAfterLimit == 0 || !strings.Contains(err.Error(), "X-RateLimit-Remaining: 0") ||
		!strings.Contains(err.Error(), "API rate limit exceeded for user ID 1.") || api2.refused.Load() != 1 {
		t.Fatalf("err = %v (refused %d)", err, api2.refused.Load())
	}
}

// TestIETFRateLimitWaits: the IETF fields slow the client down as
// GitHub's do.
func TestIETFRateLimitWaits(t *testing.T) {
	var mu sync.Mutex
	left, reset := 2, time.Time{}
	var refused atomic.Int64
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		now := time.Now()
		if reset.IsZero() || !now.Before(reset) {
			left, reset = 2, now.Add(time.Second)
		}
		secs := int(time.Until(reset).Seconds() + 0.999)
		w.Header().Set("RateLimit-Policy", `"default";q=2;w=1`)
		if left == 0 {
			refused.Add(1)
			w.Header().Set("RateLimit", fmt.Sprintf(`"default";r=0;t=%d`, secs))
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		left--
		w.Header().Set("RateLimit", fmt.Sprintf(`"default";r=%d;t=%d`, left, secs))
	})
	c := New(fastConfig())
	for i := range 4 {
		if _, err := c.Do(context.Background(), &Request{URL: srv.URL}, nil); err != nil {
			t.Fatal(i, err)
		}
	}
	if refused.Load() != 0 {
		t.Fatalf("refused %d times: the client did not slow down before the limit", refused.Load())
	}
}

func TestBudget(t *testing.T) {
	var hits atomic.Int64
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) { hits.Add(1) })
	// A budget of the run: the fourth request does not go out.
	cfg := fastConfig()
	cfg.Budget = Budget{Requests: 3}
	c := New(cfg)
	for range 3 {
		if _, err := c.Do(context.Background(), &Request{URL: srv.URL}, nil); err != nil {
			t.Fatal(err)
		}
	}
	_, err := c.Do(context.Background(), &Request{URL: srv.URL}, nil)
	var le *LimitError
	if !errors.As(err, &le) || !le.Reset.IsZero() || hits.Load() != 3 || !strings.Contains(err.Error(), "3 requests per run") {
		t.Fatalf("err = %v, hits %d", err, hits.Load())
	}
	// A window shorter than MaxRetryAfter is waited for; a longer one stops.
	for _, sliding := range []bool{false, true} {
		cfg.Budget = Budget{Requests: 2, Window: 300 * time.Millisecond, Sliding: sliding}
		c = New(cfg)
		start := time.Now()
		for range 3 {
			if _, err := c.Do(context.Background(), &Request{URL: srv.URL}, nil); err != nil {
				t.Fatal(err)
			}
		}
		if time.Since(start) < 250*time.Millisecond {
			t.Fatalf("sliding %v: 3 requests in a budget of 2 per 300ms took %s", sliding, time.Since(start))
		}
		cfg.Budget.Window = time.Hour
		c = New(cfg)
		for range 2 {
			c.Do(context.Background(), &Request{URL: srv.URL}, nil)
		}
		if _, err := c.Do(context.Background(), &Request{URL: srv.URL}, nil); !errors.As(err, &le) || le.Wait < 59*time.Minute {
			t.Fatalf("sliding %v: err = %v", sliding, err)
		}
	}
}

func TestCircuitBreaker(t *testing.T) {
	srv, hits := scripted(t, "down", 503)
	cfg := fastConfig()
	cfg.CircuitBreaker = 5
	c := New(cfg)
	var errs []error
	for range 4 {
		_, err := c.Do(context.Background(), &Request{URL: srv.URL}, nil)
		errs = append(errs, err)
	}
	if hits.Load() != 5 {
		t.Fatalf("%d requests went out; the breaker should open after 5", hits.Load())
	}
	if !errors.Is(errs[3], ErrCircuitOpen) || !strings.Contains(errs[3].Error(), "5 attempts in a row failed") || !strings.Contains(errs[3].Error(), "503") {
		t.Fatalf("err = %v", errs[3])
	}
	// Successes in between keep it closed.
	var n atomic.Int64
	flaky := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%3 != 0 {
			w.WriteHeader(500)
		}
	})
	c = New(cfg)
	for i := range 10 {
		if _, err := c.Do(context.Background(), &Request{URL: flaky.URL}, nil); err != nil {
			t.Fatal(i, err)
		}
	}
}

// renewing is an Authenticator whose token the server refuses until it
// was renewed.
type renewing struct {
	mu      sync.Mutex
	token   string
	renews  int
	failing error
}

func (a *renewing) Apply(_ context.Context, req *http.Request) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	req.Header.Set("Authorization", "Bearer "+a.token)
	return nil
}

func (a *renewing) Renew(_ context.Context, sent *http.Request) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.renews++
	if a.failing != nil {
		return a.failing
	}
	if sent.Header.Get("Authorization") == "Bearer "+a.token {
		a.token += "+"
	}
	return nil
}

func TestRenewOn401(t *testing.T) {
	var hits atomic.Int64
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.Header.Get("Authorization") != "Bearer t+" {
			w.WriteHeader(401)
			fmt.Fprint(w, `{"status":"error","message":"The OAuth token used for this call is expired.","category":"EXPIRED_AUTHENTICATION"}`)
		}
	})
	a := &renewing{token: "t"}
	cfg := fastConfig()
	cfg.Auth = a
	if _, err := New(cfg).Do(context.Background(), &Request{URL: srv.URL}, nil); err != nil {
		t.Fatal(err)
	}
	if a.renews != 1 || hits.Load() != 2 {
		t.Fatalf("renews %d, hits %d", a.renews, hits.Load())
	}
	// A token refused again after renewal fails: no storm of renewals.
	a = &renewing{token: "x"}
	cfg.Auth = a
	hits.Store(0)
	_, err := New(cfg).Do(context.Background(), &Request{URL: srv.URL}, nil)
	var se *StatusError
	if !errors.As(err, &se) || se.Status != 401 || a.renews != 1 || hits.Load() != 2 {
		t.Fatalf("err = %v, renews %d, hits %d", err, a.renews, hits.Load())
	}
	// A renewal that fails says both what the API and the renewal said.
	a = &renewing{token: "x", failing: errors.New(`oauth2: "invalid_grant" "refresh token revoked"`)}
	cfg.Auth = a
	hits.Store(0)
	_, err = New(cfg).Do(context.Background(), &Request{URL: srv.URL}, nil)
	var re *RenewError
	if !errors.As(err, &re) || !errors.As(err, &se) || !strings.Contains(err.Error(), "refresh token revoked") ||
		!strings.Contains(err.Error(), "The OAuth token used for this call is expired.") || hits.Load() != 1 {
		t.Fatalf("err = %v, hits %d", err, hits.Load())
	}
}

func TestDecide(t *testing.T) {
	var hits atomic.Int64
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) < 3 {
			fmt.Fprint(w, `{"errors":[{"message":"Throttled","extensions":{"code":"THROTTLED"}}]}`)
			return
		}
		fmt.Fprint(w, `{"data":{}}`)
	})
	throttled := func(r *Response) Verdict {
		if strings.Contains(string(r.Body), "THROTTLED") {
			return Verdict{Action: Retry, Wait: 20 * time.Millisecond, Err: errors.New("throttled"), Rule: "graphql THROTTLED"}
		}
		return Verdict{}
	}
	start := time.Now()
	resp, err := New(fastConfig()).Do(context.Background(), &Request{URL: srv.URL, Decide: throttled}, nil)
	if err != nil || resp.Attempts != 3 || time.Since(start) < 40*time.Millisecond {
		t.Fatalf("err %v, resp %+v, after %s", err, resp, time.Since(start))
	}
	// A wait beyond MaxRetryAfter stops with a LimitError naming the rule.
	hits.Store(0)
	long := func(r *Response) Verdict {
		return Verdict{Action: Retry, Wait: time.Hour, Err: errors.New("throttled"), Rule: "graphql THROTTLED"}
	}
	_, err = New(fastConfig()).Do(context.Background(), &Request{URL: srv.URL, Decide: long}, nil)
	var le *LimitError
	if !errors.As(err, &le) || le.Rule != "graphql THROTTLED" || hits.Load() != 1 {
		t.Fatalf("err = %v", err)
	}
	// Accept takes a 404 as it is; Fail fails a 200.
	nf := newServer(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(404) })
	resp, err = New(fastConfig()).Do(context.Background(), &Request{URL: nf.URL, Decide: func(*Response) Verdict { return Verdict{Action: Accept} }}, nil)
	if err != nil || resp.Status != 404 {
		t.Fatalf("accept: %v %v", resp, err)
	}
	hits.Store(10)
	_, err = New(fastConfig()).Do(context.Background(), &Request{URL: srv.URL, Decide: func(*Response) Verdict {
		return Verdict{Action: Fail, Err: errors.New("rule x fired")}
	}}, nil)
	if err == nil || !strings.Contains(err.Error(), "rule x fired") || hits.Load() != 11 {
		t.Fatalf("fail: %v", err)
	}
}
