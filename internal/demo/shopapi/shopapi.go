// Package shopapi is the sample shop API that `ferry demo` and Ferry's tests
// sync from: customers, products and per-customer orders behind bearer
// auth, with three pagination styles and occasional rate limiting, like a
// real provider.
//
// # Endpoints
//
// Every request needs "Authorization: Bearer <token>"; without it the
// answer is 401 with "WWW-Authenticate: Bearer". Every response, errors
// included, is JSON. Errors look like
//
//	{"error":"invalid_request","message":"No such product: 'prod_9999'","param":"starting_after"}
//
// where "error" is a stable code and "param" (optional) names the query
// parameter at fault.
//
//   - GET /v1/customers?page=N&per_page=M&updated_since=T paginates by page
//     number, sorted by id (stable while customers change). per_page defaults to 25. The body
//     is {"data":[...],"meta":{"page":N,"per_page":M,"total":T,"total_pages":P}};
//     a page past the end has empty data.
//   - GET /v1/products?limit=M&starting_after=ID paginates Stripe-style by
//     the last record's ID, sorted by id. limit defaults to 10. The body is
//     {"object":"list","data":[...],"has_more":B,"url":"/v1/products"}.
//   - GET /v1/customers/{id}/orders?limit=M&cursor=C&updated_since=T
//     returns a bare JSON array of one customer's orders sorted by id, and
//     while more remain a "Link: <absolute URL>; rel="next"" header (RFC
//     8288) whose URL carries an opaque cursor and the other query
//     parameters. limit defaults to 25.
//   - GET /v1/health returns {"ok":true}.
//
// Page sizes above Options.MaxPageSize are capped to it. updated_since is
// an RFC 3339 time and keeps records with updated_at at or after it.
//
// # Rate limiting
//
// Every Options.RateLimitEvery-th authenticated request (counting all
// endpoints) is answered 429 with a Retry-After header and no other
// effect; the next request, such as the client's retry, succeeds.
// Retry-After is in delta-seconds, except that every third 429 carries an
// HTTP-date, as some providers send.
//
// # Data and recent updates
//
// The data is generated once, in New, from Options.Seed: the same seed
// gives the same records. Customer IDs run from 1, products from
// "prod_0001" and orders from "ord_000001" in creation order. All
// generated timestamps lie in 2024–2025 and updated_at is never before
// created_at.
//
// So that a second sync has something to pick up, customers are touched
// as the clock runs: in each minute m (counted in Unix minutes) since the
// server was created, the customers whose id%97 == m%97, about 1% of
// them, get updated_at = the start of minute m, and so does each one's
// newest order. A touch persists until the customer's next one, 97
// minutes later, so while the clock runs forward updated_at never goes
// backwards, and an incremental sync with updated_since sees every record
// touched since the previous sync. A touch only ever moves updated_at
// forward (under a clock inside 2024–2025 a record may stay as
// generated), and nothing else about a record changes. The accessors
// Customers, Products and Orders report the data as served at the clock's
// current time, so tests can compare a synced table with them.
package shopapi

import (
	"cmp"
	"net/http"
	"sync/atomic"
	"time"
)

// Defaults for the zero fields of Options.
const (
	DefaultToken          = "demo-token"
	DefaultCustomers      = 500
	DefaultProducts       = 120
	DefaultSeed           = 1
	DefaultRateLimitEvery = 70
	DefaultRetryAfter     = time.Second
	DefaultMaxPageSize    = 100
)

// touchPeriod is how many minutes pass between two touches of a customer;
// one customer in touchPeriod is touched each minute.
const touchPeriod = 97

// Options configures a Server. The zero value of every field selects its
// default.
type Options struct {
	// Token is the bearer token every request must carry; default
	// DefaultToken.
	Token string

	// Customers is how many customers to generate; default
	// DefaultCustomers, negative for none.
	Customers int

	// Products is how many products to generate; default DefaultProducts,
	// negative for none. Without products no customer has orders.
	Products int

	// Seed seeds the data generator; default DefaultSeed.
	Seed int64

	// Now is the clock that drives recent updates and Retry-After dates;
	// default time.Now. It must be safe for concurrent use.
	Now func() time.Time

	// RateLimitEvery makes every Nth authenticated request answer 429;
	// default DefaultRateLimitEvery, negative to never rate limit. 1 is
	// taken as 2, so that a retry always succeeds.
	RateLimitEvery int

	// RetryAfter is the wait announced with each 429, sent as whole
	// seconds rounded up; default DefaultRetryAfter. Negative announces
	// no wait ("Retry-After: 0").
	RetryAfter time.Duration

	// MaxPageSize caps every page size a client asks for; default
	// DefaultMaxPageSize, also used for negative values.
	MaxPageSize int
}

// Stats counts requests since the Server was created.
type Stats struct {
	Requests     int64 // all requests, whatever their answer
	RateLimited  int64 // answered 429
	Unauthorized int64 // answered 401
}

