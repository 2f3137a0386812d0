package cli

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestInitFromFlags writes files that validate, refuses to overwrite them,
// and the interactive form asks the same questions.
func TestInitFromFlags(t *testing.T) {
	dir := t.TempDir()
	code, out, errs := ferry(t, "init", "--name", "acme", "--base-url", "https://api.acme.example/v2", "--auth", "api_key", "--records", "data",
		"--paginate", "cursor", "--stream", "users=/users", "--stream", "orders=/orders", "--dir", dir)
	if code != 0 || !strings.Contains(out, "wrote ") {
		t.Fatalf("init: %d\n%s%s", code, out, errs)
	}
	t.Setenv("ACME_API_KEY", "k")
	code, out, errs = ferry(t, "validate", filepath.Join(dir, "acme.connector.yaml"), filepath.Join(dir, "acme.pipeline.yaml"))
	if code != 0 {
		t.Fatalf("validate: %d\n%s%s", code, out, errs)
	}
	if code, _, errs = ferry(t, "init", "--name", "acme", "--base-url", "https://x", "--dir", dir); code != 2 || !strings.Contains(errs, "exists") {
		t.Fatalf("init over existing files: %d %s", code, errs)
	}
	var o, e bytes.Buffer
	answers := "shop\nhttp://127.0.0.1:9/v1\nnone\nresults\npage_number\n\ncustomers=/customers\n\n"
	code = runWith(context.Background(), []string{"init", "--dir", dir}, strings.NewReader(answers), &o, &e, "ferry")
	if code != 0 {
		t.Fatalf("interactive init: %d\n%s%s", code, o.String(), e.String())
	}
	conn, _ := os.ReadFile(filepath.Join(dir, "shop.connector.yaml"))
	for _, w := range []string{"name: shop", "records: results", "type: page_number", "customers:\n    path: /customers"} {
		if !strings.Contains(string(conn), w) {
			t.Fatalf("interactive connector lacks %q:\n%s", w, conn)
		}
	}
	if code, _, errs = ferry(t, "validate", filepath.Join(dir, "shop.connector.yaml"), filepath.Join(dir, "shop.pipeline.yaml")); code != 0 {
		t.Fatalf("validate interactive files: %s", errs)
	}
}

// TestImportOpenAPI imports a document describing a local API, then syncs
// the connector it wrote against that API: the tables hold exactly what
// the API served, the child stream included.
func TestImportOpenAPI(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/customers", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer t0k" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		page, _ := strconv.Atoi(r.URL.Query().Get("page"))
		if page == 1 {
			fmt.Fprint(w, `{"data":[{"id":1,"email":"a@x","updated_at":"2024-01-01T00:00:00Z"},{"id":2,"email":"b@x","updated_at":"2024-01-02T00:00:00Z"}],"has_more":true}`)
			return
		}
		fmt.Fprint(w, `{"data":[{"id":3,"email":"c@x","updated_at":"2024-01-03T00:00:00Z"}],"has_more":false}`)
	})
	mux.HandleFunc("/v1/customers/{id}/orders", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if r.URL.Query().Get("after") == "" && id == "2" {
			fmt.Fprintf(w, `{"orders":[{"id":"o-%s-1","total":5}],"paging":{"next_cursor":"n"}}`, id)
			return
		}
		if id == "2" {
			fmt.Fprintf(w, `{"orders":[{"id":"o-%s-2","total":7.5}],"paging":{}}`, id)
			return
		}
		fmt.Fprint(w, `{"orders":[],"paging":{}}`)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	doc, err := os.ReadFile("../openapi/testdata/shop.openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	local := strings.Replace(string(doc), "  - url: https://{region}.shop.example.com/v1\n    variables:\n      region: {default: eu}\n", "  - url: "+srv.URL+"/v1\n", 1)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "shop.openapi.yaml"), []byte(local), 0o644)
	code, out, errs := ferry(t, "import", "openapi", filepath.Join(dir, "shop.openapi.yaml"), "-o", filepath.Join(dir, "shop.connector.yaml"))
	if code != 0 || !strings.Contains(out, "4 streams (customers, events, orders, products)") {
		t.Fatalf("import: %d\n%s%s", code, out, errs)
	}
	os.WriteFile(filepath.Join(dir, "p.yaml"), []byte("connector: shop.connector.yaml\nconfig: {token: \"${TOK}\"}\ndestination: {type: sqlite, path: out.db}\nstreams: {customers: {}, orders: {}}\n"), 0o644)
	t.Setenv("TOK", "t0k")
	if code, out, errs = ferry(t, "run", "-q", filepath.Join(dir, "p.yaml")); code != 0 {
		t.Fatalf("run the imported connector: %d\n%s%s", code, out, errs)
	}
	code, out, _ = ferry(t, "query", filepath.Join(dir, "out.db"), "SELECT group_concat(id || ':' || email, ',') FROM (SELECT * FROM customers ORDER BY id)")
	if code != 0 || !strings.Contains(out, "1:a@x,2:b@x,3:c@x") {
		t.Fatalf("customers: %s", out)
	}
	code, out, _ = ferry(t, "query", filepath.Join(dir, "out.db"), "SELECT group_concat(id || ':' || total || ':' || customers_id, ',') FROM (SELECT * FROM orders ORDER BY id)")
	if code != 0 || !strings.Contains(out, "o-2-1:5.0:2,o-2-2:7.5:2") {
		t.Fatalf("orders: %s", out)
	}
}
