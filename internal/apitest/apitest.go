// Package apitest serves fake REST APIs for Ferry's tests: a list of
// records paginated in any of the styles connectors support, behind
// bearer auth, with hooks to misbehave like real providers do (429 with
// Retry-After, 500s, HTML error pages, truncated bodies).
package apitest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// Pagination styles.
const (
	PageNumber = "page_number"
	Offset     = "offset"
	Cursor     = "cursor"
	LastRecord = "last_record"
	NextURL    = "next_url"
	Link       = "link_header"
	None       = "none"
)

// Fault is a misbehaviour for one request.
type Fault int

// Faults.
const (
	OK           Fault = iota
	TooMany            // 429 with Retry-After: 1
	ServerError        // 500 with a JSON error body
	HTML               // 200 with an HTML page
	Truncated          // 200 whose JSON body stops halfway
	BadGateway         // 502 with an HTML page
	Unauthorized       // 401
	BrokenRecord       // 200 whose second record is not valid JSON
)

// API is a fake API serving Records.
type API struct {
	*httptest.Server
	// Records are served in order; ids are the "id" fields.
	Records []map[string]any
	// Style is the pagination style, PageSize the page size.
	Style    string
	PageSize int
	// Token is the bearer token required (none when empty).
	Token string
	// Fault decides, per request (numbered from 1), whether to misbehave.
	Fault func(n int64, r *http.Request) Fault
	// Cursor names the field updated_since filters on (>=).
	Cursor string

	mu       sync.Mutex
	requests atomic.Int64
	seen     []string
}

// New starts an API over records; it stops at test cleanup.
func New(t testing.TB, records []map[string]any, style string, pageSize int) *API {
	a := &API{Records: records, Style: style, PageSize: pageSize, Cursor: "updated_at"}
	a.Server = httptest.NewServer(a)
	t.Cleanup(a.Close)
	return a
}

// Requests returns how many requests arrived.
func (a *API) Requests() int64 { return a.requests.Load() }

// URLs returns the request URLs received so far.
func (a *API) URLs() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.seen...)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// ServeHTTP answers one request.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := a.requests.Add(1)
	a.mu.Lock()
	a.seen = append(a.seen, r.URL.RequestURI())
	a.mu.Unlock()
	if a.Token != "" && r.Header.Get("Authorization") != "Bearer "+a.Token {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthorized"})
		return
	}
	if a.Fault != nil {
		switch a.Fault(n, r) {
		case TooMany:
			w.Header().Set("Retry-After", "1")
			writeJSON(w, http.StatusTooManyRequests, map[string]string{"error": "slow down"})
			return
		case ServerError:
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "internal"})
			return
		case HTML:
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, "<html><body><h1>Maintenance</h1></body></html>")
			return
		case BadGateway:
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusBadGateway)
			fmt.Fprint(w, "<html><body>502 Bad Gateway</body></html>")
			return
		case Truncated:
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"data":[{"id":1,"name":"tru`)
			return
		case Unauthorized:
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthorized"})
			return
		case BrokenRecord:
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"data":[{"id":1},{"id":2,"note":tru},{"id":3}]}`)
			return
		}
	}
	recs := a.filtered(r)
	q := r.URL.Query()
	size := a.PageSize
	for _, name := range []string{"per_page", "limit"} {
		if v, err := strconv.Atoi(q.Get(name)); err == nil && v > 0 {
			size = v
		}
	}
	start := 0
	switch a.Style {
	case PageNumber:
		page, _ := strconv.Atoi(q.Get("page"))
		if page < 1 {
			page = 1
		}
		start = (page - 1) * size
	case Offset:
		start, _ = strconv.Atoi(q.Get("offset"))
	case Cursor, NextURL, Link:
		if c := q.Get("cursor"); c != "" {
			b, err := base64.RawURLEncoding.DecodeString(c)
			if err != nil {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "bad cursor"})
				return
			}
			start, _ = strconv.Atoi(string(b))
		}
	case LastRecord:
		if after := q.Get("starting_after"); after != "" {
			start = -1
			for i, rec := range recs {
				if fmt.Sprint(rec["id"]) == after {
					start = i + 1
				}
			}
			if start < 0 {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "no such id " + after})
				return
			}
		}
	case None:
		size = len(recs)
	}
	if size <= 0 {
		size = len(recs)
	}
	start = min(max(start, 0), len(recs))
	end := min(start+size, len(recs))
	page := recs[start:end]
	more := end < len(recs)
	next := base64.RawURLEncoding.EncodeToString([]byte(strconv.Itoa(end)))
	body := map[string]any{"data": page}
	switch a.Style {
	case PageNumber:
		body["meta"] = map[string]any{"total": len(recs), "total_pages": (len(recs) + size - 1) / size}
	case Offset:
		body["total"] = len(recs)
	case Cursor:
		if more {
			body["paging"] = map[string]any{"next": map[string]any{"after": next}}
		}
	case LastRecord:
		body["has_more"] = more
	case NextURL:
		if more {
			u := *r.URL
			vals := u.Query()
			vals.Set("cursor", next)
			u.RawQuery = vals.Encode()
			body["next"] = "http://" + r.Host + u.RequestURI()
		} else {
			body["next"] = nil
		}
	case Link:
		if more {
			u := *r.URL
			vals := u.Query()
			vals.Set("cursor", next)
			u.RawQuery = vals.Encode()
			w.Header().Set("Link", fmt.Sprintf(`<http://%s%s>; rel="next"`, r.Host, u.RequestURI()))
		}
		writeJSON(w, http.StatusOK, page) // a bare array
		return
	}
	writeJSON(w, http.StatusOK, body)
}

// filtered applies updated_since (>=, compared as strings: RFC 3339 UTC
// with a fixed width sorts chronologically).
func (a *API) filtered(r *http.Request) []map[string]any {
	since := r.URL.Query().Get("updated_since")
	if since == "" {
		return a.Records
	}
	var out []map[string]any
	for _, rec := range a.Records {
		if v, ok := rec[a.Cursor].(string); ok && v >= since {
			out = append(out, rec)
		}
	}
	return out
}

// Users returns n records shaped like a typical API's users, ids 1..n,
// sorted by updated_at.
func Users(n int) []map[string]any {
	out := make([]map[string]any, n)
	for i := range out {
		out[i] = map[string]any{
			"id":         i + 1,
			"email":      fmt.Sprintf("user%d@example.com", i+1),
			"score":      float64(i) + 0.5,
			"active":     i%3 != 0,
			"updated_at": fmt.Sprintf("2024-01-%02dT%02d:%02d:00Z", 1+i/1440%28, i/60%24, i%60),
			"profile":    map[string]any{"plan": []string{"free", "pro"}[i%2], "seats": i % 7},
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i]["updated_at"].(string) < out[j]["updated_at"].(string) })
	return out
}