// Server is the shop API, an http.Handler. Its data is fixed in New and
// only read afterwards (besides a cache swapped atomically), so it is safe
// for concurrent use.
type Server struct {
	token       string
	now         func() time.Time
	every       int64 // rate limit every Nth admitted request; 0 for never
	retryAfter  time.Duration
	maxPageSize int

	customers   []Customer // customers[i].ID == i+1
	products    []Product  // sorted by ID
	orders      []Order    // sorted by ID; orders[i] is the order numbered i+1
	byCustomer  [][]int    // byCustomer[id-1] indexes that customer's orders, in ID order
	startMinute int64      // Unix minute in which New ran; touches start here

	requests     atomic.Int64
	admitted     atomic.Int64 // authenticated requests, the rate limiter's count
	rateLimited  atomic.Int64
	unauthorized atomic.Int64
}

var _ http.Handler = (*Server)(nil)

// New generates the data from opts.Seed and returns a Server for it.
func New(opts Options) *Server {
	s := &Server{
		token:       cmp.Or(opts.Token, DefaultToken),
		now:         opts.Now,
		every:       int64(opts.RateLimitEvery),
		retryAfter:  opts.RetryAfter,
		maxPageSize: opts.MaxPageSize,
	}
	if s.now == nil {
		s.now = time.Now
	}
	switch {
	case s.every == 0:
		s.every = DefaultRateLimitEvery
	case s.every < 0:
		s.every = 0
	case s.every == 1:
		s.every = 2
	}
	switch {
	case s.retryAfter == 0:
		s.retryAfter = DefaultRetryAfter
	case s.retryAfter < 0:
		s.retryAfter = 0
	}
	if s.maxPageSize <= 0 {
		s.maxPageSize = DefaultMaxPageSize
	}
	seed := opts.Seed
	if seed == 0 {
		seed = DefaultSeed
	}
	s.customers = generateCustomers(seed, count(opts.Customers, DefaultCustomers))
	s.products = generateProducts(seed, count(opts.Products, DefaultProducts))
	s.orders = generateOrders(seed, s.customers, s.products)
	s.byCustomer = make([][]int, len(s.customers))
	for i, o := range s.orders {
		s.byCustomer[o.CustomerID-1] = append(s.byCustomer[o.CustomerID-1], i)
	}
	s.startMinute = unixMinute(s.now())
	return s
}

// count applies the "zero is the default, negative is none" rule.
func count(n, def int) int {
	switch {
	case n == 0:
		return def
	case n < 0:
		return 0
	}
	return n
}

// Stats returns the request counters.
func (s *Server) Stats() Stats {
	return Stats{
		Requests:     s.requests.Load(),
		RateLimited:  s.rateLimited.Load(),
		Unauthorized: s.unauthorized.Load(),
	}
}

// Customers returns all customers ordered by id, as served now (with
// recent updates applied). The caller may modify the result.
func (s *Server) Customers() []Customer {
	now := s.now()
	out := make([]Customer, len(s.customers))
	for i, c := range s.customers {
		out[i] = s.customerAt(c, now).clone()
	}
	return out
}

// Products returns all products ordered by id. The caller may modify the
// result.
func (s *Server) Products() []Product {
	out := make([]Product, len(s.products))
	for i, p := range s.products {
		out[i] = p.clone()
	}
	return out
}

// Orders returns the orders of all customers ordered by id, as served now
// (with recent updates applied). The caller may modify the result.
func (s *Server) Orders() []Order {
	now := s.now()
	out := make([]Order, len(s.orders))
	for i := range s.orders {
		out[i] = s.orderAt(i, now).clone()
	}
	return out
}

// unixMinute returns the number of whole minutes from the Unix epoch to t,
// rounding down.
func unixMinute(t time.Time) int64 {
	sec := t.Unix()
	m := sec / 60
	if sec%60 < 0 {
		m--
	}
	return m
}

// lastTouch returns the start of the latest minute, up to now's, in which
// the customer with the given id was touched, and false if there was none
// since the server was created.
func (s *Server) lastTouch(id int, now time.Time) (time.Time, bool) {
	cur := unixMinute(now)
	back := (cur - int64(id)) % touchPeriod
	if back < 0 {
		back += touchPeriod
	}
	m := cur - back
	if m < s.startMinute {
		return time.Time{}, false
	}
	return time.Unix(m*60, 0).UTC(), true
}

// customerAt returns c as served at now. The result shares memory with
// s.customers.
func (s *Server) customerAt(c Customer, now time.Time) Customer {
	if t, ok := s.lastTouch(c.ID, now); ok && t.After(c.UpdatedAt) {
		c.UpdatedAt = t
	}
	return c
}

// orderAt returns s.orders[i] as served at now. The result shares memory
// with s.orders.
func (s *Server) orderAt(i int, now time.Time) Order {
	o := s.orders[i]
	own := s.byCustomer[o.CustomerID-1]
	if own[len(own)-1] != i {
		return o // not the customer's newest order
	}
	if t, ok := s.lastTouch(o.CustomerID, now); ok && t.After(o.UpdatedAt) {
		o.UpdatedAt = t
	}
	return o
}
