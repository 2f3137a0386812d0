package httpx

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// resetter is a server that answers requests, except those its drop
// function picks, whose connection it resets before any response: the
// way a load balancer drops a keep-alive connection it has just closed.
func resetter(t *testing.T, drop func(n int64) bool) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if drop(hits.Add(1)) {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Errorf("hijack: %v", err)
				return
			}
			if tc, ok := conn.(*net.TCPConn); ok {
				tc.SetLinger(0) // RST rather than FIN
			}
			conn.Close()
			return
		}
		io.WriteString(w, `{"ok":true}`)
	})
	return srv, &hits
}

// TestTransportFailuresCounted checks that every attempt the server saw
// is a request in Stats and an AttemptInfo, and every one after the first
// a retry, when attempts fail before any response: on a fresh connection,
// on a keep-alive connection (which net/http resends on its own, without
// telling), and by timing out.
func TestTransportFailuresCounted(t *testing.T) {
	tests := []struct {
		name string
		drop func(n int64) bool
		// calls is how many Do calls to make; the server sees one request
		// more than Ferry's attempts would say if it did not count them.
		calls int
		want  Stats
	}{
		{"fresh connection reset", func(n int64) bool { return n == 1 }, 1,
			Stats{Requests: 2, Retries: 1, Bytes: 11}},
		{"keep-alive connection reset", func(n int64) bool { return n == 2 }, 2,
			Stats{Requests: 3, Retries: 1, Bytes: 22}},
		{"keep-alive connection reset twice", func(n int64) bool { return n == 2 || n == 3 }, 2,
			Stats{Requests: 4, Retries: 2, Bytes: 22}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, hits := resetter(t, tt.drop)
			obs := &recorder{}
			cfg := fastConfig()
			cfg.Observer = obs
			c := New(cfg)
			for range tt.calls {
				if _, err := c.Do(t.Context(), &Request{URL: srv.URL}, nil); err != nil {
					t.Fatalf("Do: %v", err)
				}
			}
			if got := c.Stats(); got != tt.want || got.Requests != hits.Load() {
				t.Errorf("Stats() = %+v, want %+v; the server saw %d requests", got, tt.want, hits.Load())
			}
			infos := obs.all()
			if int64(len(infos)) != hits.Load() {
				t.Fatalf("observer saw %d attempts, the server %d: %+v", len(infos), hits.Load(), infos)
			}
			failed := 0
			for _, a := range infos {
				if a.Err != nil {
					failed++
					if a.Status != 0 || a.RetryIn < 0 {
						t.Errorf("failed attempt %+v", a)
					}
				}
			}
			if int64(failed) != tt.want.Retries {
				t.Errorf("observer saw %d failed attempts, want %d: %+v", failed, tt.want.Retries, infos)
			}
		})
	}
	t.Run("timeout", func(t *testing.T) {
		var hits atomic.Int64
		srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
			if hits.Add(1) == 1 {
				<-r.Context().Done()
				return
			}
			io.WriteString(w, "ok")
		})
		obs := &recorder{}
		cfg := fastConfig()
		cfg.Timeout = 100 * time.Millisecond
		cfg.Observer = obs
		c := New(cfg)
		if _, err := c.Do(t.Context(), &Request{URL: srv.URL}, nil); err != nil {
			t.Fatalf("Do: %v", err)
		}
		if s := c.Stats(); s.Requests != 2 || s.Retries != 1 || len(obs.all()) != 2 || hits.Load() != 2 {
			t.Errorf("Stats() = %+v, %d attempts observed, server saw %d; want 2 requests, 1 retry", s, len(obs.all()), hits.Load())
		}
	})
}
