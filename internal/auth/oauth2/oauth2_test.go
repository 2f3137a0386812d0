package oauth2_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/auth/authtest"
	_ "github.com/ferry-dev/ferry/internal/components/all"
	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/enginetest"
)

// hubspot serves n contacts, pages of 10 with a cursor, behind the
// token endpoint's guard, and the token endpoint at /oauth/v1/token.
func hubspot(t *testing.T, o *authtest.OAuth, n int) *httptest.Server {
	mux := http.NewServeMux()
	mux.Handle("/oauth/v1/token", o)
	mux.Handle("/crm/v3/objects/contacts", o.Protect(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		after, _ := strconv.Atoi(r.URL.Query().Get("after"))
		var results []map[string]any
		for i := after; i < min(after+10, n); i++ {
			results = append(results, map[string]any{"id": strconv.Itoa(i + 1), "properties": map[string]any{"email": fmt.Sprintf("c%d@example.com", i+1)}})
		}
		page := map[string]any{"results": results}
		if after+10 < n {
			page["paging"] = map[string]any{"next": map[string]any{"after": strconv.Itoa(after + 10)}}
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(page)
	})))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func hubspotConnector(url, extra string) string {
	return fmt.Sprintf(`name: hubspot
base_url: %[1]s
config:
  client_id: {}
  client_secret: {secret: true}
  refresh_token: {secret: true}
  store_key: {secret: true, required: false}
auth:
  type: oauth2
  grant: refresh_token
  token_url: %[1]s/oauth/v1/token
  client_id: "{{ config.client_id }}"
  client_secret: "{{ config.client_secret }}"
  refresh_token: "{{ config.refresh_token }}"
  client_auth: body
%[2]s
streams:
  contacts:
    path: /crm/v3/objects/contacts
    records: results
    primary_key: id
    paginate: {type: cursor, cursor_path: paging.next.after, param: after, size: 10, size_param: limit, stop_on_missing: true}
`, url, extra)
}

const hubspotPipeline = `connector: connector.yaml
config:
  client_id: ferry-app
  client_secret: ${HUB_SECRET}
  refresh_token: ${HUB_REFRESH}
  store_key: ${HUB_KEY:-}
sync: {checkpoint_rows: 10}
`

const (
	clientSecret = "s3cret-client-secret-value"
	firstRefresh = "first-refresh-token-from-consent"
	storeKey     = "Zm9yIHRlc3RzIG9ubHk6IDMyIHJhbmRvbSBieXRlcyBoZXJl"
)

// TestRotatingRefreshToken: a HubSpot-style API whose access tokens
// expire mid-run and whose refresh tokens rotate on every use. Two runs
// in a row both succeed (the second refreshes with the token the first
// was given, kept sealed in the store), every expiry is one refresh and
// one retried request, and no secret appears in any log line, error,
// state row or file the runs wrote.
func TestRotatingRefreshToken(t *testing.T) {
	o := authtest.NewOAuth("ferry-app", clientSecret)
	o.Rotate, o.Uses, o.TTL = true, 2, 30*time.Minute
	o.AddRefreshToken(firstRefresh)
	api := hubspot(t, o, 50)
	p := enginetest.New(t, enginetest.Config{
		Connector: hubspotConnector(api.URL, `  store: {file: tokens/hubspot.token, key: "{{ config.store_key }}"}`),
		Pipeline:  hubspotPipeline,
		Env:       map[string]string{"HUB_SECRET": clientSecret, "HUB_REFRESH": firstRefresh, "HUB_KEY": storeKey},
	})
	var texts = map[string]string{}
	for run := 1; run <= 2; run++ {
		before := o.TokenRequests.Load()
		res := p.Run().Check(t)
		if st := res.Stream("contacts"); st.Status != dest.Succeeded || st.Records != 50 {
			t.Fatalf("run %d: %+v", run, st)
		}
		// 5 pages, each token good for 2 requests: tokens expire mid-run,
		// each expiry costs one refused request and one refresh.
		if got := o.TokenRequests.Load() - before; got < 2 || got > 4 {
			t.Fatalf("run %d made %d token requests", run, got)
		}
		texts[fmt.Sprintf("run %d summary", run)] = fmt.Sprintf("%+v", res.Summary)
	}
	if got := p.Rows("contacts", "id"); len(got) != 50 {
		t.Fatalf("%d rows", len(got))
	}
	if o.Refused.Load() == 0 {
		t.Fatal("no access token expired mid-run: the test proves nothing")
	}
	raw, err := os.ReadFile(filepath.Join(p.Dir(), "tokens", "hubspot.token"))
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(p.Dir(), "tokens", "hubspot.token")); fi.Mode().Perm() != 0o600 {
		t.Fatalf("the token file has mode %v", fi.Mode().Perm())
	}
	var sealed struct{ V int }
	if json.Unmarshal(raw, &sealed) != nil || sealed.V != 1 {
		t.Fatalf("the token file is not sealed: %s", raw)
	}
	texts["logs"] = p.Logs()
	for _, e := range p.States("") {
		texts["state "+e.Stream+" "+e.Partition] = string(e.State)
	}
	authtest.NoSecrets(t, append(o.Issued(), clientSecret, storeKey), texts, p.Dir())

	// A wrong store key is a clear error, not a silent start from the
	// spent refresh token.
	p.SetEnv("HUB_KEY", "another key of enough length")
	res := p.Run()
	if res.Err == nil || !strings.Contains(res.Err.Error(), "cannot be decrypted with auth.store.key") {
		t.Fatalf("a wrong key: %v", res.Err)
	}
}

