package httpx

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/redact"
)

// fastConfig is a Config whose backoff sleeps are a few milliseconds.
func fastConfig() Config {
	return Config{
		Timeout:        5 * time.Second,
		MaxAttempts:    4,
		InitialBackoff: time.Millisecond,
		MaxBackoff:     4 * time.Millisecond,
	}
}

// newServer starts a test server closed when the test ends.
func newServer(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// scripted serves the statuses in order, one per request, repeating the last
// one; it returns the server and a counter of requests seen.
func scripted(t *testing.T, body string, statuses ...int) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		n := int(hits.Add(1))
		w.WriteHeader(statuses[min(n, len(statuses))-1])
		io.WriteString(w, body)
	})
	return srv, &hits
}

// hijack writes raw to the connection under w and closes it, like a server
// that dies mid-response.
func hijack(t *testing.T, w http.ResponseWriter, raw string) {
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		t.Errorf("hijack: %v", err)
		return
	}
	defer conn.Close()
	buf.WriteString(raw)
	buf.Flush()
}

// recorder is an Observer that keeps every AttemptInfo.
type recorder struct {
	mu    sync.Mutex
	infos []AttemptInfo
	on    func(AttemptInfo) // optional, called for every attempt
}

func (r *recorder) Attempt(a AttemptInfo) {
	r.mu.Lock()
	r.infos = append(r.infos, a)
	r.mu.Unlock()
	if r.on != nil {
		r.on(a)
	}
}

func (r *recorder) all() []AttemptInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]AttemptInfo(nil), r.infos...)
}

func TestDoRetriesThenSucceeds(t *testing.T) {
	for _, status := range []int{500, 502, 503, 504, 408, 425, 429} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			srv, hits := scripted(t, `{"ok":true}`, status, status, http.StatusOK)
			c := New(fastConfig())
			resp, err := c.Do(t.Context(), &Request{URL: srv.URL}, nil)
			if err != nil {
				t.Fatalf("Do: %v", err)
			}
			if resp.Status != http.StatusOK || string(resp.Body) != `{"ok":true}` || resp.Attempts != 3 {
				t.Errorf("got status %d, body %q, attempts %d; want 200, {\"ok\":true}, 3", resp.Status, resp.Body, resp.Attempts)
			}
			if got := hits.Load(); got != 3 {
				t.Errorf("server saw %d requests, want 3", got)
			}
			if got := c.Stats().Retries; got != 2 {
				t.Errorf("Stats().Retries = %d, want 2", got)
			}
		})
	}
}

func TestDoGivesUpAfterMaxAttempts(t *testing.T) {
	const page = "<html><body>upstream down</body></html>"
	srv, hits := scripted(t, page, http.StatusServiceUnavailable)
	c := New(fastConfig())
	resp, err := c.Do(t.Context(), &Request{URL: srv.URL + "/v1/orders?page=3"}, nil)
	var se *StatusError
	if !errors.As(err, &se) {
		t.Fatalf("Do: %v (%T), want *StatusError", err, err)
	}
	if se.Status != 503 || se.Attempts != 4 || !se.HTML || se.Excerpt != page {
		t.Errorf("StatusError = %+v", se)
	}
	want := "GET " + srv.URL + `/v1/orders?page=3: 503 Service Unavailable (gave up after 4 attempts): body is not JSON: (HTML page) text/html, 39 bytes: "upstream down"`
	if err.Error() != want {
		t.Errorf("Error() =\n%s\nwant\n%s", err, want)
	}
	if resp == nil || resp.Status != 503 || string(resp.Body) != page {
		t.Errorf("Do returned response %+v, want the last 503", resp)
	}
	if got := hits.Load(); got != 4 {
		t.Errorf("server saw %d requests, want 4", got)
	}
}

func TestDoDoesNotRetryClientErrors(t *testing.T) {
	for _, status := range []int{400, 401, 403, 404, 422, 501} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			srv, hits := scripted(t, `{"error":"no"}`, status)
			cfg := fastConfig()
			cfg.RetryStatuses = []int{429, 503} // so 501 is not retried either
			_, err := New(cfg).Do(t.Context(), &Request{URL: srv.URL}, nil)
			var se *StatusError
			if !errors.As(err, &se) || se.Status != status || se.Attempts != 1 {
				t.Fatalf("Do: %v, want a *StatusError for %d after 1 attempt", err, status)
			}
			if strings.Contains(err.Error(), "after") {
				t.Errorf("Error() = %q mentions attempts for a single one", err)
			}
			if got := hits.Load(); got != 1 {
				t.Errorf("server saw %d requests, want 1", got)
			}
		})
	}
}

