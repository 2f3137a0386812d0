package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// shopAPI serves customers (filtered by updated_since when asked, in one
// page, by GET or POST) and each customer's orders, counting the requests
// by path.
type shopAPI struct {
	*httptest.Server
	mu        sync.Mutex
	customers []map[string]any
	orders    map[int][]map[string]any // by customer id
	hits      map[string]int           // "METHOD /path" → requests
}

func newShopAPI(t *testing.T, n int) *shopAPI {
	a := &shopAPI{orders: map[int][]map[string]any{}, hits: map[string]int{}}
	for i := 1; i <= n; i++ {
		a.customers = append(a.customers, map[string]any{"id": i, "updated_at": fmt.Sprintf("2024-01-01T00:%02d:00Z", i%7)})
		a.orders[i] = []map[string]any{{"id": i*100 + 1, "total": "1.00", "updated_at": "2024-01-01T00:00:00Z"}, {"id": i*100 + 2, "total": "2.00", "updated_at": "2024-01-01T00:00:00Z"}}
	}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.hits[r.Method+" "+r.URL.Path]++
		w.Header().Set("Content-Type", "application/json")
		var data []map[string]any
		switch {
		case r.URL.Path == "/customers" || r.URL.Path == "/jobs":
			since := r.URL.Query().Get("updated_since")
			for _, c := range a.customers {
				if since == "" || c["updated_at"].(string) >= since {
					data = append(data, c)
				}
			}
		case strings.HasPrefix(r.URL.Path, "/customers/"):
			id, _ := strconv.Atoi(strings.Split(r.URL.Path, "/")[2])
			data = a.orders[id]
		default:
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"data": data})
	}))
	t.Cleanup(a.Close)
	return a
}

// take returns the requests counted since the last take, by path prefix:
// the customers list and the orders of all customers.
func (a *shopAPI) take() (list, orders int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, n := range a.hits {
		if strings.Contains(k, "/customers/") {
			orders += n
		} else {
			list += n
		}
	}
	a.hits = map[string]int{}
	return list, orders
}

// touch moves customer id's cursor and changes its orders.
func (a *shopAPI) touch(id int, at string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.customers[id-1]["updated_at"] = at
	a.orders[id] = append(a.orders[id], map[string]any{"id": id*100 + 3, "total": "3.00", "updated_at": at})
}

// TestParentReadOnce: a parent stream is read once per run, however many
// child streams it has and whether or not it is synced itself; a parent
// that POSTs (creating something on the server) used to run once per
// child.
func TestParentReadOnce(t *testing.T) {
	api := newShopAPI(t, 3)
	var b strings.Builder
	fmt.Fprintf(&b, "name: shop\nbase_url: %s\nstreams:\n  jobs: {path: /jobs, method: POST, body: {kind: export}, records: data, primary_key: id}\n", api.URL)
	for _, c := range []string{"a", "b", "c"} {
		fmt.Fprintf(&b, "  orders_%s: {parent: jobs, path: '/customers/{{ parent.id }}/orders', records: data, primary_key: id}\n", c)
	}
	s := newSite(t, b.String(), sqlitePipeline)
	s.run(0)
	list, orders := api.take()
	if list != 1 || orders != 9 {
		t.Fatalf("one run made %d parent requests (want 1: the parent POST once) and %d child requests (want 9)", list, orders)
	}
	for _, c := range []string{"a", "b", "c"} {
		got := s.query("SELECT id, jobs_id FROM orders_" + c + " ORDER BY id")
		if want := []string{"101|1", "102|1", "201|2", "202|2", "301|3", "302|3"}; !slices.Equal(got, want) {
			t.Fatalf("orders_%s = %v, want %v", c, got, want)
		}
	}
	if got := s.query("SELECT id FROM jobs ORDER BY id"); !slices.Equal(got, []string{"1", "2", "3"}) {
		t.Fatalf("jobs = %v", got)
	}
	// Only children, the parent not synced: still one read.
	s.run(0, "--stream", "orders_a", "--stream", "orders_b")
	if list, orders := api.take(); list != 1 || orders != 6 {
		t.Fatalf("two children alone: %d parent requests (want 1), %d child requests (want 6)", list, orders)
	}
}

// TestChildFollowsChangedParents: with incremental_dependency, an
// incremental run reads the children of the parents changed since the
// last pass only, whether the API filters the parents (updated_since) or
// Ferry does; the parent is read once, shared with its own sync.
func TestChildFollowsChangedParents(t *testing.T) {
	for _, filter := range []string{"server", "client"} {
		t.Run(filter, func(t *testing.T) {
			api := newShopAPI(t, 40)
			inc := "incremental: {param: updated_since}"
			if filter == "client" {
				inc = ""
			}
			conn := fmt.Sprintf(`name: shop
base_url: %s
streams:
  customers: {path: /customers, records: data, primary_key: id, cursor: updated_at, %s}
  orders:
    parent: {stream: customers, incremental_dependency: true}
    path: '/customers/{{ parent.id }}/orders'
    records: data
    primary_key: id
    cursor: updated_at
`, api.URL, inc)
			s := newSite(t, conn, sqlitePipeline+"mode: incremental_dedup\n")
			s.run(0)
			if list, orders := api.take(); list != 1 || orders != 40 {
				t.Fatalf("first run: %d customers requests (want 1), %d orders requests (want 40)", list, orders)
			}
			api.touch(7, "2024-02-01T00:00:00Z")
			api.touch(31, "2024-02-02T00:00:00Z")
			s.run(0)
			if list, orders := api.take(); list != 1 || orders != 2 {
				t.Fatalf("second run: %d customers requests (want 1), %d orders requests (want 2: the changed customers)", list, orders)
			}
			if got := s.query("SELECT COUNT(*), SUM(id) FROM orders")[0]; got != fmt.Sprintf("82|%d", 40*41/2*200+40*3+703+3103) {
				t.Fatalf("orders: count|sum = %s", got)
			}
			if got := s.query("SELECT customers_id FROM orders WHERE total = '3.00' ORDER BY id"); !slices.Equal(got, []string{"7", "31"}) {
				t.Fatalf("new orders belong to %v", got)
			}
			// Nothing changed: no order is read.
			s.run(0)
			if _, orders := api.take(); orders != 0 {
				t.Fatalf("third run, nothing changed: %d orders requests", orders)
			}
			// A parent changed within the cursor value the last pass ended
			// at is read: only the parents read at it are known.
			api.touch(12, "2024-02-02T00:00:00Z")
			s.run(0)
			if _, orders := api.take(); orders != 1 {
				t.Fatalf("a parent changed at the saved cursor: %d orders requests, want 1", orders)
			}
			// A full refresh of the child reads every parent's children.
			s.write("pipeline.yaml", sqlitePipeline+"mode: incremental_dedup\nstreams: {orders: {mode: full_refresh_overwrite}}\n")
			s.run(0)
			if _, orders := api.take(); orders != 40 {
				t.Fatalf("full refresh: %d orders requests, want 40", orders)
			}
		})
	}
}
