package rest

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestPathStaysOnBaseOrigin tries the tricks that turn a path appended to
// base_url into another host (the second server, another port of
// 127.0.0.1): in the path itself, and in values rendered into it. Each
// either fails naming the stream, the path and the origin, or reaches
// the connector's own server; the other server never hears of it.
func TestPathStaysOnBaseOrigin(t *testing.T) {
	evil, evilSeen := newServer(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `[{"id":1}]`) })
	evilHost := strings.TrimPrefix(evil.URL, "http://")
	api, apiSeen := newServer(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `[{"id":1}]`) })
	tests := []struct {
		name, base, path, value string
		wantURI                 string // what the API receives; "" for an error
	}{
		{"userinfo trick", "", "@" + evilHost + "/x", "", ""},
		{"userinfo trick rendered", "", "{{ config.v }}/x", "@" + evilHost, ""},
		{"network-path reference", "", "//" + evilHost + "/x", "", ""},
		{"backslash", "", `\\` + evilHost + "/x", "", ""},
		{"slash backslash", "", `/\` + evilHost + "/x", "", "/%5C" + evilHost + "/x"},
		{"no leading slash", "/v1", "items", "", ""},
		{"absolute URL elsewhere", "", "http://" + evilHost + "/x", "", ""},
		{"scheme-relative rendered", "", "{{ config.v }}", "//" + evilHost + "/x", ""},
		{"dot segments rendered", "", "/items/{{ config.v }}/x", "..", "/items/%2E%2E/x"},
		{"dot dot slash rendered", "", "/items/{{ config.v }}", "../../" + evilHost, "/items/..%2F..%2F" + evilHost},
		{"at sign rendered", "", "/items/{{ config.v }}", "@" + evilHost, "/items/@" + evilHost},
		{"double slash rendered", "", "/items/{{ config.v }}", "//" + evilHost, "/items/%2F%2F" + evilHost},
		{"escaped slashes", "", "/items/%2F%2F" + evilHost, "", "/items/%2F%2F" + evilHost},
		{"backslash rendered", "", "/items/{{ config.v }}", `\\` + evilHost, "/items/%5C%5C" + evilHost},
		{"base path kept", "/v1", "/items/{{ config.v }}?expand=all", "a b", "/v1/items/a%20b?expand=all"},
		{"query only", "/v1", "?q=1", "", "/v1?q=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn := fmt.Sprintf(`name: t
base_url: %s%s
config: {v: {default: "-"}}
http: {max_attempts: 1}
streams:
  items: {path: %q}
`, api.URL, tt.base, tt.path)
			s, err := newSource(t, conn, map[string]any{"v": tt.value}, nil)
			if err != nil {
				t.Fatal(err)
			}
			before, evilBefore := len(apiSeen.all()), len(evilSeen.all())
			_, err = readAll(t.Context(), s, "items")
			if got := evilSeen.all()[evilBefore:]; len(got) > 0 {
				t.Fatalf("the other server got %d requests: %s", len(got), got[0].RequestURI)
			}
			if tt.wantURI == "" {
				if err == nil || !strings.Contains(err.Error(), "stream items: path ") || !strings.Contains(err.Error(), "would leave "+api.URL) {
					t.Errorf("error %v, want one naming the stream, the path and %s", err, api.URL)
				}
				return
			}
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			got := apiSeen.all()[before:]
			if len(got) != 1 || got[0].RequestURI != tt.wantURI {
				t.Errorf("the API got %d requests, the first for %q; want one for %q", len(got), uri(got), tt.wantURI)
			}
		})
	}
}

func uri(reqs []*http.Request) string {
	if len(reqs) == 0 {
		return ""
	}
	return reqs[0].RequestURI
}

// TestAbsolutePathOnCredentialOrigin allows an absolute URL as a path
// when its origin is one credentials may go to.
func TestAbsolutePathOnCredentialOrigin(t *testing.T) {
	files, filesSeen := newServer(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `[{"id":1}]`) })
	conn := fmt.Sprintf(`name: t
base_url: https://api.example.com
http: {credential_origins: [%q]}
streams:
  items: {path: "%s/export/{{ config.v }}"}
config: {v: {default: "-"}}
`, files.URL, files.URL)
	s, err := newSource(t, conn, map[string]any{"v": "a/b"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readAll(t.Context(), s, "items"); err != nil {
		t.Fatal(err)
	}
	if got := uri(filesSeen.all()); got != "/export/a%2Fb" {
		t.Errorf("the files origin got %q, want /export/a%%2Fb", got)
	}
}
