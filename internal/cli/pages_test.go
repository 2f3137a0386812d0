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
	"sync/atomic"
	"testing"
	"time"
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

// offsetAPI serves n records by offset and limit, clamping limit to max;
// with repeat, a page after the first also starts with the first two
// records of the page before (as Ferry would have asked it), as APIs
// paging over data that moves do. It echoes {"meta": {"offset", "limit"}}.
func offsetAPI(t *testing.T, n, maxLimit int, repeat bool) *jsonAPI {
	return newAPI(t, func(r *http.Request) any {
		off, _ := strconv.Atoi(r.URL.Query().Get("offset"))
		lim, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		lim = min(lim, maxLimit)
		var idx []int
		if repeat && off > 0 && off < n {
			idx = append(idx, max(0, off-lim), max(0, off-lim)+1)
		}
		for i := min(off, n); i < min(off+lim, n); i++ {
			idx = append(idx, i)
		}
		var data []map[string]any
		for _, i := range idx {
			data = append(data, map[string]any{"id": i + 1, "name": fmt.Sprintf("r%d", i+1)})
		}
		return map[string]any{"data": data, "meta": map[string]any{"offset": off, "limit": lim}}
	})
}

func offsetConnector(url, extra string) string {
	return fmt.Sprintf("name: rows\nbase_url: %s\nstreams:\n  rows:\n    path: /rows\n    records: data\n    primary_key: id\n    paginate: {type: offset%s}\n", url, extra)
}

// TestOffsetClampedLimit: an API that clamps limit to 100 when 250 is
// asked is read to the end, with stop_on_short_page too (it used to stop
// after the first page, 100 of 2000 rows), and Ferry warns that pages
// are shorter than asked.
func TestOffsetClampedLimit(t *testing.T) {
	for _, echo := range []string{"", ", limit_path: meta.limit"} {
		t.Run("echo="+echo, func(t *testing.T) {
			api := offsetAPI(t, 2000, 100, false)
			s := newSite(t, offsetConnector(api.URL, ", size: 250, stop_on_short_page: true"+echo), sqlitePipeline)
			code, out, errs := s.ferry("run", "PIPELINE")
			if code != 0 {
				t.Fatalf("exit %d\n%s%s", code, out, errs)
			}
			if got := s.query("SELECT COUNT(DISTINCT id), MIN(id), MAX(id) FROM rows")[0]; got != "2000|1|2000" {
				t.Fatalf("rows: count|min|max = %s", got)
			}
			if !strings.Contains(out+errs, "fewer records than asked") {
				t.Fatalf("no warning about the clamped page size:\n%s%s", out, errs)
			}
			if n := api.requests.Load(); n > 21 {
				t.Fatalf("%d requests for 20 pages", n)
			}
		})
	}
}

// TestOffsetRepeatedRecords: an API whose pages repeat the last records
// of the page before is read exactly: by the offset and limit it echoes,
// or without echoes by the records each page adds (advancing by the
// records received skipped two records a page: 38 of 2000 missing).
func TestOffsetRepeatedRecords(t *testing.T) {
	for _, echo := range []string{"", ", offset_path: meta.offset, limit_path: meta.limit"} {
		t.Run("echo="+echo, func(t *testing.T) {
			api := offsetAPI(t, 2000, 100, true)
			s := newSite(t, offsetConnector(api.URL, ", size: 100"+echo), sqlitePipeline)
			s.run(0)
			if got := s.query("SELECT COUNT(*), COUNT(DISTINCT id), SUM(id) FROM rows")[0]; got != fmt.Sprintf("2000|2000|%d", 2000*2001/2) {
				t.Fatalf("rows: count|distinct|sum = %s", got)
			}
			if got := s.query("SELECT name FROM rows WHERE id = 1234")[0]; got != "r1234" {
				t.Fatalf("row 1234 = %s", got)
			}
		})
	}
}

