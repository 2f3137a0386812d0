package jwt

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gojwt "github.com/golang-jwt/jwt/v5"

	"github.com/ferry-dev/ferry/internal/auth"
)

func ecKey(t *testing.T) (*ecdsa.PrivateKey, string) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	return k, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

func newAuth(t *testing.T, c *Config) *authenticator {
	t.Helper()
	eval := func(s string) (string, error) { return s, nil }
	a, secrets, err := New(c, auth.Env{Eval: eval, AddSecret: func(...string) {}, HTTPClient: http.DefaultClient})
	if err != nil {
		t.Fatal(err)
	}
	if len(secrets) != 1 || secrets[0] != c.PrivateKey {
		t.Fatal("the private key is not a secret to redact")
	}
	return a.(*authenticator)
}

// TestAppStoreConnect: Apple's App Store Connect API takes an ES256 JWT
// with kid, iss and aud "appstoreconnect-v1" as the bearer token itself;
// it is signed again before it expires.
func TestAppStoreConnect(t *testing.T) {
	key, pemKey := ecKey(t)
	a := newAuth(t, &Config{Algorithm: "ES256", PrivateKey: pemKey, KeyID: "2X9R4HXF34", Issuer: "57246542-96fe-1a63-e053-0824d011072a",
		Audience: "appstoreconnect-v1", Lifetime: "20m"})
	now := time.Now()
	a.now = func() time.Time { return now }
	req, _ := http.NewRequest("GET", "https://api.appstoreconnect.apple.com/v1/apps", nil)
	if err := a.Apply(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	raw := strings.TrimPrefix(req.Header.Get("Authorization"), "Bearer ")
	tok, err := gojwt.Parse(raw, func(t *gojwt.Token) (any, error) { return &key.PublicKey, nil }, gojwt.WithValidMethods([]string{"ES256"}), gojwt.WithAudience("appstoreconnect-v1"))
	if err != nil {
		t.Fatal(err)
	}
	claims := tok.Claims.(gojwt.MapClaims)
	if tok.Header["kid"] != "2X9R4HXF34" || claims["iss"] != "57246542-96fe-1a63-e053-0824d011072a" || claims["exp"].(float64)-claims["iat"].(float64) != 1200 {
		t.Fatalf("header %v claims %v", tok.Header, claims)
	}
	// Reused while fresh, signed again within a minute of expiry.
	a.Apply(context.Background(), req)
	if strings.TrimPrefix(req.Header.Get("Authorization"), "Bearer ") != raw {
		t.Fatal("a fresh JWT was signed again")
	}
	now = now.Add(19*time.Minute + 30*time.Second)
	a.Apply(context.Background(), req)
	if strings.TrimPrefix(req.Header.Get("Authorization"), "Bearer ") == raw {
		t.Fatal("a JWT 30s from expiry was not signed again")
	}
}

// TestServiceAccountExchange: a Google-style service account signs an
// RS256 assertion for the token endpoint, which answers with an access
// token; a wrong key's refusal is kept (no storm).
func TestServiceAccountExchange(t *testing.T) {
	key, pemKey := ecKey(t)
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		r.ParseForm()
		w.Header().Set("Content-Type", "application/json")
		_, err := gojwt.Parse(r.PostForm.Get("assertion"), func(*gojwt.Token) (any, error) { return &key.PublicKey, nil }, gojwt.WithAudience("http://"+r.Host+"/token"))
		if r.PostForm.Get("grant_type") != jwtBearer || err != nil {
			w.WriteHeader(400)
			json.NewEncoder(w).Encode(map[string]string{"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"access_token": "ya29.access", "expires_in": 3599, "token_type": "Bearer"})
	}))
	defer srv.Close()
	a := newAuth(t, &Config{Algorithm: "ES256", PrivateKey: pemKey, Issuer: "ferry@project.iam.gserviceaccount.com", Scope: "https://www.googleapis.com/auth/analytics.readonly", TokenURL: srv.URL + "/token"})
	req, _ := http.NewRequest("GET", "https://analyticsdata.googleapis.com/v1beta/x", nil)
	if err := a.Apply(context.Background(), req); err != nil || req.Header.Get("Authorization") != "Bearer ya29.access" {
		t.Fatalf("%v %q", err, req.Header.Get("Authorization"))
	}
	_, other := ecKey(t)
	b := newAuth(t, &Config{Algorithm: "ES256", PrivateKey: other, TokenURL: srv.URL + "/token"})
	hits.Store(0)
	for range 3 {
		err := b.Apply(context.Background(), req)
		if err == nil || !strings.Contains(err.Error(), `invalid_grant (the API says "Invalid JWT Signature.")`) {
			t.Fatalf("err = %v", err)
		}
	}
	if hits.Load() != 1 {
		t.Fatalf("%d token requests for a refused key", hits.Load())
	}
}
