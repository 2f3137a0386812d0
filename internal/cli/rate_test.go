package cli

import (
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestSourceRequestsPerSecond: http.requests_per_second holds at the
// API with the documented default burst of 1: 20 pages at 10 a second
// are spread over at least 1.7 s (19 intervals of 100 ms, with room for
// a loaded machine), and no second holds more than 11 requests.
func TestSourceRequestsPerSecond(t *testing.T) {
	var mu sync.Mutex
	var at []time.Time
	api := newIssuesAPI(t, 200, 1000, time.Hour)
	api.before = func(int64, http.ResponseWriter, *http.Request) bool {
		mu.Lock()
		at = append(at, time.Now())
		mu.Unlock()
		return false
	}
	s := newSite(t, issuesConnector(api.URL, "  requests_per_second: 10"), sqlitePipeline)
	s.run(exitOK)
	if got := s.ids("issues"); !slices.Equal(got, want(200)) {
		t.Fatalf("ids %v", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(at) != 20 {
		t.Fatalf("%d requests for 20 pages", len(at))
	}
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
}
