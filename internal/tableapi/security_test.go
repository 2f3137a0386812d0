package tableapi_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ferry-dev/ferry/internal/enginetest"
	"github.com/ferry-dev/ferry/internal/tableapi"
)

const jwtSecret = "a-test-secret-of-at-least-32-bytes!"

// clock is a settable time for rate limits.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func securityOptions(c *clock) tableapi.Options {
	return tableapi.Options{
		Now: c.now,
		Security: &tableapi.Security{
			Tokens: []tableapi.Token{
				{Name: "admin", Hash: tableapi.HashToken("admin-token"), Role: "admin"},
				{Name: "reader", Hash: tableapi.HashToken("reader-token"), Role: "reader"},
				{Name: "slow", Hash: tableapi.HashToken("slow-token"), Role: "admin", RateLimit: &tableapi.RateLimit{PerSecond: 1, Burst: 2}},
			},
			JWT: &tableapi.JWT{Secret: jwtSecret, Issuer: "test-issuer"},
			Roles: map[string]*tableapi.Role{
				"admin":  {Tables: map[string]*tableapi.Grant{"*": {Access: "write"}}},
				"reader": {Tables: map[string]*tableapi.Grant{"orders": {Columns: []string{"name", "active"}, Filter: map[string]string{"active": "eq.true"}}}},
				"tenant": {Tables: map[string]*tableapi.Grant{"orders": {Filter: map[string]string{"id": "lte.{claims.max_id}"}}}},
			},
			CORS: &tableapi.CORS{Origins: []string{"https://app.example"}, MaxAge: 600},
		},
	}
}

