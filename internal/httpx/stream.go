package httpx

import (
	"context"
	"io"
	"sync/atomic"
	"time"
)

// A Request with a Stream function is read as it arrives instead of
// whole: Do calls Stream with a 2xx response (Body nil) and a reader of its
// body, on the attempt's connection, and the body takes no memory of
// Config.MaxBodyBytes. Config.Timeout then bounds the time to the
// response headers and every wait for more of the body, not the whole
// read: a 5 GB download takes as long as it takes, a stalled one fails.
//
// An error Stream returns is the attempt's error: wrapped with Retryable
// it is retried (the request is sent again and Stream called anew), any
// other is returned at once in a *RequestError. A Stream that already
// handed records on should only retry if it can skip them the next time.

// idleTimer cancels an attempt that receives no data for a while.
type idleTimer struct {
	d     time.Duration
	t     *time.Timer
	fired atomic.Bool
}

func newIdleTimer(d time.Duration, cancel context.CancelFunc) *idleTimer {
	it := &idleTimer{d: d}
	it.t = time.AfterFunc(d, func() {
		it.fired.Store(true)
		cancel()
	})
	return it
}

func (it *idleTimer) reset() { it.t.Reset(it.d) }
func (it *idleTimer) stop()  { it.t.Stop() }

// streamReader counts the bytes of a streamed body and keeps the idle
// timer from firing while data arrives.
type streamReader struct {
	r    io.Reader
	idle *idleTimer
	n    int64
}

func (s *streamReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 {
		s.n += int64(n)
		s.idle.reset()
	}
	return n, err
}
