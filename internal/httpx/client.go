// Package httpx is the resilient HTTP client Ferry's sources share:
// per-attempt timeouts, retries with exponential backoff and full jitter,
// Retry-After, client-side rate and concurrency limits, bounded response
// bodies and secret redaction.
//
// A source makes one Client per connection (it holds the rate limit, the
// concurrency limit and the pause a 429 imposes) and calls Do for every
// request. Credentials come from an Authenticator, applied again on every
// attempt; metrics and progress come from an Observer told about every
// attempt.
package httpx

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferry-dev/ferry/internal/redact"

	"golang.org/x/time/rate"
)

// Defaults New applies to zero Config fields.
const (
	DefaultTimeout        = 30 * time.Second
	DefaultMaxAttempts    = 6
	DefaultInitialBackoff = 500 * time.Millisecond
	DefaultMaxBackoff     = 30 * time.Second
	DefaultMaxRetryAfter  = 5 * time.Minute
	DefaultMaxBodyBytes   = 256 << 20
	DefaultUserAgent      = "ferry"
)

// errorBodyLimit bounds how much of a non-2xx body is read: enough for any
// API's error document, and for the excerpt.
const errorBodyLimit = 64 << 10

// Config configures a Client. The zero value is usable: New fills in the
// defaults documented on each field.
type Config struct {
	// Timeout bounds one attempt, from sending the request to reading the
	// last byte of the body. Default 30s.
	Timeout time.Duration
	// MaxAttempts is the number of attempts including the first. Default 6;
	// 1 disables retries.
	MaxAttempts int
	// InitialBackoff is the longest sleep before the first retry; the
	// longest sleep doubles with every retry. Default 500ms.
	InitialBackoff time.Duration
	// MaxBackoff caps one backoff sleep. Default 30s.
	MaxBackoff time.Duration
	// MaxRetryAfter is the longest Retry-After the client waits for; a
	// longer one fails the request at once with a *StatusError saying so.
	// Default 5m.
	MaxRetryAfter time.Duration
	// RequestsPerSecond limits attempts, across all goroutines, on the
	// client side. 0 means unlimited.
	RequestsPerSecond float64
	// Burst is how many attempts may go at once before RequestsPerSecond
	// applies. Default max(1, ceil(RequestsPerSecond)).
	Burst int
	// Concurrency limits attempts in flight across all goroutines. 0 means
	// unlimited.
	Concurrency int
	// MaxBodyBytes bounds a 2xx response body; a larger one fails the
	// request with ErrBodyTooLarge and is not retried. Default 256 MiB.
	//
	// It also bounds the memory all the bodies the client is reading at
	// once hold together: a body takes memory as it grows (not its cap up
	// front, so ordinary pages are read side by side) and gives it back
	// when Do returns; a body that needs memory others hold waits for it.
	MaxBodyBytes int64
	// UserAgent is sent unless the request sets its own. Default "ferry".
	UserAgent string
	// RetryStatuses are the non-2xx statuses that are retried. nil means
	// 408, 425, 429 and every 5xx; an empty non-nil slice retries none.
	// A 403 that carries Retry-After is a rate limit (GitHub answers so)
	// and is treated as a 429.
	RetryStatuses []int
	// Redactor hides secrets in errors, logs and AttemptInfo. nil still
	// hides URL passwords and sensitive query parameters.
	Redactor Redactor
	// Transport sends requests. nil means a clone of http.DefaultTransport
	// keeping at least max(16, Concurrency) idle connections per host.
	Transport http.RoundTripper
	// Logger receives an Info line for every retry, without header values
	// or secrets. nil discards.
	Logger *slog.Logger
	// Auth adds credentials to every attempt. nil sends none.
	Auth Authenticator
	// CredentialOrigins are the origins (scheme://host[:port]) credentials
	// may go to. A request to another origin, or a redirect there, is sent
	// without calling Auth, and without every header and query parameter
	// whose value holds a secret the Redactor knows, nor Authorization,
	// Proxy-Authorization, Cookie and URL userinfo; one whose path or body
	// holds a secret is refused. Empty means the origin of each Request's
	// URL: credentials go where Do is asked to send them, but not to a
	// redirect's other origin.
	CredentialOrigins []string
	// Observer is told about every attempt. nil tells no one.
	Observer Observer
	// WrapTransport, when set, wraps the transport New makes (a recorder
	// of the exchanges keeps the TLS settings and limits of the real one).
	// It is not applied to a Config.Transport of the caller's.
	WrapTransport func(http.RoundTripper) http.RoundTripper
	// TLS configures the connections of the transport New makes (client
	// certificates, CA bundles); nil uses the defaults, which verify
	// servers against the system's CAs. Ignored with a Transport.
	TLS *tls.Config
	// RateLimitHeaders names the rate-limit headers of an API that spells
	// them its own way; nil reads the usual ones (see ParseLimits). Once a
	// response says no request is left before a reset, attempts wait for
	// it (at most MaxRetryAfter; a longer wait fails with a *LimitError),
	// and a 403 or 429 saying so is a rate limit, retried after the reset.
	RateLimitHeaders *RateLimitHeaders
	// Budget limits the attempts of the client (zero Requests: none).
	// An attempt that would wait for room longer than MaxRetryAfter, or
	// find the budget of the run spent, fails with a *LimitError.
	Budget Budget
	// CircuitBreaker, when > 0, is how many attempts in a row may fail
	// with a network error, a timeout or a 5xx before the client refuses
	// every further request with ErrCircuitOpen.
	CircuitBreaker int
}

