package httpx

import (
	"context"
	"errors"
	"net/http/httptrace"
	"sync"
	"time"
)

// errResent is the error of a try that net/http made on its own: the
// server closed a kept-alive connection before answering, and the
// transport sent the request again on a new connection without saying so.
var errResent = errors.New("send request: the server closed the connection before responding; sent again on a new connection")

// tries counts how often the transport sent one attempt's request. A
// request on a kept-alive connection that the server closed before
// answering is sent again by net/http itself (when it is idempotent), so
// the server sees more requests than attempts; every connection the
// transport gets for the same hop after the first is such a try.
type tries struct {
	mu     sync.Mutex
	conns  int         // connections got for the current hop
	resent []time.Time // when each extra try began
}

// trace returns ctx with a ClientTrace that feeds t.
func (t *tries) trace(ctx context.Context) context.Context {
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(httptrace.GotConnInfo) {
			t.mu.Lock()
			defer t.mu.Unlock()
			if t.conns > 0 {
				t.resent = append(t.resent, time.Now())
			}
			t.conns++
		},
	})
}

// redirected starts a new hop: its first connection is not a resend.
func (t *tries) redirected() {
	t.mu.Lock()
	t.conns = 0
	t.mu.Unlock()
}

// extra returns when each try net/http made on its own began.
func (t *tries) extra() []time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.resent
}

// triesKey is the context key of an attempt's *tries.
type triesKey struct{}