func TestDoRetryAfter(t *testing.T) {
	tests := []struct {
		name   string
		status int
		// header returns the Retry-After value and the earliest time the
		// retry may arrive, given when the first response was sent.
		header func(now time.Time) (string, time.Time)
	}{
		{"429 seconds", 429, func(now time.Time) (string, time.Time) {
			return "1", now.Add(time.Second)
		}},
		{"503 seconds", 503, func(now time.Time) (string, time.Time) {
			return "1", now.Add(time.Second)
		}},
		{"429 http-date", 429, func(now time.Time) (string, time.Time) {
			at := now.Add(2 * time.Second).Truncate(time.Second) // 1–2s away
			return at.UTC().Format(http.TimeFormat), at
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var (
				mu       sync.Mutex
				earliest time.Time
				arrivals []time.Time
			)
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				defer mu.Unlock()
				now := time.Now()
				arrivals = append(arrivals, now)
				if len(arrivals) == 1 {
					var v string
					v, earliest = tt.header(now)
					w.Header().Set("Retry-After", v)
					w.WriteHeader(tt.status)
					return
				}
				io.WriteString(w, "ok")
			})
			// A backoff of at most 1ms proves the wait came from Retry-After.
			cfg := fastConfig()
			cfg.MaxBackoff = time.Millisecond
			resp, err := New(cfg).Do(t.Context(), &Request{URL: srv.URL}, nil)
			if err != nil {
				t.Fatalf("Do: %v", err)
			}
			mu.Lock()
			defer mu.Unlock()
			if resp.Attempts != 2 || len(arrivals) != 2 {
				t.Fatalf("attempts %d, server saw %d; want 2 and 2", resp.Attempts, len(arrivals))
			}
			if arrivals[1].Before(earliest) {
				t.Errorf("retry came %v early", earliest.Sub(arrivals[1]))
			}
			if gap := arrivals[1].Sub(arrivals[0]); gap > 3*time.Second {
				t.Errorf("retry came after %v, far later than asked", gap)
			}
		})
	}
}

func TestDoForbiddenWithRetryAfterIsThrottling(t *testing.T) {
	var hits atomic.Int64
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 1 {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, `{"message":"You have exceeded a secondary rate limit"}`)
			return
		}
		io.WriteString(w, "ok")
	})
	c := New(fastConfig())
	resp, err := c.Do(t.Context(), &Request{URL: srv.URL}, nil)
	if err != nil || resp.Attempts != 2 {
		t.Fatalf("Do: %v, %+v; want success on attempt 2", err, resp)
	}
	if s := c.Stats(); s.Throttled != 1 || s.Retries != 1 {
		t.Errorf("Stats() = %+v, want 1 throttled and 1 retry", s)
	}
}

func TestDoRetryAfterTooLong(t *testing.T) {
	tests := []struct {
		name, value, wait string
	}{
		{"seconds", "3600", "1h0m0s"},
		{"huge", "99999999999999999999999", "2562047h47m16.854775807s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hits atomic.Int64
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				w.Header().Set("Retry-After", tt.value)
				w.WriteHeader(http.StatusTooManyRequests)
			})
			cfg := fastConfig()
			cfg.MaxRetryAfter = time.Minute
			c := New(cfg)
			start := time.Now()
			_, err := c.Do(t.Context(), &Request{URL: srv.URL}, nil)
			if elapsed := time.Since(start); elapsed > time.Second {
				t.Errorf("Do took %v, want an immediate failure", elapsed)
			}
			var se *StatusError
			if !errors.As(err, &se) || se.RetryAfterLimit != time.Minute || se.Attempts != 1 {
				t.Fatalf("Do: %v, want a *StatusError past the limit after 1 attempt", err)
			}
			want := "429 Too Many Requests (not retried: the server asked to wait " + tt.wait + " before retrying, more than max_retry_after (1m0s))"
			if !strings.Contains(err.Error(), want) {
				t.Errorf("Error() = %q, want it to contain %q", err, want)
			}
			if hits.Load() != 1 {
				t.Errorf("server saw %d requests, want 1", hits.Load())
			}
			// Other requests are not paused for an hour either.
			if d := c.pausedFor(); d > 0 {
				t.Errorf("client paused for %v", d)
			}
		})
	}
}

