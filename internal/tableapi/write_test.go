package tableapi_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/enginetest"
	"github.com/ferry-dev/ferry/internal/tableapi"
)

const writesConnector = `
    writes:
      create: {path: /orders, body: "{{ body }}", record: order}
      update: {path: "/orders/{{ key.id }}", record: order}
      delete: {path: "/orders/{{ key.id }}"}
`

const writePipeline = shopPipeline + `streams:
  orders:
    api: {write: true}
`

// newWriteEnv is a synced shop whose orders accept writes through.
func newWriteEnv(t *testing.T, kind enginetest.Kind) *env {
	t.Helper()
	opts := tableapi.Options{Security: &tableapi.Security{
		Tokens: []tableapi.Token{
			{Name: "admin", Hash: tableapi.HashToken("admin-token"), Role: "admin"},
			{Name: "reader", Hash: tableapi.HashToken("reader-token"), Role: "reader"},
			{Name: "store7", Hash: tableapi.HashToken("store7-token"), Role: "store7"},
		},
		Roles: map[string]*tableapi.Role{
			"admin":  {Tables: map[string]*tableapi.Grant{"*": {Access: "write"}}},
			"reader": {Tables: map[string]*tableapi.Grant{"*": {}}},
			"store7": {Tables: map[string]*tableapi.Grant{"orders": {Access: "write", Filter: map[string]string{"note": "eq.store 7"}}}},
		},
	}}
	return newEnvWith(t, kind, 10, writesConnector, writePipeline, opts)
}

