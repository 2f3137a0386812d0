package rest

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestMaxBodyBytes checks http.max_body_bytes bounds a page, and that
// the error for a larger one names it.
func TestMaxBodyBytes(t *testing.T) {
	page := `{"data":[` + strings.Repeat(`{"id":1},`, 300) + `{"id":2}]}`
	srv, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, page)
	})
	for limit, wantErr := range map[int]bool{len(page) - 1: true, len(page): false} {
		conn := fmt.Sprintf(`name: t
base_url: %s
http: {max_body_bytes: %d}
streams:
  items: {path: /items, records: data}
`, srv.URL, limit)
		s, err := newSource(t, conn, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		pages, err := readAll(t.Context(), s, "items")
		if wantErr {
			want := fmt.Sprintf("response body too large: more than %d bytes (raise http.max_body_bytes to allow more)", limit)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("max_body_bytes %d: %v, want the body too large, naming the setting", limit, err)
			}
			continue
		}
		if err != nil || len(pages) != 1 || len(pages[0].Records) != 301 {
			t.Errorf("max_body_bytes %d: %d pages, %v; want the page", limit, len(pages), err)
		}
	}
}
