package oauth2_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/ferry-dev/ferry/internal/auth/authtest"
	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/enginetest"
)

// TestTokenRequestParameters: scopes, audience and the extra params
// (templated from config) reach the token endpoint on every token
// request of both grants — the first one and those made when a token
// expired mid-run — with the grant's own fields beside them.
func TestTokenRequestParameters(t *testing.T) {
	for _, grant := range []string{"client_credentials", "refresh_token"} {
		t.Run(grant, func(t *testing.T) {
			o := authtest.NewOAuth("ferry-app", clientSecret)
			o.Uses = 1 // every token serves one request: a run makes several token requests
			o.AddRefreshToken(firstRefresh)
			mux := http.NewServeMux()
			mux.Handle("/token", o)
			mux.Handle("/items", o.Protect(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				page := r.URL.Query().Get("page")
				if page == "" {
					page = "1"
				}
				body := map[string]any{"items": []map[string]any{{"id": page}}}
				if page != "3" {
					body["next"] = map[string]int{"1": 2, "2": 3}[page]
				}
				w.Header().Set("Content-Type", "application/json")
				json.NewEncoder(w).Encode(body)
			})))
			srv := httptest.NewServer(mux)
			defer srv.Close()
			extra := "  client_auth: header\n"
			if grant == "refresh_token" {
				extra = "  client_auth: body\n  refresh_token: \"{{ config.refresh_token }}\"\n"
			}
			conn := fmt.Sprintf(`name: m2m
base_url: %[1]s
config:
  client_secret: {secret: true}
  refresh_token: {secret: true, required: false}
  tenant: {}
auth:
  type: oauth2
  grant: %[2]s
  token_url: %[1]s/token
  client_id: ferry-app
  client_secret: "{{ config.client_secret }}"
%[3]s  scopes: [read:users, "read:groups"]
  audience: "https://api.example.com/{{ config.tenant }}"
  params:
    resource: https://graph.example.com
    tenant: "{{ config.tenant }}"
streams:
  items:
    path: /items
    records: items
    primary_key: id
    paginate: {type: cursor, cursor_path: next, param: page}
`, srv.URL, grant, extra)
			p := enginetest.New(t, enginetest.Config{Connector: conn,
				Pipeline: "connector: connector.yaml\nconfig:\n  client_secret: ${SECRET}\n  refresh_token: ${REFRESH}\n  tenant: acme\n",
				Env:      map[string]string{"SECRET": clientSecret, "REFRESH": firstRefresh}})
			res := p.Run().Check(t)
			if st := res.Stream("items"); st.Status != dest.Succeeded || st.Records != 3 {
				t.Fatalf("%+v", st)
			}
			forms := o.Forms()
			if len(forms) < 3 || o.Refused.Load() == 0 {
				t.Fatalf("%d token requests, %d refused API requests: want a token request per page and tokens expiring mid-run", len(forms), o.Refused.Load())
			}
			for i, f := range forms {
				want := map[string]string{
					"grant_type": grant,
					"scope":      "read:users read:groups",
					"audience":   "https://api.example.com/acme",
					"resource":   "https://graph.example.com",
					"tenant":     "acme",
				}
				if grant == "refresh_token" {
					want["client_id"] = "ferry-app" // client_auth: body
				}
				for k, v := range want {
					if got := f[k]; len(got) != 1 || got[0] != v {
						t.Errorf("token request %d: %s = %q, want %q (form %v)", i+1, k, got, v, f)
					}
				}
				if grant == "refresh_token" && f.Get("refresh_token") == "" {
					t.Errorf("token request %d of the refresh grant has no refresh_token", i+1)
				}
				if grant == "client_credentials" && f.Has("refresh_token") {
					t.Errorf("token request %d of client_credentials sent a refresh_token", i+1)
				}
			}
		})
	}
}
