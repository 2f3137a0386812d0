package httpdest_test

import (
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestRequestsPerSecond: requests_per_second holds at the endpoint: 20
// changes sent one request each, 4 lanes at once, at 10 a second, are
// spread over at least 1.7 s (19 intervals of 100 ms, with room for a
// loaded machine), and no second holds more than 11 of them.
func TestRequestsPerSecond(t *testing.T) {
	e := newEnv(t, "{type: http, url: SINK, concurrency: 4, requests_per_second: 10}")
	var mu sync.Mutex
	var at []time.Time
	e.sink.SetFail(func(*http.Request, []byte, int64) int {
		mu.Lock()
		at = append(at, time.Now())
		mu.Unlock()
		return 0
	})
	events := script(20, 20) // 20 keys: nothing orders them, only the limit
	if _, err := e.run(t, &changeSource{events: events, per: 20}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(at) != 20 {
		t.Fatalf("%d requests, want 20", len(at))
	}
	slices.SortFunc(at, func(a, b time.Time) int { return a.Compare(b) })
	if span := at[19].Sub(at[0]); span < 1700*time.Millisecond {
		t.Fatalf("20 requests at 10/s arrived within %s: the limit did not hold", span)
	}
	for i := range at {
		n := 0
		for j := i; j < len(at) && at[j].Sub(at[i]) < time.Second; j++ {
			n++
		}
		if n > 11 {
			t.Fatalf("%d requests arrived within one second from request %d (10/s)", n, i+1)
		}
	}
	if dups := inOrder(t, e.sink, events); dups != 0 {
		t.Fatalf("%d duplicates", dups)
	}
}
