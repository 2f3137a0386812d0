package serve_test

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/metastore"
	"github.com/ferry-dev/ferry/internal/serve"
)

// TestTableAPIMount: the table API is served at /api/ behind the
// server's tokens (read: GET, operator: writes), or on its own
// credentials when it authenticates itself.
func TestTableAPIMount(t *testing.T) {
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(r.Method + " " + r.URL.Path))
	})
	tok, hash := serve.NewToken()
	op, opHash := serve.NewToken()
	tokens := []metastore.Token{{Hash: hash, Role: serve.RoleRead, Name: "r", Created: time.Now()}, {Hash: opHash, Role: serve.RoleOperator, Name: "o", Created: time.Now()}}
	s := startServer(t, serve.Config{API: api, Tokens: tokens})
	send := func(url, method, token string) (int, string) {
		req, _ := http.NewRequest(method, url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if st, body := send(s.URL+"/api/orders", http.MethodGet, tok); st != 200 || body != "GET /api/orders" {
		t.Fatalf("GET with a read token: %d %s", st, body)
	}
	if st, _ := send(s.URL+"/api/orders", http.MethodGet, ""); st != 401 {
		t.Fatalf("GET without a token: %d", st)
	}
	if st, _ := send(s.URL+"/api/orders", http.MethodPost, tok); st != 403 {
		t.Fatalf("POST with a read token: %d", st)
	}
	if st, body := send(s.URL+"/api/orders", http.MethodPost, op); st != 200 || body != "POST /api/orders" {
		t.Fatalf("POST with an operator token: %d %s", st, body)
	}
	self := startServer(t, serve.Config{API: api, Tokens: tokens, APIAuthenticates: true})
	if st, body := send(self.URL+"/api/orders/1", http.MethodDelete, ""); st != 200 || body != "DELETE /api/orders/1" {
		t.Fatalf("an API that authenticates itself: %d %s", st, body)
	}
}
