// Package changetest is a local HTTP endpoint that receives changes, for
// the tests and benchmarks of the destinations and sources of changes: it
// records every request and every change in it (one per request, or the
// elements of a JSON array), by key, can fail on purpose, and counts what
// it saw, duplicates included.
package changetest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path"
	"sync"
	"sync/atomic"
	"time"
)

// Received is one change the sink received.
type Received struct {
	Method, Path string
	// IdempotencyKey is the request's Idempotency-Key header.
	IdempotencyKey string
	// Body is the change's JSON (the request body, or the array element).
	Body json.RawMessage
	At   time.Time
}

// Sink is a local HTTP endpoint recording changes.
type Sink struct {
	*httptest.Server
	// Fail, when set, is asked about every request (n counts requests from
	// 1) and returns the status to answer instead of 200 (0: accept).
	Fail atomic.Pointer[func(r *http.Request, body []byte, n int64) int]
	// KeyOf extracts a change's key from its body (default: the "id" field,
	// or data.id / key.id for batch items).
	KeyOf func(body json.RawMessage) string
	// CountOnly, set before the first request, makes the sink count the
	// changes without keeping them (benchmarks).
	CountOnly bool
	// Respond, when set, gives the body of each accepted request's answer
	// (an API's answer to a create, or to a lookup).
	Respond func(r *http.Request, body []byte) []byte

	n        atomic.Int64
	accepted atomic.Int64
	mu       sync.Mutex
	changes  []Received
	byKey    map[string][]Received
	notify   chan struct{}
}

// New starts a sink; it is closed when the test ends (Close).
func New() *Sink {
	s := &Sink{byKey: map[string][]Received{}, notify: make(chan struct{}, 1)}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

func (s *Sink) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	n := s.n.Add(1)
	if f := s.Fail.Load(); f != nil {
		if status := (*f)(r, body, n); status != 0 {
			w.WriteHeader(status)
			_, _ = w.Write([]byte(`{"error":"refused by the test sink"}`))
			return
		}
	}
	now := time.Now()
	if s.CountOnly {
		n := int64(1)
		if len(body) > 0 && body[0] == '[' {
			n = countElements(body)
		}
		s.accepted.Add(n)
		w.WriteHeader(http.StatusOK)
		return
	}
	var items []json.RawMessage
	if len(body) > 0 && body[0] == '[' {
		_ = json.Unmarshal(body, &items)
	} else {
		items = []json.RawMessage{body}
	}
	s.mu.Lock()
	for _, it := range items {
		rc := Received{Method: r.Method, Path: r.URL.Path, IdempotencyKey: r.Header.Get("Idempotency-Key"), Body: it, At: now}
		s.changes = append(s.changes, rc)
		k := s.key(rc)
		s.byKey[k] = append(s.byKey[k], rc)
	}
	s.mu.Unlock()
	s.accepted.Add(int64(len(items)))
	select {
	case s.notify <- struct{}{}:
	default:
	}
	if s.Respond != nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(s.Respond(r, body))
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Sink) key(rc Received) string {
	if s.KeyOf != nil {
		return s.KeyOf(rc.Body)
	}
	var v struct {
		ID   json.RawMessage `json:"id"`
		Data *struct {
			ID json.RawMessage `json:"id"`
		} `json:"data"`
		Key *struct {
			ID json.RawMessage `json:"id"`
		} `json:"key"`
	}
	_ = json.Unmarshal(rc.Body, &v)
	switch {
	case v.Key != nil && v.Key.ID != nil:
		return string(v.Key.ID)
	case v.Data != nil && v.Data.ID != nil:
		return string(v.Data.ID)
	case v.ID != nil:
		return string(v.ID)
	}
	// A DELETE has no body: the key is the path's last segment.
	return path.Base(rc.Path)
}

// Requests returns how many requests arrived (refused ones included).
func (s *Sink) Requests() int64 { return s.n.Load() }

// Accepted returns how many changes the sink accepted.
func (s *Sink) Accepted() int64 { return s.accepted.Load() }

// Changes returns every accepted change in arrival order.
func (s *Sink) Changes() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Received(nil), s.changes...)
}

// ByKey returns the accepted changes of each key in arrival order.
func (s *Sink) ByKey() map[string][]Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string][]Received, len(s.byKey))
	for k, v := range s.byKey {
		out[k] = append([]Received(nil), v...)
	}
	return out
}

// WaitFor blocks until cond holds (checked after every accepted request)
// or timeout passes, and reports whether it held.
func (s *Sink) WaitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond) // a change may come from a refused request's retry
	defer tick.Stop()
	for !cond() {
		select {
		case <-s.notify:
		case <-tick.C:
		case <-deadline.C:
			return cond()
		}
	}
	return true
}

// SetFail installs a failure rule (nil removes it).
func (s *Sink) SetFail(f func(r *http.Request, body []byte, n int64) int) {
	if f == nil {
		s.Fail.Store(nil)
		return
	}
	s.Fail.Store(&f)
}

// countElements counts the elements of a JSON array of objects without
// decoding it: the objects that open at depth one.
func countElements(b []byte) int64 {
	var n int64
	depth := 0
	inStr := false
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case inStr:
			if c == '\\' {
				i++
			} else if c == '"' {
				inStr = false
			}
		case c == '"':
			inStr = true
		case c == '{' || c == '[':
			if depth == 1 && c == '{' {
				n++
			}
			depth++
		case c == '}' || c == ']':
			depth--
		}
	}
	return n
}
