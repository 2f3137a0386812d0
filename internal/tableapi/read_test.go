package tableapi_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/internal/enginetest"
	"github.com/ferry-dev/ferry/internal/tableapi"
)

// TestTableAPI is the behavioural suite: one synced shop per database,
// served through a real HTTP server, the same assertions on each.
func TestTableAPI(t *testing.T) {
	for _, kind := range enginetest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, kind, 40, shopPipeline, tableapi.Options{MaxPageSize: 50})
			t.Run("operators", e.testOperators)
			t.Run("select and order", e.testSelectOrder)
			t.Run("by key", e.testByKey)
			t.Run("expand", e.testExpand)
			t.Run("formats", e.testFormats)
			t.Run("etag", e.testETag)
			t.Run("errors", e.testErrors)
			t.Run("internals hidden", e.testInternalsHidden)
			t.Run("injection", e.testInjection)
			t.Run("openapi", e.testOpenAPI)
			t.Run("pagination with concurrent inserts", e.testPaginationConcurrent)
		})
	}
}

// want computes, from the shop's records, the ids a filter must return.
func (e *env) want(match func(o map[string]any) bool) []int64 {
	var out []int64
	e.shop.mu.Lock()
	defer e.shop.mu.Unlock()
	for id, o := range e.shop.orders {
		if match(o) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

func (e *env) testOperators(t *testing.T) {
	num := func(o map[string]any) int64 { return o["id"].(int64) }
	name := func(o map[string]any) string { return o["name"].(string) }
	cases := []struct {
		query string
		match func(o map[string]any) bool
	}{
		{"id=eq.10", func(o map[string]any) bool { return num(o) == 10 }},
		{"id=neq.10", func(o map[string]any) bool { return num(o) != 10 }},
		{"id=gt.70", func(o map[string]any) bool { return num(o) > 70 }},
		{"id=gte.70", func(o map[string]any) bool { return num(o) >= 70 }},
		{"id=lt.7", func(o map[string]any) bool { return num(o) < 7 }},
		{"id=lte.6", func(o map[string]any) bool { return num(o) <= 6 }},
		{"id=in.(2,4,80,81)", func(o map[string]any) bool { return slices.Contains([]int64{2, 4, 80}, num(o)) }},
		{"id=not.in.(2,4)", func(o map[string]any) bool { return num(o) != 2 && num(o) != 4 }},
		{"id=in.()", func(o map[string]any) bool { return false }},
		{"amount=gt.50.5", func(o map[string]any) bool { return o["amount"].(float64) > 50.5 }},
		{"total=gt.50000000000000000000.25", func(o map[string]any) bool { return 1+num(o)/2%9 > 5 }},
		{"total=eq.30000000000000000000.25", func(o map[string]any) bool { return 1+num(o)/2%9 == 3 }},
		{"active=eq.true", func(o map[string]any) bool { return o["active"].(bool) }},
		{"active=is.false", func(o map[string]any) bool { return !o["active"].(bool) }},
		{"note=is.null", func(o map[string]any) bool { return o["note"] == nil }},
		{"note=not.is.null", func(o map[string]any) bool { return o["note"] != nil }},
		{"created_at=gte.2024-01-20", func(o map[string]any) bool { return o["created_at"].(string) >= "2024-01-20" }},
		{"created_at=lt.2024-01-05T10:04:00Z", func(o map[string]any) bool { return o["created_at"].(string) < "2024-01-05T10:04:00Z" }},
		{"name=like.Alpha*", func(o map[string]any) bool { return strings.HasPrefix(name(o), "Alpha") }},
		{"name=ilike.alpha*", func(o map[string]any) bool { return strings.HasPrefix(strings.ToLower(name(o)), "alpha") }},
		{"name=like.*" + url.QueryEscape(`\%\_`) + "*", func(o map[string]any) bool { return strings.Contains(name(o), "%_") }},
		{"name=like." + url.QueryEscape(`star\*`) + "*", func(o map[string]any) bool { return strings.HasPrefix(name(o), "star*") }},
		{"name=like.O_Brien*", func(o map[string]any) bool { return strings.HasPrefix(name(o), "O'Brien") }},
		{"name=like.*" + url.QueryEscape(`\\`) + "*", func(o map[string]any) bool { return strings.Contains(name(o), `\`) }},
		{"name=eq." + url.QueryEscape(`quote"d 04`), func(o map[string]any) bool { return name(o) == `quote"d 04` }},
		{"name=in.(" + url.QueryEscape(`"quote\"d 04","O'Brien 05",Alpha 08`) + ")", func(o map[string]any) bool {
			return slices.Contains([]string{`quote"d 04`, "O'Brien 05", "Alpha 08"}, name(o))
		}},
		{"id=gt.10&id=lt.20", func(o map[string]any) bool { return num(o) > 10 && num(o) < 20 }},
	}
	for _, c := range cases {
		t.Run(c.query, func(t *testing.T) {
			got, _ := e.rows(t, "/api/orders?limit=50&"+c.query)
			if w := e.want(c.match); !slices.Equal(ids(got), w) {
				t.Fatalf("%s: got ids %v, want %v", c.query, ids(got), w)
			}
		})
	}
}

func (e *env) testSelectOrder(t *testing.T) {
	got, _ := e.rows(t, "/api/orders?select=name,id&order=amount.desc&limit=3")
	if len(got) != 3 || len(got[0]) != 2 || got[0]["id"].(float64) != 80 || got[2]["id"].(float64) != 76 {
		t.Fatalf("select and order by amount desc: %v", got)
	}
	// Ordering by a column with nulls: nulls last ascending, first
	// descending, on every database.
	asc, _ := e.rows(t, "/api/orders?order=note,id&select=id,note&limit=50")
	if asc[0]["note"] == nil || asc[len(asc)-1]["note"] != nil {
		t.Fatalf("nulls are not last ascending: %v", asc)
	}
	desc, _ := e.rows(t, "/api/orders?order=note.desc,id&select=id,note&limit=50")
	if desc[0]["note"] != nil || desc[len(desc)-1]["note"] == nil {
		t.Fatalf("nulls are not first descending: %v", desc)
	}
	// Paging through an order over a nullable column visits each row once.
	var seen []int64
	next := "/api/orders?order=note.desc,amount&select=id,note,amount&limit=7"
	for next != "" {
		rows, r := e.rows(t, next)
		seen = append(seen, ids(rows)...)
		next = nextLink(t, r)
	}
	all := e.want(func(map[string]any) bool { return true })
	slices.Sort(seen)
	if !slices.Equal(seen, all) {
		t.Fatalf("pages by note desc visited %v, want %v", seen, all)
	}
}

var linkRE = regexp.MustCompile(`^<([^>]+)>; rel="next"$`)

// nextLink returns the path of the next page, "" at the end.
func nextLink(t *testing.T, r response) string {
	t.Helper()
	l := r.header.Get("Link")
	if l == "" {
		return ""
	}
	m := linkRE.FindStringSubmatch(l)
	if m == nil {
		t.Fatalf("Link header %q is not <…>; rel=\"next\"", l)
	}
	return m[1]
}

func (e *env) testByKey(t *testing.T) {
	r := e.do(t, http.MethodGet, "/api/orders/10", "")
	if r.status != http.StatusOK {
		t.Fatalf("GET /api/orders/10: %d %s", r.status, r.body)
	}
	var o map[string]any
	r.json(t, &o)
	if o["id"].(float64) != 10 || o["name"] != "O'Brien 05" || o["total"] != "60000000000000000000.25" || o["created_at"] != "2024-01-06T10:05:00Z" || o["active"] != false {
		t.Fatalf("order 10: %v", o)
	}
	if r := e.do(t, http.MethodGet, "/api/orders/11", ""); r.status != http.StatusNotFound {
		t.Fatalf("a missing key: %d %s", r.status, r.body)
	}
	if r := e.do(t, http.MethodGet, "/api/orders/abc", ""); r.status != http.StatusNotFound {
		t.Fatalf("a key of the wrong type: %d %s", r.status, r.body)
	}
	if r := e.do(t, http.MethodGet, "/api/orders/10,12", ""); r.status != http.StatusNotFound {
		t.Fatalf("two values for a one-column key: %d %s", r.status, r.body)
	}
	r = e.do(t, http.MethodGet, "/api/orders/10?select=id,name", "")
	o = nil
	r.json(t, &o)
	if len(o) != 2 {
		t.Fatalf("select on a row: %v", o)
	}
}

func (e *env) testExpand(t *testing.T) {
	got, _ := e.rows(t, "/api/orders?expand=line_items&id=in.(6,8,10)&select=id")
	if len(got) != 3 {
		t.Fatalf("expand: %v", got)
	}
	for _, o := range got {
		id := int64(o["id"].(float64))
		items, ok := o["line_items"].([]any)
		if !ok || len(items) != int(id/2%4) {
			t.Fatalf("order %d has line items %v, want %d", id, o["line_items"], id/2%4)
		}
		for j, it := range items {
			m := it.(map[string]any)
			if m["sku"] != "SKU-"+itoa64(id)+"-"+itoa64(int64(j)) || m["qty"].(float64) != float64(j+1) {
				t.Fatalf("order %d item %d: %v", id, j, m)
			}
			for k := range m {
				if strings.HasPrefix(k, "_ferry") {
					t.Fatalf("a child row shows %s", k)
				}
			}
		}
	}
	var one map[string]any
	e.do(t, http.MethodGet, "/api/orders/6?expand=line_items", "").json(t, &one)
	if len(one["line_items"].([]any)) != 3 {
		t.Fatalf("expand on a row: %v", one)
	}
	if r := e.do(t, http.MethodGet, "/api/orders?expand=nothing", ""); r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "line_items") {
		t.Fatalf("an unknown expand: %d %s", r.status, r.body)
	}
}

func itoa64(n int64) string { b, _ := json.Marshal(n); return string(b) }

func (e *env) testFormats(t *testing.T) {
	r := e.do(t, http.MethodGet, "/api/orders?select=id,name,note&id=in.(4,6,10)", "", "Accept", "text/csv")
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/csv") {
		t.Fatalf("CSV: %d %s %s", r.status, r.header.Get("Content-Type"), r.body)
	}
	recs, err := csv.NewReader(bytes.NewReader(r.body)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"id", "name", "note"}, {"4", "100%_off 02", "note 2"}, {"6", "star*name 03", ""}, {"10", "O'Brien 05", "note 5"}}
	if !slices.EqualFunc(recs, want, slices.Equal) {
		t.Fatalf("CSV = %q, want %q", recs, want)
	}
	r = e.do(t, http.MethodGet, "/api/orders?select=id&limit=3", "", "Accept", "application/x-ndjson")
	lines := strings.Split(strings.TrimSpace(string(r.body)), "\n")
	if r.header.Get("Content-Type") != "application/jsonl" || len(lines) != 3 || lines[0] != `{"id":2}` {
		t.Fatalf("JSON Lines: %s %q", r.header.Get("Content-Type"), r.body)
	}
	if r := e.do(t, http.MethodGet, "/api/orders", "", "Accept", "application/xml"); r.status != http.StatusNotAcceptable {
		t.Fatalf("XML: %d", r.status)
	}
	r = e.do(t, http.MethodGet, "/api/orders?select=id&limit=2", "", "Accept", "text/html, application/json;q=0.9")
	if r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("Accept with q: %s", r.header.Get("Content-Type"))
	}
}

