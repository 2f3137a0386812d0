package rest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"net/url"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/ferry-dev/ferry/internal/jsonpath"
)

// Pagination kinds.
const (
	pageNone       = "none"
	pageNumber     = "page_number"
	pageOffset     = "offset"
	pageCursor     = "cursor"
	pageLastRecord = "last_record"
	pageNextURL    = "next_url"
	pageLink       = "link_header"
)

// paginator computes each page's request parameters and the next page
// from a response.
type paginator struct {
	kind             string
	param, sizeParam string
	size             int
	start            int64
	cursorPath       *jsonpath.Path
	nextPath         *jsonpath.Path
	hasMorePath      *jsonpath.Path
	totalPath        *jsonpath.Path
	totalPagesPath   *jsonpath.Path
	offsetPath       *jsonpath.Path
	limitPath        *jsonpath.Path
	// names are the settings' names of the paths, by field index.
	names         [numFields]string
	stopOnMissing bool
	maxResults    int64
	// keyPaths identify a record (the primary key), to tell the records
	// a page repeats from the page before (offset).
	keyPaths    []*jsonpath.Path
	field       string // last_record: record key of the next cursor
	fieldPath   *jsonpath.Path
	stopOnEmpty bool
	stopOnShort bool
	maxPages    int
}

// position is where the next request of a partition starts. It is stored
// in state as the resume position, so its JSON shape is persisted: add
// fields, never rename them.
type position struct {
	// Page is the page number to request (page_number).
	Page int64 `json:"page,omitempty"`
	// Offset is the offset to request (offset).
	Offset int64 `json:"offset,omitempty"`
	// Cursor is the cursor to send (cursor, last_record); nil on the first
	// page.
	Cursor *string `json:"cursor,omitempty"`
	// URL is the next page's URL (next_url, link_header); "" on the first
	// page. Query parameters carrying credentials are removed.
	URL string `json:"url,omitempty"`
	// Count is how many records the partition returned so far.
	Count int64 `json:"count,omitempty"`
	// Pages is how many pages the partition returned so far.
	Pages int `json:"pages,omitempty"`
	// Skip is how many records of the response at this position were
	// already emitted (a streamed body read in several pages).
	Skip int64 `json:"skip,omitempty"`
	// Largest is the most records a page of the partition returned: the
	// page size the API applies, when it gives fewer than asked.
	Largest int64 `json:"largest,omitempty"`
	// Restart is the cursor value the query was restarted from, past an
	// API's cap on results (max_results); "" for the read's own start.
	Restart string `json:"restart,omitempty"`
	// InQuery is how many records the query since the last restart
	// returned; Max is the largest cursor among them.
	InQuery int64  `json:"in_query,omitempty"`
	Max     string `json:"max,omitempty"`
}

func newPaginator(p *Paginate, primaryKey []string) (*paginator, error) {
	pg := &paginator{kind: p.Type, param: p.Param, sizeParam: p.SizeParam, size: p.Size, maxPages: p.MaxPages, stopOnShort: p.StopOnShortPage, stopOnMissing: p.StopOnMissing, maxResults: int64(p.MaxResults)}
	pg.names = [numFields]string{"cursor_path", "next_path", "has_more_path", "total_path", "total_pages_path", "offset_path", "limit_path"}
	for _, k := range primaryKey {
		kp, err := jsonpath.Compile(k)
		if err != nil {
			return nil, err
		}
		pg.keyPaths = append(pg.keyPaths, kp)
	}
	pg.stopOnEmpty = p.StopOnEmpty == nil || *p.StopOnEmpty
	compile := func(s string) (*jsonpath.Path, error) {
		if s == "" {
			return nil, nil
		}
		return jsonpath.Compile(s)
	}
	var err error
	for _, f := range []struct {
		dst **jsonpath.Path
		src string
	}{{&pg.cursorPath, p.CursorPath}, {&pg.nextPath, p.NextPath}, {&pg.hasMorePath, p.HasMorePath}, {&pg.totalPath, p.TotalPath}, {&pg.totalPagesPath, p.TotalPagesPath}, {&pg.offsetPath, p.OffsetPath}, {&pg.limitPath, p.LimitPath}} {
		if *f.dst, err = compile(f.src); err != nil {
			return nil, err
		}
	}
	switch p.Type {
	case pageNumber:
		if pg.param == "" {
			pg.param = "page"
		}
		pg.start = 1
	case pageOffset:
		if pg.param == "" {
			pg.param = "offset"
		}
		if pg.sizeParam == "" {
			pg.sizeParam = "limit"
		}
		if pg.size == 0 {
			pg.size = 100
		}
	case pageLastRecord:
		if pg.param == "" {
			pg.param = "starting_after"
		}
		pg.field = p.Field
		if pg.field == "" && len(primaryKey) == 1 {
			pg.field = primaryKey[0]
		}
		if pg.fieldPath, err = jsonpath.Compile(pg.field); err != nil {
			return nil, err
		}
	}
	if p.Start != nil {
		pg.start = int64(*p.Start)
	}
	return pg, nil
}