func TestDoTooManyRequestsPausesClient(t *testing.T) {
	t.Parallel()
	var (
		mu       sync.Mutex
		arrivals = map[string][]time.Time{}
	)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		arrivals[r.URL.Path] = append(arrivals[r.URL.Path], time.Now())
		first := r.URL.Path == "/a" && len(arrivals["/a"]) == 1
		mu.Unlock()
		if first {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		io.WriteString(w, "ok")
	})
	throttled := make(chan struct{}, 1)
	obs := &recorder{on: func(a AttemptInfo) {
		if a.Status == http.StatusTooManyRequests {
			throttled <- struct{}{}
		}
	}}
	cfg := fastConfig()
	cfg.Observer = obs
	c := New(cfg)

	var wg sync.WaitGroup
	errs := make(chan error, 4)
	wg.Go(func() {
		_, err := c.Do(t.Context(), &Request{URL: srv.URL + "/a"}, nil)
		errs <- err
	})
	<-throttled
	// Three other goroutines start after the 429 and must wait too.
	for range 3 {
		wg.Go(func() {
			_, err := c.Do(t.Context(), &Request{URL: srv.URL + "/b"}, nil)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Do: %v", err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(arrivals["/b"]) != 3 || len(arrivals["/a"]) != 2 {
		t.Fatalf("server saw %d /a and %d /b requests, want 2 and 3", len(arrivals["/a"]), len(arrivals["/b"]))
	}
	sent := arrivals["/a"][0] // the 429 left the server after this
	for _, got := range append(arrivals["/b"], arrivals["/a"][1]) {
		if waited := got.Sub(sent); waited < time.Second {
			t.Errorf("a request arrived %v after the 429, want ≥ 1s", waited)
		}
	}
	if got := c.Stats().Throttled; got != 1 {
		t.Errorf("Stats().Throttled = %d, want 1", got)
	}
}

func TestDoTruncatedBody(t *testing.T) {
	truncations := map[string]string{
		"content-length": "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"items\":[",
		"chunked":        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n20\r\n{\"items\":[",
	}
	for name, raw := range truncations {
		t.Run(name+"/recovers", func(t *testing.T) {
			var hits atomic.Int64
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				if hits.Add(1) == 1 {
					hijack(t, w, raw)
					return
				}
				io.WriteString(w, `{"items":[]}`)
			})
			resp, err := New(fastConfig()).Do(t.Context(), &Request{URL: srv.URL}, nil)
			if err != nil {
				t.Fatalf("Do: %v", err)
			}
			if resp.Attempts != 2 || string(resp.Body) != `{"items":[]}` {
				t.Errorf("attempts %d, body %q; want 2 and the whole body", resp.Attempts, resp.Body)
			}
		})
		t.Run(name+"/gives-up", func(t *testing.T) {
			var hits atomic.Int64
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				hijack(t, w, raw)
			})
			_, err := New(fastConfig()).Do(t.Context(), &Request{URL: srv.URL}, nil)
			var re *RequestError
			if !errors.As(err, &re) || re.Attempts != 4 || !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("Do: %v, want a *RequestError for unexpected EOF after 4 attempts", err)
			}
			want := "GET " + srv.URL + ": after 4 attempts: read body: unexpected EOF"
			if err.Error() != want {
				t.Errorf("Error() = %q, want %q", err, want)
			}
			if hits.Load() != 4 {
				t.Errorf("server saw %d requests, want 4", hits.Load())
			}
		})
	}
}

// validJSON is a check function that rejects bodies that are not JSON, the
// way a source rejects a login page served with 200.
func validJSON(r *Response) error {
	if !json.Valid(r.Body) {
		return Retryable(fmt.Errorf("response is not JSON (Content-Type %q)", r.Header.Get("Content-Type")))
	}
	return nil
}

