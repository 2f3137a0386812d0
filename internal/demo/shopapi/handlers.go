package shopapi

import (
	"bytes"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Default page sizes when the client names none.
const (
	defaultPerPage       = 25 // customers
	defaultProductsLimit = 10 // products, as Stripe
	defaultOrdersLimit   = 25 // orders
)

// apiError is an error answer. Its JSON encoding is the response body.
type apiError struct {
	status  int
	Code    string `json:"error"`
	Message string `json:"message"`
	Param   string `json:"param,omitempty"`
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

func invalidParam(param, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, Code: "invalid_request", Message: fmt.Sprintf(format, args...), Param: param}
}

func notFound(format string, args ...any) *apiError {
	return &apiError{status: http.StatusNotFound, Code: "not_found", Message: fmt.Sprintf(format, args...)}
}

// ServeHTTP answers one API request: 401 without the bearer token, 429 on
// every Options.RateLimitEvery-th authenticated request, and otherwise
// the endpoint's answer.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	if !s.authorized(r) {
		s.unauthorized.Add(1)
		w.Header().Set("WWW-Authenticate", "Bearer")
		writeError(w, &apiError{
			status:  http.StatusUnauthorized,
			Code:    "unauthorized",
			Message: `Missing or invalid API token; send "Authorization: Bearer <token>"`,
		})
		return
	}
	if n := s.admitted.Add(1); s.every > 0 && n%s.every == 0 {
		s.writeRateLimited(w, s.rateLimited.Add(1))
		return
	}
	if err := s.route(w, r); err != nil {
		writeError(w, err)
	}
}

// authorized reports whether r carries the server's bearer token. The
// scheme is case-insensitive (RFC 9110); the token is compared in
// constant time.
func (s *Server) authorized(r *http.Request) bool {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	return ok && strings.EqualFold(scheme, "Bearer") &&
		subtle.ConstantTimeCompare([]byte(strings.TrimSpace(token)), []byte(s.token)) == 1
}

// writeRateLimited answers the nth rate-limited request with 429. Every
// third one announces the wait as an HTTP-date, rounded up to the second
// so the client never retries early; the others as delta-seconds.
func (s *Server) writeRateLimited(w http.ResponseWriter, n int64) {
	var after string
	if n%3 == 0 {
		t := s.now().Add(s.retryAfter)
		if t.Nanosecond() != 0 {
			t = t.Truncate(time.Second).Add(time.Second)
		}
		after = t.UTC().Format(http.TimeFormat)
	} else {
		after = strconv.FormatInt(int64((s.retryAfter+time.Second-1)/time.Second), 10)
	}
	w.Header().Set("Retry-After", after)
	writeError(w, &apiError{
		status:  http.StatusTooManyRequests,
		Code:    "rate_limited",
		Message: "Too many requests; retry after the time given in the Retry-After header",
	})
}

// route dispatches r to its endpoint. An endpoint writes its success
// response itself and returns errors for writeError to answer.
func (s *Server) route(w http.ResponseWriter, r *http.Request) error {
	var h func(http.ResponseWriter, *http.Request) error
	switch path := r.URL.Path; path {
	case "/v1/health":
		h = s.health
	case "/v1/customers":
		h = s.listCustomers
	case "/v1/products":
		h = s.listProducts
	default:
		rest, ok1 := strings.CutPrefix(path, "/v1/customers/")
		id, ok2 := strings.CutSuffix(rest, "/orders")
		if ok1 && ok2 && id != "" && !strings.Contains(id, "/") {
			h = func(w http.ResponseWriter, r *http.Request) error { return s.listOrders(w, r, id) }
		}
	}
	if h == nil {
		return notFound("Unrecognized request URL (%s %s)", r.Method, r.URL.Path)
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return &apiError{
			status:  http.StatusMethodNotAllowed,
			Code:    "method_not_allowed",
			Message: fmt.Sprintf("%s is not allowed on %s", r.Method, r.URL.Path),
		}
	}
	return h(w, r)
}