// first returns the position of a partition's first page.
func (p *paginator) first() position {
	switch p.kind {
	case pageNumber:
		return position{Page: p.start}
	case pageOffset:
		return position{Offset: p.start}
	}
	return position{}
}

// vars returns the page template variables for pos.
func (p *paginator) vars(pos position) map[string]any {
	v := map[string]any{"number": pos.Page, "offset": pos.Offset, "size": p.size, "cursor": nil}
	if pos.Cursor != nil {
		v["cursor"] = *pos.Cursor
	}
	return v
}

// query sets the pagination query parameters for pos.
func (p *paginator) query(pos position, q url.Values) {
	if p.sizeParam != "" && p.size > 0 {
		q.Set(p.sizeParam, strconv.Itoa(p.size))
	}
	switch p.kind {
	case pageNumber:
		q.Set(p.param, strconv.FormatInt(pos.Page, 10))
	case pageOffset:
		q.Set(p.param, strconv.FormatInt(pos.Offset, 10))
	case pageCursor, pageLastRecord:
		if pos.Cursor != nil && p.param != "" {
			q.Set(p.param, *pos.Cursor)
		}
	}
}

// paths returns the body paths the paginator reads, in a fixed order that
// response.fields follows.
func (p *paginator) paths() []*jsonpath.Path {
	return []*jsonpath.Path{p.cursorPath, p.nextPath, p.hasMorePath, p.totalPath, p.totalPagesPath, p.offsetPath, p.limitPath}
}

// Indices into response.fields.
const (
	fieldCursor = iota
	fieldNext
	fieldHasMore
	fieldTotal
	fieldTotalPages
	fieldOffset
	fieldLimit
	numFields
)

// response is what the paginator needs from one page.
type response struct {
	records [][]byte
	fields  [numFields][]byte // raw values at paths(), nil when absent
	found   [numFields]bool
	link    []string // Link header values
	last    bool     // a response rule ended the pagination here
	// count is the number of records of a streamed body, of which
	// records holds only the last page's (-1: len(records)).
	count int
	// body is the response body (nil for a streamed one), to say what a
	// page has when a path is missing.
	body []byte
}

// loopGuard detects an API that sends the same page or cursor again.
type loopGuard struct {
	seed     maphash.Seed
	seen     map[uint64]int // cursor or URL hash → page number it came from
	lastPage uint64
	// lastIDs are the identities of the previous page's records (offset).
	lastIDs map[uint64]bool
	// short describes a page shorter than asked that was not the last,
	// for a warning ("" when none).
	short string
	// prevShort is the previous page's size when it was shorter than
	// asked, else 0.
	prevShort int
}

func newLoopGuard() *loopGuard {
	return &loopGuard{seed: maphash.MakeSeed(), seen: map[uint64]int{}}
}

