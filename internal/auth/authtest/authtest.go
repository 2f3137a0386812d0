// Package authtest serves what auth schemes talk to, for tests: an
// OAuth2 token endpoint that behaves like real providers (access tokens
// that expire, refresh tokens that rotate on every use, RFC 6749 errors
// for a wrong client secret or a spent refresh token), a guard that
// refuses expired tokens the way HubSpot does, and a test CA issuing
// server and client certificates for mutual TLS.
package authtest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io/fs"
	"maps"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// OAuth is a token endpoint (its ServeHTTP) and the guard of the API it
// issues tokens for (Protect).
type OAuth struct {
	ClientID, ClientSecret string
	// TTL is the expires_in the endpoint announces (0: none).
	TTL time.Duration
	// Uses is how many requests an access token serves before the API
	// refuses it as expired (0: unlimited), so that a token expires in
	// the middle of a run without waiting for a clock.
	Uses int
	// Rotate makes every refresh answer with a new refresh token and
	// retire the one it used, as Salesforce, Xero and QuickBooks can.
	Rotate bool

	// TokenRequests counts requests to the endpoint; Refused the API
	// requests Protect refused.
	TokenRequests, Refused atomic.Int64

	mu      sync.Mutex
	forms   []url.Values    // the form of every token request
	refresh map[string]bool // valid refresh tokens
	access  map[string]int  // valid access tokens → uses left (-1: unlimited)
	issued  []string        // every token ever issued
}

// NewOAuth returns a token endpoint for one client.
func NewOAuth(clientID, clientSecret string) *OAuth {
	return &OAuth{ClientID: clientID, ClientSecret: clientSecret, refresh: map[string]bool{}, access: map[string]int{}}
}

// AddRefreshToken makes a refresh token valid (the one a user's consent
// produced).
func (o *OAuth) AddRefreshToken(rt string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.refresh[rt] = true
	o.issued = append(o.issued, rt)
}

// Forms returns the form parameters of every token request received, in
// order, client credentials removed, for tests of what a scheme sends.
func (o *OAuth) Forms() []url.Values {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]url.Values, len(o.forms))
	for i, f := range o.forms {
		out[i] = maps.Clone(f)
	}
	return out
}

// Issued returns every token the endpoint issued (and the refresh tokens
// added), for tests that no secret leaked.
func (o *OAuth) Issued() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.issued...)
}

func token() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// ServeHTTP is the token endpoint: client_credentials and refresh_token
// grants, the client authenticated by HTTP basic auth or by form
// parameters.
func (o *OAuth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o.TokenRequests.Add(1)
	if r.Method != http.MethodPost || r.ParseForm() != nil {
		writeJSON(w, 400, map[string]string{"error": "invalid_request"})
		return
	}
	form := maps.Clone(r.PostForm)
	form.Del("client_secret")
	o.mu.Lock()
	o.forms = append(o.forms, form)
	o.mu.Unlock()
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if subtle.ConstantTimeCompare([]byte(id), []byte(o.ClientID)) != 1 || subtle.ConstantTimeCompare([]byte(secret), []byte(o.ClientSecret)) != 1 {
		w.Header().Set("WWW-Authenticate", `Basic realm="token"`)
		writeJSON(w, 401, map[string]string{"error": "invalid_client", "error_description": "Client authentication failed"})
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	resp := map[string]any{"token_type": "bearer"}
	switch r.PostForm.Get("grant_type") {
	case "client_credentials":
	case "refresh_token":
		rt := r.PostForm.Get("refresh_token")
		if !o.refresh[rt] {
			writeJSON(w, 400, map[string]string{"error": "invalid_grant", "error_description": "refresh token is invalid, expired or was already used"})
			return
		}
		if o.Rotate {
			delete(o.refresh, rt)
			rt = token()
			o.refresh[rt] = true
			o.issued = append(o.issued, rt)
		}
		resp["refresh_token"] = rt
	default:
		writeJSON(w, 400, map[string]string{"error": "unsupported_grant_type"})
		return
	}
	at := token()
	o.access[at] = -1
	if o.Uses > 0 {
		o.access[at] = o.Uses
	}
	o.issued = append(o.issued, at)
	resp["access_token"] = at
	if o.TTL > 0 {
		resp["expires_in"] = int(o.TTL.Seconds())
	}
	writeJSON(w, 200, resp)
}

// Protect serves h to requests with a valid bearer token, and refuses
// others with HubSpot's 401.
func (o *OAuth) Protect(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		tok, found := auth[min(len(auth), len("Bearer ")):], len(auth) > len("Bearer ") && auth[:len("Bearer ")] == "Bearer "
		if !found {
			tok = r.URL.Query().Get("access_token")
		}
		o.mu.Lock()
		left, ok := o.access[tok]
		if ok && left > 0 {
			if left == 1 {
				delete(o.access, tok)
			} else {
				o.access[tok] = left - 1
			}
		}
		o.mu.Unlock()
		if !ok {
			o.Refused.Add(1)
			writeJSON(w, 401, map[string]string{"status": "error", "message": "The OAuth token used for this call is expired.", "category": "EXPIRED_AUTHENTICATION"})
			return
		}
		h.ServeHTTP(w, r)
	})
}

// CA is a certificate authority for tests.
type CA struct {
	// CertPEM is the CA's certificate, to trust.
	CertPEM []byte
	// Pool holds the CA's certificate.
	Pool *x509.CertPool
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// NewCA makes a CA.
func NewCA(t testing.TB) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Ferry test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), Pool: pool, cert: cert, key: key}
}

var serial atomic.Int64

// Issue makes a certificate for a server (names: DNS names or IP
// addresses) or, with client, for a client; it returns the certificate
// and its private key in PEM.
func (ca *CA) Issue(t testing.TB, cn string, client bool, names ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1) + 1),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if client {
		tpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tpl.IPAddresses = append(tpl.IPAddresses, ip)
		} else {
			tpl.DNSNames = append(tpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb})
}

// ServerTLS returns a server configuration with a certificate for
// 127.0.0.1 and localhost, requiring a client certificate this CA issued
// when mutual is true.
func (ca *CA) ServerTLS(t testing.TB, mutual bool) *tls.Config {
	t.Helper()
	c, k := ca.Issue(t, "127.0.0.1", false, "127.0.0.1", "localhost")
	pair, err := tls.X509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	if mutual {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		cfg.ClientCAs = ca.Pool
	}
	return cfg
}

// NoSecrets fails the test when any secret appears in any of texts
// (name → text: logs, errors, state rows) or in any file under dir
// (the databases, token stores and files a run wrote), as is or in the
// encodings secrets take in URLs and JSON.
func NoSecrets(t testing.TB, secrets []string, texts map[string]string, dir string) {
	t.Helper()
	forms := func(s string) []string {
		return []string{s, url.QueryEscape(s), base64.StdEncoding.EncodeToString([]byte(s)), strings.Trim(strconv.Quote(s), `"`)}
	}
	check := func(where string, data []byte) {
		for _, s := range secrets {
			if len(s) < 6 {
				continue // too short to tell apart from anything else
			}
			for _, f := range forms(s) {
				if bytes.Contains(data, []byte(f)) {
					t.Errorf("a secret (%.3s…, %d bytes) appears in %s", s, len(s), where)
				}
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(texts)) {
		check(name, []byte(texts[name]))
	}
	if dir == "" {
		return
	}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		check(path, data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