func hsToken(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(jwtSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSecurity enforces tokens, JWTs, roles, columns, row filters, rate
// limits and CORS on every database.
func TestSecurity(t *testing.T) {
	for _, kind := range enginetest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
			e := newEnv(t, kind, 10, shopPipeline, securityOptions(c))
			bearer := func(tok string) []string { return []string{"Authorization", "Bearer " + tok} }

			if r := e.do(t, http.MethodGet, "/api/orders", ""); r.status != 401 || r.header.Get("WWW-Authenticate") == "" {
				t.Fatalf("no token: %d %v", r.status, r.header)
			}
			if r := e.do(t, http.MethodGet, "/api/orders", "", bearer("wrong")...); r.status != 401 {
				t.Fatalf("a wrong token: %d", r.status)
			}
			if r := e.do(t, http.MethodGet, "/api/orders", "", "Authorization", "Basic YTpi"); r.status != 401 {
				t.Fatalf("basic auth: %d", r.status)
			}
			all, _ := e.rows(t, "/api/orders", bearer("admin-token")...)
			if len(all) != 10 || len(all[0]) != 8 {
				t.Fatalf("admin sees %d rows of %d columns", len(all), len(all[0]))
			}

			// The reader sees active orders only, and only its columns.
			rows, _ := e.rows(t, "/api/orders", bearer("reader-token")...)
			if !slices.Equal(ids(rows), []int64{4, 8, 12, 16, 20}) {
				t.Fatalf("reader rows: %v", ids(rows))
			}
			for _, row := range rows {
				if len(row) != 3 || row["active"] != true || row["name"] == nil {
					t.Fatalf("reader row %v, want id, name, active", row)
				}
			}
			for _, q := range []string{"select=amount", "amount=gt.1", "order=amount"} {
				if r := e.do(t, http.MethodGet, "/api/orders?"+q, "", bearer("reader-token")...); r.status != 400 {
					t.Errorf("reader %s: %d %s", q, r.status, r.body)
				}
			}
			// The row filter holds for rows by key, and whatever the caller's filter.
			if r := e.do(t, http.MethodGet, "/api/orders/2", "", bearer("reader-token")...); r.status != 404 {
				t.Errorf("reader reads an inactive order by key: %d", r.status)
			}
			if rows, _ := e.rows(t, "/api/orders?active=eq.false", bearer("reader-token")...); len(rows) != 0 {
				t.Errorf("reader lifts its row filter: %v", rows)
			}
			// ETags differ by role: one role's tag is not another's.
			ra := e.do(t, http.MethodGet, "/api/orders", "", bearer("admin-token")...)
			if r := e.do(t, http.MethodGet, "/api/orders", "", append(bearer("reader-token"), "If-None-Match", ra.header.Get("ETag"))...); r.status != 200 {
				t.Errorf("the admin's ETag answers the reader: %d", r.status)
			}
			// The document shows the reader its columns only.
			doc := e.loadOpenAPI(t, bearer("reader-token")...)
			if p := doc.Components.Schemas["Orders"].Value.Properties; len(p) != 3 || p["amount"] != nil {
				t.Errorf("reader's document shows %v", p)
			}
			if r := e.do(t, http.MethodPost, "/api/orders", `{"name":"x"}`, bearer("reader-token")...); r.status != 403 {
				t.Errorf("reader writes: %d", r.status)
			}

			// A JWT's claim fills the row filter.
			tok := hsToken(t, jwt.MapClaims{"sub": "alice", "role": "tenant", "max_id": 6, "iss": "test-issuer", "exp": c.now().Add(time.Hour).Unix()})
			if rows, _ := e.rows(t, "/api/orders", bearer(tok)...); !slices.Equal(ids(rows), []int64{2, 4, 6}) {
				t.Errorf("tenant rows: %v", ids(rows))
			}
			for name, claims := range map[string]jwt.MapClaims{
				"expired":      {"role": "tenant", "max_id": 6, "iss": "test-issuer", "exp": c.now().Add(-time.Hour).Unix()},
				"no exp":       {"role": "tenant", "max_id": 6, "iss": "test-issuer"},
				"wrong issuer": {"role": "tenant", "max_id": 6, "iss": "other", "exp": c.now().Add(time.Hour).Unix()},
			} {
				if r := e.do(t, http.MethodGet, "/api/orders", "", bearer(hsToken(t, claims))...); r.status != 401 {
					t.Errorf("JWT %s: %d %s", name, r.status, r.body)
				}
			}
			noClaim := hsToken(t, jwt.MapClaims{"role": "tenant", "iss": "test-issuer", "exp": c.now().Add(time.Hour).Unix()})
			if r := e.do(t, http.MethodGet, "/api/orders", "", bearer(noClaim)...); r.status != 404 {
				t.Errorf("a JWT without the filter's claim: %d %s", r.status, r.body)
			}
			unknownRole := hsToken(t, jwt.MapClaims{"role": "root", "iss": "test-issuer", "exp": c.now().Add(time.Hour).Unix()})
			if r := e.do(t, http.MethodGet, "/api/orders", "", bearer(unknownRole)...); r.status != 403 {
				t.Errorf("a JWT with an unknown role: %d", r.status)
			}
			forged := tok[:strings.LastIndex(tok, ".")+1] + base64.RawURLEncoding.EncodeToString([]byte("forged-signature-bytes-000000000"))
			if r := e.do(t, http.MethodGet, "/api/orders", "", bearer(forged)...); r.status != 401 {
				t.Errorf("a forged JWT: %d", r.status)
			}
			none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)) + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"role":"admin"}`)) + "."
			if r := e.do(t, http.MethodGet, "/api/orders", "", bearer(none)...); r.status != 401 {
				t.Errorf("alg none: %d", r.status)
			}

			// Rate limit: a burst of 2, then 429 with Retry-After; a second later one more.
			for i := range 2 {
				if r := e.do(t, http.MethodGet, "/api/orders/2", "", bearer("slow-token")...); r.status != 200 {
					t.Fatalf("slow request %d: %d", i, r.status)
				}
			}
			r := e.do(t, http.MethodGet, "/api/orders/2", "", bearer("slow-token")...)
			if r.status != 429 || r.header.Get("Retry-After") != "1" {
				t.Fatalf("past the burst: %d %v", r.status, r.header)
			}
			if r := e.do(t, http.MethodGet, "/api/orders/2", "", bearer("admin-token")...); r.status != 200 {
				t.Fatalf("another token is limited too: %d", r.status)
			}
			c.add(time.Second)
			if r := e.do(t, http.MethodGet, "/api/orders/2", "", bearer("slow-token")...); r.status != 200 {
				t.Fatalf("a second later: %d", r.status)
			}

			// CORS: a preflight from an allowed origin, none for another.
			r = e.do(t, http.MethodOptions, "/api/orders", "", "Origin", "https://app.example", "Access-Control-Request-Method", "GET")
			if r.status != 204 || r.header.Get("Access-Control-Allow-Origin") != "https://app.example" || r.header.Get("Access-Control-Max-Age") != "600" {
				t.Errorf("preflight: %d %v", r.status, r.header)
			}
			r = e.do(t, http.MethodGet, "/api/orders/2", "", append(bearer("admin-token"), "Origin", "https://app.example")...)
			if r.header.Get("Access-Control-Allow-Origin") != "https://app.example" || !strings.Contains(r.header.Get("Access-Control-Expose-Headers"), "ETag") {
				t.Errorf("CORS headers: %v", r.header)
			}
			r = e.do(t, http.MethodGet, "/api/orders/2", "", append(bearer("admin-token"), "Origin", "https://evil.example")...)
			if r.header.Get("Access-Control-Allow-Origin") != "" {
				t.Errorf("an unknown origin is allowed: %v", r.header)
			}
		})
	}
}

// TestCORSOffByDefault: without settings no CORS header is ever sent.
func TestCORSOffByDefault(t *testing.T) {
	e := newEnv(t, enginetest.SQLite, 3, shopPipeline, tableapi.Options{})
	r := e.do(t, http.MethodOptions, "/api/orders", "", "Origin", "https://app.example", "Access-Control-Request-Method", "GET")
	if r.header.Get("Access-Control-Allow-Origin") != "" || r.status == 204 {
		t.Fatalf("CORS without settings: %d %v", r.status, r.header)
	}
	if r := e.do(t, http.MethodGet, "/api/orders", "", "Origin", "https://app.example"); r.status != 200 || r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("GET with an Origin: %d %v", r.status, r.header)
	}
}

// TestJWKS verifies RS256 tokens with a key from a JWKS URL.
func TestJWKS(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"keys": []any{map[string]any{
			"kty": "RSA", "kid": "k1", "use": "sig",
			"n": base64.RawURLEncoding.EncodeToString(key.N.Bytes()),
			"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(key.E)).Bytes()),
		}}})
	}))
	t.Cleanup(jwks.Close)
	opts := tableapi.Options{Security: &tableapi.Security{
		JWT:   &tableapi.JWT{JWKSURL: jwks.URL, Audience: "ferry"},
		Roles: map[string]*tableapi.Role{"viewer": {Tables: map[string]*tableapi.Grant{"orders": nil}}},
	}}
	e := newEnv(t, enginetest.SQLite, 3, shopPipeline, opts)
	sign := func(kid string, k *rsa.PrivateKey, alg jwt.SigningMethod) string {
		tk := jwt.NewWithClaims(alg, jwt.MapClaims{"role": "viewer", "aud": "ferry", "exp": time.Now().Add(time.Hour).Unix()})
		tk.Header["kid"] = kid
		s, err := tk.SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if rows, _ := e.rows(t, "/api/orders", "Authorization", "Bearer "+sign("k1", key, jwt.SigningMethodRS256)); len(rows) != 3 {
		t.Fatalf("RS256 via JWKS: %d rows", len(rows))
	}
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	if r := e.do(t, http.MethodGet, "/api/orders", "", "Authorization", "Bearer "+sign("k1", other, jwt.SigningMethodRS256)); r.status != 401 {
		t.Fatalf("signed by another key: %d", r.status)
	}
	hs, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"role": "viewer", "aud": "ferry", "exp": time.Now().Add(time.Hour).Unix()}).SignedString(key.PublicKey.N.Bytes())
	if r := e.do(t, http.MethodGet, "/api/orders", "", "Authorization", "Bearer "+hs); r.status != 401 {
		t.Fatalf("HS256 where RS256 is expected: %d", r.status)
	}
}
