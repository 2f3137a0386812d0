package httpx_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"time"

	"github.com/ferry-dev/ferry/internal/httpx"
	"github.com/ferry-dev/ferry/internal/redact"
)

func ExampleClient_Do() {
	// An API that is down for its first request.
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			http.Error(w, "upstream down", http.StatusBadGateway)
			return
		}
		fmt.Fprint(w, `{"orders":[{"id":1},{"id":2}]}`)
	}))
	defer srv.Close()

	c := httpx.New(httpx.Config{
		InitialBackoff: time.Millisecond,
		Redactor:       redact.New("sk_live_123"),
	})
	var page struct{ Orders []struct{ ID int } }
	resp, err := c.Do(context.Background(), &httpx.Request{URL: srv.URL + "/v1/orders?api_key=sk_live_123"},
		func(r *httpx.Response) error {
			if err := json.Unmarshal(r.Body, &page); err != nil {
				// A proxy's HTML error page served with 200: try again.
				return httpx.Retryable(fmt.Errorf("decode orders: %w", err))
			}
			return nil
		})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(resp.Status, resp.Attempts, len(page.Orders))
	// Output: 200 2 2
}
