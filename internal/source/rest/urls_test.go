package rest

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// passwordPieces are passwords whose '/', '#', '?', '@' or ':' break a
// URL's userinfo when not percent-encoded, and the parts of each that an
// error quoting a piece of the URL would show.
var passwordPieces = map[string][]string{
	"S3cr3t/Part9x":           {"S3cr3t", "Part9x"},
	"S3cr3t#Part9x":           {"S3cr3t", "Part9x"},
	"S3cr3t?Part9x":           {"S3cr3t", "Part9x"},
	"S3cr3t@Part9x":           {"S3cr3t", "Part9x"},
	"S3cr3t:Part9x":           {"S3cr3t", "Part9x"},
	"Ab1/Cd2#Ef3?Gh4@Ij5:Kl6": {"Ab1", "Cd2", "Ef3", "Gh4", "Ij5", "Kl6"},
}

// TestURLErrorsHidePasswords gives the REST source URLs whose password
// holds a character that must be percent-encoded, in base_url and in a
// next page URL from the API, and checks no error shows any piece of it.
func TestURLErrorsHidePasswords(t *testing.T) {
	srv, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprint(w, `{"error":"down"}`)
	})
	host := strings.TrimPrefix(srv.URL, "http://")
	for pw, pieces := range passwordPieces {
		t.Run("base_url "+pw, func(t *testing.T) {
			conn := `name: t
base_url: "{{ config.base }}"
config: {base: {}}
http: {max_attempts: 1}
streams:
  items: {path: /items}
`
			var text string
			s, err := newSource(t, conn, map[string]any{"base": "http://ferry:" + pw + "@" + host}, nil)
			if err == nil {
				_, err = readAll(t.Context(), s, "items")
			}
			if err == nil {
				t.Fatal("no error")
			}
			text = err.Error()
			for _, p := range pieces {
				if strings.Contains(text, p) {
					t.Errorf("error %q shows %q", text, p)
				}
			}
		})
		t.Run("next_url "+pw, func(t *testing.T) {
			api, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprintf(w, `{"data":[{"id":1}],"next":"http://ferry:%s@%s/items?page=2"}`, pw, host)
			})
			conn := fmt.Sprintf(`name: t
base_url: %s
http: {max_attempts: 1}
streams:
  items: {path: /items, records: data, paginate: {type: next_url, next_path: next}}
`, api.URL)
			s, err := newSource(t, conn, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = readAll(t.Context(), s, "items")
			if err == nil {
				t.Fatal("no error")
			}
			for _, p := range pieces {
				if strings.Contains(err.Error(), p) {
					t.Errorf("error %q shows %q", err, p)
				}
			}
		})
	}
}
