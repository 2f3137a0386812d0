package rest

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/internal/redact"
)

// TestWrite sends each declared operation once, with the connector's
// headers and a body built from its template, and reads the record back.
func TestWrite(t *testing.T) {
	var got []string
	attempts := 0
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		attempts++
		b, _ := io.ReadAll(r.Body)
		got = append(got, r.Method+" "+r.URL.EscapedPath()+" "+r.Header.Get("X-Shop")+" "+string(b))
		if strings.Contains(string(b), "boom") {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`{"error":"down"}`))
			return
		}
		w.Write([]byte(`{"data":{"id":7,"name":"x"}}`))
	}))
	defer api.Close()
	conn := `name: w
base_url: ` + api.URL + `
config:
  shop: {type: string}
http: {headers: {X-Shop: "{{ config.shop }}"}}
streams:
  items:
    path: /items
    primary_key: id
    writes:
      create: {path: /items, body: {item: "{{ body }}", shop: "{{ config.shop }}"}, record: data}
      update: {method: PUT, path: "/items/{{ key.id }}", record: data}
`
	s, err := newSource(t, conn, map[string]any{"shop": "s1"}, redact.New())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.CanWrite("items", "create") || !s.CanWrite("items", "update") || s.CanWrite("items", "delete") || s.CanWrite("other", "create") {
		t.Fatal("CanWrite does not follow the declared operations")
	}
	res, err := s.Write(context.Background(), "items", "create", nil, map[string]any{"name": "x"})
	if err != nil || res.Status != 200 || string(res.Record) != `{"id":7,"name":"x"}` {
		t.Fatalf("create: %+v %v", res, err)
	}
	if _, err := s.Write(context.Background(), "items", "update", map[string]any{"id": "a/b"}, map[string]any{"name": "y"}); err != nil {
		t.Fatal(err)
	}
	want := []string{`POST /items s1 {"item":{"name":"x"},"shop":"s1"}`, `PUT /items/a%2Fb s1 {"name":"y"}`}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("the API received:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// A refusal is returned as it is, and not retried.
	attempts = 0
	res, err = s.Write(context.Background(), "items", "update", map[string]any{"id": 1}, map[string]any{"name": "boom"})
	if err != nil || res.Status != 503 || string(res.Body) != `{"error":"down"}` || res.Record != nil || attempts != 1 {
		t.Fatalf("a refused write: %+v %v after %d attempts", res, err, attempts)
	}
	if _, err := s.Write(context.Background(), "items", "delete", map[string]any{"id": 1}, nil); err == nil {
		t.Fatal("an undeclared operation was sent")
	}
	bad := strings.Replace(conn, `path: /items, body`, `path: "/items/{{ nope( }}", body`, 1)
	if _, err := newSource(t, bad, map[string]any{"shop": "s1"}, redact.New()); err == nil || !strings.Contains(err.Error(), "writes.create.path") {
		t.Fatalf("a bad template: %v", err)
	}
}