// Redactor hides secrets in text; *redact.Redactor implements it.
type Redactor interface {
	String(s string) string
	URL(raw string) string
	// MaxLen is the length of the longest form of a secret String hides.
	MaxLen() int
}

// Authenticator adds credentials to an outgoing request. Apply is called on
// every attempt to an origin credentials may go to (Config.CredentialOrigins),
// with the attempt's context (bounded by Config.Timeout), so it may refresh
// a token; it should Add a new token to the Config.Redactor. An error from
// Apply fails the request at once, unless it is wrapped with Retryable. The
// client drops the headers Apply set when a redirect goes to another origin.
// Implementations must be safe for concurrent use.
type Authenticator interface {
	Apply(ctx context.Context, req *http.Request) error
}

// Observer is told about every attempt, for metrics and progress, those
// that failed before any response included (Status 0).
// Implementations must be safe for concurrent use and should return quickly:
// Attempt is called on the goroutine that called Do.
type Observer interface {
	Attempt(a AttemptInfo)
}

// AttemptInfo describes one finished attempt. It holds no secrets.
type AttemptInfo struct {
	Method  string
	URL     string // redacted
	Attempt int    // 1-based
	// Status is the response status, 0 if no response arrived.
	Status int
	// Err is why the attempt failed (a *StatusError for a non-2xx status,
	// the check function's error, a network error), nil if it succeeded.
	// Its message is redacted.
	Err      error
	Duration time.Duration
	// Bytes is the size of the response body read.
	Bytes int64
	// RetryIn is how long the client waits before the next attempt, 0 if
	// none follows.
	RetryIn time.Duration
	// Label is the Request's.
	Label string
}

// Request is a request Do can send any number of times.
type Request struct {
	Method string      // default GET
	URL    string      // absolute http or https URL
	Header http.Header // may be nil; cloned for every attempt
	// Body is sent as is on every attempt; nil sends none. If the Header has
	// no Content-Type, a non-nil Body is sent as application/json.
	Body []byte
	// Label is copied into each AttemptInfo, for observers (the stream the
	// request is for).
	Label string
	// Decide, when set, is asked about every response before the client's
	// own rules, and may take it as it is, retry it, fail it or renew the
	// credential (response rules). Its Verdict's Err is what a failure
	// reports.
	Decide func(*Response) Verdict
	// Stream, when set, reads a 2xx body as it arrives instead of whole
	// (see stream.go).
	Stream func(resp *Response, body io.Reader) error
}

// Action is what Request.Decide decides about a response.
type Action int

// The actions of a Verdict.
const (
	// Default leaves the response to the client: its retry statuses,
	// Retry-After and rate-limit headers, and the check function.
	Default Action = iota
	// Accept returns the response as it is, whatever its status, without
	// calling the check function.
	Accept
	// Retry retries the request after Wait, or after the backoff when
	// Wait is 0 (within Config.MaxAttempts; a Wait beyond
	// Config.MaxRetryAfter fails with a *LimitError).
	Retry
	// Fail fails the request with Err at once.
	Fail
	// Renew renews the credential (the Authenticator must be a Renewer)
	// and makes the attempt again, once per Do call; then it is Fail.
	Renew
)

// Verdict is Request.Decide's answer.
type Verdict struct {
	Action Action
	// Wait is how long to wait before a Retry (0: the backoff).
	Wait time.Duration
	// Err is the error of a Fail, and of a Retry or Renew when no
	// attempt follows.
	Err error
	// Rule names the rule that decided, for a *LimitError's message.
	Rule string
}

