package shopapi

import (
	"cmp"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testNow is the default test clock: 2026, after every generated
// timestamp, so touched records stand out.
var testNow = time.Date(2026, 3, 10, 12, 34, 56, 0, time.UTC)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *fakeClock { return &fakeClock{t: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// start serves opts over loopback. A nil opts.Now becomes a fixed clock
// at testNow.
func start(t *testing.T, opts Options) (*Server, *client) {
	t.Helper()
	if opts.Now == nil {
		opts.Now = newClock(testNow).Now
	}
	s := New(opts)
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	return s, &client{base: hs.URL, token: cmp.Or(opts.Token, DefaultToken), http: hs.Client()}
}

// client is a minimal API client for the tests.
type client struct {
	base  string
	token string
	http  *http.Client
	sent  atomic.Int64
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends one request with the given Authorization header ("" for none)
// to a path or an absolute URL.
func (c *client) do(method, target, auth string) (response, error) {
	if !strings.HasPrefix(target, "http") {
		target = c.base + target
	}
	req, err := http.NewRequest(method, target, nil)
	if err != nil {
		return response{}, err
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	c.sent.Add(1)
	resp, err := c.http.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, body}, err
}

// get fetches target with the right token, retrying 429s, expects 200 and
// decodes the body into v.
func (c *client) get(target string, v any) (http.Header, error) {
	for range 10 {
		r, err := c.do(http.MethodGet, target, "Bearer "+c.token)
		if err != nil {
			return nil, err
		}
		if r.status == http.StatusTooManyRequests {
			continue
		}
		if r.status != http.StatusOK {
			return nil, fmt.Errorf("GET %s: %d %s", target, r.status, r.body)
		}
		if ct := r.header.Get("Content-Type"); ct != "application/json" {
			return nil, fmt.Errorf("GET %s: Content-Type %q", target, ct)
		}
		return r.header, json.Unmarshal(r.body, v)
	}
	return nil, fmt.Errorf("GET %s: still rate limited after 10 tries", target)
}

func (c *client) mustGet(t *testing.T, target string, v any) http.Header {
	t.Helper()
	h, err := c.get(target, v)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// wantError checks an error response's status, JSON body and param.
func wantError(t *testing.T, r response, status int, code, param string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var e struct {
		Error   string  `json:"error"`
		Message string  `json:"message"`
		Param   *string `json:"param"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("error body %s: %v", r.body, err)
	}
	if e.Error != code || e.Message == "" {
		t.Errorf("error body %s, want error %q and a message", r.body, code)
	}
	gotParam := ""
	if e.Param != nil {
		gotParam = *e.Param
	}
	if gotParam != param {
		t.Errorf("error body %s, want param %q", r.body, param)
	}
}

func (c *client) mustDo(t *testing.T, method, target string) response {
	t.Helper()
	r, err := c.do(method, target, "Bearer "+c.token)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// walkCustomers pages through GET /v1/customers and checks each meta.
func walkCustomers(c *client, query string, perPage int) ([]Customer, error) {
	var all []Customer
	for page := 1; ; page++ {
		var body customerPage
		if _, err := c.get(fmt.Sprintf("/v1/customers?page=%d&per_page=%d%s", page, perPage, query), &body); err != nil {
			return nil, err
		}
		m := body.Meta
		if m.Page != page || m.PerPage != perPage || m.TotalPages != (m.Total+perPage-1)/perPage {
			return nil, fmt.Errorf("page %d: meta %+v", page, m)
		}
		if len(body.Data) == 0 {
			if page != m.TotalPages+1 {
				return nil, fmt.Errorf("empty page %d of %d", page, m.TotalPages)
			}
			if len(all) != m.Total {
				return nil, fmt.Errorf("walked %d customers, meta.total %d", len(all), m.Total)
			}
			return all, nil
		}
		all = append(all, body.Data...)
	}
}

// walkProducts pages through GET /v1/products by starting_after.
func walkProducts(c *client, limit int) ([]Product, error) {
	var all []Product
	target := fmt.Sprintf("/v1/products?limit=%d", limit)
	for {
		var body productList
		if _, err := c.get(target, &body); err != nil {
			return nil, err
		}
		if body.Object != "list" || body.URL != "/v1/products" || len(body.Data) > limit {
			return nil, fmt.Errorf("GET %s: %+v", target, body)
		}
		all = append(all, body.Data...)
		if !body.HasMore {
			return all, nil
		}
		target = fmt.Sprintf("/v1/products?limit=%d&starting_after=%s", limit, body.Data[len(body.Data)-1].ID)
	}
}

var linkNext = regexp.MustCompile(`^<([^>]+)>; rel="next"$`)

// walkOrders follows the Link headers of GET /v1/customers/{id}/orders.
func walkOrders(c *client, target string) ([]Order, error) {
	all := []Order{}
	for {
		var page []Order
		h, err := c.get(target, &page)
		if err != nil {
			return nil, err
		}
		if page == nil {
			return nil, fmt.Errorf("GET %s: body is not a JSON array", target)
		}
		all = append(all, page...)
		link := h.Get("Link")
		if link == "" {
			return all, nil
		}
		m := linkNext.FindStringSubmatch(link)
		if m == nil || !strings.HasPrefix(m[1], c.base+"/") {
			return nil, fmt.Errorf("GET %s: Link %q is not an absolute next link to %s", target, link, c.base)
		}
		if len(page) == 0 {
			return nil, fmt.Errorf("GET %s: empty page with a next link", target)
		}
		target = m[1]
	}
}

func ids[T any](xs []T, id func(T) string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = id(x)
	}
	return out
}

func customerID(c Customer) string { return strconv.Itoa(c.ID) }
func productID(p Product) string   { return p.ID }
func orderIDOf(o Order) string     { return o.ID }

// sortedCustomers returns customers in the order the API lists them: by id.
func sortedCustomers(cs []Customer) []Customer {
	cs = slices.Clone(cs)
	slices.SortFunc(cs, func(a, b Customer) int { return a.ID - b.ID })
	return cs
}

func ordersOf(orders []Order, customer int) []Order {
	out := []Order{}
	for _, o := range orders {
		if o.CustomerID == customer {
			out = append(out, o)
		}
	}
	return out
}

func TestDeterministic(t *testing.T) {
	t.Parallel()
	clock := newClock(testNow).Now
	a := New(Options{Seed: 7, Customers: 150, Now: clock})
	b := New(Options{Seed: 7, Customers: 150, Now: clock})
	if !reflect.DeepEqual(a.Customers(), b.Customers()) ||
		!reflect.DeepEqual(a.Products(), b.Products()) ||
		!reflect.DeepEqual(a.Orders(), b.Orders()) {
		t.Fatal("two servers with seed 7 generated different data")
	}
	c := New(Options{Seed: 8, Customers: 150, Now: clock})
	if reflect.DeepEqual(a.Customers(), c.Customers()) ||
		reflect.DeepEqual(a.Products(), c.Products()) ||
		reflect.DeepEqual(a.Orders(), c.Orders()) {
		t.Fatal("seeds 7 and 8 generated the same data")
	}

	// The same seed serves the same bytes.
	_, c1 := start(t, Options{Seed: 7, RateLimitEvery: -1})
	_, c2 := start(t, Options{Seed: 7, RateLimitEvery: -1})
	for _, target := range []string{"/v1/customers?per_page=100&page=3", "/v1/products?limit=50", "/v1/customers/9/orders"} {
		r1, r2 := c1.mustDo(t, http.MethodGet, target), c2.mustDo(t, http.MethodGet, target)
		if r1.status != http.StatusOK || string(r1.body) != string(r2.body) {
			t.Errorf("GET %s differs between two servers with seed 7: %d %s\n%d %s", target, r1.status, r1.body, r2.status, r2.body)
		}
	}

	// Another data set size keeps the customers: streams are independent.
	d := New(Options{Seed: 7, Customers: 150, Products: 5, Now: clock})
	if !reflect.DeepEqual(a.Customers(), d.Customers()) {
		t.Error("changing Products changed the customers")
	}
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	s := New(Options{Now: newClock(testNow).Now})
	if n := len(s.Customers()); n != DefaultCustomers {
		t.Errorf("%d customers, want %d", n, DefaultCustomers)
	}
	if n := len(s.Products()); n != DefaultProducts {
		t.Errorf("%d products, want %d", n, DefaultProducts)
	}
	if n := len(s.Orders()); n < 3*DefaultCustomers || n > 5*DefaultCustomers {
		t.Errorf("%d orders, want about %d", n, 4*DefaultCustomers)
	}
	if !reflect.DeepEqual(s.Customers(), New(Options{Seed: DefaultSeed, Now: newClock(testNow).Now}).Customers()) {
		t.Error("zero Seed is not DefaultSeed")
	}
	empty := New(Options{Customers: -1, Products: -1, Now: newClock(testNow).Now})
	if len(empty.Customers())+len(empty.Products())+len(empty.Orders()) != 0 {
		t.Error("negative Customers and Products still generated records")
	}
	noProducts := New(Options{Customers: 20, Products: -1, Now: newClock(testNow).Now})
	if len(noProducts.Customers()) != 20 || len(noProducts.Orders()) != 0 {
		t.Error("without products: want 20 customers and no orders")
	}
}

func isCents(v float64) bool { return v >= 0 && math.Round(v*100)/100 == v }

func inDataRange(t time.Time) bool { return !t.Before(dataStart) && !t.After(dataEnd) }

func TestDataShape(t *testing.T) {
	t.Parallel()
	// A clock before the data: nothing is touched, everything is as generated.
	s := New(Options{Now: newClock(dataStart.AddDate(-1, 0, 0)).Now})
	customers, products, orders := s.Customers(), s.Products(), s.Orders()

	emails := map[string]bool{}
	var leadingZero, noTags, optInNull, optInTrue, optInFalse, inactive int
	for i, c := range customers {
		if c.ID != i+1 {
			t.Fatalf("customer %d has id %d", i, c.ID)
		}
		if emails[c.Email] || !strings.Contains(c.Email, "@") {
			t.Errorf("customer %d: email %q duplicate or invalid", c.ID, c.Email)
		}
		emails[c.Email] = true
		if c.Name == "" || len(c.Country) != 2 || c.Address.Street == "" || c.Address.City == "" || c.Address.PostalCode == "" {
			t.Errorf("customer %d incomplete: %+v", c.ID, c)
		}
		if !isCents(c.LifetimeValue) {
			t.Errorf("customer %d: lifetime_value %v has more than two decimals", c.ID, c.LifetimeValue)
		}
		if !inDataRange(c.CreatedAt) || !inDataRange(c.UpdatedAt) || c.UpdatedAt.Before(c.CreatedAt) ||
			c.CreatedAt.Location() != time.UTC || c.CreatedAt.Nanosecond() != 0 {
			t.Errorf("customer %d: created_at %v, updated_at %v", c.ID, c.CreatedAt, c.UpdatedAt)
		}
		if c.Tags == nil {
			t.Errorf("customer %d: nil tags", c.ID)
		}
		if strings.HasPrefix(c.Address.PostalCode, "0") {
			leadingZero++
		}
		if len(c.Tags) == 0 {
			noTags++
		}
		switch {
		case c.MarketingOptIn == nil:
			optInNull++
		case *c.MarketingOptIn:
			optInTrue++
		default:
			optInFalse++
		}
		if !c.IsActive {
			inactive++
		}
	}
	for name, n := range map[string]int{
		"postal codes with a leading zero": leadingZero, "customers without tags": noTags,
		"null marketing_opt_in": optInNull, "true marketing_opt_in": optInTrue,
		"false marketing_opt_in": optInFalse, "inactive customers": inactive,
	} {
		if n == 0 {
			t.Errorf("no %s", name)
		}
	}

	byID := map[string]Product{}
	keySets := map[string]bool{}
	for i, p := range products {
		if want := fmt.Sprintf("prod_%04d", i+1); p.ID != want {
			t.Fatalf("product %d has id %q, want %q", i, p.ID, want)
		}
		byID[p.ID] = p
		if p.Currency != "EUR" && p.Currency != "USD" || !isCents(p.Price) || p.Price == 0 ||
			p.Stock < 0 || p.SKU == "" || !inDataRange(p.UpdatedAt) || len(p.Attributes) < 2 {
			t.Errorf("product %s: %+v", p.ID, p)
		}
		keys := slices.Sorted(maps.Keys(p.Attributes))
		keySets[strings.Join(keys, ",")] = true
	}
	if len(keySets) < 5 {
		t.Errorf("only %d distinct attribute key sets", len(keySets))
	}

	perCustomer := map[int]int{}
	statuses := map[string]int{}
	for i, o := range orders {
		if want := fmt.Sprintf("ord_%06d", i+1); o.ID != want {
			t.Fatalf("order %d has id %q, want %q", i, o.ID, want)
		}
		if i > 0 && o.CreatedAt.Before(orders[i-1].CreatedAt) {
			t.Errorf("order %s created before %s", o.ID, orders[i-1].ID)
		}
		perCustomer[o.CustomerID]++
		statuses[o.Status]++
		if o.CustomerID < 1 || o.CustomerID > len(customers) || o.CreatedAt.Before(customers[o.CustomerID-1].CreatedAt) {
			t.Errorf("order %s: customer %d", o.ID, o.CustomerID)
		}
		if !inDataRange(o.CreatedAt) || !inDataRange(o.UpdatedAt) || o.UpdatedAt.Before(o.CreatedAt) {
			t.Errorf("order %s: created_at %v, updated_at %v", o.ID, o.CreatedAt, o.UpdatedAt)
		}
		if len(o.Items) == 0 {
			t.Errorf("order %s has no items", o.ID)
		}
		var cents int64
		for _, it := range o.Items {
			p, ok := byID[it.ProductID]
			if !ok || p.Currency != o.Currency || it.UnitPrice != p.Price || it.Quantity < 1 {
				t.Errorf("order %s: item %+v (product %+v)", o.ID, it, p)
			}
			cents += int64(math.Round(it.UnitPrice*100)) * int64(it.Quantity)
		}
		if want := fmt.Sprintf("%d.%02d", cents/100, cents%100); o.Total != want {
			t.Errorf("order %s: total %q, items sum to %s", o.ID, o.Total, want)
		}
	}
	for _, st := range []string{"pending", "paid", "shipped", "refunded"} {
		if statuses[st] == 0 {
			t.Errorf("no %s orders", st)
		}
	}
	if len(statuses) != 4 {
		t.Errorf("statuses %v", statuses)
	}
	if len(perCustomer) == len(customers) {
		t.Error("every customer has orders; want some without")
	}
	for id, n := range perCustomer {
		if n > 8 {
			t.Errorf("customer %d has %d orders", id, n)
		}
	}
}

// TestWireFormat checks JSON types that a struct round trip would hide.
func TestWireFormat(t *testing.T) {
	t.Parallel()
	_, c := start(t, Options{RateLimitEvery: -1})

	var cs struct {
		Data []map[string]json.RawMessage `json:"data"`
	}
	c.mustGet(t, "/v1/customers?per_page=100", &cs)
	var sawNull bool
	decimals := regexp.MustCompile(`^\d+(\.\d{1,2})?$`)
	for _, rec := range cs.Data {
		if !decimals.Match(rec["lifetime_value"]) {
			t.Errorf("lifetime_value %s is not a number with at most two decimals", rec["lifetime_value"])
		}
		if v, ok := rec["marketing_opt_in"]; !ok {
			t.Error("marketing_opt_in missing")
		} else if string(v) == "null" {
			sawNull = true
		}
		if tags := string(rec["tags"]); !strings.HasPrefix(tags, "[") {
			t.Errorf("tags %s is not an array", tags)
		}
		if ts := string(rec["updated_at"]); !regexp.MustCompile(`^"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"$`).MatchString(ts) {
			t.Errorf("updated_at %s is not RFC 3339 UTC with seconds", ts)
		}
	}
	if !sawNull {
		t.Error("no null marketing_opt_in on the first page")
	}

	var orders []map[string]json.RawMessage
	c.mustGet(t, "/v1/customers/1/orders", &orders)
	if len(orders) == 0 {
		t.Fatal("customer 1 has no orders")
	}
	for _, o := range orders {
		if !regexp.MustCompile(`^"\d+\.\d\d"$`).Match(o["total"]) {
			t.Errorf("total %s is not a decimal string", o["total"])
		}
	}
}

func TestAuth(t *testing.T) {
	t.Parallel()
	s, c := start(t, Options{RateLimitEvery: -1})
	for _, auth := range []string{"", "Bearer", "Bearer wrong", "Basic ZGVtbzpkZW1v", "demo-token", "Bearer demo-token-2"} {
		r, err := c.do(http.MethodGet, "/v1/customers", auth)
		if err != nil {
			t.Fatal(err)
		}
		wantError(t, r, http.StatusUnauthorized, "unauthorized", "")
		if got := r.header.Get("WWW-Authenticate"); got != "Bearer" {
			t.Errorf("Authorization %q: WWW-Authenticate %q", auth, got)
		}
	}
	// Unknown paths answer 401 too: auth comes first.
	r, _ := c.do(http.MethodGet, "/v1/secret", "")
	wantError(t, r, http.StatusUnauthorized, "unauthorized", "")

	for _, auth := range []string{"Bearer demo-token", "bearer demo-token", "BEARER  demo-token"} {
		if r, err := c.do(http.MethodGet, "/v1/health", auth); err != nil || r.status != http.StatusOK {
			t.Errorf("Authorization %q: %d %s %v", auth, r.status, r.body, err)
		}
	}
	if got, want := s.Stats(), (Stats{Requests: 10, Unauthorized: 7}); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}

	_, custom := start(t, Options{Token: "s3cret", RateLimitEvery: -1})
	if r, _ := custom.do(http.MethodGet, "/v1/health", "Bearer demo-token"); r.status != http.StatusUnauthorized {
		t.Errorf("default token accepted by a server with another Token: %d", r.status)
	}
	var ok map[string]bool
	custom.mustGet(t, "/v1/health", &ok)
	if !ok["ok"] {
		t.Errorf("health: %v", ok)
	}
}

func TestCustomersPagination(t *testing.T) {
	t.Parallel()
	s, c := start(t, Options{RateLimitEvery: -1})
	want := sortedCustomers(s.Customers())
	for _, perPage := range []int{3, 37, 100} {
		got, err := walkCustomers(c, "", perPage)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("per_page=%d: walked %v, want %v", perPage, ids(got, customerID), ids(want, customerID))
		}
	}

	var body customerPage
	c.mustGet(t, "/v1/customers", &body)
	if body.Meta != (pageMeta{Page: 1, PerPage: 25, Total: 500, TotalPages: 20}) || len(body.Data) != 25 {
		t.Errorf("defaults: meta %+v, %d records", body.Meta, len(body.Data))
	}
	c.mustGet(t, "/v1/customers?per_page=1000&page=2", &body)
	if body.Meta.PerPage != 100 || len(body.Data) != 100 || body.Data[0].ID != want[100].ID {
		t.Errorf("per_page=1000: meta %+v, %d records", body.Meta, len(body.Data))
	}
	c.mustGet(t, "/v1/customers?page=999999999999", &body)
	if len(body.Data) != 0 || body.Data == nil {
		t.Errorf("page past the end: %d records, data %v", len(body.Data), body.Data)
	}

	_, small := start(t, Options{RateLimitEvery: -1, MaxPageSize: 10})
	small.mustGet(t, "/v1/customers", &body)
	if body.Meta.PerPage != 10 || len(body.Data) != 10 {
		t.Errorf("MaxPageSize 10: meta %+v", body.Meta)
	}

	for _, q := range []struct{ query, param string }{
		{"page=0", "page"}, {"page=-1", "page"}, {"page=x", "page"},
		{"per_page=0", "per_page"}, {"per_page=1.5", "per_page"},
	} {
		wantError(t, c.mustDo(t, http.MethodGet, "/v1/customers?"+q.query), http.StatusBadRequest, "invalid_request", q.param)
	}
}

func TestCustomersUpdatedSince(t *testing.T) {
	t.Parallel()
	s, c := start(t, Options{RateLimitEvery: -1})
	all := sortedCustomers(s.Customers())
	since := all[300].UpdatedAt
	var want []Customer
	for _, cu := range all {
		if !cu.UpdatedAt.Before(since) {
			want = append(want, cu)
		}
	}
	if len(want) < 200 || len(want) == len(all) {
		t.Fatalf("bad threshold: %d of %d customers", len(want), len(all))
	}
	// The same instant in UTC and with an offset (percent-encoded "+").
	for _, v := range []string{since.Format(time.RFC3339), since.In(time.FixedZone("", 5400)).Format(time.RFC3339)} {
		got, err := walkCustomers(c, "&updated_since="+url.QueryEscape(v), 30)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("updated_since=%s: got %v, want %v", v, ids(got, customerID), ids(want, customerID))
		}
	}
	for _, v := range []string{"yesterday", "2025-01-01", "2025-01-01T00:00:00", "2025-01-01T00:00:00 01:00"} {
		r := c.mustDo(t, http.MethodGet, "/v1/customers?updated_since="+url.QueryEscape(v))
		wantError(t, r, http.StatusBadRequest, "invalid_request", "updated_since")
	}
}

func TestProductsPagination(t *testing.T) {
	t.Parallel()
	s, c := start(t, Options{RateLimitEvery: -1})
	want := s.Products()
	for _, limit := range []int{1, 7, 100} {
		got, err := walkProducts(c, limit)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("limit=%d: walked %v, want %v", limit, ids(got, productID), ids(want, productID))
		}
	}

	var body productList
	c.mustGet(t, "/v1/products", &body)
	if len(body.Data) != 10 || !body.HasMore {
		t.Errorf("default limit: %d products, has_more %v", len(body.Data), body.HasMore)
	}
	c.mustGet(t, "/v1/products?limit=500", &body)
	if len(body.Data) != 100 || !body.HasMore {
		t.Errorf("limit=500: %d products, has_more %v", len(body.Data), body.HasMore)
	}
	c.mustGet(t, "/v1/products?starting_after="+want[len(want)-1].ID, &body)
	if len(body.Data) != 0 || body.Data == nil || body.HasMore {
		t.Errorf("after the last product: %+v", body)
	}

	r := c.mustDo(t, http.MethodGet, "/v1/products?starting_after=prod_9999")
	wantError(t, r, http.StatusBadRequest, "invalid_request", "starting_after")
	if !strings.Contains(string(r.body), "No such product: 'prod_9999'") {
		t.Errorf("unknown starting_after: %s", r.body)
	}
	wantError(t, c.mustDo(t, http.MethodGet, "/v1/products?limit=-5"), http.StatusBadRequest, "invalid_request", "limit")
}

func TestOrdersLinkPagination(t *testing.T) {
	t.Parallel()
	s, c := start(t, Options{RateLimitEvery: -1})
	orders := s.Orders()
	counts := map[int]int{}
	for _, o := range orders {
		counts[o.CustomerID]++
	}
	none, most := 0, 1
	for _, cu := range s.Customers() {
		if counts[cu.ID] == 0 && none == 0 {
			none = cu.ID
		}
		if counts[cu.ID] > counts[most] {
			most = cu.ID
		}
	}
	if none == 0 || counts[most] < 7 {
		t.Fatalf("want a customer without orders and one with many: %d, %d (%d orders)", none, most, counts[most])
	}

	for _, id := range []int{none, most, 1, 2, 3, 500} {
		want := ordersOf(orders, id)
		for _, limit := range []int{1, 3, 100} {
			got, err := walkOrders(c, fmt.Sprintf("/v1/customers/%d/orders?limit=%d", id, limit))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("customer %d, limit=%d: walked %v, want %v", id, limit, ids(got, orderIDOf), ids(want, orderIDOf))
			}
		}
	}

	// No orders: an empty array and no Link.
	r := c.mustDo(t, http.MethodGet, fmt.Sprintf("/v1/customers/%d/orders", none))
	if r.status != http.StatusOK || strings.TrimSpace(string(r.body)) != "[]" || r.header.Get("Link") != "" {
		t.Errorf("customer without orders: %d %q Link %q", r.status, r.body, r.header.Get("Link"))
	}

	// updated_since filters and is carried in the next links.
	mine := ordersOf(orders, most)
	since := mine[len(mine)/2].UpdatedAt
	var want []Order
	for _, o := range mine {
		if !o.UpdatedAt.Before(since) {
			want = append(want, o)
		}
	}
	first := fmt.Sprintf("/v1/customers/%d/orders?limit=1&updated_since=%s", most, url.QueryEscape(since.Format(time.RFC3339)))
	r = c.mustDo(t, http.MethodGet, first)
	if len(want) > 1 && !strings.Contains(r.header.Get("Link"), "updated_since=") {
		t.Errorf("Link %q lost updated_since", r.header.Get("Link"))
	}
	got, err := walkOrders(c, first)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("updated_since: walked %v, want %v", ids(got, orderIDOf), ids(want, orderIDOf))
	}

	for _, target := range []string{"/v1/customers/0/orders", "/v1/customers/501/orders", "/v1/customers/abc/orders", "/v1/customers/-1/orders"} {
		wantError(t, c.mustDo(t, http.MethodGet, target), http.StatusNotFound, "not_found", "")
	}
	badCursors := []string{"!!!", base64.RawURLEncoding.EncodeToString([]byte("hello")),
		base64.RawURLEncoding.EncodeToString([]byte("ord_")), base64.RawURLEncoding.EncodeToString([]byte("ord_-3"))}
	for _, cur := range badCursors {
		wantError(t, c.mustDo(t, http.MethodGet, "/v1/customers/1/orders?cursor="+url.QueryEscape(cur)),
			http.StatusBadRequest, "invalid_request", "cursor")
	}
	wantError(t, c.mustDo(t, http.MethodGet, "/v1/customers/1/orders?limit=0"), http.StatusBadRequest, "invalid_request", "limit")
	wantError(t, c.mustDo(t, http.MethodGet, "/v1/customers/1/orders?updated_since=soon"), http.StatusBadRequest, "invalid_request", "updated_since")
}

func TestNotFound(t *testing.T) {
	t.Parallel()
	_, c := start(t, Options{RateLimitEvery: -1})
	for _, target := range []string{"/", "/v1", "/v1/nope", "/v1/customers/", "/v1/customers/1", "/v1/customers/1/orders/2", "/v1/customers//orders", "/v2/products"} {
		wantError(t, c.mustDo(t, http.MethodGet, target), http.StatusNotFound, "not_found", "")
	}
	r := c.mustDo(t, http.MethodPost, "/v1/customers")
	wantError(t, r, http.StatusMethodNotAllowed, "method_not_allowed", "")
	if r.header.Get("Allow") != "GET, HEAD" {
		t.Errorf("Allow %q", r.header.Get("Allow"))
	}
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	clock := newClock(testNow.Add(300 * time.Millisecond))
	s, c := start(t, Options{RateLimitEvery: 5, RetryAfter: 2 * time.Second, Now: clock.Now})

	// Unauthenticated requests do not count towards the limit.
	for range 3 {
		if r, _ := c.do(http.MethodGet, "/v1/health", ""); r.status != http.StatusUnauthorized {
			t.Fatalf("unauthenticated: %d", r.status)
		}
	}
	targets := []string{"/v1/health", "/v1/customers", "/v1/products", "/v1/customers/3/orders", "/v1/nope"}
	var retryAfters []string
	for n := 1; n <= 30; n++ {
		target := targets[n%len(targets)]
		r := c.mustDo(t, http.MethodGet, target)
		if n%5 != 0 {
			if r.status == http.StatusTooManyRequests {
				t.Fatalf("request %d rate limited", n)
			}
			continue
		}
		wantError(t, r, http.StatusTooManyRequests, "rate_limited", "")
		retryAfters = append(retryAfters, r.header.Get("Retry-After"))
		n++ // the retry of the same request succeeds
		if r := c.mustDo(t, http.MethodGet, target); r.status == http.StatusTooManyRequests {
			t.Fatalf("retry of %s rate limited", target)
		}
	}
	// 12:34:56.3 + 2s, rounded up to the second.
	date := time.Date(2026, 3, 10, 12, 34, 59, 0, time.UTC).Format(http.TimeFormat)
	if want := []string{"2", "2", date, "2", "2", date}; !slices.Equal(retryAfters, want) {
		t.Errorf("Retry-After values %q, want %q", retryAfters, want)
	}
	if when, err := http.ParseTime(date); err != nil || when.Before(clock.Now().Add(2*time.Second)) {
		t.Errorf("HTTP-date %q (%v) is before now + RetryAfter", date, err)
	}
	if got, want := s.Stats(), (Stats{Requests: 34, RateLimited: 6, Unauthorized: 3}); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
}

func TestRateLimitOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		opts       Options
		requests   int
		limited    []int // 1-based positions answered 429
		retryAfter string
	}{
		{"default", Options{}, 140, []int{70, 140}, "1"},
		{"never", Options{RateLimitEvery: -1}, 150, nil, ""},
		{"one means two", Options{RateLimitEvery: 1}, 6, []int{2, 4, 6}, "1"},
		{"rounded up", Options{RateLimitEvery: 3, RetryAfter: 1500 * time.Millisecond}, 3, []int{3}, "2"},
		{"no wait", Options{RateLimitEvery: 3, RetryAfter: -1}, 3, []int{3}, "0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, c := start(t, tt.opts)
			var limited []int
			for n := 1; n <= tt.requests; n++ {
				r := c.mustDo(t, http.MethodGet, "/v1/health")
				if r.status == http.StatusTooManyRequests {
					limited = append(limited, n)
					if len(limited) == 1 && r.header.Get("Retry-After") != tt.retryAfter {
						t.Errorf("Retry-After %q, want %q", r.header.Get("Retry-After"), tt.retryAfter)
					}
				}
			}
			if !slices.Equal(limited, tt.limited) {
				t.Errorf("rate limited requests %v, want %v", limited, tt.limited)
			}
		})
	}
}

func TestRecentUpdates(t *testing.T) {
	t.Parallel()
	// A server whose clock stays before the data never touches anything.
	static := New(Options{Now: newClock(dataStart.AddDate(-1, 0, 0)).Now})
	clock := newClock(testNow)
	s, c := start(t, Options{RateLimitEvery: -1, Now: clock.Now})

	minute := testNow.Truncate(time.Minute)
	touchedAt := func(m time.Time) []int {
		var out []int
		for id := 1; id <= DefaultCustomers; id++ {
			if int64(id)%97 == (m.Unix()/60)%97 {
				out = append(out, id)
			}
		}
		return out
	}
	// check compares the served data with the static data: exactly the
	// customers in touched (and their newest orders) differ, only in
	// updated_at, which is the given minute.
	check := func(touched map[int]time.Time) {
		t.Helper()
		want := static.Customers()
		for id, at := range touched {
			want[id-1].UpdatedAt = at
		}
		if got := s.Customers(); !reflect.DeepEqual(got, want) {
			t.Errorf("Customers() differs from static data beyond touched %v", touched)
		}
		wantOrders := static.Orders()
		newest := map[int]int{}
		for i, o := range wantOrders {
			newest[o.CustomerID] = i
		}
		for id, at := range touched {
			if i, ok := newest[id]; ok {
				wantOrders[i].UpdatedAt = at
			}
		}
		if got := s.Orders(); !reflect.DeepEqual(got, wantOrders) {
			t.Errorf("Orders() differs from static data beyond touched %v", touched)
		}
	}

	first := touchedAt(minute)
	if len(first) < 4 || len(first) > 6 {
		t.Fatalf("%d customers touched per minute, want about 1%% of %d", len(first), DefaultCustomers)
	}
	touched := map[int]time.Time{}
	for _, id := range first {
		touched[id] = minute
	}
	check(touched)

	// A minute later another 1% is touched; the first ones keep their touch.
	next := minute.Add(time.Minute)
	clock.Set(next.Add(30 * time.Second))
	second := touchedAt(next)
	for _, id := range second {
		touched[id] = next
	}
	check(touched)

	// An incremental sync from the first minute sees both sets, oldest first.
	var body customerPage
	c.mustGet(t, "/v1/customers?per_page=100&updated_since="+minute.Format(time.RFC3339), &body)
	if got, want := ids(body.Data, customerID), ids(sortedSubset(s.Customers(), append(first, second...)), customerID); !slices.Equal(got, want) {
		t.Errorf("updated_since first minute: %v, want %v", got, want)
	}
	c.mustGet(t, "/v1/customers?updated_since="+next.Format(time.RFC3339), &body)
	if got, want := ids(body.Data, customerID), ids(sortedSubset(s.Customers(), second), customerID); !slices.Equal(got, want) {
		t.Errorf("updated_since second minute: %v, want %v", got, want)
	}
	// A touched customer's newest order shows up in its incremental sync.
	for _, id := range second {
		var got []Order
		c.mustGet(t, fmt.Sprintf("/v1/customers/%d/orders?updated_since=%s", id, next.Format(time.RFC3339)), &got)
		mine := ordersOf(s.Orders(), id)
		if len(mine) == 0 {
			if len(got) != 0 {
				t.Errorf("customer %d has no orders but served %v", id, ids(got, orderIDOf))
			}
			continue
		}
		if len(got) != 1 || got[0].ID != mine[len(mine)-1].ID || !got[0].UpdatedAt.Equal(next) {
			t.Errorf("customer %d: recent orders %v, want its newest %s at %v", id, ids(got, orderIDOf), mine[len(mine)-1].ID, next)
		}
	}

	// 97 minutes after the first touch, the first set is touched again.
	again := minute.Add(97 * time.Minute)
	clock.Set(again)
	for _, id := range first {
		if got := s.Customers()[id-1].UpdatedAt; !got.Equal(again) {
			t.Errorf("customer %d updated_at %v, want %v", id, got, again)
		}
	}

	// Before the server started nothing was touched.
	clock.Set(minute.Add(-time.Minute))
	if !reflect.DeepEqual(s.Customers(), static.Customers()) {
		t.Error("customers touched before the server was created")
	}
}

func sortedSubset(all []Customer, ids []int) []Customer {
	var out []Customer
	for _, id := range ids {
		out = append(out, all[id-1])
	}
	return sortedCustomers(out)
}

func TestConcurrent(t *testing.T) {
	t.Parallel()
	s, c := start(t, Options{RateLimitEvery: 7})
	wantCustomers := sortedCustomers(s.Customers())
	wantProducts := s.Products()
	orders := s.Orders()

	var wg sync.WaitGroup
	for g := range 6 {
		wg.Go(func() {
			var err error
			switch g % 3 {
			case 0:
				var got []Customer
				if got, err = walkCustomers(c, "", 100); err == nil && !reflect.DeepEqual(got, wantCustomers) {
					err = errors.New("customers differ")
				}
			case 1:
				var got []Product
				if got, err = walkProducts(c, 20); err == nil && !reflect.DeepEqual(got, wantProducts) {
					err = errors.New("products differ")
				}
			case 2:
				for id := g; id < g+10 && err == nil; id++ {
					var got []Order
					if got, err = walkOrders(c, fmt.Sprintf("/v1/customers/%d/orders?limit=2", id)); err == nil &&
						!reflect.DeepEqual(got, ordersOf(orders, id)) {
						err = fmt.Errorf("orders of customer %d differ", id)
					}
				}
			}
			if err != nil {
				t.Errorf("goroutine %d: %v", g, err)
			}
		})
	}
	wg.Wait()
	st := s.Stats()
	if st.Requests != c.sent.Load() || st.RateLimited != st.Requests/7 || st.RateLimited == 0 {
		t.Errorf("Stats() = %+v after %d requests", st, c.sent.Load())
	}
}

func TestCursorRoundTrip(t *testing.T) {
	t.Parallel()
	for _, id := range []string{"ord_000001", "ord_123456", "ord_1234567"} {
		n, ok := decodeCursor(encodeCursor(id))
		if want, _ := strconv.Atoi(strings.TrimPrefix(id, "ord_")); !ok || n != want {
			t.Errorf("decodeCursor(encodeCursor(%q)) = %d, %v", id, n, ok)
		}
	}
}

func TestFormatCents(t *testing.T) {
	t.Parallel()
	for cents, want := range map[int64]string{0: "0.00", 5: "0.05", 100: "1.00", 1010: "10.10", 12345: "123.45"} {
		if got := formatCents(cents); got != want {
			t.Errorf("formatCents(%d) = %q, want %q", cents, got, want)
		}
	}
}