// next computes the position after a page. done is true when the
// partition has no more pages.
func (p *paginator) next(pos position, r *response, page int, guard *loopGuard) (next position, done bool, err error) {
	n := len(r.records)
	if r.count > 0 {
		n = r.count
	}
	next = pos
	next.Count += int64(n)
	next.Pages++
	if n == 0 && p.stopOnEmpty {
		return next, true, nil
	}
	if guard.prevShort > 0 && n > 0 {
		// The page before was shorter than asked, and this one has
		// records: the API gives fewer than asked on pages that are not
		// the last (a page size it clamps).
		guard.short = fmt.Sprintf("page %d returned %d records where %d were asked, and more followed", page-1, guard.prevShort, p.size)
	}
	guard.prevShort = 0
	if p.size > 0 && n < p.size && n > 0 {
		guard.prevShort = n
	}
	if r.found[fieldLimit] {
		if _, ok := jsonInt(r.fields[fieldLimit]); !ok {
			return next, false, fmt.Errorf("limit_path %s is %s, not an integer", p.limitPath, r.fields[fieldLimit])
		}
	}
	if p.stopOnShort && p.size > 0 && n < p.size {
		// Short of what the API applies, not of what was asked: its echo
		// of the limit, else the largest page it returned so far. A first
		// page shorter than asked, with no echo, may be the API's page
		// size: the next page tells.
		applied := int64(0)
		if lim, ok := jsonInt(r.fields[fieldLimit]); r.found[fieldLimit] && ok {
			applied = lim
		} else if pos.Largest > 0 {
			applied = min(int64(p.size), pos.Largest)
		} else if pos.Pages > 0 {
			applied = int64(p.size) // resumed from a position written before Largest
		}
		if applied > 0 && int64(n) < applied {
			return next, true, nil
		}
	}
	if p.stopOnShort {
		next.Largest = max(pos.Largest, int64(n))
	}
	if p.maxPages > 0 && next.Pages >= p.maxPages {
		return next, true, nil
	}
	if r.found[fieldHasMore] {
		more, ok := jsonBool(r.fields[fieldHasMore])
		if !ok {
			return next, false, fmt.Errorf("has_more_path %s is %s, not a boolean", p.hasMorePath, r.fields[fieldHasMore])
		}
		if !more {
			return next, true, nil
		}
	}
	if r.found[fieldTotal] {
		total, ok := jsonInt(r.fields[fieldTotal])
		if !ok {
			return next, false, fmt.Errorf("total_path %s is %s, not an integer", p.totalPath, r.fields[fieldTotal])
		}
		if next.Count >= total {
			return next, true, nil
		}
	}
	if err := p.present(r, n); err != nil {
		return next, false, err
	}
	switch p.kind {
	case pageNone:
		return next, true, nil
	case pageNumber:
		if r.found[fieldTotalPages] {
			pages, ok := jsonInt(r.fields[fieldTotalPages])
			if !ok {
				return next, false, fmt.Errorf("total_pages_path %s is %s, not an integer", p.totalPagesPath, r.fields[fieldTotalPages])
			}
			if pos.Page-p.start+1 >= pages {
				return next, true, nil
			}
		}
		if err := guard.samePage(r, page, "page", pos.Page); err != nil {
			return next, false, err
		}
		next.Page = pos.Page + 1
	case pageOffset:
		if err := guard.samePage(r, page, "offset", pos.Offset); err != nil {
			return next, false, err
		}
		// Advance by what the server says: the offset it echoes plus the
		// page size it echoes; without echoes, from the offset asked by
		// the records this page added (those it repeats from the page
		// before do not move the window).
		from := pos.Offset
		if off, ok := jsonInt(r.fields[fieldOffset]); r.found[fieldOffset] {
			if !ok {
				return next, false, fmt.Errorf("offset_path %s is %s, not an integer", p.offsetPath, r.fields[fieldOffset])
			}
			from = off
		}
		step := int64(n - guard.repeats(p, r))
		if lim, ok := jsonInt(r.fields[fieldLimit]); r.found[fieldLimit] && ok && lim > 0 {
			step = lim
		}
		next.Offset = from + step
	case pageCursor:
		c, ok := jsonToken(r.fields[fieldCursor])
		if !ok {
			return next, true, nil
		}
		if err := guard.repeated(c, page, "cursor"); err != nil {
			return next, false, err
		}
		next.Cursor = &c
	case pageLastRecord:
		if n == 0 {
			return next, true, nil
		}
		raw, found, err := jsonpath.Lookup(r.records[len(r.records)-1], p.fieldPath)
		if err != nil || !found {
			return next, false, fmt.Errorf("last_record pagination: the last record has no field %q", p.field)
		}
		c, ok := jsonToken(raw)
		if !ok {
			return next, false, fmt.Errorf("last_record pagination: field %q of the last record is %s", p.field, raw)
		}
		if err := guard.repeated(c, page, "last record "+p.field); err != nil {
			return next, false, err
		}
		next.Cursor = &c
	case pageNextURL:
		u, ok := jsonToken(r.fields[fieldNext])
		if !ok {
			return next, true, nil
		}
		if err := guard.repeated(u, page, "next URL"); err != nil {
			return next, false, err
		}
		next.URL = u
	case pageLink:
		u := linkNext(r.link)
		if u == "" {
			return next, true, nil
		}
		if err := guard.repeated(u, page, "Link next URL"); err != nil {
			return next, false, err
		}
		next.URL = u
	}
	return next, false, nil
}