func (e *env) testETag(t *testing.T) {
	r := e.do(t, http.MethodGet, "/api/orders?limit=5", "")
	tag, lm := r.header.Get("ETag"), r.header.Get("Last-Modified")
	if tag == "" || lm == "" {
		t.Fatalf("no ETag or Last-Modified: %v", r.header)
	}
	if r := e.do(t, http.MethodGet, "/api/orders?limit=5", "", "If-None-Match", tag); r.status != http.StatusNotModified || len(r.body) != 0 {
		t.Fatalf("If-None-Match with the current tag: %d", r.status)
	}
	if r := e.do(t, http.MethodGet, "/api/orders?limit=6", "", "If-None-Match", tag); r.status != http.StatusOK {
		t.Fatalf("another query with the tag: %d", r.status)
	}
	if r := e.do(t, http.MethodGet, "/api/orders?limit=5", "", "If-Modified-Since", lm); r.status != http.StatusNotModified {
		t.Fatalf("If-Modified-Since: %d", r.status)
	}
	if r := e.do(t, http.MethodGet, "/api/orders/10", "", "If-None-Match", tag); r.status != http.StatusOK {
		t.Fatalf("a row with the collection's tag: %d", r.status)
	}
}

func (e *env) testErrors(t *testing.T) {
	for _, c := range []struct{ path, param string }{
		{"/api/orders?nope=eq.1", "nope"},
		{"/api/orders?id=eq.x", "id"},
		{"/api/orders?id=approx.1", "id"},
		{"/api/orders?id=5", "id"},
		{"/api/orders?active=gt.true", "active"},
		{"/api/orders?amount=like.1*", "amount"},
		{"/api/orders?limit=0", "limit"},
		{"/api/orders?limit=51", "limit"},
		{"/api/orders?order=id.sideways", "order"},
		{"/api/orders?select=id,id", "select"},
		{"/api/orders?cursor=zzz", "cursor"},
		{"/api/orders?limit=1&limit=2", "limit"},
		{"/api/orders?note=is.maybe", "note"},
	} {
		r := e.do(t, http.MethodGet, c.path, "")
		var body struct {
			Status  int    `json:"status"`
			Message string `json:"message"`
			Param   string `json:"parameter"`
		}
		r.json(t, &body)
		if r.status != 400 || body.Status != 400 || body.Param != c.param || body.Message == "" {
			t.Errorf("%s: %d %s, want 400 naming %s", c.path, r.status, r.body, c.param)
		}
	}
	if r := e.do(t, http.MethodGet, "/api/customers", ""); r.status != 404 {
		t.Errorf("an unserved table: %d", r.status)
	}
	if r := e.do(t, http.MethodPut, "/api/orders", ""); r.status != 405 || r.header.Get("Allow") == "" {
		t.Errorf("PUT on a collection: %d %v", r.status, r.header)
	}
	// A cursor of one order is refused in another.
	_, r := e.rows(t, "/api/orders?limit=2&order=amount")
	next := nextLink(t, r)
	cur := next[strings.Index(next, "cursor=")+7:]
	if r := e.do(t, http.MethodGet, "/api/orders?limit=2&cursor="+cur, ""); r.status != 400 {
		t.Errorf("a cursor in another order: %d %s", r.status, r.body)
	}
}

