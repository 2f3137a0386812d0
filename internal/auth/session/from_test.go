package session_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ferry-dev/ferry/internal/auth/authtest"
	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/enginetest"
)

// TestSessionTokenFromHeaderAndCookie: the token is taken from a
// response header (Keystone's X-Subject-Token, the body says nothing of
// it) or from a cookie the login sets (a JSESSIONID beside others, with
// attributes), and sent on later requests as configured; when a session
// expires mid-run the scheme logs in again and the run ends exact.
func TestSessionTokenFromHeaderAndCookie(t *testing.T) {
	cases := []struct {
		name, token, send string
		give              func(w http.ResponseWriter, tok string)
		carried           func(r *http.Request) string
	}{
		{
			name:  "header",
			token: "{header: X-Subject-Token}",
			send:  "{header: X-Auth-Token, prefix: \"\"}",
			give: func(w http.ResponseWriter, tok string) {
				w.Header().Set("X-Subject-Token", tok)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(201)
				fmt.Fprint(w, `{"token":{"methods":["password"],"expires_at":"2030-01-01T00:00:00Z"}}`)
			},
			carried: func(r *http.Request) string { return r.Header.Get("X-Auth-Token") },
		},
		{
			name:  "cookie",
			token: "{cookie: JSESSIONID}",
			send:  "{cookie: JSESSIONID}",
			give: func(w http.ResponseWriter, tok string) {
				http.SetCookie(w, &http.Cookie{Name: "atlassian.xsrf.token", Value: "xsrf-not-the-session", Path: "/"})
				http.SetCookie(w, &http.Cookie{Name: "JSESSIONID", Value: tok, Path: "/", HttpOnly: true, Secure: true, MaxAge: 3600})
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprint(w, `{"session":{"name":"JSESSIONID"}}`)
			},
			carried: func(r *http.Request) string {
				if c, err := r.Cookie("JSESSIONID"); err == nil {
					return c.Value
				}
				return ""
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			sessions := map[string]int{} // token → requests left
			var logins, refused atomic.Int64
			mux := http.NewServeMux()
			mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
				n := logins.Add(1)
				if r.ParseForm() != nil || r.PostForm.Get("username") != "ann" || r.PostForm.Get("password") != "pa55word-of-ann" {
					w.WriteHeader(401)
					fmt.Fprint(w, `{"message":"wrong credentials"}`)
					return
				}
				tok := fmt.Sprintf("session-%s-%d-0123456789", tc.name, n)
				mu.Lock()
				sessions[tok] = 2
				mu.Unlock()
				tc.give(w, tok)
			})
			mux.HandleFunc("GET /items", func(w http.ResponseWriter, r *http.Request) {
				tok := tc.carried(r)
				mu.Lock()
				left := sessions[tok]
				if left > 0 {
					sessions[tok] = left - 1
				}
				mu.Unlock()
				if left == 0 {
					refused.Add(1)
					w.WriteHeader(401)
					fmt.Fprint(w, `{"message":"session expired"}`)
					return
				}
				page, _ := strconv.Atoi(r.URL.Query().Get("page"))
				page = max(page, 1)
				var items []map[string]any
				for i := (page - 1) * 5; i < min(page*5, 23); i++ {
					items = append(items, map[string]any{"id": strconv.Itoa(i + 1)})
				}
				w.Header().Set("Content-Type", "application/json")
				json.NewEncoder(w).Encode(map[string]any{"items": items})
			})
			srv := httptest.NewServer(mux)
			defer srv.Close()
			conn := fmt.Sprintf(`name: sess
base_url: %s
config:
  user: {}
  password: {secret: true}
auth:
  type: session
  login:
    url: /login
    form: {username: "{{ config.user }}", password: "{{ config.password }}"}
  token: %s
  send: %s
streams:
  items:
    path: /items
    records: items
    primary_key: id
    paginate: {type: page_number, param: page, size: 5, size_param: per_page, stop_on_short_page: true}
`, srv.URL, tc.token, tc.send)
			p := enginetest.New(t, enginetest.Config{Connector: conn,
				Pipeline: "connector: connector.yaml\nconfig:\n  user: ann\n  password: ${PW}\n",
				Env:      map[string]string{"PW": "pa55word-of-ann"}})
			res := p.Run().Check(t)
			if st := res.Stream("items"); st.Status != dest.Succeeded || st.Records != 23 {
				t.Fatalf("%+v", st)
			}
			if got := len(p.Rows("items", "id")); got != 23 {
				t.Fatalf("%d rows", got)
			}
			// 5 pages, sessions good for 2 requests: 3 logins, and each of
			// the 2 expiries is one refused request made again.
			if logins.Load() != 3 || refused.Load() != 2 {
				t.Fatalf("%d logins and %d refused requests: want 3 and 2", logins.Load(), refused.Load())
			}
			var secrets []string
			for i := 1; i <= 3; i++ {
				secrets = append(secrets, fmt.Sprintf("session-%s-%d-0123456789", tc.name, i))
			}
			authtest.NoSecrets(t, append(secrets, "pa55word-of-ann"), map[string]string{"logs": p.Logs(), "summary": fmt.Sprintf("%+v", res.Summary)}, p.Dir())
		})
	}
}
