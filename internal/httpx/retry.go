package httpx

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Retryable wraps err so that, returned from the check function given to
// Client.Do (or from an Authenticator), the attempt is retried like a 5xx
// response. errors.Is and errors.As see through the wrapper. Retryable(nil)
// is nil.
func Retryable(err error) error {
	if err == nil {
		return nil
	}
	return &retryableError{err: err}
}

type retryableError struct {
	err error
	// wait, rule and waits: RetryIn's wait, and the rule that asked for it.
	wait  time.Duration
	rule  string
	waits bool
}

func (e *retryableError) Error() string { return e.err.Error() }
func (e *retryableError) Unwrap() error { return e.err }

// isRetryable reports whether err was wrapped with Retryable.
func isRetryable(err error) bool {
	var r *retryableError
	return errors.As(err, &r)
}

// defaultRetryStatuses are retried when Config.RetryStatuses is nil, along
// with every other 5xx.
var defaultRetryStatuses = []int{
	http.StatusRequestTimeout,      // 408
	http.StatusTooEarly,            // 425
	http.StatusTooManyRequests,     // 429
	http.StatusInternalServerError, // 500
	http.StatusBadGateway,          // 502
	http.StatusServiceUnavailable,  // 503
	http.StatusGatewayTimeout,      // 504
}

// backoffCap returns the longest sleep before the retry that follows attempt
// (1-based): min(max, initial * 2^(attempt-1)), without overflowing.
func backoffCap(attempt int, initial, max time.Duration) time.Duration {
	d := initial
	for i := 1; i < attempt && d < max; i++ {
		if d > max/2 {
			return max
		}
		d *= 2
	}
	return min(d, max)
}

// fullJitter returns a uniformly random duration in [0, limit].
func fullJitter(limit time.Duration) time.Duration {
	if limit <= 0 {
		return 0
	}
	if limit == math.MaxInt64 {
		return time.Duration(rand.Int64N(int64(limit)))
	}
	return time.Duration(rand.Int64N(int64(limit) + 1))
}

// maxDelay is what parseRetryAfter returns for a value too large to
// represent; it is far beyond any sensible Config.MaxRetryAfter.
const maxDelay = time.Duration(math.MaxInt64)

// parseRetryAfter parses a Retry-After header value, in delta-seconds ("120",
// and leniently "1.5") or as an HTTP-date, into how long to wait from now.
// It reports false for an empty or malformed value. The result is never
// negative: a date in the past means 0, and a value too large to represent
// means maxDelay.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if whole, frac, ok := strings.Cut(v, "."); allDigits(whole) && (!ok || allDigits(frac)) {
		f, err := strconv.ParseFloat(v, 64) // +Inf with ErrRange if huge
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return 0, false
		}
		if f >= float64(maxDelay/time.Second) {
			return maxDelay, true
		}
		return time.Duration(math.Ceil(f * float64(time.Second))), true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}

// allDigits reports whether s is a non-empty run of ASCII digits.
func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// retryableNetError reports whether a failure to send a request or read its
// response is worth another attempt. Network trouble is; a certificate the
// client does not trust, a plain-HTTP server behind an https URL or a
// redirect loop is not.
func retryableNetError(err error) bool {
	var (
		verify    *tls.CertificateVerificationError
		header    tls.RecordHeaderError
		authority x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
	)
	switch {
	case errors.Is(err, errTooManyRedirects),
		errors.Is(err, ErrNotRecorded),
		isRefused(err),
		errors.As(err, &verify),
		errors.As(err, &header),
		errors.As(err, &authority),
		errors.As(err, &hostname),
		errors.As(err, &invalid):
		return false
	}
	return true
}

// sleep waits for d or until ctx is done, whichever comes first, and returns
// ctx.Err() in the second case.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
