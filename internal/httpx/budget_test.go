package httpx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// barrier is released once n goroutines have arrived at it.
type barrier struct {
	n    atomic.Int64
	want int64
	done chan struct{}
}

func newBarrier(n int) *barrier { return &barrier{want: int64(n), done: make(chan struct{})} }

// wait arrives and waits for the others, or for r's context to end.
func (b *barrier) wait(r *http.Request) bool {
	if b.n.Add(1) == b.want {
		close(b.done)
	}
	select {
	case <-b.done:
		return true
	case <-r.Context().Done():
		return false
	}
}

// streamBody writes size bytes of body (a pattern that tells where a byte
// belongs) in chunks, flushing each: an API streaming a large export.
func streamBody(w http.ResponseWriter, size int) {
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 1024) // 16 KiB
	rc := http.NewResponseController(w)
	for size > 0 {
		n := min(size, len(chunk))
		if _, err := w.Write(chunk[:n]); err != nil {
			return
		}
		rc.Flush()
		size -= n
	}
}

func wantBody(t *testing.T, body []byte, size int) {
	t.Helper()
	want := bytes.Repeat([]byte("0123456789abcdef"), size/16+1)[:size]
	if !bytes.Equal(body, want) {
		t.Errorf("body of %d bytes, want the %d the server sent", len(body), size)
	}
}

// TestBodyMemoryBounded streams bodies larger than half the budget to
// four requests at once: the bytes the client holds never exceed
// MaxBodyBytes, every body arrives whole, and all memory is given back.
func TestBodyMemoryBounded(t *testing.T) {
	const (
		budget = 1 << 20
		size   = 600 << 10
	)
	start := newBarrier(4)
	var hits atomic.Int64
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) <= 4 && !start.wait(r) { // all four start streaming at once
			return
		}
		streamBody(w, size)
	})
	cfg := fastConfig()
	cfg.Timeout = 20 * time.Second
	cfg.MaxBodyBytes = budget
	cfg.Concurrency = 4
	c := New(cfg)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			resp, err := c.Do(t.Context(), &Request{URL: srv.URL}, nil)
			if err != nil {
				t.Errorf("Do: %v", err)
				return
			}
			wantBody(t, resp.Body, size)
		})
	}
	wg.Wait()
	c.mem.mu.Lock()
	peak, used, waiters := c.mem.peak, c.mem.used, len(c.mem.waiters)
	c.mem.mu.Unlock()
	if peak > budget || peak < size {
		t.Errorf("the bodies held %d bytes at most, want between %d and the budget of %d", peak, size, budget)
	}
	if used != 0 || waiters != 0 {
		t.Errorf("after the requests, %d bytes held and %d waiters, want none", used, waiters)
	}
	if s := c.Stats(); s.Requests != hits.Load() || s.Requests-s.Retries != 4 {
		t.Errorf("Stats() = %+v, the server saw %d requests", s, hits.Load())
	}
}

// TestBodyMemoryNotSerialised checks that bodies take memory as they
// need it, not their cap up front: four pages whose sizes add up to less
// than the budget are read at the same time. The server holds back the
// second half of each until the client holds memory for all four, which
// never happens if it reads them one after another.
func TestBodyMemoryNotSerialised(t *testing.T) {
	const size = 200 << 10
	allHeld := make(chan struct{})
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(size))
		streamBody(w, size/2)
		select {
		case <-allHeld:
		case <-r.Context().Done():
			return
		}
		w.Write(bytes.Repeat([]byte("0123456789abcdef"), size/32)) // the second half
	})
	cfg := fastConfig()
	cfg.MaxAttempts = 1
	cfg.MaxBodyBytes = 1 << 20
	cfg.Concurrency = 4
	c := New(cfg)
	var once sync.Once
	c.mem.onTake = func(used int64) {
		if used == 4*size {
			once.Do(func() { close(allHeld) })
		}
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			resp, err := c.Do(t.Context(), &Request{URL: srv.URL}, nil)
			if err != nil {
				t.Errorf("Do: %v", err)
				return
			}
			wantBody(t, resp.Body, size)
		})
	}
	wg.Wait()
}

