package httpx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"
)

// LimitError is returned by Client.Do when a rate limit or the request
// budget would make the request wait longer than Config.MaxRetryAfter,
// or when the budget of the run is spent. It is not a failure of the
// API: a source ends the stream early (committing what it read) and the
// next run resumes.
type LimitError struct {
	// Rule names what limited: "X-RateLimit-Remaining: 0",
	// "http.budget: 100 requests per 1h".
	Rule string
	// Reset is when the limit resets; zero when only a new run resets it
	// (a budget per run).
	Reset time.Time
	// Wait is how long the request would have had to wait (0 with a zero
	// Reset).
	Wait time.Duration
	// MaxWait is the longest wait allowed (Config.MaxRetryAfter).
	MaxWait time.Duration
}

func (e *LimitError) Error() string {
	if e.Reset.IsZero() {
		return e.Rule + ": spent for this run; the next run goes on"
	}
	return fmt.Sprintf("%s: resets at %s (in %s), later than max_wait (%s) allows waiting",
		e.Rule, e.Reset.UTC().Format(time.RFC3339), e.Wait.Round(time.Second), e.MaxWait)
}

// ErrCircuitOpen is wrapped by the error of every request after
// Config.CircuitBreaker attempts in a row failed: the client stops
// sending to an API that is down instead of hammering it.
var ErrCircuitOpen = errors.New("circuit breaker open")

// Budget limits the attempts a client makes: Requests per Window, or
// Requests in all (the whole run) when Window is 0. Every attempt counts,
// retries included. A fixed window starts with its first attempt; a
// sliding one counts the attempts of the last Window.
type Budget struct {
	Requests int
	Window   time.Duration
	Sliding  bool
}

func (b Budget) String() string {
	switch {
	case b.Window == 0:
		return fmt.Sprintf("http.budget: %d requests per run", b.Requests)
	case b.Sliding:
		return fmt.Sprintf("http.budget: %d requests in any %s", b.Requests, b.Window)
	}
	return fmt.Sprintf("http.budget: %d requests per %s", b.Requests, b.Window)
}

// Renewer is implemented by Authenticators whose credential can be
// renewed (an OAuth2 access token, a login session). When a response
// says the credential was refused (401, or a response rule asking to
// refresh), the client calls Renew with the request that carried it and
// makes the attempt again at once, once per Do call. Renew should drop
// the credential only when it is still the one sent (concurrent requests
// hear the same 401), and returns an error when no new one can be had;
// that error fails the request unless it is wrapped with Retryable.
type Renewer interface {
	Renew(ctx context.Context, sent *http.Request) error
}

// QuotaKeeper is implemented by Authenticators that keep rate limits per
// credential (a pool of tokens, each with its own quota). The client
// tells it the limits of every response with the request that was sent,
// and leaves the limits to it: it does not wait for a quota a response
// reports spent, and retries a request refused for a spent quota at once
// (with another credential). When no credential has quota left, Apply
// returns a *LimitError saying when one resets; the client waits until
// then, or fails with it when that is too long.
type QuotaKeeper interface {
	Observe(sent *http.Request, status int, l Limits)
}

// RetryIn wraps err like Retryable, asking for the retry to come after
// d (a throttling error in a 200 that says how long to wait). A d longer
// than Config.MaxRetryAfter fails the request with a *LimitError.
func RetryIn(err error, d time.Duration, rule string) error {
	if err == nil {
		return nil
	}
	return &retryableError{err: err, wait: max(d, 0), rule: rule, waits: true}
}

// retryWait returns the wait RetryIn asked for.
func retryWait(err error) (time.Duration, string, bool) {
	var r *retryableError
	if errors.As(err, &r) && r.waits {
		return r.wait, r.rule, true
	}
	return 0, "", false
}

// quota follows the rate limit the API's headers report.
type quota struct {
	mu        sync.Mutex
	known     bool
	remaining int64
	reset     time.Time
	header    string
}