// TestPaginationPathMissing: a misspelt cursor_path (meta.nextCursor for
// meta.next_cursor) fails the stream on the first full page, naming the
// path and the keys the response has, instead of syncing 50 of 230 rows
// and succeeding; stop_on_missing says that missing means the end.
func TestPaginationPathMissing(t *testing.T) {
	api := newAPI(t, func(r *http.Request) any {
		from, _ := strconv.Atoi(r.URL.Query().Get("cursor"))
		var data []map[string]any
		for i := from; i < min(from+50, 230); i++ {
			data = append(data, map[string]any{"id": i + 1})
		}
		meta := map[string]any{"total": 230}
		if from+50 < 230 {
			meta["next_cursor"] = strconv.Itoa(from + 50)
		}
		return map[string]any{"data": data, "meta": meta}
	})
	conn := func(path, extra string) string {
		return fmt.Sprintf("name: c\nbase_url: %s\nstreams:\n  items:\n    path: /items\n    records: data\n    primary_key: id\n    paginate: {type: cursor, param: cursor, size: 50, size_param: limit, cursor_path: %s%s}\n", api.URL, path, extra)
	}
	s := newSite(t, conn("meta.nextCursor", ""), sqlitePipeline)
	out := s.run(1)
	for _, want := range []string{`paginate.cursor_path "meta.nextCursor" is missing from a full page (50 records)`, "next_cursor, total", "stop_on_missing"} {
		if !strings.Contains(out, want) {
			t.Fatalf("the error lacks %q:\n%s", want, out)
		}
	}
	s.write("connector.yaml", conn("meta.next_cursor", ""))
	s.run(0)
	if got := s.query("SELECT COUNT(*) FROM items")[0]; got != "230" {
		t.Fatalf("%s rows, want 230", got)
	}
	// Told that missing means the end, Ferry believes it.
	s.write("connector.yaml", conn("meta.nextCursor", ", stop_on_missing: true"))
	s.run(0)
}

// TestNewestFirstStops: a newest-first feed without a filter stops paging
// at the first record older than the saved cursor: the second run reads
// one page, not all of them.
func TestNewestFirstStops(t *testing.T) {
	var mu sync.Mutex
	n := 500
	at := func(i int) string {
		return time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Minute).Format(time.RFC3339)
	}
	api := newAPI(t, func(r *http.Request) any {
		mu.Lock()
		defer mu.Unlock()
		page, _ := strconv.Atoi(r.URL.Query().Get("page"))
		var data []map[string]any
		for i := n - (page-1)*50; i > max(0, n-page*50); i-- {
			data = append(data, map[string]any{"id": i, "updated_at": at(i)})
		}
		return map[string]any{"data": data}
	})
	conn := fmt.Sprintf(`name: feed
base_url: %s
streams:
  events:
    path: /events
    records: data
    primary_key: id
    cursor: updated_at
    incremental: {newest_first: true}
    paginate: {type: page_number, size: 50, size_param: per_page}
`, api.URL)
	s := newSite(t, conn, sqlitePipeline+"mode: incremental_dedup\n")
	s.run(0)
	if got := api.requests.Load(); got != 11 {
		t.Fatalf("first run: %d requests, want 11 (10 pages and an empty one)", got)
	}
	mu.Lock()
	n = 507
	mu.Unlock()
	s.run(0)
	if got := api.requests.Load() - 11; got != 1 {
		t.Fatalf("second run: %d requests, want 1 (the first page reaches records already synced)", got)
	}
	if got := s.query("SELECT COUNT(*), MIN(id), MAX(id) FROM events")[0]; got != "507|1|507" {
		t.Fatalf("events: count|min|max = %s", got)
	}
}

