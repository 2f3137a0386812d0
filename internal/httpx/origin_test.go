package httpx

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ferry-dev/ferry/internal/redact"
)

const (
	originToken  = "tok-0r1g1n-secret" // the Authenticator's, registered
	originHeader = "hdr-0r1g1n-secret" // in a header of the request, registered
	originQuery  = "qry-0r1g1n-secret" // in the query string, registered
)

// heard records what a server received.
type heard struct {
	mu   sync.Mutex
	reqs []*http.Request
	body []string
}

func (h *heard) record(r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	h.reqs = append(h.reqs, r.Clone(r.Context()))
	h.body = append(h.body, string(b))
	h.mu.Unlock()
}

func (h *heard) all() []*http.Request {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*http.Request(nil), h.reqs...)
}

// secretsIn lists the kinds of credential a request carries:
// authorization, cookie, proxy-authorization, secret header, secret query.
func secretsIn(r *http.Request) []string {
	kinds := map[string]bool{}
	for k, vs := range r.Header {
		for _, v := range vs {
			for _, s := range []string{originToken, originHeader, originQuery} {
				if strings.Contains(v, s) && k != "Authorization" {
					kinds["secret header"] = true
				}
			}
		}
	}
	for _, k := range []string{"Authorization", "Cookie", "Proxy-Authorization"} {
		if r.Header.Get(k) != "" {
			kinds[strings.ToLower(k)] = true
		}
	}
	for _, s := range []string{originToken, originHeader, originQuery} {
		if strings.Contains(r.URL.RawQuery, s) {
			kinds["secret query"] = true
		}
	}
	return slices.Sorted(maps.Keys(kinds))
}