// observe takes in what a response reported.
func (q *quota) observe(l Limits, now time.Time) {
	if !l.Known || l.Reset.IsZero() {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.known || !now.Before(q.reset) || l.Reset.After(q.reset.Add(time.Second)) {
		// A new window (or the first word of one).
		q.known, q.remaining, q.reset, q.header = true, l.Remaining, l.Reset, l.Header
		return
	}
	// Responses to requests sent at once arrive in any order: the fewest
	// left is the truth.
	q.remaining = min(q.remaining, l.Remaining)
}

// take counts one attempt against the quota, or returns how long to wait
// for the window to reset when none is left.
func (q *quota) take(now time.Time) (time.Duration, string, time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.known {
		return 0, "", time.Time{}
	}
	if !now.Before(q.reset) {
		q.known = false // the window reset: the next response says more
		return 0, "", time.Time{}
	}
	if q.remaining <= 0 {
		return q.reset.Sub(now), q.header + ": 0", q.reset
	}
	q.remaining--
	return 0, "", time.Time{}
}

// budgetGate counts attempts against a Budget.
type budgetGate struct {
	cfg   Budget
	mu    sync.Mutex
	start time.Time   // fixed window: when it began
	used  int         // fixed window or whole run: attempts so far
	times []time.Time // sliding window: the attempts in it, oldest first
}

// take counts one attempt, or returns how long to wait for room (and
// spent when only a new run brings room).
func (b *budgetGate) take(now time.Time) (wait time.Duration, reset time.Time, spent bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.cfg.Window == 0:
		if b.used >= b.cfg.Requests {
			return 0, time.Time{}, true
		}
		b.used++
	case b.cfg.Sliding:
		cut := 0
		for cut < len(b.times) && !b.times[cut].After(now.Add(-b.cfg.Window)) {
			cut++
		}
		b.times = b.times[cut:]
		if len(b.times) >= b.cfg.Requests {
			reset = b.times[0].Add(b.cfg.Window)
			return reset.Sub(now), reset, false
		}
		b.times = append(b.times, now)
	default:
		if b.start.IsZero() || !now.Before(b.start.Add(b.cfg.Window)) {
			b.start, b.used = now, 0
		}
		if b.used >= b.cfg.Requests {
			reset = b.start.Add(b.cfg.Window)
			return reset.Sub(now), reset, false
		}
		b.used++
	}
	return 0, time.Time{}, false
}

// breaker counts attempts that failed in a row.
type breaker struct {
	limit int
	mu    sync.Mutex
	n     int
	last  string
}

// result records an attempt: failed is a server failure (a network
// error, a timeout, a 5xx); a response of any other kind closes the count.
func (b *breaker) result(failed bool, why string) {
	if b.limit <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !failed {
		if b.n < b.limit {
			b.n = 0
		}
		return
	}
	if b.n < b.limit {
		b.n++
		b.last = why
	}
}

// check fails once the breaker is open. It stays open for the client's
// life: the run ends, and the next one tries again.
func (b *breaker) check() error {
	if b.limit <= 0 {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.n < b.limit {
		return nil
	}
	return fmt.Errorf("%w: %d attempts in a row failed (http.circuit_breaker), the last with %s; no more requests go to this API in this run",
		ErrCircuitOpen, b.limit, strings.TrimSpace(b.last))
}

// gate waits until the rate limit the API reported and the budget allow
// another attempt, or returns a *LimitError when that is longer than
// Config.MaxRetryAfter (or the budget of the run is spent).
func (c *Client) gate(ctx context.Context) error {
	for {
		now := time.Now()
		if c.keeper == nil {
			if wait, rule, reset := c.quota.take(now); wait > 0 {
				if wait > c.cfg.MaxRetryAfter {
					return &LimitError{Rule: rule, Reset: reset, Wait: wait, MaxWait: c.cfg.MaxRetryAfter}
				}
				c.log.LogAttrs(ctx, slog.LevelInfo, "waiting for the rate limit to reset", slog.String("rule", rule), slog.Duration("wait", wait))
				if err := sleep(ctx, wait); err != nil {
					return err
				}
				continue
			}
		}
		if c.budget == nil {
			return nil
		}
		wait, reset, spent := c.budget.take(now)
		switch {
		case spent:
			return &LimitError{Rule: c.cfg.Budget.String(), MaxWait: c.cfg.MaxRetryAfter}
		case wait > c.cfg.MaxRetryAfter:
			return &LimitError{Rule: c.cfg.Budget.String(), Reset: reset, Wait: wait, MaxWait: c.cfg.MaxRetryAfter}
		case wait > 0:
			c.log.LogAttrs(ctx, slog.LevelInfo, "waiting for the request budget", slog.String("rule", c.cfg.Budget.String()), slog.Duration("wait", wait))
			if err := sleep(ctx, wait); err != nil {
				return err
			}
			continue
		}
		return nil
	}
}

// IsRetryable reports whether err was wrapped with Retryable or RetryIn.
func IsRetryable(err error) bool { return isRetryable(err) }
