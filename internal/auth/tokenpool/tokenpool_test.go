package tokenpool_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/ferry-dev/ferry/internal/components/all"
	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/enginetest"
)

// perToken serves 10 records a page, and GitHub's primary limit per
// token: limit requests an hour each.
func perToken(t *testing.T, limit int) (*httptest.Server, *atomic.Int64) {
	var mu sync.Mutex
	used := map[string]int{}
	var refused atomic.Int64
	reset := time.Now().Add(time.Hour).Unix()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		mu.Lock()
		n := used[tok]
		if n < limit {
			used[tok] = n + 1
		}
		mu.Unlock()
		w.Header().Set("X-RateLimit-Limit", strconv.Itoa(limit))
		w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(reset, 10))
		w.Header().Set("Content-Type", "application/json")
		if n >= limit {
			refused.Add(1)
			w.Header().Set("X-RateLimit-Remaining", "0")
			w.WriteHeader(403)
			fmt.Fprint(w, `{"message":"API rate limit exceeded"}`)
			return
		}
		w.Header().Set("X-RateLimit-Remaining", strconv.Itoa(limit-n-1))
		page, _ := strconv.Atoi(r.URL.Query().Get("page"))
		var out []map[string]any
		for i := (page - 1) * 10; i < min(page*10, 75); i++ {
			out = append(out, map[string]any{"id": i + 1})
		}
		json.NewEncoder(w).Encode(out)
	}))
	t.Cleanup(srv.Close)
	return srv, &refused
}

func poolConnector(url string, tokens int) string {
	var list []string
	var params string
	for i := range tokens {
		list = append(list, fmt.Sprintf(`"{{ config.token_%d }}"`, i))
		params += fmt.Sprintf("  token_%d: {secret: true}\n", i)
	}
	return fmt.Sprintf(`name: pool
base_url: %s
config:
%sauth: {type: token_pool, tokens: [%s]}
http: {max_wait: 1m, concurrency: 1}
streams:
  items:
    path: /items
    primary_key: id
    paginate: {type: page_number, size: 10, size_param: per_page, stop_on_short_page: true}
`, url, params, strings.Join(list, ", "))
}

func poolPipeline(tokens int) (string, map[string]string) {
	p := "connector: connector.yaml\nmode: full_refresh_append\nconfig:\n"
	env := map[string]string{}
	for i := range tokens {
		p += fmt.Sprintf("  token_%d: ${TOKEN_%d}\n", i, i)
		env[fmt.Sprintf("TOKEN_%d", i)] = fmt.Sprintf("ghp_token_number_%d_xxxxxxxx", i)
	}
	return p, env
}

// TestTokenPool: three tokens of 3 requests an hour read 8 pages, each
// request on a token with quota left, none refused; with two tokens the
// run reads 6 pages and stops early, saying when the first token's
// limit resets.
func TestTokenPool(t *testing.T) {
	srv, refused := perToken(t, 3)
	pl, env := poolPipeline(3)
	p := enginetest.New(t, enginetest.Config{Connector: poolConnector(srv.URL, 3), Pipeline: pl, Env: env})
	p.Run().Check(t)
	if got := len(p.Rows("items", "id")); got != 75 || refused.Load() != 0 {
		t.Fatalf("%d rows, %d refused", got, refused.Load())
	}

	srv, refused = perToken(t, 3)
	pl, env = poolPipeline(2)
	p = enginetest.New(t, enginetest.Config{Connector: poolConnector(srv.URL, 2), Pipeline: pl, Env: env})
	res := p.Run()
	st := res.Stream("items")
	if res.Err != nil || st.Status != dest.Stopped || st.Records != 60 || !strings.Contains(st.Error, "all 2 tokens spent") || st.ResumeAt.IsZero() {
		t.Fatalf("err %v, summary %+v", res.Err, st)
	}
	if refused.Load() != 0 {
		t.Fatalf("%d requests refused: the pool knew every token was spent", refused.Load())
	}
}