// TestWriteThrough creates, updates and deletes orders through the API
// on every database: the shop gets the request with its auth, and the
// caller reads its own write at once.
func TestWriteThrough(t *testing.T) {
	for _, kind := range enginetest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			e := newWriteEnv(t, kind)
			admin := []string{"Authorization", "Bearer admin-token", "Content-Type", "application/json"}
			before := e.do(t, http.MethodGet, "/api/orders?limit=50", "", admin...)
			tag := before.header.Get("ETag")

			// Create, with a line item in a child table.
			r := e.do(t, http.MethodPost, "/api/orders", `{"name":"New order","amount":9.5,"active":true,"line_items":[{"sku":"N-1","qty":2}]}`, admin...)
			if r.status != http.StatusCreated || r.header.Get("Location") != "/api/orders/22" {
				t.Fatalf("create: %d %v %s", r.status, r.header, r.body)
			}
			var o map[string]any
			r.json(t, &o)
			if o["id"].(float64) != 22 || o["name"] != "New order" || o["amount"].(float64) != 9.5 || o["updated_at"] != "2024-03-01T00:00:00Z" {
				t.Fatalf("created row: %v", o)
			}
			var got map[string]any
			e.do(t, http.MethodGet, "/api/orders/22?expand=line_items", "", admin...).json(t, &got)
			if items, _ := got["line_items"].([]any); len(items) != 1 || items[0].(map[string]any)["sku"] != "N-1" {
				t.Fatalf("the created order's line items: %v", got)
			}
			if r := e.do(t, http.MethodGet, "/api/orders?limit=50", "", append(admin, "If-None-Match", tag)...); r.status != http.StatusOK {
				t.Fatalf("the ETag did not change with the write: %d", r.status)
			}

			// The document describes the writes, and their answers fit it.
			doc := e.loadOpenAPI(t, admin...)
			if op := doc.Paths.Find("/orders"); op == nil || op.Post == nil || doc.Paths.Find("/orders/{key}").Patch == nil || doc.Paths.Find("/orders/{key}").Delete == nil {
				t.Fatalf("the document has no write operations")
			}
			e.checkAgainst(t, doc, http.MethodPost, "/api/orders", `{"name":"Described"}`, admin...)
			e.checkAgainst(t, doc, http.MethodPost, "/api/orders", `{"name":"reject this"}`, admin...)
			e.shop.mu.Lock()
			e.shop.writes = e.shop.writes[:1]
			e.shop.mu.Unlock()

			// Update.
			r = e.do(t, http.MethodPatch, "/api/orders/10", `{"name":"Renamed"}`, admin...)
			if r.status != http.StatusOK {
				t.Fatalf("update: %d %s", r.status, r.body)
			}
			o = nil
			e.do(t, http.MethodGet, "/api/orders/10", "", admin...).json(t, &o)
			if o["name"] != "Renamed" || o["updated_at"] != "2024-03-02T00:00:00Z" || o["amount"].(float64) != 7.5 {
				t.Fatalf("updated row: %v", o)
			}

			// Delete.
			if r := e.do(t, http.MethodDelete, "/api/orders/12", "", admin...); r.status != http.StatusNoContent {
				t.Fatalf("delete: %d %s", r.status, r.body)
			}
			if r := e.do(t, http.MethodGet, "/api/orders/12", "", admin...); r.status != http.StatusNotFound {
				t.Fatalf("a deleted row: %d", r.status)
			}
			e.shop.mu.Lock()
			_, still := e.shop.orders[12]
			writes := append([]string(nil), e.shop.writes...)
			e.shop.mu.Unlock()
			if still {
				t.Fatal("the shop still has order 12")
			}
			want := []string{
				`POST /orders {"active":true,"amount":9.5,"line_items":[{"qty":2,"sku":"N-1"}],"name":"New order"}`,
				`PATCH /orders/10 {"name":"Renamed"}`,
				`DELETE /orders/12 `,
			}
			if strings.Join(writes, "\n") != strings.Join(want, "\n") {
				t.Fatalf("the shop received:\n%s\nwant:\n%s", strings.Join(writes, "\n"), strings.Join(want, "\n"))
			}

			// The API's refusal comes back with its status and message; the table is unchanged.
			count := func() int {
				rows, _ := e.rows(t, "/api/orders?limit=50&select=id", admin...)
				return len(rows)
			}
			n := count()
			r = e.do(t, http.MethodPost, "/api/orders", `{"name":"reject me"}`, admin...)
			if r.status != http.StatusUnprocessableEntity || !strings.Contains(string(r.body), "name is refused by the shop") || !strings.Contains(string(r.body), `"upstream":{"error"`) {
				t.Fatalf("a refused create: %d %s", r.status, r.body)
			}
			if r := e.do(t, http.MethodPatch, "/api/orders/10", `{"name":"reject this"}`, admin...); r.status != http.StatusUnprocessableEntity {
				t.Fatalf("a refused update: %d %s", r.status, r.body)
			}
			if count() != n {
				t.Fatal("a refused write changed the table")
			}

			// Bodies that do not fit the table are refused before anything is sent.
			e.shop.mu.Lock()
			sent := len(e.shop.writes)
			e.shop.mu.Unlock()
			for _, c := range []struct {
				method, path, body string
				status             int
			}{
				{http.MethodPost, "/api/orders", `{"nope":1}`, 400},
				{http.MethodPost, "/api/orders", `{"amount":"much"}`, 400},
				{http.MethodPost, "/api/orders", `{"id":1.5}`, 400},
				{http.MethodPost, "/api/orders", `{"created_at":"yesterday"}`, 400},
				{http.MethodPost, "/api/orders", `{"_ferry_run_id":"x"}`, 400},
				{http.MethodPost, "/api/orders", `[1]`, 400},
				{http.MethodPost, "/api/orders", `{"name":"a"}{"name":"b"}`, 400},
				{http.MethodPost, "/api/orders", `{"line_items":5}`, 400},
				{http.MethodPatch, "/api/orders/10", `{"id":12}`, 400},
				{http.MethodPatch, "/api/orders/10", `{}`, 400},
				{http.MethodPatch, "/api/orders/11", `{"name":"x"}`, 404},
				{http.MethodDelete, "/api/orders/11", ``, 404},
				{http.MethodPost, "/api/orders/10", `{"name":"x"}`, 405},
			} {
				if r := e.do(t, c.method, c.path, c.body, admin...); r.status != c.status {
					t.Errorf("%s %s %s: %d %s, want %d", c.method, c.path, c.body, r.status, r.body, c.status)
				}
			}
			if r := e.do(t, http.MethodPost, "/api/orders", `{"name":"x"}`, "Authorization", "Bearer reader-token"); r.status != http.StatusForbidden {
				t.Errorf("a reader writes: %d", r.status)
			}
			// A role with a row filter creates only rows it can read, and
			// changes only rows it sees.
			store7 := []string{"Authorization", "Bearer store7-token"}
			if r := e.do(t, http.MethodPost, "/api/orders", `{"name":"x","note":"store 8"}`, store7...); r.status != http.StatusForbidden {
				t.Errorf("store7 creates another store's order: %d %s", r.status, r.body)
			}
			if r := e.do(t, http.MethodPatch, "/api/orders/4", `{"name":"x"}`, store7...); r.status != http.StatusNotFound {
				t.Errorf("store7 changes an order it cannot see: %d %s", r.status, r.body)
			}
			e.shop.mu.Lock()
			if len(e.shop.writes) != sent {
				t.Errorf("refused requests reached the shop: %v", e.shop.writes[sent:])
			}
			e.shop.mu.Unlock()
			if r := e.do(t, http.MethodPost, "/api/orders", `{"name":"Seventh","note":"store 7"}`, store7...); r.status != http.StatusCreated {
				t.Errorf("store7 creates its order: %d %s", r.status, r.body)
			}

			// While a sync holds the stream, a write is refused before it is sent.
			ps, res := e.p.Load()
			d, err := dest.Open(context.Background(), ps.Destination.Type, res.Destination, dest.Options{Dir: ps.Dir})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			release, err := d.(dest.StateKeeper).State().Lock(context.Background(), e.p.Name(), "orders", dest.Holder{RunID: "a-sync", Since: time.Now()})
			if err != nil {
				t.Fatal(err)
			}
			e.shop.mu.Lock()
			sent = len(e.shop.writes)
			e.shop.mu.Unlock()
			r = e.do(t, http.MethodPost, "/api/orders", `{"name":"during a sync"}`, admin...)
			release()
			if r.status != http.StatusConflict || !strings.Contains(string(r.body), "a-sync") {
				t.Fatalf("a write during a sync: %d %s", r.status, r.body)
			}
			e.shop.mu.Lock()
			if len(e.shop.writes) != sent {
				t.Errorf("the write during a sync reached the shop")
			}
			e.shop.mu.Unlock()

			// The next sync agrees with what the writes left.
			e.sync()
			rows, _ := e.rows(t, "/api/orders?limit=50&select=id,name", admin...)
			e.shop.mu.Lock()
			defer e.shop.mu.Unlock()
			if len(rows) != len(e.shop.orders) {
				t.Fatalf("after a sync the table has %d rows, the shop %d", len(rows), len(e.shop.orders))
			}
			for _, row := range rows {
				if o := e.shop.orders[int64(row["id"].(float64))]; o == nil || o["name"] != row["name"] {
					t.Fatalf("row %v is not the shop's %v", row, o)
				}
			}
		})
	}
}

