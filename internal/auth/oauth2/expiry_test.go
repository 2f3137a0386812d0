package oauth2

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/auth"
	"github.com/ferry-dev/ferry/internal/auth/authtest"
)

// clock is a time the test moves.
type clock struct {
	mu sync.Mutex
	at time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.at }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.at = c.at.Add(d)
	c.mu.Unlock()
}

func newAuth(t *testing.T, c *Config, o *authtest.OAuth) (*authenticator, *clock) {
	t.Helper()
	srv := httptest.NewServer(o)
	t.Cleanup(srv.Close)
	c.TokenURL = srv.URL
	eval := func(s string) (string, error) { return s, nil }
	a, _, err := New(c, auth.Env{Eval: eval, AddSecret: func(...string) {}, HTTPClient: srv.Client(), Logger: nil})
	if err != nil {
		t.Fatal(err)
	}
	au := a.(*authenticator)
	au.env.Logger = discard
	clk := &clock{at: time.Now()}
	au.now = clk.now
	return au, clk
}

func apply(t *testing.T, a *authenticator) string {
	t.Helper()
	req, _ := http.NewRequest("GET", "https://api.example.com/x?a=1", nil)
	if err := a.Apply(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if a.query != "" {
		return req.URL.Query().Get(a.query)
	}
	return req.Header.Get(a.header)
}

// TestRefreshBeforeExpiry: a token is reused until it is within the
// margin of its expiry, then replaced before any request is refused;
// many requests at once share one token request.
func TestRefreshBeforeExpiry(t *testing.T) {
	o := authtest.NewOAuth("id", "secret")
	o.TTL = 30 * time.Minute
	a, clk := newAuth(t, &Config{Grant: "client_credentials", ClientID: "id", ClientSecret: "secret", ExpiryMargin: "1m"}, o)
	var wg sync.WaitGroup
	var first atomic.Value
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			first.Store(apply(t, a))
		}()
	}
	wg.Wait()
	if n := o.TokenRequests.Load(); n != 1 {
		t.Fatalf("8 requests at once made %d token requests", n)
	}
	clk.add(28 * time.Minute)
	if apply(t, a) != first.Load() || o.TokenRequests.Load() != 1 {
		t.Fatal("a token 2 minutes from expiry was replaced")
	}
	clk.add(90 * time.Second) // 30s before expiry: within the margin
	second := apply(t, a)
	if second == first.Load() || o.TokenRequests.Load() != 2 {
		t.Fatalf("a token 30s from expiry was not replaced (%d token requests)", o.TokenRequests.Load())
	}
	// Renew drops the token a refused request carried, not a newer one.
	stale, _ := http.NewRequest("GET", "https://api.example.com/x", nil)
	stale.Header.Set("Authorization", first.Load().(string))
	a.Renew(context.Background(), stale)
	if apply(t, a) != second {
		t.Fatal("renewing for an old token dropped the current one")
	}
	cur, _ := http.NewRequest("GET", "https://api.example.com/x", nil)
	cur.Header.Set("Authorization", second)
	a.Renew(context.Background(), cur)
	if apply(t, a) == second || o.TokenRequests.Load() != 3 {
		t.Fatal("renewing for the current token did not fetch another")
	}
}

// TestTokenInQuery: token_in: query puts the token in a parameter that
// is stripped from saved URLs.
func TestTokenInQuery(t *testing.T) {
	o := authtest.NewOAuth("id", "secret")
	a, _ := newAuth(t, &Config{Grant: "client_credentials", ClientID: "id", ClientSecret: "secret", TokenIn: "query", QueryParam: "access_token"}, o)
	if tok := apply(t, a); len(tok) != 32 || a.QueryParam() != "access_token" {
		t.Fatalf("token %q, param %q", tok, a.QueryParam())
	}
}

// TestTransientTokenEndpoint: a 503 from the token endpoint is
// retryable, a refusal is not and is kept.
func TestTransientTokenEndpoint(t *testing.T) {
	var n atomic.Int64
	o := authtest.NewOAuth("id", "secret")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			w.WriteHeader(503)
			return
		}
		o.ServeHTTP(w, r)
	}))
	defer srv.Close()
	eval := func(s string) (string, error) { return s, nil }
	au, _, err := New(&Config{Grant: "client_credentials", ClientID: "id", ClientSecret: "secret", TokenURL: srv.URL, ClientAuth: "header"}, auth.Env{Eval: eval, AddSecret: func(...string) {}, HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	au.(*authenticator).env.Logger = discard
	req, _ := http.NewRequest("GET", "https://api.example.com/", nil)
	err = au.Apply(context.Background(), req)
	if err == nil || !isRetryable(err) {
		t.Fatalf("a 503 from the token endpoint: %v (retryable %v)", err, isRetryable(err))
	}
	if err := au.Apply(context.Background(), req); err != nil {
		t.Fatal(err)
	}
}
