package rest

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/internal/jsonpath"
)

// pagStep is one page of a partition: the pagination query parameters
// its request must carry, the response, and what the paginator makes of
// it.
type pagStep struct {
	query string // the request's pagination query parameters, encoded
	body  string
	link  string // the response's Link header, "" for none
	// pos is the position after the page, as stored in state (JSON).
	pos  string
	done bool
	err  string // the error next returns, "" for none
}

type pagCase struct {
	name     string
	paginate Paginate
	pk       []string
	records  string // the records path (default "data")
	resume   string // a stored position to resume from ("" for the first page)
	steps    []pagStep
}

func intp(n int) *int     { return &n }
func boolp(b bool) *bool  { return &b }
func ids(n ...int) string { return recordsOf("data", n...) }

// recordsOf returns a body with records {"id":n} under key.
func recordsOf(key string, n ...int) string {
	var recs []string
	for _, id := range n {
		recs = append(recs, `{"id":`+itoa(id)+`}`)
	}
	return `{"` + key + `":[` + strings.Join(recs, ",") + `]`
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// page closes a body from recordsOf with more members.
func page(records string, more ...string) string {
	if len(more) == 0 {
		return records + "}"
	}
	return records + "," + strings.Join(more, ",") + "}"
}

// pagResponse selects the records and the pagination fields of a body
// as the source does (see Source.fetch).
func pagResponse(t *testing.T, pg *paginator, records, body, link string) *response {
	t.Helper()
	rec := jsonpath.MustCompile(records)
	rec.Spread, rec.Announce, rec.Skim = true, true, true
	paths := append([]*jsonpath.Path{rec}, pg.paths()...)
	var live []*jsonpath.Path
	var index []int
	for i, p := range paths {
		if p != nil {
			live = append(live, p)
			index = append(index, i)
		}
	}
	r := &response{}
	err := jsonpath.Scan([]byte(body), live, func(i int, v []byte) error {
		if j := index[i]; j == 0 {
			if v != nil && (len(v) == 0 || v[0] != 'n') {
				r.records = append(r.records, v)
			}
		} else if !r.found[j-1] {
			r.fields[j-1], r.found[j-1] = v, true
		}
		return nil
	})
	if err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	if link != "" {
		r.link = []string{link}
	}
	return r
}

// runPagCase pages through a case's steps and checks each.
func runPagCase(t *testing.T, tc pagCase) {
	t.Helper()
	pg, err := newPaginator(&tc.paginate, tc.pk)
	if err != nil {
		t.Fatal(err)
	}
	records := tc.records
	if records == "" {
		records = "data"
	}
	pos := pg.first()
	if tc.resume != "" {
		if err := json.Unmarshal([]byte(tc.resume), &pos); err != nil {
			t.Fatal(err)
		}
	}
	guard := newLoopGuard()
	for i, st := range tc.steps {
		n := pos.Pages + 1 // the page number, as readPartition counts
		q := url.Values{}
		pg.query(pos, q)
		if got := q.Encode(); got != st.query {
			t.Fatalf("page %d: query %q, want %q", n, got, st.query)
		}
		next, done, err := pg.next(pos, pagResponse(t, pg, records, st.body, st.link), n, guard)
		if st.err != "" {
			if err == nil || err.Error() != st.err {
				t.Fatalf("page %d: error %v, want %q", n, err, st.err)
			}
			if i != len(tc.steps)-1 {
				t.Fatalf("bad case: steps after the error")
			}
			return
		}
		if err != nil {
			t.Fatalf("page %d: %v", n, err)
		}
		b, err := json.Marshal(next)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != st.pos || done != st.done {
			t.Fatalf("page %d: position %s, done %t; want %s, %t", n, b, done, st.pos, st.done)
		}
		if done && i != len(tc.steps)-1 {
			t.Fatalf("page %d ended the partition, %d more pages expected", n, len(tc.steps)-1-i)
		}
		if !done && i == len(tc.steps)-1 {
			t.Fatalf("page %d, the last, did not end the partition", n)
		}
		pos = next
	}
}

func TestPaginatorStyles(t *testing.T) {
	for _, tc := range []pagCase{
		{
			name:     "page_number stops at an empty page",
			paginate: Paginate{Type: pageNumber, Size: 2, SizeParam: "per_page"},
			steps: []pagStep{
				{query: "page=1&per_page=2", body: page(ids(1, 2)), pos: `{"page":2,"count":2,"pages":1}`},
				{query: "page=2&per_page=2", body: page(ids(3, 4)), pos: `{"page":3,"count":4,"pages":2}`},
				{query: "page=3&per_page=2", body: page(ids()), pos: `{"page":3,"count":4,"pages":3}`, done: true},
			},
		},
		{
			name:     "page_number with total_pages_path asks no page beyond the last",
			paginate: Paginate{Type: pageNumber, Param: "p", TotalPagesPath: "meta.total_pages"},
			steps: []pagStep{
				{query: "p=1", body: page(ids(1, 2), `"meta":{"total_pages":2}`), pos: `{"page":2,"count":2,"pages":1}`},
				{query: "p=2", body: page(ids(3), `"meta":{"total_pages":2}`), pos: `{"page":2,"count":3,"pages":2}`, done: true},
			},
		},
		{
			name:     "page_number counting from 0, total_pages as a string",
			paginate: Paginate{Type: pageNumber, Start: intp(0), TotalPagesPath: "pages"},
			steps: []pagStep{
				{query: "page=0", body: page(ids(1), `"pages":"2"`), pos: `{"page":1,"count":1,"pages":1}`},
				{query: "page=1", body: page(ids(2), `"pages":"2"`), pos: `{"page":1,"count":2,"pages":2}`, done: true},
			},
		},
		{
			name:     "page_number with a single page in total",
			paginate: Paginate{Type: pageNumber, TotalPagesPath: "pages"},
			steps: []pagStep{
				{query: "page=1", body: page(ids(1), `"pages":1`), pos: `{"page":1,"count":1,"pages":1}`, done: true},
			},
		},
		{
			name:     "offset: default parameters and size, advancing by the records received",
			paginate: Paginate{Type: pageOffset},
			steps: []pagStep{
				{query: "limit=100&offset=0", body: page(ids(1, 2, 3)), pos: `{"offset":3,"count":3,"pages":1}`},
				{query: "limit=100&offset=3", body: page(ids(4)), pos: `{"offset":4,"count":4,"pages":2}`},
				{query: "limit=100&offset=4", body: page(ids()), pos: `{"offset":4,"count":4,"pages":3}`, done: true},
			},
		},
		{
			name:     "offset from a start, ending at total_path",
			paginate: Paginate{Type: pageOffset, Param: "skip", SizeParam: "take", Size: 2, Start: intp(10), TotalPath: "total"},
			steps: []pagStep{
				{query: "skip=10&take=2", body: page(ids(1, 2), `"total":3`), pos: `{"offset":12,"count":2,"pages":1}`},
				{query: "skip=12&take=2", body: page(ids(3), `"total":3`), pos: `{"offset":12,"count":3,"pages":2}`, done: true},
			},
		},
		{
			name:     "cursor: no cursor on the first page, a null cursor ends",
			paginate: Paginate{Type: pageCursor, CursorPath: "paging.next", Param: "after", Size: 2, SizeParam: "limit"},
			steps: []pagStep{
				{query: "limit=2", body: page(ids(1, 2), `"paging":{"next":"c2"}`), pos: `{"cursor":"c2","count":2,"pages":1}`},
				{query: "after=c2&limit=2", body: page(ids(3, 4), `"paging":{"next":42}`), pos: `{"cursor":"42","count":4,"pages":2}`},
				{query: "after=42&limit=2", body: page(ids(5), `"paging":{"next":null}`), pos: `{"cursor":"42","count":5,"pages":3}`, done: true},
			},
		},
		{
			name:     "cursor: a missing or empty cursor ends",
			paginate: Paginate{Type: pageCursor, CursorPath: "next", Param: "c"},
			steps: []pagStep{
				{query: "", body: page(ids(1), `"next":"a"`), pos: `{"cursor":"a","count":1,"pages":1}`},
				{query: "c=a", body: page(ids(2), `"next":""`), pos: `{"cursor":"a","count":2,"pages":2}`, done: true},
			},
		},
		{
			name:     "cursor: the cursor only in templates (no param)",
			paginate: Paginate{Type: pageCursor, CursorPath: "next"},
			steps: []pagStep{
				{query: "", body: page(ids(1), `"next":"a"`), pos: `{"cursor":"a","count":1,"pages":1}`},
				{query: "", body: page(ids(2)), pos: `{"cursor":"a","count":2,"pages":2}`, done: true},
			},
		},
		{
			name:     "last_record: the primary key of the last record, has_more false ends",
			paginate: Paginate{Type: pageLastRecord, Size: 2, SizeParam: "limit", HasMorePath: "has_more"},
			pk:       []string{"id"},
			steps: []pagStep{
				{query: "limit=2", body: page(ids(1, 2), `"has_more":true`), pos: `{"cursor":"2","count":2,"pages":1}`},
				{query: "limit=2&starting_after=2", body: page(ids(3, 4), `"has_more":"true"`), pos: `{"cursor":"4","count":4,"pages":2}`},
				{query: "limit=2&starting_after=4", body: page(ids(5), `"has_more":false`), pos: `{"cursor":"4","count":5,"pages":3}`, done: true},
			},
		},
		{
			name:     "last_record: a nested field, an empty page ends",
			paginate: Paginate{Type: pageLastRecord, Param: "after", Field: "meta.key"},
			steps: []pagStep{
				{query: "", body: `{"data":[{"meta":{"key":"k1"}},{"meta":{"key":"k2"}}]}`, pos: `{"cursor":"k2","count":2,"pages":1}`},
				{query: "after=k2", body: page(ids()), pos: `{"cursor":"k2","count":2,"pages":2}`, done: true},
			},
		},
		{
			name:     "next_url until there is none",
			paginate: Paginate{Type: pageNextURL, NextPath: "links.next", Size: 50, SizeParam: "limit"},
			steps: []pagStep{
				{query: "limit=50", body: page(ids(1), `"links":{"next":"https://api.x/items?page=2"}`), pos: `{"url":"https://api.x/items?page=2","count":1,"pages":1}`},
				{query: "limit=50", body: page(ids(2), `"links":{"next":"/items?page=3"}`), pos: `{"url":"/items?page=3","count":2,"pages":2}`},
				{query: "limit=50", body: page(ids(3), `"links":{"next":null}`), pos: `{"url":"/items?page=3","count":3,"pages":3}`, done: true},
			},
		},
		{
			name:     "link_header until there is no next link",
			paginate: Paginate{Type: pageLink},
			records:  "$",
			steps: []pagStep{
				{query: "", body: `[{"id":1}]`, link: `<https://api.x/items?page=2>; rel="next", <https://api.x/items?page=9>; rel="last"`, pos: `{"url":"https://api.x/items?page=2","count":1,"pages":1}`},
				{query: "", body: `[{"id":2}]`, link: `<https://api.x/items?page=1>; rel="first"`, pos: `{"url":"https://api.x/items?page=2","count":2,"pages":2}`, done: true},
			},
		},
		{
			name:     "none: one page",
			paginate: Paginate{Type: pageNone},
			steps: []pagStep{
				{query: "", body: page(ids(1, 2), `"next":"ignored"`), pos: `{"count":2,"pages":1}`, done: true},
			},
		},
		{
			name:     "resuming a page_number partition",
			paginate: Paginate{Type: pageNumber, Size: 100, SizeParam: "per_page"},
			resume:   `{"page":4,"count":300,"pages":3}`,
			steps: []pagStep{
				{query: "page=4&per_page=100", body: page(ids(301)), pos: `{"page":5,"count":301,"pages":4}`},
				{query: "page=5&per_page=100", body: page(ids()), pos: `{"page":5,"count":301,"pages":5}`, done: true},
			},
		},
		{
			name:     "resuming a cursor partition",
			paginate: Paginate{Type: pageCursor, CursorPath: "next", Param: "c"},
			resume:   `{"cursor":"abc","count":1,"pages":1}`,
			steps: []pagStep{
				{query: "c=abc", body: page(ids(2)), pos: `{"cursor":"abc","count":2,"pages":2}`, done: true},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) { runPagCase(t, tc) })
	}
}

func TestPaginatorStops(t *testing.T) {
	for _, tc := range []pagCase{
		{
			name:     "a short page with stop_on_short_page",
			paginate: Paginate{Type: pageNumber, Size: 3, SizeParam: "n", StopOnShortPage: true},
			steps: []pagStep{
				{query: "n=3&page=1", body: page(ids(1, 2, 3)), pos: `{"page":2,"count":3,"pages":1,"largest":3}`},
				{query: "n=3&page=2", body: page(ids(4, 5)), pos: `{"page":2,"count":5,"pages":2,"largest":3}`, done: true},
			},
		},
		{
			// The first page shorter than asked may be the API's own page
			// size (a clamp): the next page tells.
			name:     "stop_on_short_page: a short first page is not taken as the last",
			paginate: Paginate{Type: pageNumber, Size: 3, SizeParam: "n", StopOnShortPage: true},
			steps: []pagStep{
				{query: "n=3&page=1", body: page(ids(1, 2)), pos: `{"page":2,"count":2,"pages":1,"largest":2}`},
				{query: "n=3&page=2", body: page(ids(3, 4)), pos: `{"page":3,"count":4,"pages":2,"largest":2}`},
				{query: "n=3&page=3", body: page(ids(5)), pos: `{"page":3,"count":5,"pages":3,"largest":2}`, done: true},
			},
		},
		{
			name:     "stop_on_short_page with the limit echoed",
			paginate: Paginate{Type: pageOffset, Size: 3, StopOnShortPage: true, LimitPath: "limit"},
			steps: []pagStep{
				{query: "limit=3&offset=0", body: page(ids(1, 2), `"limit":2`), pos: `{"offset":2,"count":2,"pages":1,"largest":2}`},
				{query: "limit=3&offset=2", body: page(ids(3), `"limit":2`), pos: `{"offset":2,"count":3,"pages":2,"largest":2}`, done: true},
			},
		},
		{
			name:     "a short page without stop_on_short_page goes on (APIs cap sizes silently)",
			paginate: Paginate{Type: pageOffset, Size: 3},
			steps: []pagStep{
				{query: "limit=3&offset=0", body: page(ids(1, 2)), pos: `{"offset":2,"count":2,"pages":1}`},
				{query: "limit=3&offset=2", body: page(ids()), pos: `{"offset":2,"count":2,"pages":2}`, done: true},
			},
		},
		{
			name:     "an empty page with stop_on_empty false goes on",
			paginate: Paginate{Type: pageCursor, CursorPath: "next", Param: "c", StopOnEmpty: boolp(false)},
			steps: []pagStep{
				{query: "", body: page(ids(), `"next":"a"`), pos: `{"cursor":"a","pages":1}`},
				{query: "c=a", body: page(ids(1), `"next":null`), pos: `{"cursor":"a","count":1,"pages":2}`, done: true},
			},
		},
		{
			name:     "an empty page ends even with a next cursor",
			paginate: Paginate{Type: pageCursor, CursorPath: "next", Param: "c"},
			steps: []pagStep{
				{query: "", body: page(ids(), `"next":"a"`), pos: `{"pages":1}`, done: true},
			},
		},
		{
			name:     "has_more false ends; null counts as false",
			paginate: Paginate{Type: pageNextURL, NextPath: "next", HasMorePath: "more"},
			steps: []pagStep{
				{query: "", body: page(ids(1), `"next":"/p2"`, `"more":"true"`), pos: `{"url":"/p2","count":1,"pages":1}`},
				{query: "", body: page(ids(2), `"next":"/p3"`, `"more":null`), pos: `{"url":"/p2","count":2,"pages":2}`, done: true},
			},
		},
		{
			name:     "has_more absent: the style decides",
			paginate: Paginate{Type: pageNumber, HasMorePath: "more"},
			steps: []pagStep{
				{query: "page=1", body: page(ids(1)), pos: `{"page":2,"count":1,"pages":1}`},
				{query: "page=2", body: page(ids()), pos: `{"page":2,"count":1,"pages":2}`, done: true},
			},
		},
		{
			name:     "total reached (total as a string)",
			paginate: Paginate{Type: pageLink, TotalPath: "meta.total"},
			steps: []pagStep{
				{query: "", body: page(ids(1, 2), `"meta":{"total":"4"}`), link: `</p2>; rel="next"`, pos: `{"url":"/p2","count":2,"pages":1}`},
				{query: "", body: page(ids(3, 4), `"meta":{"total":"4"}`), link: `</p3>; rel="next"`, pos: `{"url":"/p2","count":4,"pages":2}`, done: true},
			},
		},
		{
			name:     "max_pages",
			paginate: Paginate{Type: pageNumber, MaxPages: 2},
			steps: []pagStep{
				{query: "page=1", body: page(ids(1)), pos: `{"page":2,"count":1,"pages":1}`},
				{query: "page=2", body: page(ids(2)), pos: `{"page":2,"count":2,"pages":2}`, done: true},
			},
		},
		{
			name:     "max_pages counts the pages of the run before a resume",
			paginate: Paginate{Type: pageCursor, CursorPath: "next", Param: "c", MaxPages: 3},
			resume:   `{"cursor":"b","count":2,"pages":2}`,
			steps: []pagStep{
				{query: "c=b", body: page(ids(3), `"next":"c"`), pos: `{"cursor":"b","count":3,"pages":3}`, done: true},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) { runPagCase(t, tc) })
	}
}

func TestPaginatorErrors(t *testing.T) {
	for _, tc := range []pagCase{
		{
			name:     "has_more not a boolean",
			paginate: Paginate{Type: pageNumber, HasMorePath: "has_more"},
			steps:    []pagStep{{query: "page=1", body: page(ids(1), `"has_more":"yes"`), err: `has_more_path has_more is "yes", not a boolean`}},
		},
		{
			name:     "total not an integer",
			paginate: Paginate{Type: pageOffset, TotalPath: "total"},
			steps:    []pagStep{{query: "limit=100&offset=0", body: page(ids(1), `"total":"many"`), err: `total_path total is "many", not an integer`}},
		},
		{
			name:     "total_pages not an integer",
			paginate: Paginate{Type: pageNumber, TotalPagesPath: "pages"},
			steps:    []pagStep{{query: "page=1", body: page(ids(1), `"pages":2.5`), err: `total_pages_path pages is 2.5, not an integer`}},
		},
		{
			name:     "last_record: the last record lacks the field",
			paginate: Paginate{Type: pageLastRecord},
			pk:       []string{"id"},
			steps:    []pagStep{{query: "", body: `{"data":[{"id":1},{"name":"no id"}]}`, err: `last_record pagination: the last record has no field "id"`}},
		},
		{
			name:     "last_record: the field is not a string or a number",
			paginate: Paginate{Type: pageLastRecord, Field: "key"},
			steps:    []pagStep{{query: "", body: `{"data":[{"key":{"a":1}}]}`, err: `last_record pagination: field "key" of the last record is {"a":1}`}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) { runPagCase(t, tc) })
	}
}

// TestPaginatorLoopGuard: an API that repeats a cursor or URL, or sends
// the same records for the next page number or offset, fails the
// partition instead of looping.
func TestPaginatorLoopGuard(t *testing.T) {
	const hint = "; the API is repeating itself (check the paginate settings)"
	for _, tc := range []pagCase{
		{
			name:     "a repeated cursor",
			paginate: Paginate{Type: pageCursor, CursorPath: "next", Param: "c"},
			steps: []pagStep{
				{query: "", body: page(ids(1), `"next":"x"`), pos: `{"cursor":"x","count":1,"pages":1}`},
				{query: "c=x", body: page(ids(2), `"next":"y"`), pos: `{"cursor":"y","count":2,"pages":2}`},
				{query: "c=y", body: page(ids(3), `"next":"x"`), err: `pagination loop: page 3 returned cursor "x", already returned by page 1` + hint},
			},
		},
		{
			name:     "a cursor repeated at once",
			paginate: Paginate{Type: pageCursor, CursorPath: "next", Param: "c"},
			steps: []pagStep{
				{query: "", body: page(ids(1), `"next":"same"`), pos: `{"cursor":"same","count":1,"pages":1}`},
				{query: "c=same", body: page(ids(2), `"next":"same"`), err: `pagination loop: page 2 returned cursor "same", already returned by page 1` + hint},
			},
		},
		{
			name:     "a repeated last record",
			paginate: Paginate{Type: pageLastRecord},
			pk:       []string{"id"},
			steps: []pagStep{
				{query: "", body: page(ids(1, 2)), pos: `{"cursor":"2","count":2,"pages":1}`},
				{query: "starting_after=2", body: page(ids(2)), err: `pagination loop: page 2 returned last record id "2", already returned by page 1` + hint},
			},
		},
		{
			name:     "a repeated next URL",
			paginate: Paginate{Type: pageNextURL, NextPath: "next"},
			steps: []pagStep{
				{query: "", body: page(ids(1), `"next":"/p?after=1"`), pos: `{"url":"/p?after=1","count":1,"pages":1}`},
				{query: "", body: page(ids(2), `"next":"/p?after=1"`), err: `pagination loop: page 2 returned next URL "/p?after=1", already returned by page 1` + hint},
			},
		},
		{
			name:     "a repeated Link next URL",
			paginate: Paginate{Type: pageLink},
			steps: []pagStep{
				{query: "", body: page(ids(1)), link: `</p2>; rel="next"`, pos: `{"url":"/p2","count":1,"pages":1}`},
				{query: "", body: page(ids(2)), link: `</p3>; rel="next"`, pos: `{"url":"/p3","count":2,"pages":2}`},
				{query: "", body: page(ids(3)), link: `</p2>; rel="next"`, err: `pagination loop: page 3 returned Link next URL "/p2", already returned by page 1` + hint},
			},
		},
		{
			name:     "the same page twice: the page parameter is ignored",
			paginate: Paginate{Type: pageNumber},
			steps: []pagStep{
				{query: "page=1", body: page(ids(1, 2)), pos: `{"page":2,"count":2,"pages":1}`},
				{query: "page=2", body: page(ids(1, 2)), err: "pagination loop: page 2 (page=2) returned the same records as the page before; the API seems to ignore the page parameter"},
			},
		},
		{
			name:     "the same page twice: the offset parameter is ignored",
			paginate: Paginate{Type: pageOffset, Size: 2},
			steps: []pagStep{
				{query: "limit=2&offset=0", body: page(ids(1, 2)), pos: `{"offset":2,"count":2,"pages":1}`},
				{query: "limit=2&offset=2", body: page(ids(1, 2)), err: "pagination loop: page 2 (offset=2) returned the same records as the page before; the API seems to ignore the offset parameter"},
			},
		},
		{
			name:     "records seen before, but not on the page before, are no loop",
			paginate: Paginate{Type: pageNumber},
			steps: []pagStep{
				{query: "page=1", body: page(ids(1)), pos: `{"page":2,"count":1,"pages":1}`},
				{query: "page=2", body: page(ids(2)), pos: `{"page":3,"count":2,"pages":2}`},
				{query: "page=3", body: page(ids(1)), pos: `{"page":4,"count":3,"pages":3}`},
				{query: "page=4", body: page(ids()), pos: `{"page":4,"count":3,"pages":4}`, done: true},
			},
		},
		{
			name:     "empty pages are never the same page",
			paginate: Paginate{Type: pageNumber, StopOnEmpty: boolp(false), MaxPages: 3},
			steps: []pagStep{
				{query: "page=1", body: page(ids()), pos: `{"page":2,"pages":1}`},
				{query: "page=2", body: page(ids()), pos: `{"page":3,"pages":2}`},
				{query: "page=3", body: page(ids()), pos: `{"page":3,"pages":3}`, done: true},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) { runPagCase(t, tc) })
	}
}

// TestPaginatorLoopGuardNamesTheParameter: when the same records come
// back for the next page, the error should name the query parameter the
// request carried (the connector's param), since that is what the API
// seems to ignore.
func TestPaginatorLoopGuardNamesTheParameter(t *testing.T) {
	t.Skip("bug: paginator.next passes the literal names \"page\" and \"offset\" to loopGuard.samePage instead of p.param, so with param: skip (or param: p) the error says \"(offset=2) … ignore the offset parameter\" although the request carried skip=2")
	for _, tc := range []pagCase{
		{
			name:     "offset with param skip",
			paginate: Paginate{Type: pageOffset, Param: "skip", Size: 2},
			steps: []pagStep{
				{query: "limit=2&skip=0", body: page(ids(1, 2)), pos: `{"offset":2,"count":2,"pages":1}`},
				{query: "limit=2&skip=2", body: page(ids(1, 2)), err: "pagination loop: page 2 (skip=2) returned the same records as the page before; the API seems to ignore the skip parameter"},
			},
		},
		{
			name:     "page_number with param p",
			paginate: Paginate{Type: pageNumber, Param: "p"},
			steps: []pagStep{
				{query: "p=1", body: page(ids(1)), pos: `{"page":2,"count":1,"pages":1}`},
				{query: "p=2", body: page(ids(1)), err: "pagination loop: page 2 (p=2) returned the same records as the page before; the API seems to ignore the p parameter"},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) { runPagCase(t, tc) })
	}
}

// TestPaginatorOffsetEmptyPageLoop: with stop_on_empty false, an empty
// page of offset pagination does not move the offset, so the next request
// is the same request again; while the API keeps answering with an empty
// page that does not end the partition (has_more true, or a total that
// records deleted during the sync keep out of reach), the source asks for
// the same offset forever (or until max_pages). The loop guard ignores
// empty pages, so nothing stops it.
func TestPaginatorOffsetEmptyPageLoop(t *testing.T) {
	t.Skip("bug: paginator.next (offset) with stop_on_empty: false returns the same position after an empty page that does not end the partition (has_more true), so the source repeats the identical request without end; loopGuard.samePage skips empty pages and nothing else notices that the position did not move. Expected: the second identical empty page fails with a pagination loop error (or ends the partition).")
	pg, err := newPaginator(&Paginate{Type: pageOffset, Size: 2, HasMorePath: "has_more", StopOnEmpty: boolp(false)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	guard := newLoopGuard()
	pos := pg.first()
	body := page(ids(), `"has_more":true`)
	for n := 1; n <= 3; n++ {
		next, done, err := pg.next(pos, pagResponse(t, pg, "data", body, ""), n, guard)
		if err != nil || done {
			return // the loop was noticed, or the partition ended
		}
		if next.Offset != pos.Offset {
			t.Fatalf("page %d moved the offset from %d to %d", n, pos.Offset, next.Offset)
		}
		pos = next
	}
	t.Fatalf("three identical requests (offset %d) in a row, each answered with an empty page, did not end the partition or fail", pos.Offset)
}

// TestPaginatorPositionGolden pins, per style, the JSON of the position a
// partition resumes from, which state keeps across versions: a stored
// position must read back to the same requests.
func TestPaginatorPositionGolden(t *testing.T) {
	for _, tc := range []struct {
		paginate Paginate
		stored   string
		query    string
	}{
		{Paginate{Type: pageNumber, Size: 50, SizeParam: "per_page"}, `{"page":7,"count":300,"pages":6}`, "page=7&per_page=50"},
		{Paginate{Type: pageOffset, Size: 50}, `{"offset":300,"count":300,"pages":6}`, "limit=50&offset=300"},
		{Paginate{Type: pageCursor, CursorPath: "next", Param: "after"}, `{"cursor":"eyJpZCI6MzAwfQ==","count":300,"pages":6}`, "after=eyJpZCI6MzAwfQ%3D%3D"},
		{Paginate{Type: pageLastRecord}, `{"cursor":"300","count":300,"pages":6}`, "starting_after=300"},
	} {
		pg, err := newPaginator(&tc.paginate, []string{"id"})
		if err != nil {
			t.Fatal(err)
		}
		pos := pg.first()
		if err := json.Unmarshal([]byte(tc.stored), &pos); err != nil {
			t.Fatal(err)
		}
		q := url.Values{}
		pg.query(pos, q)
		if q.Encode() != tc.query {
			t.Errorf("%s: stored %s asks %s, want %s", tc.paginate.Type, tc.stored, q.Encode(), tc.query)
		}
		if b, _ := json.Marshal(pos); string(b) != tc.stored {
			t.Errorf("%s: %s does not round-trip: %s", tc.paginate.Type, tc.stored, b)
		}
	}
	// The URL styles' positions carry the URL to request.
	var pos position
	if err := json.Unmarshal([]byte(`{"url":"https://api.x/items?page=7","count":300,"pages":6}`), &pos); err != nil || pos.URL != "https://api.x/items?page=7" || pos.Pages != 6 || pos.Count != 300 {
		t.Errorf("URL position: %+v, %v", pos, err)
	}
}

// TestPaginatorVars: the page template variables follow the position.
func TestPaginatorVars(t *testing.T) {
	pg, err := newPaginator(&Paginate{Type: pageCursor, CursorPath: "next", Size: 25}, nil)
	if err != nil {
		t.Fatal(err)
	}
	v := pg.vars(pg.first())
	if v["cursor"] != nil || v["size"] != 25 || v["number"] != int64(0) || v["offset"] != int64(0) {
		t.Fatalf("first page vars = %v", v)
	}
	c := "abc"
	if v := pg.vars(position{Cursor: &c, Page: 3, Offset: 40}); v["cursor"] != "abc" || v["number"] != int64(3) || v["offset"] != int64(40) {
		t.Fatalf("vars = %v", v)
	}
}