// present fails when the path that says where the next page is
// (cursor_path, next_path) is missing from a full page (as many records
// as asked, or any records when no size is set): a misspelt path would
// otherwise end the stream after one page, as if the API had said so.
// null or an empty value still ends it; stop_on_missing says that
// missing does too. (Other paths missing leave the style to decide, which
// loses nothing.)
func (p *paginator) present(r *response, n int) error {
	if p.stopOnMissing || r.last || n == 0 {
		return nil
	}
	i := fieldCursor
	switch p.kind {
	case pageCursor:
	case pageNextURL:
		i = fieldNext
	default:
		return nil
	}
	path := p.paths()[i]
	if path == nil || r.found[i] {
		return nil
	}
	full := p.size > 0 && n >= p.size
	hint := nearMiss(r.body, path.String())
	if !full && hint == "" {
		return nil // a page that may be the last, and nothing like the path
	}
	why := "it is not in the response"
	if r.body != nil {
		if e := jsonpath.Missing(r.body, path); e != nil {
			why = e.Error()
		}
	}
	if hint != "" {
		why += fmt.Sprintf(" (did you mean %q?)", hint)
	}
	what := fmt.Sprintf("a full page (%d records)", n)
	if !full {
		what = fmt.Sprintf("a page of %d records", n)
	}
	return fmt.Errorf("paginate.%s %q is missing from %s, so Ferry cannot tell where the next page is: %s; check the path's spelling, or set paginate.stop_on_missing: true if the API leaves it out on the last page", p.names[i], path, what, why)
}

// nearMiss returns a path beside path in body that looks like a
// misspelling of it (meta.next_cursor for meta.nextCursor), "" if none.
func nearMiss(body []byte, path string) string {
	if body == nil || strings.Contains(path, `\`) {
		return ""
	}
	dir, name := "", path
	if i := strings.LastIndex(path, "."); i >= 0 {
		dir, name = path[:i], path[i+1:]
	}
	obj := body
	if dir != "" {
		dp, err := jsonpath.Compile(dir)
		if err != nil {
			return ""
		}
		raw, found, err := jsonpath.Lookup(body, dp)
		if err != nil || !found {
			return ""
		}
		obj = raw
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(obj, &m) != nil {
		return ""
	}
	fold := func(s string) string {
		return strings.NewReplacer("_", "", "-", "").Replace(strings.ToLower(s))
	}
	for k := range m {
		if k != name && fold(k) == fold(name) {
			if dir != "" {
				return dir + "." + k
			}
			return k
		}
	}
	return ""
}

// repeats counts the records of r the page before also had (by primary
// key, else by content), and remembers r's.
func (g *loopGuard) repeats(p *paginator, r *response) int {
	ids := make(map[uint64]bool, len(r.records))
	n := 0
	for _, rec := range r.records {
		var h maphash.Hash
		h.SetSeed(g.seed)
		if len(p.keyPaths) == 0 {
			h.Write(rec)
		}
		for _, kp := range p.keyPaths {
			raw, _, _ := jsonpath.Lookup(rec, kp)
			h.Write(raw)
			h.WriteByte(0)
		}
		id := h.Sum64()
		if g.lastIDs[id] && !ids[id] {
			n++
		}
		ids[id] = true
	}
	g.lastIDs = ids
	return n
}

// repeated fails when token was already seen in this partition.
func (g *loopGuard) repeated(token string, page int, what string) error {
	h := maphash.String(g.seed, token)
	if first, ok := g.seen[h]; ok {
		return fmt.Errorf("pagination loop: page %d returned %s %q, already returned by page %d; the API is repeating itself (check the paginate settings)", page, what, token, first)
	}
	g.seen[h] = page
	return nil
}

// samePage fails when a page's records equal the previous page's: the API
// is probably ignoring the page parameter.
func (g *loopGuard) samePage(r *response, page int, param string, value int64) error {
	if len(r.records) == 0 {
		return nil
	}
	var h maphash.Hash
	h.SetSeed(g.seed)
	for _, rec := range r.records {
		h.Write(rec)
		h.WriteByte(0)
	}
	sum := h.Sum64()
	if page > 1 && sum == g.lastPage {
		return fmt.Errorf("pagination loop: page %d (%s=%d) returned the same records as the page before; the API seems to ignore the %s parameter", page, param, value, param)
	}
	g.lastPage = sum
	return nil
}

// jsonToken turns a JSON string or number into a cursor token; null,
// absent, empty strings and other values are no token.
func jsonToken(raw []byte) (string, bool) {
	if len(raw) == 0 {
		return "", false
	}
	switch raw[0] {
	case '"':
		s, err := jsontext.AppendUnquote(nil, raw)
		if err != nil || len(s) == 0 {
			return "", false
		}
		return string(s), true
	case 'n', 't', 'f', '{', '[':
		return "", false
	}
	return string(raw), true
}

func jsonBool(raw []byte) (bool, bool) {
	switch {
	case bytes.Equal(raw, []byte("true")), bytes.Equal(raw, []byte(`"true"`)):
		return true, true
	case bytes.Equal(raw, []byte("false")), bytes.Equal(raw, []byte(`"false"`)), bytes.Equal(raw, []byte("null")):
		return false, true
	}
	return false, false
}

func jsonInt(raw []byte) (int64, bool) {
	s := string(raw)
	if len(s) >= 2 && s[0] == '"' {
		s = s[1 : len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}