func TestDoCheck(t *testing.T) {
	t.Run("retryable", func(t *testing.T) {
		srv, hits := scripted(t, "<!DOCTYPE html><html>maintenance</html>", http.StatusOK)
		cfg := fastConfig()
		cfg.MaxAttempts = 3
		resp, err := New(cfg).Do(t.Context(), &Request{URL: srv.URL}, validJSON)
		var re *RequestError
		if !errors.As(err, &re) || re.Attempts != 3 {
			t.Fatalf("Do: %v, want a *RequestError after 3 attempts", err)
		}
		want := `after 3 attempts: response is not JSON (Content-Type "text/html; charset=utf-8")`
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Error() = %q, want it to contain %q", err, want)
		}
		if hits.Load() != 3 {
			t.Errorf("server saw %d requests, want 3", hits.Load())
		}
		if resp == nil || resp.Status != 200 {
			t.Errorf("Do returned response %+v, want the rejected one", resp)
		}
	})
	t.Run("recovers", func(t *testing.T) {
		var hits atomic.Int64
		srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
			if hits.Add(1) == 1 {
				io.WriteString(w, "<html>oops</html>")
				return
			}
			io.WriteString(w, `{"id":1}`)
		})
		resp, err := New(fastConfig()).Do(t.Context(), &Request{URL: srv.URL}, validJSON)
		if err != nil || resp.Attempts != 2 {
			t.Fatalf("Do: %v, %+v; want success on attempt 2", err, resp)
		}
	})
	t.Run("permanent", func(t *testing.T) {
		srv, hits := scripted(t, `{"id":1}`, http.StatusOK)
		errWrongShape := errors.New("wrong shape")
		_, err := New(fastConfig()).Do(t.Context(), &Request{URL: srv.URL}, func(*Response) error {
			return errWrongShape
		})
		if !errors.Is(err, errWrongShape) {
			t.Fatalf("Do: %v, want errWrongShape", err)
		}
		if hits.Load() != 1 {
			t.Errorf("server saw %d requests, want 1", hits.Load())
		}
	})
	t.Run("only 2xx", func(t *testing.T) {
		srv, _ := scripted(t, "not json", http.StatusNotFound)
		var called bool
		_, err := New(fastConfig()).Do(t.Context(), &Request{URL: srv.URL}, func(*Response) error {
			called = true
			return nil
		})
		var se *StatusError
		if !errors.As(err, &se) || called {
			t.Errorf("Do: %v, check called %v; want a *StatusError without calling check", err, called)
		}
	})
}

func TestDoAttemptTimeout(t *testing.T) {
	tests := map[string]http.HandlerFunc{
		"headers": func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		},
		"body": func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, `{"items":[`)
			http.NewResponseController(w).Flush()
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		},
	}
	for name, h := range tests {
		t.Run(name, func(t *testing.T) {
			var hits atomic.Int64
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				h(w, r)
			})
			cfg := fastConfig()
			cfg.Timeout = 50 * time.Millisecond
			cfg.MaxAttempts = 3
			start := time.Now()
			_, err := New(cfg).Do(t.Context(), &Request{URL: srv.URL}, nil)
			var re *RequestError
			if !errors.As(err, &re) || re.Attempts != 3 || !errors.Is(err, ErrAttemptTimeout) {
				t.Fatalf("Do: %v, want a *RequestError wrapping ErrAttemptTimeout after 3 attempts", err)
			}
			if errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Do: %v matches context.DeadlineExceeded, but the caller's context did not end", err)
			}
			if !strings.Contains(err.Error(), "attempt timed out after 50ms") {
				t.Errorf("Error() = %q, want it to name the timeout", err)
			}
			if elapsed := time.Since(start); elapsed > 2*time.Second {
				t.Errorf("Do took %v", elapsed)
			}
			if hits.Load() != 3 {
				t.Errorf("server saw %d requests, want 3", hits.Load())
			}
		})
	}
}

func TestDoParentContext(t *testing.T) {
	t.Run("cancel during request", func(t *testing.T) {
		arrived := make(chan struct{}, 1)
		var hits atomic.Int64
		srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			arrived <- struct{}{}
			<-r.Context().Done()
		})
		ctx, cancel := context.WithCancel(t.Context())
		go func() {
			<-arrived
			cancel()
		}()
		start := time.Now()
		_, err := New(fastConfig()).Do(ctx, &Request{URL: srv.URL}, nil)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Do: %v, want context.Canceled", err)
		}
		if elapsed := time.Since(start); elapsed > time.Second {
			t.Errorf("Do took %v after cancel", elapsed)
		}
		if hits.Load() != 1 {
			t.Errorf("server saw %d requests, want 1", hits.Load())
		}
	})
	t.Run("cancel during backoff", func(t *testing.T) {
		var hits atomic.Int64
		srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			w.Header().Set("Retry-After", "3600")
			w.WriteHeader(http.StatusServiceUnavailable)
		})
		ctx, cancel := context.WithCancel(t.Context())
		cfg := fastConfig()
		cfg.MaxRetryAfter = 2 * time.Hour
		cfg.Observer = &recorder{on: func(AttemptInfo) { cancel() }}
		start := time.Now()
		_, err := New(cfg).Do(ctx, &Request{URL: srv.URL}, nil)
		var re *RequestError
		if !errors.Is(err, context.Canceled) || !errors.As(err, &re) || re.Attempts != 1 {
			t.Fatalf("Do: %v, want a *RequestError matching context.Canceled after 1 attempt", err)
		}
		if elapsed := time.Since(start); elapsed > time.Second {
			t.Errorf("Do took %v after cancel", elapsed)
		}
		if hits.Load() != 1 {
			t.Errorf("server saw %d requests, want 1", hits.Load())
		}
	})
	t.Run("deadline", func(t *testing.T) {
		srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
		})
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		_, err := New(fastConfig()).Do(ctx, &Request{URL: srv.URL}, nil)
		if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrAttemptTimeout) {
			t.Fatalf("Do: %v, want context.DeadlineExceeded and not ErrAttemptTimeout", err)
		}
	})
	t.Run("already canceled", func(t *testing.T) {
		srv, hits := scripted(t, "ok", http.StatusOK)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := New(fastConfig()).Do(ctx, &Request{URL: srv.URL}, nil)
		if !errors.Is(err, context.Canceled) || hits.Load() != 0 {
			t.Fatalf("Do: %v with %d requests, want context.Canceled and none", err, hits.Load())
		}
	})
}

