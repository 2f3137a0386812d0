package session_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ferry-dev/ferry/internal/auth/authtest"
	_ "github.com/ferry-dev/ferry/internal/components/all"
	"github.com/ferry-dev/ferry/internal/enginetest"
)

// tableau serves a Tableau-style API: POST /auth/signin with JSON
// credentials answers a token, which later requests carry in
// X-Tableau-Auth; a session serves uses requests, then is refused with
// a 401 (it expired).
func tableau(t *testing.T, password string, uses, expired int) (*httptest.Server, *atomic.Int64) {
	var mu sync.Mutex
	sessions := map[string]int{}
	var logins atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/3.22/auth/signin", func(w http.ResponseWriter, r *http.Request) {
		logins.Add(1)
		var body struct {
			Credentials struct {
				Name, Password string
				Site           struct{ ContentURL string }
			}
		}
		json.NewDecoder(r.Body).Decode(&body)
		w.Header().Set("Content-Type", "application/json")
		if body.Credentials.Name != "ann" || body.Credentials.Password != password {
			w.WriteHeader(401)
			fmt.Fprint(w, `{"error":{"summary":"Signin Error","detail":"Error signing in to Tableau Server","code":"401001"}}`)
			return
		}
		mu.Lock()
		tok := fmt.Sprintf("session-token-%d-abcdef", logins.Load())
		sessions[tok] = uses
		mu.Unlock()
		fmt.Fprintf(w, `{"credentials":{"token":%q,"site":{"id":"s1","contentUrl":%q}}}`, tok, body.Credentials.Site.ContentURL)
	})
	mux.HandleFunc("GET /api/3.22/sites/s1/workbooks", func(w http.ResponseWriter, r *http.Request) {
		tok := r.Header.Get("X-Tableau-Auth")
		mu.Lock()
		left := sessions[tok]
		if left > 0 {
			sessions[tok] = left - 1
		}
		mu.Unlock()
		if left == 0 {
			w.WriteHeader(expired)
			fmt.Fprint(w, `{"error":{"summary":"Unauthorized","detail":"Authentication token expired","code":"401002"}}`)
			return
		}
		var page int
		fmt.Sscan(r.URL.Query().Get("pageNumber"), &page)
		var wb []map[string]any
		for i := (page - 1) * 5; i < min(page*5, 23); i++ {
			wb = append(wb, map[string]any{"id": fmt.Sprint(i + 1)})
		}
		json.NewEncoder(w).Encode(map[string]any{"workbooks": map[string]any{"workbook": wb}})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, &logins
}

func tableauConnector(url string) string {
	return fmt.Sprintf(`name: tableau
base_url: %s/api/3.22
config:
  user: {}
  password: {secret: true}
auth:
  type: session
  login:
    url: /auth/signin
    body: {credentials: {name: "{{ config.user }}", password: "{{ config.password }}", site: {contentUrl: ""}}}
  token: {path: credentials.token}
  send: {header: X-Tableau-Auth, prefix: ""}
streams:
  workbooks:
    path: /sites/s1/workbooks
    records: workbooks.workbook
    primary_key: id
    paginate: {type: page_number, param: pageNumber, size: 5, size_param: pageSize, stop_on_short_page: true}
`, url)
}

// TestSessionLogin: the login's token is sent on every request; when
// the session expires mid-run the scheme logs in again once and the
// request is made again; no token or password shows anywhere.
func TestSessionLogin(t *testing.T) {
	srv, logins := tableau(t, "pa55word-of-ann", 2, 401)
	p := enginetest.New(t, enginetest.Config{Connector: tableauConnector(srv.URL),
		Pipeline: "connector: connector.yaml\nconfig:\n  user: ann\n  password: ${TABLEAU_PASSWORD}\n",
		Env:      map[string]string{"TABLEAU_PASSWORD": "pa55word-of-ann"}})
	res := p.Run().Check(t)
	if got := len(p.Rows("workbooks", "id")); got != 23 {
		t.Fatalf("%d rows", got)
	}
	if logins.Load() != 3 {
		t.Fatalf("%d logins for 5 pages of sessions good for 2 requests", logins.Load())
	}
	var secrets []string
	for i := 1; i <= 3; i++ {
		secrets = append(secrets, fmt.Sprintf("session-token-%d-abcdef", i))
	}
	authtest.NoSecrets(t, append(secrets, "pa55word-of-ann"), map[string]string{"logs": p.Logs(), "summary": fmt.Sprintf("%+v", res.Summary)}, p.Dir())
}

// TestSessionLoginRefused: a wrong password fails the run with the
// API's own message, after one login.
func TestSessionLoginRefused(t *testing.T) {
	srv, logins := tableau(t, "right", 2, 401)
	p := enginetest.New(t, enginetest.Config{Connector: tableauConnector(srv.URL),
		Pipeline: "connector: connector.yaml\nconfig:\n  user: ann\n  password: ${TABLEAU_PASSWORD}\n",
		Env:      map[string]string{"TABLEAU_PASSWORD": "wrong"}})
	res := p.Run()
	if res.Err == nil || !strings.Contains(res.Err.Error(), `the API says "Error signing in to Tableau Server"`) || logins.Load() != 1 {
		t.Fatalf("err = %v, %d logins", res.Err, logins.Load())
	}
}

// TestSessionRefreshRule: an API that answers an expired session with a
// 403 is renewed by a rule with action refresh_auth.
func TestSessionRefreshRule(t *testing.T) {
	srv, logins := tableau(t, "pw", 2, 403)
	conn := tableauConnector(srv.URL) + `    rules:
      - {status: [403], when: 'body?.error?.code == "401002"', action: refresh_auth}
`
	p := enginetest.New(t, enginetest.Config{Connector: conn,
		Pipeline: "connector: connector.yaml\nconfig:\n  user: ann\n  password: ${TABLEAU_PASSWORD}\n",
		Env:      map[string]string{"TABLEAU_PASSWORD": "pw"}})
	p.Run().Check(t)
	if got := len(p.Rows("workbooks", "id")); got != 23 || logins.Load() != 3 {
		t.Fatalf("%d rows, %d logins", got, logins.Load())
	}
}