// Response is a response read whole.
type Response struct {
	Status int
	Header http.Header
	// Body is the whole body of a 2xx response. For other statuses it is
	// the first 64 KiB at most.
	Body     []byte
	URL      string        // final URL after redirects, redacted
	Attempts int           // attempts made, this one included
	Elapsed  time.Duration // since Do was called

	cut  bool          // Body is only the start of the body
	sent *http.Request // the request as sent, credentials included (for a Renewer)
	// streamErr is what Request.Stream returned; streamed the bytes it read.
	streamErr error
	streamed  int64
}

// Stats are a Client's counters since New.
type Stats struct {
	// Requests counts attempts: every time a request was sent, including
	// attempts that failed before any response (a reset connection, EOF
	// before the headers, a timeout) and the tries net/http makes on its
	// own when a kept-alive connection closes; a redirect followed is part
	// of its attempt.
	Requests  int64
	Retries   int64 // attempts followed by another attempt
	Throttled int64 // 429 responses, and 403s with Retry-After
	Bytes     int64 // response body bytes read
	Errors    int64 // Do calls that returned an error
}

// Client is an HTTP client that retries, rate-limits and redacts. It is safe
// for concurrent use; share one per API connection.
type Client struct {
	cfg      Config
	hc       *http.Client
	mem      *budget         // memory of the bodies being read
	origins  map[string]bool // Origin of each of cfg.CredentialOrigins
	limiter  *rate.Limiter   // nil if unlimited
	slots    chan struct{}   // nil if unlimited
	retry    map[int]bool    // statuses retried besides 5xx
	retry5xx bool            // retry every 5xx
	log      *slog.Logger    // never nil
	// ownTransport is true when the client made its transport (Close
	// closes its idle connections); base is that transport, unwrapped.
	ownTransport bool
	base         http.RoundTripper

	mu        sync.Mutex
	notBefore time.Time // no attempt starts before this (a 429's pause)

	quota   quota       // the rate limit the API's headers report
	budget  *budgetGate // nil without a Budget
	breaker breaker
	keeper  QuotaKeeper // the Authenticator, when it keeps quotas per credential
	renewer Renewer     // the Authenticator, when it can renew its credential

	requests, retries, throttled, bytes, errors atomic.Int64
}