func TestDoRateLimit(t *testing.T) {
	t.Parallel()
	srv, hits := scripted(t, "ok", http.StatusOK)
	cfg := fastConfig()
	cfg.RequestsPerSecond = 20
	cfg.Burst = 1
	c := New(cfg)
	start := time.Now()
	for range 11 {
		if _, err := c.Do(t.Context(), &Request{URL: srv.URL}, nil); err != nil {
			t.Fatalf("Do: %v", err)
		}
	}
	// The first request goes at once, the next ten 50ms apart.
	if elapsed := time.Since(start); elapsed < 450*time.Millisecond {
		t.Errorf("11 requests at 20/s took %v, want ≥ 450ms", elapsed)
	}
	if hits.Load() != 11 {
		t.Errorf("server saw %d requests, want 11", hits.Load())
	}
}

func TestDoConcurrencyLimit(t *testing.T) {
	var inFlight, most atomic.Int64
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
		io.WriteString(w, "ok")
	})
	cfg := fastConfig()
	cfg.Concurrency = 2
	c := New(cfg)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := c.Do(t.Context(), &Request{URL: srv.URL}, nil); err != nil {
				t.Errorf("Do: %v", err)
			}
		})
	}
	wg.Wait()
	if got := most.Load(); got != 2 {
		t.Errorf("server saw at most %d requests in flight, want 2", got)
	}
}

func TestDoBodyTooLarge(t *testing.T) {
	big := strings.Repeat("x", 2048)
	tests := map[string]http.HandlerFunc{
		"content-length": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", fmt.Sprint(len(big)))
			io.WriteString(w, big)
		},
		"chunked": func(w http.ResponseWriter, r *http.Request) {
			for range 4 {
				io.WriteString(w, big[:512])
				http.NewResponseController(w).Flush()
			}
		},
	}
	for name, h := range tests {
		t.Run(name, func(t *testing.T) {
			var hits atomic.Int64
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				h(w, r)
			})
			cfg := fastConfig()
			cfg.MaxBodyBytes = 1024
			_, err := New(cfg).Do(t.Context(), &Request{URL: srv.URL}, nil)
			if !errors.Is(err, ErrBodyTooLarge) {
				t.Fatalf("Do: %v, want ErrBodyTooLarge", err)
			}
			if want := "response body too large: more than 1 KiB (raise http.max_body_bytes to allow more)"; !strings.HasSuffix(err.Error(), want) {
				t.Errorf("Error() = %q, want it to end with %q", err, want)
			}
			if hits.Load() != 1 {
				t.Errorf("server saw %d requests, want 1", hits.Load())
			}
		})
	}
	t.Run("at the limit", func(t *testing.T) {
		srv, _ := scripted(t, big[:1024], http.StatusOK)
		cfg := fastConfig()
		cfg.MaxBodyBytes = 1024
		resp, err := New(cfg).Do(t.Context(), &Request{URL: srv.URL}, nil)
		if err != nil || len(resp.Body) != 1024 {
			t.Fatalf("Do: %v; want the whole 1024-byte body", err)
		}
	})
}

// bearer is an Authenticator that sends a new token on every call.
type bearer struct {
	calls atomic.Int64
	err   error
}