// TestReadOnlyTable: a stream without api.write refuses writes.
func TestReadOnlyTable(t *testing.T) {
	e := newEnv(t, enginetest.SQLite, 3, shopPipeline, tableapi.Options{})
	if r := e.do(t, http.MethodPost, "/api/orders", `{"name":"x"}`); r.status != http.StatusMethodNotAllowed {
		t.Fatalf("POST on a read-only table: %d %s", r.status, r.body)
	}
	if len(e.shop.writes) != 0 {
		t.Fatal("a write reached the shop")
	}
}

// TestBeforeFirstSync: a pipeline whose database does not exist yet is
// served anyway; its tables answer 503 until the first sync, then rows.
func TestBeforeFirstSync(t *testing.T) {
	s := newShop(t, 3)
	p := enginetest.New(t, enginetest.Config{Connector: shopConnector(s.URL), Pipeline: shopPipeline, Env: map[string]string{"SHOP_TOKEN": s.token}})
	ps, r := p.Load()
	h, err := tableapi.New(context.Background(), tableapi.Options{Pipelines: []tableapi.Pipeline{{Spec: ps, Resolved: r}}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	e := &env{t: t, h: h, shop: s, p: p}
	mux := http.NewServeMux()
	tableapi.Mount(mux, h)
	e.srv = httptest.NewServer(mux)
	defer e.srv.Close()
	if r := e.do(t, http.MethodGet, "/api/orders", ""); r.status != http.StatusServiceUnavailable || !strings.Contains(string(r.body), "ferry run") {
		t.Fatalf("before the first sync: %d %s", r.status, r.body)
	}
	p.Run().Check(t)
	if rows, _ := e.rows(t, "/api/orders"); len(rows) != 3 {
		t.Fatalf("after the first sync: %d rows", len(rows))
	}
}