func (e *env) testInternalsHidden(t *testing.T) {
	for _, tbl := range []string{"_ferry_state", "_ferry_tables", "_ferry_runs", "orders__line_items"} {
		if r := e.do(t, http.MethodGet, "/api/"+tbl, ""); r.status != 404 {
			t.Errorf("GET /api/%s: %d %s", tbl, r.status, r.body)
		}
	}
	got, _ := e.rows(t, "/api/orders?limit=50")
	for _, o := range got {
		for k := range o {
			if strings.HasPrefix(k, "_ferry") {
				t.Fatalf("a row shows %s", k)
			}
		}
	}
	for _, q := range []string{"_ferry_run_id=is.null", "select=_ferry_row_id", "order=_ferry_extracted_at"} {
		if r := e.do(t, http.MethodGet, "/api/orders?"+q, ""); r.status != 400 {
			t.Errorf("%s: %d %s", q, r.status, r.body)
		}
	}
}

// testPaginationConcurrent pages through the table while syncs insert
// rows between the ones already there: every row present from the start
// is seen exactly once, and no row twice.
func (e *env) testPaginationConcurrent(t *testing.T) {
	before := e.want(func(map[string]any) bool { return true })
	seen := map[int64]int{}
	next := "/api/orders?limit=7&select=id,name"
	pages := 0
	for next != "" {
		rows, r := e.rows(t, next)
		for _, id := range ids(rows) {
			seen[id]++
		}
		next = nextLink(t, r)
		pages++
		if pages <= 3 {
			// New orders between and after the existing ids, then a sync.
			e.shop.mu.Lock()
			for k := range 5 {
				e.shop.put(order(int64(pages*20 + 2*k + 1)))
			}
			e.shop.mu.Unlock()
			e.sync()
		}
	}
	for _, id := range before {
		if seen[id] != 1 {
			t.Errorf("row %d was seen %d times", id, seen[id])
		}
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("row %d was seen %d times", id, n)
		}
	}
}