func (b *bearer) Apply(ctx context.Context, req *http.Request) error {
	n := b.calls.Add(1)
	if b.err != nil {
		return b.err
	}
	req.Header.Set("Authorization", fmt.Sprintf("Bearer token-%d", n))
	return nil
}

func TestDoAuthenticator(t *testing.T) {
	t.Run("every attempt", func(t *testing.T) {
		var (
			mu   sync.Mutex
			seen []string
		)
		srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen = append(seen, r.Header.Get("Authorization"))
			n := len(seen)
			mu.Unlock()
			if n < 3 {
				w.WriteHeader(http.StatusBadGateway)
			}
		})
		auth := &bearer{}
		cfg := fastConfig()
		cfg.Auth = auth
		if _, err := New(cfg).Do(t.Context(), &Request{URL: srv.URL}, nil); err != nil {
			t.Fatalf("Do: %v", err)
		}
		want := []string{"Bearer token-1", "Bearer token-2", "Bearer token-3"}
		mu.Lock()
		defer mu.Unlock()
		if fmt.Sprint(seen) != fmt.Sprint(want) || auth.calls.Load() != 3 {
			t.Errorf("server saw %q after %d Apply calls, want %q after 3", seen, auth.calls.Load(), want)
		}
	})
	errRefresh := errors.New("refresh token revoked")
	tests := []struct {
		name      string
		err       error
		wantCalls int64
	}{
		{"permanent error", errRefresh, 1},
		{"retryable error", Retryable(errRefresh), 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, hits := scripted(t, "ok", http.StatusOK)
			auth := &bearer{err: tt.err}
			cfg := fastConfig()
			cfg.Auth = auth
			_, err := New(cfg).Do(t.Context(), &Request{URL: srv.URL}, nil)
			if !errors.Is(err, errRefresh) || !strings.Contains(err.Error(), "authenticate: refresh token revoked") {
				t.Fatalf("Do: %v, want the Authenticator's error", err)
			}
			if auth.calls.Load() != tt.wantCalls || hits.Load() != 0 {
				t.Errorf("%d Apply calls and %d requests, want %d and 0", auth.calls.Load(), hits.Load(), tt.wantCalls)
			}
		})
	}
}

// apiKey is an Authenticator that sends a key in a custom header.
type apiKey string

func (k apiKey) Apply(ctx context.Context, req *http.Request) error {
	req.Header.Set("X-Api-Key", string(k))
	return nil
}