func (s *Server) health(w http.ResponseWriter, _ *http.Request) error {
	return writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

type customerPage struct {
	Data []Customer `json:"data"`
	Meta pageMeta   `json:"meta"`
}

type pageMeta struct {
	Page       int `json:"page"`
	PerPage    int `json:"per_page"`
	Total      int `json:"total"`
	TotalPages int `json:"total_pages"`
}

// listCustomers serves GET /v1/customers: page-number pagination over
// customers sorted by id.
func (s *Server) listCustomers(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	page, err := positiveInt(q, "page", 1)
	if err != nil {
		return err
	}
	perPage, err := s.pageSize(q, "per_page", defaultPerPage)
	if err != nil {
		return err
	}
	since, err := updatedSince(q)
	if err != nil {
		return err
	}
	// Sorted by id, not by updated_at: a customer updated during a sync
	// stays where it is, so no other customer shifts across a page
	// boundary and gets skipped (what offset pagination over a moving sort
	// order does).
	now := s.now()
	list := make([]Customer, 0, len(s.customers))
	for _, c := range s.customers {
		if c = s.customerAt(c, now); !c.UpdatedAt.Before(since) {
			list = append(list, c)
		}
	}
	total := len(list)
	pages := (total + perPage - 1) / perPage
	data := []Customer{}
	if page <= pages {
		start := (page - 1) * perPage
		data = list[start:min(start+perPage, total)]
	}
	return writeJSON(w, http.StatusOK, customerPage{
		Data: data,
		Meta: pageMeta{Page: page, PerPage: perPage, Total: total, TotalPages: pages},
	})
}

type productList struct {
	Object  string    `json:"object"`
	Data    []Product `json:"data"`
	HasMore bool      `json:"has_more"`
	URL     string    `json:"url"`
}

// listProducts serves GET /v1/products: Stripe-style pagination by the ID
// of the last product seen.
func (s *Server) listProducts(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	limit, err := s.pageSize(q, "limit", defaultProductsLimit)
	if err != nil {
		return err
	}
	start := 0
	if after := q.Get("starting_after"); after != "" {
		i, found := slices.BinarySearchFunc(s.products, after, func(p Product, id string) int {
			return strings.Compare(p.ID, id)
		})
		if !found {
			return invalidParam("starting_after", "No such product: '%s'", after)
		}
		start = i + 1
	}
	end := min(start+limit, len(s.products))
	return writeJSON(w, http.StatusOK, productList{
		Object:  "list",
		Data:    append([]Product{}, s.products[start:end]...),
		HasMore: end < len(s.products),
		URL:     "/v1/products",
	})
}

// listOrders serves GET /v1/customers/{id}/orders: a bare array of the
// customer's orders sorted by id, with an RFC 8288 Link header to the
// next page while more remain.
func (s *Server) listOrders(w http.ResponseWriter, r *http.Request, rawID string) error {
	id, err := strconv.Atoi(rawID)
	if err != nil || id < 1 || id > len(s.customers) {
		return notFound("No such customer: '%s'", rawID)
	}
	q := r.URL.Query()
	limit, err := s.pageSize(q, "limit", defaultOrdersLimit)
	if err != nil {
		return err
	}
	since, err := updatedSince(q)
	if err != nil {
		return err
	}
	after := 0 // orders with index < after were on earlier pages
	if c := q.Get("cursor"); c != "" {
		seq, ok := decodeCursor(c)
		if !ok {
			return invalidParam("cursor", "Invalid cursor: '%s'", c)
		}
		after = seq
	}
	now := s.now()
	data := []Order{}
	more := false
	for _, i := range s.byCustomer[id-1] {
		if i < after {
			continue
		}
		o := s.orderAt(i, now)
		if o.UpdatedAt.Before(since) {
			continue
		}
		if len(data) == limit {
			more = true
			break
		}
		data = append(data, o)
	}
	if more {
		q.Set("cursor", encodeCursor(data[len(data)-1].ID))
		q.Set("limit", strconv.Itoa(limit))
		next := url.URL{
			Scheme:   "http",
			Host:     r.Host,
			Path:     fmt.Sprintf("/v1/customers/%d/orders", id),
			RawQuery: q.Encode(),
		}
		if r.TLS != nil {
			next.Scheme = "https"
		}
		w.Header().Set("Link", fmt.Sprintf("<%s>; rel=\"next\"", next.String()))
	}
	return writeJSON(w, http.StatusOK, data)
}

// encodeCursor makes the opaque cursor that resumes after the order with
// the given ID.
func encodeCursor(orderID string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(orderID))
}

// decodeCursor returns the sequence number of the order a cursor resumes
// after ("ord_000042" → 42), and false for a cursor encodeCursor did not
// make.
func decodeCursor(c string) (int, bool) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return 0, false
	}
	digits, ok := strings.CutPrefix(string(b), "ord_")
	if !ok || digits == "" || strings.TrimLeft(digits, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.Atoi(digits)
	if err != nil || n < 1 {
		return 0, false
	}
	return n, true
}

// positiveInt reads an optional positive integer query parameter.
func positiveInt(q url.Values, name string, def int) (int, error) {
	v := q.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, invalidParam(name, "Invalid %s: '%s' is not a positive integer", name, v)
	}
	return n, nil
}

// pageSize reads an optional page-size parameter and caps it at the
// server's maximum.
func (s *Server) pageSize(q url.Values, name string, def int) (int, error) {
	n, err := positiveInt(q, name, def)
	return min(n, s.maxPageSize), err
}

// updatedSince reads the optional updated_since parameter; absent, it is
// the zero time, which every record passes.
func updatedSince(q url.Values) (time.Time, error) {
	v := q.Get("updated_since")
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, invalidParam("updated_since",
			"Invalid updated_since: '%s' is not an RFC 3339 time such as 2025-01-31T00:00:00Z", v)
	}
	return t, nil
}

// writeJSON answers with status and v as a JSON body. Nothing is written
// if v does not encode.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // "<token>", not "\u003ctoken\u003e"
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
	return nil
}

// writeError answers with err: an *apiError as itself, anything else as
// a 500 whose body does not reveal the detail.
func writeError(w http.ResponseWriter, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		ae = &apiError{status: http.StatusInternalServerError, Code: "internal_error", Message: "Internal server error"}
	}
	_ = writeJSON(w, ae.status, ae)
}