// originClient is a client whose Authenticator sends a bearer token, with
// credentials allowed for the origins given.
func originClient(logs io.Writer, origins ...string) (*Client, *bearerToken) {
	auth := &bearerToken{}
	cfg := fastConfig()
	cfg.Auth = auth
	cfg.Redactor = redact.New(originToken, originHeader, originQuery)
	cfg.CredentialOrigins = origins
	if logs != nil {
		cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return New(cfg), auth
}

type bearerToken struct {
	mu    sync.Mutex
	calls int
}

func (b *bearerToken) Apply(_ context.Context, req *http.Request) error {
	b.mu.Lock()
	b.calls++
	b.mu.Unlock()
	req.Header.Set("Authorization", "Bearer "+originToken)
	return nil
}

// credentialed is a request carrying every kind of credential besides the
// Authenticator's: a secret header, a cookie, a secret query parameter,
// and harmless ones that must stay.
func credentialed(url string) *Request {
	return &Request{
		URL: url + "?page=2&key=" + originQuery + "&sig=presigned-by-the-api",
		Header: http.Header{
			"X-Secret":            {originHeader},
			"X-Bearer":            {"Bearer " + originHeader},
			"Cookie":              {"session=abc"},
			"Proxy-Authorization": {"Basic eDp5"},
			"X-Plain":             {"visible"},
		},
	}
}

func TestCredentialsStayOnTheirOrigins(t *testing.T) {
	var ownHeard, other, listed heard
	ownSrv := newServer(t, func(w http.ResponseWriter, r *http.Request) { ownHeard.record(r) })
	otherSrv := newServer(t, func(w http.ResponseWriter, r *http.Request) { other.record(r) })
	listedSrv := newServer(t, func(w http.ResponseWriter, r *http.Request) { listed.record(r) })

	var logs bytes.Buffer
	c, auth := originClient(&logs, ownSrv.URL, strings.ToUpper(listedSrv.URL)+"/")
	for _, u := range []string{ownSrv.URL + "/p", otherSrv.URL + "/p", listedSrv.URL + "/p"} {
		if _, err := c.Do(t.Context(), credentialed(u), nil); err != nil {
			t.Fatalf("Do %s: %v", u, err)
		}
	}
	for name, h := range map[string]*heard{"own origin": &ownHeard, "listed origin": &listed} {
		r := h.all()[0]
		if got := secretsIn(r); len(got) != 5 {
			t.Errorf("%s got credentials %v, want all five kinds", name, got)
		}
	}
	r := other.all()[0]
	if got := secretsIn(r); len(got) > 0 {
		t.Errorf("another origin got %v, want no credential", got)
	}
	if r.Header.Get("X-Plain") != "visible" || r.URL.Query().Get("page") != "2" || r.URL.Query().Get("sig") != "presigned-by-the-api" {
		t.Errorf("another origin got headers %v and query %q, want the harmless ones kept", r.Header, r.URL.RawQuery)
	}
	if auth.calls != 2 {
		t.Errorf("the Authenticator was called %d times, want 2 (not for the other origin)", auth.calls)
	}
	log := logs.String()
	if !strings.Contains(log, "withheld credentials") || !strings.Contains(log, "X-Secret") || !strings.Contains(log, "key") {
		t.Errorf("no debug line naming what was withheld:\n%s", log)
	}
	for _, s := range []string{originToken, originHeader, originQuery} {
		if strings.Contains(log, s) {
			t.Errorf("the log shows %q:\n%s", s, log)
		}
	}
}

func TestCredentialsWithheldOnCrossOriginRedirect(t *testing.T) {
	for _, status := range []int{http.StatusFound, http.StatusTemporaryRedirect} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			var other, own heard
			otherSrv := newServer(t, func(w http.ResponseWriter, r *http.Request) { other.record(r) })
			var ownSrv *httptest.Server
			ownSrv = newServer(t, func(w http.ResponseWriter, r *http.Request) {
				switch r.URL.Path {
				case "/away":
					http.Redirect(w, r, otherSrv.URL+"/landed?key="+originQuery+"&page=3", status)
				case "/here":
					http.Redirect(w, r, ownSrv.URL+"/landed", status)
				default:
					own.record(r)
				}
			})
			c, _ := originClient(nil, ownSrv.URL)
			for _, p := range []string{"/away", "/here"} {
				req := credentialed(ownSrv.URL + p)
				req.Method, req.Body = http.MethodPost, []byte(`{"q":"harmless"}`)
				if _, err := c.Do(t.Context(), req, nil); err != nil {
					t.Fatalf("Do %s: %v", p, err)
				}
			}
			r := other.all()[0]
			if got := secretsIn(r); len(got) > 0 {
				t.Errorf("the other origin got %v after a %d, want no credential", got, status)
			}
			if r.Header.Get("X-Plain") != "visible" || r.URL.Query().Get("page") != "3" {
				t.Errorf("the other origin got headers %v, query %q; want the harmless ones", r.Header, r.URL.RawQuery)
			}
			if got := secretsIn(own.all()[0]); len(got) != 4 { // the redirect's URL has no secret query
				t.Errorf("the same origin got %v after a %d, want every credential but the query's", got, status)
			}
		})
	}
	t.Run("307 with a secret body", func(t *testing.T) {
		var other heard
		otherSrv := newServer(t, func(w http.ResponseWriter, r *http.Request) { other.record(r) })
		ownSrv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, otherSrv.URL+"/landed", http.StatusTemporaryRedirect)
		})
		c, _ := originClient(nil, ownSrv.URL)
		req := &Request{Method: http.MethodPost, URL: ownSrv.URL, Body: []byte(`{"token":"` + originToken + `"}`)}
		_, err := c.Do(t.Context(), req, nil)
		if err == nil || !strings.Contains(err.Error(), "request body holds a secret") || strings.Contains(err.Error(), originToken) {
			t.Errorf("Do: %v, want a refusal to send the body to the other origin", err)
		}
		if len(other.all()) != 0 {
			t.Errorf("the other origin got %d requests, want none", len(other.all()))
		}
	})
}

func TestCredentialOriginsEmptyMeansRequestOrigin(t *testing.T) {
	var h heard
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) { h.record(r) })
	c, _ := originClient(nil)
	if _, err := c.Do(t.Context(), credentialed(srv.URL), nil); err != nil {
		t.Fatal(err)
	}
	if got := secretsIn(h.all()[0]); len(got) != 5 {
		t.Errorf("with no CredentialOrigins the request got %v, want every credential", got)
	}
}

func TestOriginOf(t *testing.T) {
	tests := map[string]string{
		"https://API.example.com/v1?x=1": "https://api.example.com:443",
		"https://api.example.com:443":    "https://api.example.com:443",
		"http://api.example.com":         "http://api.example.com:80",
		"http://[::1]:8080/x":            "http://[::1]:8080",
		"HTTPS://u:p@h.example:8443/":    "https://h.example:8443",
	}
	for raw, want := range tests {
		if got := Origin(raw); got != want {
			t.Errorf("Origin(%q) = %q, want %q", raw, got, want)
		}
	}
}