func TestDoRedirectKeepsCredentialsOnHost(t *testing.T) {
	var (
		mu   sync.Mutex
		keys = map[string]string{}
	)
	record := func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		keys[r.Host+r.URL.Path] = r.Header.Get("X-Api-Key")
		mu.Unlock()
	}
	other := newServer(t, record)
	var self *httptest.Server
	self = newServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/away":
			http.Redirect(w, r, other.URL+"/landed", http.StatusFound)
		case "/here":
			http.Redirect(w, r, self.URL+"/landed", http.StatusFound)
		default:
			record(w, r)
		}
	})
	cfg := fastConfig()
	cfg.Auth = apiKey("k-123456")
	c := New(cfg)
	for _, path := range []string{"/away", "/here"} {
		if _, err := c.Do(t.Context(), &Request{URL: self.URL + path}, nil); err != nil {
			t.Fatalf("Do %s: %v", path, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	selfHost, otherHost := strings.TrimPrefix(self.URL, "http://"), strings.TrimPrefix(other.URL, "http://")
	if got := keys[otherHost+"/landed"]; got != "" {
		t.Errorf("the other host got X-Api-Key %q, want none", got)
	}
	if got := keys[selfHost+"/landed"]; got != "k-123456" {
		t.Errorf("the same host got X-Api-Key %q, want k-123456", got)
	}
}

func TestDoRequestBodyOnEveryAttempt(t *testing.T) {
	var (
		mu     sync.Mutex
		bodies []string
	)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, r.Method+" "+r.Header.Get("Content-Type")+" "+r.Header.Get("User-Agent")+" "+string(b))
		n := len(bodies)
		mu.Unlock()
		if n < 3 {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	req := &Request{Method: http.MethodPost, URL: srv.URL, Body: []byte(`{"q":1}`)}
	if _, err := New(fastConfig()).Do(t.Context(), req, nil); err != nil {
		t.Fatalf("Do: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := `POST application/json ferry {"q":1}`
	if len(bodies) != 3 {
		t.Fatalf("server saw %d requests, want 3", len(bodies))
	}
	for i, got := range bodies {
		if got != want {
			t.Errorf("attempt %d sent %q, want %q", i+1, got, want)
		}
	}
}

func TestDoInvalidURL(t *testing.T) {
	tests := map[string]string{
		"ftp://example.com/x":     "invalid url: scheme must be http or https",
		"/relative/path":          "invalid url: scheme must be http or https",
		"http:///nohost":          "invalid url: no host",
		"http://h/%zz?token=s3cr": `invalid url: invalid percent-escape (a "%" not followed by two hex digits)`,
		// Passwords that end the host early: url.Parse's error would quote
		// a piece of them.
		"https://ferry:s3cr/Part@api.example.com/v1":      "invalid url: invalid port after host (percent-encode / ? # @ : and % in a user name or password: %2F %3F %23 %40 %3A %25)",
		"https://ferry:s3cr#Part@api.example.com/v1":      "invalid url: invalid port after host (percent-encode / ? # @ : and % in a user name or password: %2F %3F %23 %40 %3A %25)",
		"https://ferry:s3cr?Part@api.example.com:8443/v1": "invalid url: invalid port after host (percent-encode / ? # @ : and % in a user name or password: %2F %3F %23 %40 %3A %25)",
	}
	for raw, want := range tests {
		t.Run(raw, func(t *testing.T) {
			c := New(fastConfig())
			_, err := c.Do(t.Context(), &Request{URL: raw}, nil)
			var re *RequestError
			if !errors.As(err, &re) || re.Attempts != 0 || !strings.HasSuffix(err.Error(), want) {
				t.Fatalf("Do: %v, want a *RequestError ending %q", err, want)
			}
			if strings.Contains(err.Error(), "s3cr") || strings.Contains(err.Error(), "Part") {
				t.Errorf("Error() = %q leaks the token or password", err)
			}
			if s := c.Stats(); s.Requests != 0 || s.Errors != 1 {
				t.Errorf("Stats() = %+v, want no requests and 1 error", s)
			}
		})
	}
}

func TestDoStatsAndObserver(t *testing.T) {
	var flaky atomic.Int64
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/missing" {
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, "nope") // 4 bytes
			return
		}
		switch flaky.Add(1) {
		case 1:
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, "slow down") // 9 bytes
		case 2:
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, "oops") // 4 bytes
		default:
			io.WriteString(w, "hello") // 5 bytes
		}
	})
	obs := &recorder{}
	cfg := fastConfig()
	cfg.Observer = obs
	c := New(cfg)
	if _, err := c.Do(t.Context(), &Request{URL: srv.URL + "/flaky"}, nil); err != nil {
		t.Fatalf("Do /flaky: %v", err)
	}
	if _, err := c.Do(t.Context(), &Request{URL: srv.URL + "/missing"}, nil); err == nil {
		t.Fatal("Do /missing succeeded, want an error")
	}
	want := Stats{Requests: 4, Retries: 2, Throttled: 1, Bytes: 9 + 4 + 5 + 4, Errors: 1}
	if got := c.Stats(); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}

	infos := obs.all()
	wantInfos := []struct {
		path    string
		attempt int
		status  int
		failed  bool
		retry   bool
	}{
		{"/flaky", 1, 429, true, true},
		{"/flaky", 2, 500, true, true},
		{"/flaky", 3, 200, false, false},
		{"/missing", 1, 404, true, false},
	}
	if len(infos) != len(wantInfos) {
		t.Fatalf("observer saw %d attempts, want %d", len(infos), len(wantInfos))
	}
	for i, w := range wantInfos {
		a := infos[i]
		if a.URL != srv.URL+w.path || a.Method != "GET" || a.Attempt != w.attempt || a.Status != w.status ||
			(a.Err != nil) != w.failed || a.Duration <= 0 {
			t.Errorf("attempt %d: got %+v, want %+v", i, a, w)
		}
		// Full jitter may sleep 0, so only the bound can be asserted.
		if a.RetryIn < 0 || a.RetryIn > cfg.MaxBackoff || (!w.retry && a.RetryIn != 0) {
			t.Errorf("attempt %d: RetryIn = %v", i, a.RetryIn)
		}
	}
	var se *StatusError
	if !errors.As(infos[3].Err, &se) || se.Status != 404 {
		t.Errorf("last attempt's Err = %v, want a *StatusError for 404", infos[3].Err)
	}
}