// TestBudgetDeadlock has two leases each hold memory and wait for more
// that the other holds: the younger gives its memory back, and the older
// gets what it needs.
func TestBudgetDeadlock(t *testing.T) {
	b := newBudget(1000)
	older, younger := b.lease(), b.lease()
	for _, l := range []*lease{older, younger} {
		if err := l.use(t.Context(), 400); err != nil {
			t.Fatal(err)
		}
	}
	olderDone, youngerDone := make(chan error), make(chan error)
	go func() { olderDone <- older.use(t.Context(), 400) }()
	go func() { youngerDone <- younger.use(t.Context(), 400) }()
	if err := <-youngerDone; !errors.Is(err, errEvicted) {
		t.Fatalf("the younger lease's use = %v, want errEvicted", err)
	}
	if got := younger.release(); got != 400 {
		t.Errorf("the younger lease used %d bytes, want 400", got)
	}
	if err := <-olderDone; err != nil {
		t.Fatalf("the older lease's use = %v, want it granted", err)
	}
	// The younger one waits for what it had, then for what the older
	// one gives back.
	reserved := make(chan error)
	go func() { reserved <- younger.reserve(t.Context(), 400) }()
	older.release()
	if err := <-reserved; err != nil {
		t.Fatal(err)
	}
	if err := younger.use(t.Context(), 700); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used != 700 || b.peak != 800 {
		t.Errorf("used %d, peak %d; want 700 and 800", b.used, b.peak)
	}
}

// TestBudgetOverAndCancel checks a lease cannot hold more than the whole
// budget, and that one whose context ends stops waiting and lets the
// next waiter in.
func TestBudgetOverAndCancel(t *testing.T) {
	b := newBudget(1000)
	a, c, d := b.lease(), b.lease(), b.lease()
	if err := a.use(t.Context(), 1001); !errors.Is(err, errOverBudget) {
		t.Fatalf("use(1001) = %v, want errOverBudget", err)
	}
	if err := a.use(t.Context(), 900); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cDone, dDone := make(chan error), make(chan error)
	go func() { cDone <- c.use(ctx, 500) }()
	go func() { dDone <- d.use(t.Context(), 50) }()
	cancel()
	if err := <-cDone; !errors.Is(err, context.Canceled) {
		t.Fatalf("use after cancel = %v", err)
	}
	c.release()
	if err := <-dDone; err != nil {
		t.Fatalf("the next waiter's use = %v, want it granted", err)
	}
}

// TestBodyMemoryDeadlock has two bodies grow at once, each larger than
// half the budget: when each waits for memory the other holds, the
// younger gives its memory back and is read again once the older is done
// (which of the two happens depends on how the reads interleave).
func TestBodyMemoryDeadlock(t *testing.T) {
	const (
		budget = 1 << 20
		size   = 700 << 10
	)
	start := newBarrier(2)
	var hits atomic.Int64
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) <= 2 && !start.wait(r) {
			return
		}
		streamBody(w, size)
	})
	obs := &recorder{}
	cfg := fastConfig()
	cfg.Timeout = 20 * time.Second
	cfg.MaxBodyBytes = budget
	cfg.MaxAttempts = 1 // a read made again to break the deadlock is free
	cfg.Observer = obs
	c := New(cfg)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			resp, err := c.Do(t.Context(), &Request{URL: srv.URL}, nil)
			if err != nil {
				t.Errorf("Do: %v", err)
				return
			}
			wantBody(t, resp.Body, size)
		})
	}
	wg.Wait()
	var evicted int64
	for _, a := range obs.all() {
		if errors.Is(a.Err, errEvicted) {
			evicted++
		}
	}
	if s := c.Stats(); s.Requests != hits.Load() || s.Retries != evicted || s.Requests != 2+evicted || evicted > 1 {
		t.Errorf("Stats() = %+v, the server saw %d requests, %d reads made again; want 2 requests and a retry per read made again, at most one", s, hits.Load(), evicted)
	}
	c.mem.mu.Lock()
	defer c.mem.mu.Unlock()
	if c.mem.peak > budget || c.mem.used != 0 {
		t.Errorf("%d bytes held at most, %d at the end; want at most %d, then none", c.mem.peak, c.mem.used, budget)
	}
}

// TestBodyTooLargeNamesSetting checks the error for a body over the cap
// names the connector setting that raises it.
func TestBodyTooLargeNamesSetting(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) { streamBody(w, 100<<10) })
	cfg := fastConfig()
	cfg.MaxBodyBytes = 64 << 10
	_, err := New(cfg).Do(t.Context(), &Request{URL: srv.URL}, nil)
	if !errors.Is(err, ErrBodyTooLarge) || !strings.Contains(err.Error(), "more than 64 KiB (raise http.max_body_bytes") {
		t.Errorf("Do: %v, want ErrBodyTooLarge naming http.max_body_bytes", err)
	}
}

// TestHeadTakesNoMemory checks a HEAD response's Content-Length, which
// is the size a GET would get, takes no memory.
func TestHeadTakesNoMemory(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(1<<20))
	})
	cfg := fastConfig()
	cfg.MaxBodyBytes = 1 << 20
	c := New(cfg)
	if _, err := c.Do(t.Context(), &Request{Method: http.MethodHead, URL: srv.URL}, nil); err != nil {
		t.Fatal(err)
	}
	c.mem.mu.Lock()
	defer c.mem.mu.Unlock()
	if c.mem.peak != 0 {
		t.Errorf("a HEAD took %d bytes", c.mem.peak)
	}
}