// New returns a Client for cfg, with defaults applied to its zero fields.
func New(cfg Config) *Client {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.InitialBackoff <= 0 {
		cfg.InitialBackoff = DefaultInitialBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.MaxRetryAfter <= 0 {
		cfg.MaxRetryAfter = DefaultMaxRetryAfter
	}
	if !(cfg.RequestsPerSecond > 0) || math.IsInf(cfg.RequestsPerSecond, 1) {
		cfg.RequestsPerSecond = 0
	}
	if cfg.Burst <= 0 {
		cfg.Burst = max(1, int(math.Ceil(min(cfg.RequestsPerSecond, math.MaxInt32))))
	}
	cfg.Concurrency = max(cfg.Concurrency, 0)
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	cfg.UserAgent = cmp.Or(cfg.UserAgent, DefaultUserAgent)
	if cfg.Redactor == nil {
		cfg.Redactor = redact.New()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	own := cfg.Transport == nil
	var base http.RoundTripper
	if own {
		cfg.Transport = newTransport(cfg.Concurrency, cfg.TLS)
		base = cfg.Transport
		if cfg.WrapTransport != nil {
			cfg.Transport = cfg.WrapTransport(cfg.Transport)
		}
	}
	c := &Client{
		cfg:          cfg,
		log:          cfg.Logger,
		retry:        make(map[int]bool),
		mem:          newBudget(cfg.MaxBodyBytes),
		origins:      map[string]bool{},
		ownTransport: own,
		base:         base,
	}
	c.hc = &http.Client{Transport: cfg.Transport, CheckRedirect: c.checkRedirect}
	if cfg.Budget.Requests > 0 {
		c.budget = &budgetGate{cfg: cfg.Budget}
	}
	c.breaker.limit = cfg.CircuitBreaker
	c.keeper, _ = cfg.Auth.(QuotaKeeper)
	c.renewer, _ = cfg.Auth.(Renewer)
	for _, o := range cfg.CredentialOrigins {
		if norm := Origin(o); norm != "" {
			c.origins[norm] = true
		} else {
			c.origins[o] = true // matches nothing: no credentials go anywhere by mistake
		}
	}
	statuses := cfg.RetryStatuses
	if statuses == nil {
		statuses, c.retry5xx = defaultRetryStatuses, true
	}
	for _, s := range statuses {
		c.retry[s] = true
	}
	if cfg.RequestsPerSecond > 0 {
		c.limiter = rate.NewLimiter(rate.Limit(cfg.RequestsPerSecond), cfg.Burst)
	}
	if cfg.Concurrency > 0 {
		c.slots = make(chan struct{}, cfg.Concurrency)
	}
	return c
}

// newTransport returns a clone of http.DefaultTransport that keeps enough
// idle connections for concurrency requests to one host.
func newTransport(concurrency int, tlsConfig *tls.Config) *http.Transport {
	t, ok := http.DefaultTransport.(*http.Transport)
	if ok {
		t = t.Clone()
	} else {
		t = &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			ForceAttemptHTTP2:     true,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
		}
	}
	if tlsConfig != nil {
		t.TLSClientConfig = tlsConfig.Clone()
	}
	idle := max(16, concurrency)
	t.MaxIdleConnsPerHost = idle
	t.MaxIdleConns = max(t.MaxIdleConns, idle)
	return t
}

// Stats returns the client's counters.
func (c *Client) Stats() Stats {
	return Stats{
		Requests:  c.requests.Load(),
		Retries:   c.retries.Load(),
		Throttled: c.throttled.Load(),
		Bytes:     c.bytes.Load(),
		Errors:    c.errors.Load(),
	}
}

// Do sends req until it succeeds, fails for good or ctx ends, and returns the
// response with its whole body.
//
// Every attempt waits for any pause a 429 imposed on the client, for the
// rate limiter and for a concurrency slot, then gets Config.Timeout to send
// the request and read the body. A 2xx response is passed to check (if not
// nil), which may reject it: an error wrapped with Retryable is retried like
// a 5xx, any other is returned at once in a *RequestError.
//
// Network errors, timeouts, truncated bodies and statuses in
// Config.RetryStatuses are retried up to Config.MaxAttempts attempts in all,
// sleeping a full-jitter exponential backoff, or what Retry-After asks, in
// between. Do returns:
//   - a *StatusError for a non-2xx response that is not retried, the last
//     one when attempts run out, or one asking to wait longer than
//     Config.MaxRetryAfter;
//   - a *RequestError otherwise, which matches context.Canceled or
//     context.DeadlineExceeded (errors.Is) only when ctx itself ended, and
//     ErrBodyTooLarge when the body was too large.
//
// With a *StatusError or an error from check, Do also returns the response
// that caused it, so the caller can read an API's error document.
func (c *Client) Do(ctx context.Context, req *Request, check func(*Response) error) (*Response, error) {
	if req == nil {
		c.errors.Add(1)
		return nil, errors.New("nil request")
	}
	start := time.Now()
	method := cmp.Or(req.Method, http.MethodGet)
	redURL := c.cfg.Redactor.URL(req.URL)
	fail := func(resp *Response, attempts int, err error) (*Response, error) {
		c.errors.Add(1)
		switch e := err.(type) {
		case *StatusError:
			return resp, e
		case *RenewError:
			return resp, e
		}
		return resp, &RequestError{Method: method, URL: redURL, Attempts: attempts, Err: err, red: c.cfg.Redactor}
	}
	if err := checkURL(c.cfg.Redactor, req.URL); err != nil {
		return fail(nil, 0, err)
	}

	mem := c.mem.lease()
	defer mem.release()
	free := 0        // attempts made again to break a memory deadlock: not counted against MaxAttempts
	renewed := false // the credential was renewed once already
	for n := 1; ; n++ {
		if err := c.breaker.check(); err != nil {
			return fail(nil, n-1, err)
		}
		if err := c.acquire(ctx); err != nil {
			return fail(nil, n-1, err)
		}
		began := time.Now()
		tr := &tries{}
		resp, retry, err := c.attempt(ctx, method, req, tr, mem)
		c.release()
		// Tries the transport made on its own failed before a response:
		// they are attempts and retries too, as the server saw them.
		for _, at := range tr.extra() {
			c.requests.Add(1)
			c.retries.Add(1)
			c.observe(AttemptInfo{Method: method, URL: redURL, Attempt: n, Duration: at.Sub(began), Err: errResent, Label: req.Label})
			c.log.LogAttrs(ctx, slog.LevelInfo, "retrying http request",
				slog.String("method", method),
				slog.String("url", redURL),
				slog.Int("attempt", n),
				slog.Int("max_attempts", c.cfg.MaxAttempts),
				slog.Duration("retry_in", 0),
				slog.String("error", errResent.Error()))
			n, began = n+1, at
		}

		info := AttemptInfo{Method: method, URL: redURL, Attempt: n, Duration: time.Since(began), Label: req.Label}
		var (
			se     *StatusError
			ra     time.Duration // Retry-After
			hasRA  bool
			pauses bool   // this response pauses the whole client
			raRule string // what asked for the wait, when not Retry-After
			renew  bool   // renew the credential and try again
			accept bool   // Decide took the response as it is
		)
		if resp != nil {
			resp.Attempts, resp.Elapsed = n, time.Since(start)
			info.Status, info.Bytes = resp.Status, int64(len(resp.Body))+resp.streamed
			lim := c.noteLimits(resp)
			var v Verdict
			if req.Decide != nil {
				v = req.Decide(resp)
			}
			switch {
			case v.Action == Accept:
				accept = true
			case v.Action == Fail:
				err, retry = v.Err, false
			case v.Action == Retry:
				err, retry = v.Err, true
				if v.Wait > 0 {
					ra, hasRA, raRule, pauses = v.Wait, true, v.Rule, true
				}
			case v.Action == Renew:
				err, renew = v.Err, true
			case resp.Status >= 200 && resp.Status <= 299 && resp.streamErr != nil:
				err = resp.streamErr
				retry = isRetryable(err)
			case resp.Status >= 200 && resp.Status <= 299:
				if check != nil {
					if err = check(resp); err != nil {
						retry = isRetryable(err)
						if d, rule, ok := retryWait(err); ok && d > 0 {
							ra, hasRA, raRule, pauses = d, true, rule, true
						}
					}
				}
			default:
				ra, hasRA = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
				status := resp.Status
				// A reset a moment ago (the server's clock, whole seconds)
				// still means "spent": wait a second.
				spent := (status == http.StatusForbidden || status == http.StatusTooManyRequests) && lim.Known && lim.Remaining <= 0 && !lim.Reset.IsZero()
				if spent && c.keeper != nil {
					// The credential's quota is spent; the keeper gives the
					// next attempt another, or says how long to wait.
					ra, hasRA = 0, false
					status = http.StatusTooManyRequests
				} else if spent && !hasRA {
					// GitHub's primary limit: a 403 or 429 whose headers say
					// nothing is left until the reset.
					ra, hasRA, raRule = max(time.Until(lim.Reset), time.Second), true, lim.Header+": 0"
				}
				if status == http.StatusForbidden && hasRA {
					status = http.StatusTooManyRequests // GitHub's rate limit
				}
				throttled := status == http.StatusTooManyRequests
				if throttled {
					c.throttled.Add(1)
				}
				retry = c.retry[status] || (c.retry5xx && status >= 500 && status <= 599)
				se = c.statusError(method, redURL, resp, n)
				se.RateLimit = raRule
				if hasRA {
					se.RetryAfter = ra
				}
				if retry && ra > c.cfg.MaxRetryAfter {
					// Waiting is pointless; so is pausing other requests,
					// which will hear the same answer.
					se.RetryAfterLimit = c.cfg.MaxRetryAfter
					retry = false
				}
				pauses = throttled && c.keeper == nil || (retry && ra > 0)
				renew = status == http.StatusUnauthorized && c.renewer != nil
				err = se
			}
			c.breaker.result(resp.Status >= 500 && !accept, "status "+strconv.Itoa(resp.Status))
		} else if err != nil && retry {
			c.breaker.result(true, err.Error())
		}
		if hasRA && ra > c.cfg.MaxRetryAfter && se == nil && err != nil {
			// A rule or the check asked for a wait longer than allowed.
			err = errors.Join(err, &LimitError{Rule: cmp.Or(raRule, "a response rule"), Reset: time.Now().Add(ra), Wait: ra, MaxWait: c.cfg.MaxRetryAfter})
			retry = false
		}
		if accept {
			err = nil
		}
		// The body is the caller's now, or garbage.
		used := mem.release()
		evicted := errors.Is(err, errEvicted)
		if err == nil {
			c.observe(info)
			return resp, nil
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			// The caller gave up; whatever this attempt saw is moot.
			info.Err = ctxErr
			c.observe(info)
			return fail(resp, n, ctxErr)
		}
		if le := (*LimitError)(nil); resp == nil && errors.As(err, &le) {
			// The Authenticator has no credential with quota left.
			le.MaxWait = c.cfg.MaxRetryAfter
			if le.Wait > c.cfg.MaxRetryAfter || le.Reset.IsZero() {
				info.Err = err
				c.observe(info)
				return fail(nil, n, le)
			}
			free++
			info.Err, info.RetryIn = err, le.Wait
			c.observe(info)
			c.log.LogAttrs(ctx, slog.LevelInfo, "waiting for a credential's rate limit to reset", slog.String("rule", le.Rule), slog.Duration("wait", le.Wait))
			if err := sleep(ctx, le.Wait); err != nil {
				return fail(nil, n, err)
			}
			continue
		}
		if renew && !renewed && c.renewer != nil {
			// The credential was refused: renew it once, and try again
			// at once (not counted against MaxAttempts).
			renewed = true
			if rerr := c.renewer.Renew(ctx, resp.sent); rerr != nil {
				info.Err = &redactedError{err: err, red: c.cfg.Redactor}
				c.observe(info)
				if se != nil {
					return fail(resp, n, &RenewError{Status: se, Err: rerr, red: c.cfg.Redactor})
				}
				return fail(resp, n, fmt.Errorf("%w; renewing the credential failed: %w", err, rerr))
			}
			free++
			info.Err = &redactedError{err: err, red: c.cfg.Redactor}
			c.observe(info)
			c.retries.Add(1)
			c.log.LogAttrs(ctx, slog.LevelInfo, "renewed the credential after it was refused", slog.String("method", method),
				slog.String("url", redURL), slog.Int("status", resp.Status))
			continue
		}

		if evicted {
			// Not the server's fault: again at once, once there is as
			// much memory as this attempt had.
			free++
			info.Err, info.RetryIn = err, 0
			c.observe(info)
			c.retries.Add(1)
			c.log.LogAttrs(ctx, slog.LevelDebug, "reading http response again", slog.String("method", method),
				slog.String("url", redURL), slog.Int("attempt", n), slog.String("error", err.Error()))
			if err := mem.reserve(ctx, used); err != nil && !errors.Is(err, errEvicted) {
				return fail(nil, n, err)
			}
			continue
		}
		delay := fullJitter(backoffCap(n, c.cfg.InitialBackoff, c.cfg.MaxBackoff))
		if ra > 0 && ra <= c.cfg.MaxRetryAfter {
			// What the server asked, plus a little so that clients it
			// told the same thing do not all come back at once.
			delay = ra + fullJitter(min(ra/10, time.Second))
		}
		if pauses && ra <= c.cfg.MaxRetryAfter {
			c.pause(delay)
		}
		more := retry && n-free < c.cfg.MaxAttempts
		info.Err = &redactedError{err: err, red: c.cfg.Redactor}
		if more {
			info.RetryIn = delay
		}
		c.observe(info)
		if !more {
			return fail(resp, n, err)
		}

		c.retries.Add(1)
		attrs := []slog.Attr{
			slog.String("method", method),
			slog.String("url", redURL),
			slog.Int("attempt", n),
			slog.Int("max_attempts", c.cfg.MaxAttempts),
			slog.Duration("retry_in", delay),
		}
		if se != nil {
			attrs = append(attrs, slog.Int("status", se.Status), slog.String("body", se.detail()))
		} else {
			attrs = append(attrs, slog.String("error", info.Err.Error()))
		}
		if pauses {
			attrs = append(attrs, slog.Bool("client_paused", true))
		}
		c.log.LogAttrs(ctx, slog.LevelInfo, "retrying http request", attrs...)

		if err := sleep(ctx, delay); err != nil {
			return fail(nil, n, err)
		}
	}
}

// attempt sends req once and reads the body. It returns the response when
// one arrived (whatever its status), or an error and whether it is worth
// retrying. An error caused by ctx ending is ctx.Err() itself.
func (c *Client) attempt(ctx context.Context, method string, req *Request, tr *tries, mem *lease) (*Response, bool, error) {
	var (
		actx   context.Context
		cancel context.CancelFunc
		idle   *idleTimer
	)
	if req.Stream != nil {
		actx, cancel = context.WithCancel(ctx)
		idle = newIdleTimer(c.cfg.Timeout, cancel)
		defer idle.stop()
	} else {
		actx, cancel = context.WithTimeout(ctx, c.cfg.Timeout)
	}
	defer cancel()
	actx = context.WithValue(tr.trace(actx), triesKey{}, tr)
	// failed classifies an error of step op.
	failed := func(op string, err error, retry bool) (*Response, bool, error) {
		if ctx.Err() != nil {
			return nil, false, ctx.Err()
		}
		if actx.Err() != nil {
			return nil, true, fmt.Errorf("%s: %w after %s", op, ErrAttemptTimeout, c.cfg.Timeout)
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its message holds the unredacted URL
		}
		return nil, retry && retryableNetError(err), fmt.Errorf("%s: %w", op, err)
	}

	var body io.Reader
	if req.Body != nil {
		body = bytes.NewReader(req.Body)
	}
	hreq, err := http.NewRequestWithContext(actx, method, req.URL, body)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			// Its message quotes the URL; checkURL has said what is wrong.
			err = errors.New("invalid url")
		}
		return failed("build request", err, false)
	}
	hreq.Header = req.Header.Clone()
	if hreq.Header == nil {
		hreq.Header = make(http.Header)
	}
	if hreq.Header.Get("User-Agent") == "" {
		hreq.Header.Set("User-Agent", c.cfg.UserAgent)
	}
	if req.Body != nil && hreq.Header.Get("Content-Type") == "" {
		hreq.Header.Set("Content-Type", "application/json")
	}
	cred := &credState{body: req.Body}
	if !c.mayCredential(hreq.URL, nil) {
		if err := c.withhold(actx, hreq, req.Body); err != nil {
			return nil, false, err
		}
	} else if c.cfg.Auth != nil {
		before := hreq.Header.Clone()
		if err := c.cfg.Auth.Apply(actx, hreq); err != nil {
			return failed("authenticate", err, isRetryable(err))
		}
		cred.authKeys = changedHeaders(before, hreq.Header)
	}
	hreq = hreq.WithContext(context.WithValue(hreq.Context(), credKey{}, cred))

	c.requests.Add(1)
	hresp, err := c.hc.Do(hreq)
	if err != nil {
		return failed("send request", err, true)
	}
	defer hresp.Body.Close()

	resp := &Response{
		Status: hresp.StatusCode,
		Header: hresp.Header,
		URL:    c.cfg.Redactor.URL(hresp.Request.URL.String()),
		sent:   hreq,
	}
	ok := hresp.StatusCode >= 200 && hresp.StatusCode <= 299
	limit := c.cfg.MaxBodyBytes
	if !ok {
		limit = min(limit, errorBodyLimit)
	}
	tooLarge := func() (*Response, bool, error) {
		return nil, false, fmt.Errorf("%w: more than %s (raise http.max_body_bytes to allow more)", ErrBodyTooLarge, formatBytes(limit))
	}
	if ok && method != http.MethodHead && hresp.ContentLength > limit {
		return tooLarge()
	}
	if ok && req.Stream != nil && method != http.MethodHead {
		idle.reset()
		sr := &streamReader{r: hresp.Body, idle: idle}
		resp.streamErr = req.Stream(resp, sr)
		resp.streamed = sr.n
		c.bytes.Add(sr.n)
		if resp.streamErr != nil && idle.fired.Load() && ctx.Err() == nil {
			resp.streamErr = fmt.Errorf("read body: %w: no data for %s: %w", ErrAttemptTimeout, c.cfg.Timeout, resp.streamErr)
		}
		return resp, false, nil
	}
	var data []byte
	if method != http.MethodHead { // its Content-Length is the GET's, with no body
		data, err = readBody(actx, hresp, limit, mem)
	}
	c.bytes.Add(int64(len(data)))
	switch {
	case err == nil:
	case errors.Is(err, errBodyOverLimit):
		if ok {
			return tooLarge()
		}
		resp.cut = true // an error document: its start is enough
	case errors.Is(err, errOverBudget):
		return nil, false, fmt.Errorf("%w: more than the %s all responses being read at once may hold (raise http.max_body_bytes to allow more)",
			ErrBodyTooLarge, formatBytes(c.mem.limit))
	case errors.Is(err, errEvicted):
		return nil, true, err
	case ok:
		if errors.Is(err, errMemoryWait) {
			return failed("read body (waiting for memory other responses hold, see http.max_body_bytes)", err, true)
		}
		return failed("read body", err, true)
	default:
		// The status decides; keep what arrived for the excerpt.
		if ctx.Err() != nil {
			return nil, false, ctx.Err()
		}
		resp.cut = true
	}
	resp.Body = data
	return resp, false, nil
}