func TestNewDefaults(t *testing.T) {
	c := New(Config{})
	got := c.cfg
	if got.Timeout != 30*time.Second || got.MaxAttempts != 6 || got.InitialBackoff != 500*time.Millisecond ||
		got.MaxBackoff != 30*time.Second || got.MaxRetryAfter != 5*time.Minute || got.Burst != 1 ||
		got.MaxBodyBytes != 256<<20 || got.UserAgent != "ferry" || got.Logger == nil || c.limiter != nil || c.slots != nil {
		t.Errorf("defaults = %+v", got)
	}
	tr, ok := got.Transport.(*http.Transport)
	if !ok || tr.MaxIdleConnsPerHost < 16 {
		t.Errorf("default transport = %T %+v", got.Transport, got.Transport)
	}
	for _, s := range []int{408, 425, 429, 500, 501, 502, 503, 504, 599} {
		if !c.retry[s] && !(c.retry5xx && s >= 500) {
			t.Errorf("status %d not retried by default", s)
		}
	}

	c = New(Config{RequestsPerSecond: 7.5, Concurrency: 40})
	if c.cfg.Burst != 8 || cap(c.slots) != 40 || c.cfg.Transport.(*http.Transport).MaxIdleConnsPerHost != 40 {
		t.Errorf("burst %d, slots %d; want 8 and 40", c.cfg.Burst, cap(c.slots))
	}
}

func TestRedactionInErrorsAndLogs(t *testing.T) {
	const (
		queryToken = "tok-abc123"         // only its parameter name marks it
		pathSecret = "acct-secret-99"     // registered
		password   = "hunter22pw"         // userinfo
		bodySecret = "sk_live_bodysecret" // registered, echoed by the server
		authValue  = "auth-header-value"  // set by the Authenticator, never registered
	)
	secrets := []string{queryToken, pathSecret, password, bodySecret, authValue}
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprintf(w, `{"error":"key %s is not allowed for %s"}`, bodySecret, r.URL.Path)
	})
	var logs bytes.Buffer
	obs := &recorder{}
	cfg := fastConfig()
	cfg.MaxAttempts = 2
	cfg.Redactor = redact.New(pathSecret, bodySecret)
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.Auth = apiKey(authValue)
	cfg.Observer = obs
	c := New(cfg)

	base := strings.Replace(srv.URL, "http://", "http://ferry:"+password+"@", 1)
	rawURL := base + "/accounts/" + pathSecret + "/orders?api_key=" + queryToken + "&page=3"
	_, err := c.Do(t.Context(), &Request{URL: rawURL}, nil)
	var se *StatusError
	if !errors.As(err, &se) {
		t.Fatalf("Do: %v, want a *StatusError", err)
	}
	wantURL := strings.Replace(srv.URL, "http://", "http://ferry:REDACTED@", 1) + "/accounts/REDACTED/orders?api_key=REDACTED&page=3"
	if se.URL != wantURL || !strings.Contains(se.Excerpt, "key REDACTED is not allowed") {
		t.Errorf("URL %q, excerpt %q; want %q and the body secret redacted", se.URL, se.Excerpt, wantURL)
	}

	srv.Close() // now the dial fails
	_, dialErr := c.Do(t.Context(), &Request{URL: rawURL}, nil)
	var re *RequestError
	if !errors.As(dialErr, &re) {
		t.Fatalf("Do against a closed server: %v, want a *RequestError", dialErr)
	}

	texts := map[string]string{
		"status error": err.Error(),
		"dial error":   dialErr.Error(),
		"logs":         logs.String(),
	}
	for _, a := range obs.all() {
		texts["observer"] += a.URL + " " + fmt.Sprint(a.Err) + "\n"
	}
	if !strings.Contains(texts["logs"], "retrying http request") || !strings.Contains(texts["dial error"], "REDACTED") {
		t.Fatalf("nothing to check: logs %q, dial error %q", texts["logs"], texts["dial error"])
	}
	for where, text := range texts {
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("%s leaks %q:\n%s", where, s, text)
			}
		}
	}
}

func TestDoCheckErrorRedacted(t *testing.T) {
	const token = "refresh-tok-777"
	srv, _ := scripted(t, `{}`, http.StatusOK)
	cfg := fastConfig()
	cfg.Redactor = redact.New(token)
	_, err := New(cfg).Do(t.Context(), &Request{URL: srv.URL}, func(*Response) error {
		return fmt.Errorf("token %s rejected", token)
	})
	if err == nil || strings.Contains(err.Error(), token) || !strings.Contains(err.Error(), "token REDACTED rejected") {
		t.Errorf("Error() = %v, want the token redacted", err)
	}
}
