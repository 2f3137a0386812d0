package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestBudgetSharedByStreamsAndPartitions: a budget of 7 requests per
// run is one budget for the whole connector: a parent stream, its child
// read 4 partitions at a time (seen at the API: several requests in
// flight at once) and an unrelated stream together never make more than
// 7 requests in a run. Each run stops early (exit 4), the next goes on
// where it stopped, and once the child's pass ends every record is
// there once.
func TestBudgetSharedByStreamsAndPartitions(t *testing.T) {
	const repos, perRepo, labels, budget = 6, 25, 25, 7
	var (
		requests, inFlight, maxInFlight atomic.Int64 // inFlight: issue requests
		mu                              sync.Mutex
	)
	page := func(w http.ResponseWriter, r *http.Request, n int, id func(i int) int) {
		p, _ := strconv.Atoi(r.URL.Query().Get("page"))
		p = max(p, 1)
		var out []map[string]any
		for i := (p - 1) * 10; i < min(p*10, n); i++ {
			out = append(out, map[string]any{"id": id(i)})
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(out)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		switch {
		case r.URL.Path == "/repos":
			var out []map[string]any
			for i := 1; i <= repos; i++ {
				out = append(out, map[string]any{"id": i})
			}
			json.NewEncoder(w).Encode(out)
		case r.URL.Path == "/labels":
			page(w, r, labels, func(i int) int { return i + 1 })
		case strings.HasPrefix(r.URL.Path, "/repos/"):
			repo, _ := strconv.Atoi(strings.Split(r.URL.Path, "/")[2])
			n := inFlight.Add(1)
			defer inFlight.Add(-1)
			mu.Lock()
			maxInFlight.Store(max(maxInFlight.Load(), n))
			mu.Unlock()
			// Until two partitions were seen in flight at once, an issue
			// request waits (500 ms at most) for another: partitions
			// read in parallel meet here, one after another would not.
			for deadline := time.Now().Add(500 * time.Millisecond); maxInFlight.Load() < 2 && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
			page(w, r, perRepo, func(i int) int { return repo*1000 + i + 1 })
		default:
			w.WriteHeader(404)
		}
	}))
	defer srv.Close()
	conn := fmt.Sprintf(`name: shared
base_url: %s
http:
  concurrency: 4
  budget: {requests: %d}
streams:
  repos: {path: /repos, primary_key: id}
  issues:
    path: "/repos/{{ parent.id }}/issues"
    primary_key: id
    parent: {stream: repos, concurrency: 4}
    paginate: {type: page_number, param: page, size: 10, size_param: per_page, stop_on_short_page: true}
  labels:
    path: /labels
    primary_key: id
    paginate: {type: page_number, param: page, size: 10, size_param: per_page, stop_on_short_page: true}
`, srv.URL, budget)
	s := newSite(t, conn, sqlitePipeline)
	runs := 0
	for ; runs < 20; runs++ {
		before := requests.Load()
		code, out, errs := s.ferry("run", "--quiet", "PIPELINE")
		if n := requests.Load() - before; n > budget {
			t.Fatalf("run %d made %d requests with a budget of %d shared by all streams and partitions\n%s%s", runs+1, n, budget, out, errs)
		}
		// A full pass costs 23 requests, and more as the child reads its
		// parent again in each run: runs stop early until the one that
		// needs 7 requests at most for what is left ends ok.
		if code == exitOK {
			break
		}
		if code != exitStopped || !strings.Contains(out+errs, "http.budget: 7 requests per run") {
			t.Fatalf("run %d: exit %d\n%s%s", runs+1, code, out, errs)
		}
		if regexp.MustCompile(`(?m)^issues\s+issues\s+\S+\s+succeeded\s`).MatchString(out) {
			break // the child stream's pass ended
		}
	}
	if runs < 3 {
		t.Fatalf("the child's pass ended in run %d: the budget did not bite", runs+1)
	}
	if runs == 20 {
		t.Fatal("20 runs did not finish the child stream's pass")
	}
	if maxInFlight.Load() < 2 {
		t.Fatal("no two requests were ever in flight at once: the partitions were not read in parallel, the test proves nothing")
	}
	issues := s.ids("issues")
	if len(issues) != repos*perRepo {
		t.Fatalf("%d issues, want %d", len(issues), repos*perRepo)
	}
	for r := 1; r <= repos; r++ {
		for i := 1; i <= perRepo; i++ {
			if issues[(r-1)*perRepo+i-1] != r*1000+i {
				t.Fatalf("issues %v", issues)
			}
		}
	}
	if got := s.ids("labels"); len(got) != labels || got[labels-1] != labels {
		t.Fatalf("labels %v", got)
	}
}