// errBodyOverLimit is readBody's error for a body longer than its limit.
var errBodyOverLimit = errors.New("body over limit")

// errMemoryWait marks readBody's error when the context ended while the
// body waited for memory.
var errMemoryWait = errors.New("waiting for memory")

// readBody reads a body of at most limit bytes, taking the memory of its
// buffer from mem as it grows. A body with a Content-Length is read into
// one buffer of that size, which matters for pages of hundreds of
// kilobytes; one without grows its buffer by half each time (and by 32
// KiB at least). A body longer than limit fails with errBodyOverLimit and
// the first limit bytes.
func readBody(ctx context.Context, hresp *http.Response, limit int64, mem *lease) ([]byte, error) {
	use := func(n int64) error {
		err := mem.use(ctx, n)
		if err != nil && ctx.Err() != nil {
			return errors.Join(errMemoryWait, err)
		}
		return err
	}
	var buf []byte
	if n := hresp.ContentLength; n > 0 && n <= limit {
		if err := use(n); err != nil {
			return nil, err
		}
		buf = make([]byte, 0, n)
	}
	var one [1]byte
	for {
		if len(buf) == cap(buf) {
			// Full: find out whether more is coming before growing.
			k, err := io.ReadAtLeast(hresp.Body, one[:], 1)
			if k == 0 {
				if err == io.EOF {
					err = nil
				}
				return buf, err
			}
			if int64(len(buf)) >= limit {
				return buf, errBodyOverLimit
			}
			size := min(limit, int64(cap(buf))+max(int64(cap(buf))/2, 32<<10))
			if err := use(size - int64(cap(buf))); err != nil {
				return buf, err
			}
			grown := make([]byte, len(buf), size)
			copy(grown, buf)
			buf = append(grown, one[0])
			continue
		}
		k, err := hresp.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+k]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// changedHeaders returns the names of the headers that differ between before
// and after.
func changedHeaders(before, after http.Header) []string {
	var keys []string
	for k, v := range after {
		if !slices.Equal(before[k], v) {
			keys = append(keys, k)
		}
	}
	return keys
}

// statusError describes a non-2xx response.
func (c *Client) statusError(method, redURL string, resp *Response, attempts int) *StatusError {
	se := &StatusError{
		Method:     method,
		URL:        redURL,
		Status:     resp.Status,
		StatusText: http.StatusText(resp.Status),
		Excerpt:    excerpt(c.cfg.Redactor, resp.Body, resp.cut),
		HTML:       looksHTML(resp.Header, resp.Body),
		Attempts:   attempts,
	}
	statusMessage(se, c.cfg.Redactor, resp.Header, resp.Body, resp.cut)
	return se
}

// checkURL rejects what no attempt could send. Its error quotes nothing
// of raw: url.Parse's would, and the part it quotes may be a piece of a
// password.
func checkURL(red Redactor, raw string) error {
	u, err := redact.ParseURLWith(red, raw)
	if err != nil {
		var ue *redact.URLError
		if errors.As(err, &ue) {
			return errors.New("invalid url: " + ue.Reason) // the URL is already in the message
		}
		return errors.New("invalid url")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return errors.New("invalid url: scheme must be http or https")
	}
	if u.Host == "" {
		return errors.New("invalid url: no host")
	}
	return nil
}

// acquire waits for the client to be allowed another attempt: for a
// concurrency slot, for the end of any pause, and for the rate limiter. On
// success the caller must release the slot.
func (c *Client) acquire(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if c.slots != nil {
		select {
		case c.slots <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for {
		if err := sleep(ctx, c.pausedFor()); err != nil {
			c.release()
			return err
		}
		if c.limiter != nil {
			r := c.limiter.Reserve()
			if err := sleep(ctx, r.Delay()); err != nil {
				r.Cancel()
				c.release()
				return err
			}
		}
		// A 429 elsewhere may have paused the client meanwhile.
		if c.pausedFor() <= 0 {
			if err := c.gate(ctx); err != nil {
				c.release()
				return err
			}
			return nil
		}
	}
}

// release frees the concurrency slot acquire took.
func (c *Client) release() {
	if c.slots != nil {
		<-c.slots
	}
}

// pause keeps every attempt of the client from starting for d, unless an
// earlier pause lasts longer.
func (c *Client) pause(d time.Duration) {
	until := time.Now().Add(d)
	c.mu.Lock()
	defer c.mu.Unlock()
	if until.After(c.notBefore) {
		c.notBefore = until
	}
}

// pausedFor returns how long attempts must still wait, <= 0 if not paused.
func (c *Client) pausedFor() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Until(c.notBefore)
}

// noteLimits reads the rate limit a response reports and keeps it, or
// tells the Authenticator keeping quotas per credential.
func (c *Client) noteLimits(resp *Response) Limits {
	lim, ok := ParseLimits(resp.Header, time.Now(), c.cfg.RateLimitHeaders)
	if !ok {
		return Limits{}
	}
	if c.keeper != nil {
		c.keeper.Observe(resp.sent, resp.Status, lim)
	} else {
		c.quota.observe(lim, time.Now())
	}
	return lim
}

// Close releases the client's idle connections. A client built on a
// Config.Transport of the caller's leaves it alone.
func (c *Client) Close() {
	if c.ownTransport {
		if t, ok := c.base.(interface{ CloseIdleConnections() }); ok {
			t.CloseIdleConnections()
		}
	}
}

// observe tells the Observer about an attempt.
func (c *Client) observe(info AttemptInfo) {
	if c.cfg.Observer != nil {
		c.cfg.Observer.Attempt(info)
	}
}