// hubspotSearch serves HubSpot's CRM search: POST with a GTE filter on
// lastmodifieddate, sorted ascending, pages of limit with paging.next.after,
// and a 400 past 10,000 results of one query.
func hubspotSearch(t *testing.T, n int) (*httptest.Server, *atomic.Int64) {
	var calls atomic.Int64
	at := func(i int) string {
		// Three contacts share each value.
		return time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i/3) * time.Second).Format("2006-01-02T15:04:05.000Z")
	}
	stamps := make([]string, n)
	for i := range stamps {
		stamps[i] = at(i)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		var q struct {
			FilterGroups []struct {
				Filters []struct{ PropertyName, Operator, Value string }
			}
			Limit int
			After *string
		}
		if err := json.NewDecoder(r.Body).Decode(&q); err != nil || len(q.FilterGroups) != 1 || q.FilterGroups[0].Filters[0].Operator != "GTE" {
			http.Error(w, `{"status":"error","message":"bad search"}`, http.StatusBadRequest)
			return
		}
		since := q.FilterGroups[0].Filters[0].Value
		after := 0
		if q.After != nil {
			after, _ = strconv.Atoi(*q.After)
		}
		w.Header().Set("Content-Type", "application/json")
		if after+q.Limit > 10000 {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"status":"error","message":"Cannot page beyond 10000 results","category":"VALIDATION_ERROR"}`)
			return
		}
		var match []int
		for i := range n {
			if stamps[i] >= since {
				match = append(match, i)
			}
		}
		var results []map[string]any
		for _, i := range match[min(after, len(match)):min(after+q.Limit, len(match))] {
			results = append(results, map[string]any{"id": strconv.Itoa(i + 1), "properties": map[string]any{"email": fmt.Sprintf("c%d@example.com", i+1)}, "lastmodifieddate": stamps[i]})
		}
		body := map[string]any{"total": len(match), "results": results}
		if after+q.Limit < len(match) {
			body["paging"] = map[string]any{"next": map[string]any{"after": strconv.Itoa(after + q.Limit)}}
		}
		json.NewEncoder(w).Encode(body)
	}))
	t.Cleanup(srv.Close)
	return srv, &calls
}

// TestDeepPagingCap: a search capped at 10,000 results (HubSpot) is read
// past the cap by starting the query again from the largest cursor value
// read: every one of 12,345 contacts lands, once (the run used to fail at
// the cap, and every rerun at the same place).
func TestDeepPagingCap(t *testing.T) {
	srv, calls := hubspotSearch(t, 12345)
	conn := fmt.Sprintf(`name: hubspot
base_url: %s
streams:
  contacts:
    method: POST
    path: /crm/v3/objects/contacts/search
    body:
      filterGroups: [{filters: [{propertyName: lastmodifieddate, operator: GTE, value: "{{ incremental.since }}"}]}]
      sorts: [{propertyName: lastmodifieddate, direction: ASCENDING}]
      limit: 100
      after: "{{ page.cursor }}"
    records: results
    primary_key: id
    cursor: lastmodifieddate
    incremental: {start: "2020-01-01T00:00:00.000Z"}
    paginate: {type: cursor, cursor_path: paging.next.after, max_results: 10000}
`, srv.URL)
	s := newSite(t, conn, sqlitePipeline+"mode: incremental_dedup\n")
	s.run(0)
	if got := s.query("SELECT COUNT(*), COUNT(DISTINCT id), MIN(CAST(id AS INTEGER)), MAX(CAST(id AS INTEGER)) FROM contacts")[0]; got != "12345|12345|1|12345" {
		t.Fatalf("contacts: count|distinct|min|max = %s", got)
	}
	if got := s.query("SELECT json_extract(properties, '$.email') FROM contacts WHERE id = '11111'"); len(got) != 1 || got[0] != "c11111@example.com" {
		t.Fatalf("contact 11111: %v", got)
	}
	// 100 pages, then the query again from the last value: 24 pages more.
	if n := calls.Load(); n < 124 || n > 126 {
		t.Fatalf("%d requests", n)
	}
}

// TestTimeWindows: an incremental stream with window: 1d makes one query
// per day from the start, each checkpointed: a run that fails in the
// third window resumes there, without asking for the first two again.
func TestTimeWindows(t *testing.T) {
	now := time.Now().UTC()
	start := now.Add(-5*24*time.Hour + time.Hour).Truncate(time.Second)
	var mu sync.Mutex
	var asked []string
	failFrom := ""
	api := newAPI(t, func(r *http.Request) any {
		mu.Lock()
		defer mu.Unlock()
		from, _ := time.Parse(time.RFC3339Nano, r.URL.Query().Get("start_time"))
		to, err := time.Parse(time.RFC3339Nano, r.URL.Query().Get("end_time"))
		if err != nil || to.Sub(from) > 24*time.Hour {
			return map[string]any{"error": "the range must be at most a day"}
		}
		asked = append(asked, from.Format(time.RFC3339))
		if failFrom != "" && r.URL.Query().Get("start_time") >= failFrom {
			return map[string]any{"error": "down"}
		}
		var data []map[string]any
		// One record an hour, from the start.
		for h := 0; h < 5*24; h++ {
			at := start.Add(time.Duration(h) * time.Hour)
			if !at.Before(from) && at.Before(to) {
				data = append(data, map[string]any{"id": h + 1, "at": at.Format(time.RFC3339)})
			}
		}
		return map[string]any{"data": data}
	})
	conn := fmt.Sprintf(`name: w
base_url: %s
http: {max_attempts: 1}
streams:
  readings:
    path: /readings
    records: data
    primary_key: id
    cursor: at
    incremental: {param: start_time, until_param: end_time, window: 1d, start: %q}
`, api.URL, start.Format(time.RFC3339))
	s := newSite(t, conn, sqlitePipeline+"mode: incremental_dedup\n")
	// The third window's answers lack data: the run fails there.
	failFrom = start.Add(48 * time.Hour).Format(time.RFC3339)
	s.run(1)
	if got := s.query("SELECT COUNT(*) FROM readings")[0]; got != "48" {
		t.Fatalf("after the failed run: %s rows, want 48 (two windows)", got)
	}
	mu.Lock()
	failFrom, asked = "", nil
	mu.Unlock()
	s.run(0)
	if len(asked) != 3 || asked[0] != start.Add(48*time.Hour).Format(time.RFC3339) {
		t.Fatalf("the resumed run asked for windows %v, want the 3 from the third", asked)
	}
	if got := s.query("SELECT COUNT(*), MIN(id), MAX(id) FROM readings")[0]; got != "120|1|120" {
		t.Fatalf("readings: count|min|max = %s", got)
	}
}

// TestDynamicFields: the properties a stream asks for come from the API's
// metadata endpoint each run, so a property added between runs appears
// in the table; a list too long for one URL is split across requests and
// each record's parts merged.
func TestDynamicFields(t *testing.T) {
	var mu sync.Mutex
	props := []string{"email", "firstname"}
	pages := map[string]int{}
	api := newAPI(t, func(r *http.Request) any {
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Path == "/properties" {
			var res []map[string]any
			for _, p := range props {
				res = append(res, map[string]any{"name": p, "type": "string"})
			}
			return map[string]any{"results": res}
		}
		pages[r.URL.Query().Get("after")]++
		after, _ := strconv.Atoi(r.URL.Query().Get("after"))
		var res []map[string]any
		for i := after; i < min(after+10, 25); i++ {
			p := map[string]any{}
			for _, name := range strings.Split(r.URL.Query().Get("properties"), ",") {
				if slices.Contains(props, name) {
					p[name] = fmt.Sprintf("%s-%d", name, i+1)
				}
			}
			res = append(res, map[string]any{"id": strconv.Itoa(i + 1), "properties": p})
		}
		body := map[string]any{"results": res}
		if after+10 < 25 {
			body["paging"] = map[string]any{"next": map[string]any{"after": strconv.Itoa(after + 10)}}
		}
		return body
	})
	conn := func(extra string) string {
		return fmt.Sprintf(`name: crm
base_url: %s
streams:
  contacts:
    path: /contacts
    records: results
    primary_key: id
    dynamic_fields: {path: /properties, records: results, name: name, param: properties%s}
    paginate: {type: cursor, cursor_path: paging.next.after, param: after}
`, api.URL, extra)
	}
	s := newSite(t, conn(""), sqlitePipeline+"schema: {nested: flatten}\n")
	s.run(0)
	if got := s.query("SELECT properties__email, properties__firstname FROM contacts WHERE id = '7'"); !slices.Equal(got, []string{"email-7|firstname-7"}) {
		t.Fatalf("contact 7: %v", got)
	}
	mu.Lock()
	props = append(props, "phone")
	mu.Unlock()
	s.run(0)
	if got := s.query("SELECT properties__phone FROM contacts WHERE id = '25'"); !slices.Equal(got, []string{"phone-25"}) {
		t.Fatalf("the property added between runs: %v", got)
	}
	// Forty long property names do not fit one 300-byte URL: each page is
	// asked in parts, and every record gets every property.
	mu.Lock()
	for i := range 40 {
		props = append(props, fmt.Sprintf("custom_property_number_%02d", i))
	}
	clear(pages)
	mu.Unlock()
	s.write("connector.yaml", conn(", max_url_length: 300"))
	s.run(0)
	if got := s.query("SELECT properties__email, properties__custom_property_number_00, properties__custom_property_number_39 FROM contacts WHERE id = '13'"); !slices.Equal(got, []string{"email-13|custom_property_number_00-13|custom_property_number_39-13"}) {
		t.Fatalf("contact 13 after a split: %v", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if pages[""] < 2 || pages["10"] < 2 || pages["20"] < 2 {
		t.Fatalf("requests per page: %v, want several for each page", pages)
	}
}
