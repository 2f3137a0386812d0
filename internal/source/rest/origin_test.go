package rest

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/internal/redact"
)

const (
	restToken  = "tok-REST-0r1g1n-777" // bearer token, or API key
	restHeader = "hdr-REST-0r1g1n-888" // a secret value sent in http.headers
)

// credentialsOf lists the credentials a request the REST source sent
// carries.
func credentialsOf(r *http.Request) []string {
	var found []string
	for k, vs := range r.Header {
		for _, v := range vs {
			if strings.Contains(v, restToken) || strings.Contains(v, restHeader) {
				found = append(found, "header "+k)
			}
		}
	}
	if strings.Contains(r.URL.RawQuery, restToken) {
		found = append(found, "query")
	}
	slices.Sort(found)
	return found
}

// TestCredentialsOnlyToOwnOrigin pages from the connector's API to
// another port of 127.0.0.1 (a second server) and back, with next_url
// and with Link, for each way of sending a key: the other origin gets no
// credential of any kind, the connector's own origin gets them all, and
// an origin listed in http.credential_origins gets them too.
func TestCredentialsOnlyToOwnOrigin(t *testing.T) {
	auths := map[string]string{
		"bearer":         `{type: bearer, token: "{{ config.token }}"}`,
		"api_key header": `{type: api_key, name: X-Api-Key, value: "{{ config.token }}"}`,
		"api_key query":  `{type: api_key, in: query, name: api_key, value: "{{ config.token }}"}`,
	}
	for _, style := range []string{"next_url", "link_header"} {
		for name, auth := range auths {
			for _, listed := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/listed=%v", style, name, listed), func(t *testing.T) {
					var api, other string
					page := func(w http.ResponseWriter, id int, next string) {
						if style == "link_header" && next != "" {
							w.Header().Set("Link", "<"+next+`>; rel="next"`)
						}
						if style == "next_url" && next != "" {
							fmt.Fprintf(w, `{"data":[{"id":%d}],"next":%q}`, id, next)
							return
						}
						fmt.Fprintf(w, `{"data":[{"id":%d}]}`, id)
					}
					apiSrv, apiSeen := newServer(t, func(w http.ResponseWriter, r *http.Request) {
						if r.URL.Query().Get("page") == "3" {
							page(w, 3, "")
							return
						}
						page(w, 1, other+"/items?page=2")
					})
					otherSrv, otherSeen := newServer(t, func(w http.ResponseWriter, r *http.Request) {
						page(w, 2, api+"/items?page=3")
					})
					api, other = apiSrv.URL, otherSrv.URL
					origins := ""
					if listed {
						origins = ", credential_origins: [\"" + other + "\"]"
					}
					paginate := "{type: link_header}"
					if style == "next_url" {
						paginate = "{type: next_url, next_path: next}"
					}
					conn := fmt.Sprintf(`name: t
base_url: %s
config: {token: {secret: true}, hdr: {secret: true}}
auth: %s
http: {max_attempts: 1, headers: {X-Custom-Secret: "{{ config.hdr }}", X-Plain: visible}%s}
streams:
  items: {path: /items, records: data, paginate: %s}
`, api, auth, origins, paginate)
					var logs bytes.Buffer
					red := redact.New(restToken, restHeader)
					c, err := newSourceWithLog(t, conn, map[string]any{"token": restToken, "hdr": restHeader}, red,
						slog.New(redact.Handler(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}), red)))
					if err != nil {
						t.Fatal(err)
					}
					pages, err := readAll(t.Context(), c, "items")
					if err != nil || len(pages) != 3 {
						t.Fatalf("read %d pages: %v", len(pages), err)
					}
					for _, r := range apiSeen.all() {
						if got := credentialsOf(r); len(got) != 2 {
							t.Errorf("the connector's origin got %v for %s, want the key and the secret header", got, r.URL)
						}
					}
					r := otherSeen.all()[0]
					got := credentialsOf(r)
					switch {
					case listed && len(got) != 2:
						t.Errorf("a listed origin got %v, want the key and the secret header", got)
					case !listed && len(got) != 0:
						t.Errorf("another origin got %v, want no credential", got)
					case !listed && (r.Header.Get("Authorization") != "" || r.Header.Get("X-Plain") != "visible"):
						t.Errorf("another origin got Authorization %q, X-Plain %q", r.Header.Get("Authorization"), r.Header.Get("X-Plain"))
					}
					if !listed && !strings.Contains(logs.String(), "withheld credentials") {
						t.Errorf("no debug line:\n%s", logs.String())
					}
					if strings.Contains(logs.String(), restToken) || strings.Contains(logs.String(), restHeader) {
						t.Errorf("the log shows a secret:\n%s", logs.String())
					}
				})
			}
		}
	}
}

// TestNextURLEchoingTheKey has the API put the key it was given into the
// next page's URL, on another origin: the key is dropped from it.
func TestNextURLEchoingTheKey(t *testing.T) {
	var api string
	otherSrv, otherSeen := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"data":[{"id":2}]}`)
	})
	apiSrv, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"data":[{"id":1}],"next":"%s/items?page=2&api_key=%s"}`, otherSrv.URL, r.URL.Query().Get("api_key"))
	})
	api = apiSrv.URL
	conn := fmt.Sprintf(`name: t
base_url: %s
config: {token: {secret: true}}
auth: {type: api_key, in: query, name: api_key, value: "{{ config.token }}"}
streams:
  items: {path: /items, records: data, paginate: {type: next_url, next_path: next}}
`, api)
	s, err := newSource(t, conn, map[string]any{"token": restToken}, redact.New(restToken))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readAll(t.Context(), s, "items"); err != nil {
		t.Fatal(err)
	}
	r := otherSeen.all()[0]
	if got := credentialsOf(r); len(got) != 0 || r.URL.Query().Get("page") != "2" {
		t.Errorf("the other origin got %v, query %q; want no key and page=2", got, r.URL.RawQuery)
	}
}

func TestCredentialOriginsChecked(t *testing.T) {
	for _, bad := range []string{"https://files.example.com/path", "files.example.com", "ftp://files.example.com", "https://u:p@files.example.com"} {
		conn := fmt.Sprintf(`name: t
base_url: https://api.example.com
config: {o: {default: %q}}
http: {credential_origins: ["{{ config.o }}"]}
streams:
  items: {path: /items}
`, bad)
		_, err := newSource(t, conn, map[string]any{"o": bad}, nil)
		if err == nil || !strings.Contains(err.Error(), "http.credential_origins[0]") || !strings.Contains(err.Error(), "origin") || strings.Contains(err.Error(), ":p@") {
			t.Errorf("credential origin %q: %v, want an error naming the setting", bad, err)
		}
	}
}