// TestRotatingRefreshTokenWithoutStore: without a store, the second run
// fails with the token endpoint's invalid_grant and a message that
// names the fix.
func TestRotatingRefreshTokenWithoutStore(t *testing.T) {
	o := authtest.NewOAuth("ferry-app", clientSecret)
	o.Rotate = true
	o.AddRefreshToken(firstRefresh)
	api := hubspot(t, o, 15)
	p := enginetest.New(t, enginetest.Config{
		Connector: hubspotConnector(api.URL, ""),
		Pipeline:  hubspotPipeline,
		Env:       map[string]string{"HUB_SECRET": clientSecret, "HUB_REFRESH": firstRefresh},
	})
	p.Run().Check(t)
	res := p.Run()
	if res.Err == nil || !strings.Contains(res.Err.Error(), "invalid_grant") || !strings.Contains(res.Err.Error(), "set auth.store") ||
		!strings.Contains(res.Err.Error(), "refresh token is invalid, expired or was already used") {
		t.Fatalf("err = %v", res.Err)
	}
	if !strings.Contains(p.Logs(), "the token endpoint rotated the refresh token") {
		t.Fatal("the first run did not warn that the refresh token rotated")
	}
}

// TestWrongClientSecret: the token endpoint's invalid_client fails the
// run with its message and a hint, after one token request however many
// streams and partitions want a token: no retry storm.
func TestWrongClientSecret(t *testing.T) {
	o := authtest.NewOAuth("ferry-app", clientSecret)
	mux := http.NewServeMux()
	mux.Handle("/token", o)
	var api atomic.Int64
	mux.Handle("/", o.Protect(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { api.Add(1) })))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	conn := fmt.Sprintf(`name: m2m
base_url: %[1]s
config:
  client_secret: {secret: true}
auth:
  type: oauth2
  grant: client_credentials
  token_url: %[1]s/token
  client_id: ferry-app
  client_secret: "{{ config.client_secret }}"
  client_auth: header
  scopes: [read:users]
  audience: https://api.example.com
streams:
  users: {path: /users}
  groups: {path: /groups}
  roles: {path: /roles}
`, srv.URL)
	p := enginetest.New(t, enginetest.Config{Connector: conn, Pipeline: "connector: connector.yaml\nconfig:\n  client_secret: ${SECRET}\n",
		Env: map[string]string{"SECRET": "wrong-client-secret"}})
	res := p.Run()
	if res.Err == nil {
		t.Fatal("a wrong client secret succeeded")
	}
	msg := res.Err.Error()
	for _, want := range []string{"401 Unauthorized: invalid_client", `the API says "Client authentication failed"`, "check client_id and client_secret"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the error does not say %q: %s", want, msg)
		}
	}
	if n := o.TokenRequests.Load(); n != 1 || api.Load() != 0 {
		t.Fatalf("%d token requests and %d API requests for 3 streams: want 1 and 0", n, api.Load())
	}
	authtest.NoSecrets(t, []string{"wrong-client-secret"}, map[string]string{"error": msg, "logs": p.Logs()}, p.Dir())
}
