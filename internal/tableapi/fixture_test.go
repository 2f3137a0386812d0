package tableapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	_ "github.com/ferry-dev/ferry/internal/components/all"
	"github.com/ferry-dev/ferry/internal/enginetest"
	"github.com/ferry-dev/ferry/internal/tableapi"
)

// shop is a fake source API: orders listed a page at a time, created,
// updated and deleted, behind a bearer token.
type shop struct {
	*httptest.Server
	mu     sync.Mutex
	orders map[int64]map[string]any
	next   int64
	writes []string // METHOD path body, as received
	token  string
}

func newShop(t *testing.T, n int) *shop {
	s := &shop{orders: map[int64]map[string]any{}, token: "shop-secret-token"}
	for i := 1; i <= n; i++ {
		s.put(order(int64(2 * i)))
	}
	s.next = int64(2*n + 2)
	s.Server = httptest.NewServer(s)
	t.Cleanup(s.Close)
	return s
}

// order returns the record of order id: every column type, names with
// the characters patterns treat specially, nulls, and line items.
func order(id int64) map[string]any {
	i := id / 2
	names := []string{"Alpha", "alpha", "100%_off", "star*name", `quote"d`, "O'Brien", "Ünïcode", "back\\slash"}
	o := map[string]any{
		"id":         id,
		"name":       fmt.Sprintf("%s %02d", names[int(i)%len(names)], i),
		"amount":     float64(i) * 1.5,
		"total":      json.Number(fmt.Sprintf("%d0000000000000000000.25", 1+i%9)),
		"active":     i%2 == 0,
		"created_at": fmt.Sprintf("2024-01-%02dT10:%02d:00Z", 1+i%28, i%60),
		"updated_at": "2024-02-01T00:00:00Z",
		"note":       nil,
	}
	if i%3 != 0 {
		o["note"] = fmt.Sprintf("note %d", i)
	}
	var items []any
	for j := range int(i % 4) {
		items = append(items, map[string]any{"sku": fmt.Sprintf("SKU-%d-%d", id, j), "qty": j + 1})
	}
	o["line_items"] = items
	return o
}

func (s *shop) put(o map[string]any) {
	s.orders[o["id"].(int64)] = o
}

func (s *shop) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+s.token {
		http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	body, _ := io.ReadAll(r.Body)
	if r.Method != http.MethodGet {
		s.writes = append(s.writes, r.Method+" "+r.URL.Path+" "+string(body))
	}
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/orders":
		ids := make([]int64, 0, len(s.orders))
		for id := range s.orders {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		page, _ := strconv.Atoi(r.URL.Query().Get("page"))
		if page < 1 {
			page = 1
		}
		const size = 50
		var data []any
		for i := (page - 1) * size; i < len(ids) && i < page*size; i++ {
			data = append(data, s.orders[ids[i]])
		}
		if data == nil {
			data = []any{}
		}
		json.NewEncoder(w).Encode(map[string]any{"data": data})
	case r.Method == http.MethodPost && r.URL.Path == "/orders":
		var in map[string]any
		if err := json.Unmarshal(body, &in); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error":"body is not JSON"}`)
			return
		}
		if name, _ := in["name"].(string); name == "" || strings.HasPrefix(name, "reject") {
			w.WriteHeader(http.StatusUnprocessableEntity)
			fmt.Fprint(w, `{"error":"name is refused by the shop"}`)
			return
		}
		o := order(s.next)
		s.next += 2
		for k, v := range in {
			o[k] = v
		}
		o["updated_at"] = "2024-03-01T00:00:00Z"
		s.put(o)
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(map[string]any{"order": o})
	case strings.HasPrefix(r.URL.Path, "/orders/"):
		id, err := strconv.ParseInt(strings.TrimPrefix(r.URL.Path, "/orders/"), 10, 64)
		o := s.orders[id]
		if err != nil || o == nil {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"error":"no such order"}`)
			return
		}
		switch r.Method {
		case http.MethodPatch:
			var in map[string]any
			json.Unmarshal(body, &in)
			if name, _ := in["name"].(string); strings.HasPrefix(name, "reject") {
				w.WriteHeader(http.StatusUnprocessableEntity)
				fmt.Fprint(w, `{"error":"name is refused by the shop"}`)
				return
			}
			for k, v := range in {
				o[k] = v
			}
			o["updated_at"] = "2024-03-02T00:00:00Z"
			json.NewEncoder(w).Encode(map[string]any{"order": o})
		case http.MethodDelete:
			delete(s.orders, id)
			w.WriteHeader(http.StatusNoContent)
		default:
			w.WriteHeader(http.StatusMethodNotAllowed)
		}
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

func shopConnector(url string) string {
	return fmt.Sprintf(`name: shop
base_url: %s
config:
  token: {type: string, secret: true}
auth: {type: bearer, token: "{{ config.token }}"}
streams:
  orders:
    path: /orders
    records: data
    primary_key: id
    cursor: updated_at
    paginate: {type: page_number, size: 50, size_param: per_page, stop_on_short_page: true}
`, url)
}

// env is a synced shop served through a real HTTP server.
type env struct {
	t    *testing.T
	kind enginetest.Kind
	shop *shop
	p    *enginetest.Pipeline
	h    *tableapi.Handler
	srv  *httptest.Server
}

const shopPipeline = `connector: connector.yaml
config:
  token: ${SHOP_TOKEN}
mode: incremental_dedup
schema: {nested: unnest}
api: {expose: true}
`

// newEnv syncs n orders into a fresh database of kind and serves them
// with the options given (Pipelines filled in).
func newEnv(t *testing.T, kind enginetest.Kind, n int, pipeline string, opts tableapi.Options) *env {
	t.Helper()
	return newEnvWith(t, kind, n, "", pipeline, opts)
}

// newEnvWith is newEnv with more of the orders stream's connector settings.
func newEnvWith(t *testing.T, kind enginetest.Kind, n int, more, pipeline string, opts tableapi.Options) *env {
	t.Helper()
	e := &env{t: t, kind: kind, shop: newShop(t, n)}
	e.p = enginetest.New(t, enginetest.Config{Connector: shopConnector(e.shop.URL) + more, Pipeline: pipeline, Dest: kind, Env: map[string]string{"SHOP_TOKEN": e.shop.token}})
	e.sync()
	ps, r := e.p.Load()
	opts.Pipelines = []tableapi.Pipeline{{Spec: ps, Resolved: r}}
	h, err := tableapi.New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Error(err)
		}
	})
	e.h = h
	mux := http.NewServeMux()
	tableapi.Mount(mux, h)
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	return e
}

func (e *env) sync() {
	e.t.Helper()
	e.p.Run().Check(e.t)
}

// response is a response read whole.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
}

// do sends a request; headers alternate name, value.
func (e *env) do(t *testing.T, method, path, body string, headers ...string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// get fetches path and decodes a JSON array of objects, failing unless
// the status is 200.
func (e *env) rows(t *testing.T, path string, headers ...string) ([]map[string]any, response) {
	t.Helper()
	r := e.do(t, http.MethodGet, path, "", headers...)
	if r.status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, r.status, r.body)
	}
	var out []map[string]any
	r.json(t, &out)
	return out, r
}

// ids returns the id column of rows.
func ids(rows []map[string]any) []int64 {
	out := make([]int64, len(rows))
	for i, r := range rows {
		out[i] = int64(r["id"].(float64))
	}
	return out
}
