package tableapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ferry-dev/ferry/internal/dest/sqldest"
	"github.com/ferry-dev/ferry/internal/schema"
)

// plan is a read planned against a table: the statement and its
// arguments, and how to render the rows.
type plan struct {
	t    *table
	snap *snapshot
	// out are the columns of each row in the response.
	out []*column
	// fetch are the columns read (out, then the order's columns and the
	// row id the response does not show); outIdx[i] is out[i]'s index.
	fetch  []*column
	order  []OrderTerm
	sig    string // the order as a cursor names it
	limit  int
	expand []*childTable
	rowID  int // index of _ferry_row_id in the fetched values, -1 if not read
	sql    string
	args   []any
}

var rowIDColumn = column{name: schema.ColRowID, typ: schema.Text, nullable: true}

// visible reports whether the grant lets the caller see column c: key
// columns are always visible, they address rows.
func (g *grant) visible(c *column) bool { return g.columns == nil || c.key || g.columns[c.name] }

// lookup returns a column the caller may see, or a ParamError naming
// param.
func lookup(s *snapshot, g *grant, param, name string) (*column, error) {
	c := s.byName[name]
	if c == nil || !g.visible(c) {
		return nil, paramErr(param, "table has no column %q", name)
	}
	return c, nil
}

// planRead plans a collection read (keyVals nil) or the read of one row.
func (h *Handler) planRead(t *table, s *snapshot, g *grant, req *Request, keyVals []string) (*plan, error) {
	f := t.st.f
	b := &builder{f: f}
	pl := &plan{t: t, snap: s, rowID: -1}
	if len(s.key) == 0 {
		return nil, &httpError{status: http.StatusNotImplemented, message: fmt.Sprintf("table %s has no primary key: the table API pages and addresses rows by key (give the stream a primary_key, or list the table with key: in api.tables)", t.name)}
	}
	// Columns shown.
	if req.Select != nil {
		for _, n := range req.Select {
			c, err := lookup(s, g, paramSelect, n)
			if err != nil {
				return nil, err
			}
			pl.out = append(pl.out, c)
		}
	} else {
		for i := range s.cols {
			if g.visible(&s.cols[i]) {
				pl.out = append(pl.out, &s.cols[i])
			}
		}
	}
	pl.fetch = append(pl.fetch, pl.out...)
	// Conditions: the caller's, the role's row filter, the key, the cursor.
	var where []string
	for _, flt := range req.Filters {
		c, err := lookup(s, g, flt.Column, flt.Column)
		if err != nil {
			return nil, err
		}
		cond, err := b.condition(c, flt)
		if err != nil {
			return nil, paramErr(flt.Column, "%v", err)
		}
		where = append(where, cond)
	}
	for _, flt := range g.filters {
		c := s.byName[flt.Column]
		if c == nil {
			return nil, fmt.Errorf("the row filter of role %s names column %s, which table %s does not have", g.role, flt.Column, t.name)
		}
		cond, err := b.condition(c, flt)
		if err != nil {
			return nil, fmt.Errorf("the row filter of role %s on table %s: %w", g.role, t.name, err)
		}
		where = append(where, cond)
	}
	if keyVals != nil {
		if len(keyVals) != len(s.key) {
			return nil, errNotFound(fmt.Sprintf("table %s is keyed by %s: give %d value(s) separated by commas", t.name, strings.Join(s.key, ", "), len(s.key)))
		}
		for i, k := range s.key {
			c := s.byName[k]
			v, err := f.value(c, keyVals[i])
			if err != nil {
				return nil, errNotFound(fmt.Sprintf("no row with key %s: %v", strings.Join(keyVals, ","), err))
			}
			where = append(where, f.col(c)+" = "+b.param(c, v))
		}
	}
	// Order: the caller's, then the key, so that every row has one place.
	seen := map[string]bool{}
	for _, o := range req.Order {
		c, err := lookup(s, g, paramOrder, o.Column)
		if err != nil {
			return nil, err
		}
		if c.typ == schema.JSON {
			return nil, paramErr(paramOrder, "column %s holds JSON, which has no order", c.name)
		}
		if seen[c.name] {
			return nil, paramErr(paramOrder, "names %s twice", c.name)
		}
		seen[c.name] = true
		pl.order = append(pl.order, o)
	}
	for _, k := range s.key {
		if !seen[k] {
			pl.order = append(pl.order, OrderTerm{Column: k})
		}
	}
	sig := make([]string, len(pl.order))
	orderSQL := make([]string, len(pl.order))
	for i, o := range pl.order {
		c := s.byName[o.Column]
		sig[i] = o.Column
		if o.Desc {
			sig[i] += ".desc"
		}
		orderSQL[i] = f.orderBy(c, o.Desc)
		pl.fetch = append(pl.fetch, c)
	}
	pl.sig = strings.Join(sig, ",")
	if req.Cursor != "" {
		vals, err := DecodeCursor(req.Cursor, t.name, pl.sig, len(pl.order))
		if err != nil {
			return nil, err
		}
		terms := make([]keysetTerm, len(pl.order))
		for i, o := range pl.order {
			c := s.byName[o.Column]
			terms[i] = keysetTerm{c: c, desc: o.Desc}
			if vals[i] == nil {
				if !c.nullable {
					return nil, paramErr(paramCursor, "is not a cursor this API gave (a null key)")
				}
				continue
			}
			v, err := f.value(c, *vals[i])
			if err != nil {
				return nil, paramErr(paramCursor, "is not a cursor this API gave (%v)", err)
			}
			terms[i].value = v
		}
		where = append(where, b.keyset(terms))
	}
	for _, e := range req.Expand {
		c := s.children[e]
		if c != nil && g.columns != nil && !g.columns[e] {
			c = nil // a role limited to some columns expands the children it lists
		}
		if c == nil {
			names := make([]string, 0, len(s.children))
			for n := range s.children {
				if g.columns == nil || g.columns[n] {
					names = append(names, n)
				}
			}
			sortStrings(names)
			if len(names) == 0 {
				return nil, paramErr(paramExpand, "table %s has no child tables to expand", t.name)
			}
			return nil, paramErr(paramExpand, "table %s has no child table %q (it has: %s)", t.name, e, strings.Join(names, ", "))
		}
		pl.expand = append(pl.expand, c)
	}
	if len(pl.expand) > 0 {
		pl.rowID = len(pl.fetch)
		pl.fetch = append(pl.fetch, &rowIDColumn)
	}
	pl.limit = h.opts.DefaultPageSize
	if req.Limit > 0 {
		if req.Limit > h.opts.MaxPageSize {
			return nil, paramErr(paramLimit, "%d is more than the most a page holds (%d)", req.Limit, h.opts.MaxPageSize)
		}
		pl.limit = req.Limit
	}
	if keyVals != nil {
		pl.limit = 1
	}
	names := make([]string, len(pl.fetch))
	for i, c := range pl.fetch {
		names[i] = f.d.Quote(c.name)
	}
	var q strings.Builder
	fmt.Fprintf(&q, "SELECT %s FROM %s", strings.Join(names, ", "), f.d.Table(t.name))
	if len(where) > 0 {
		q.WriteString(" WHERE " + strings.Join(where, " AND "))
	}
	if keyVals == nil {
		q.WriteString(" ORDER BY " + strings.Join(orderSQL, ", "))
	}
	fmt.Fprintf(&q, " LIMIT %d", pl.limit+1)
	pl.sql, pl.args = q.String(), b.args
	return pl, nil
}

// run reads the plan's rows (at most limit+1), values converted by the
// columns' logical types.
func (pl *plan) run(ctx context.Context) ([][]any, error) {
	rows, err := pl.t.st.db.Query(ctx, pl.sql, pl.args...)
	if err != nil {
		return nil, fmt.Errorf("read table %s: %w", pl.t.name, err)
	}
	defer rows.Close()
	return scanRows(rows, pl.fetch, pl.limit+1, pl.t.name)
}

func scanRows(rows sqldest.Rows, cols []*column, max int, table string) ([][]any, error) {
	raw := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range raw {
		ptrs[i] = &raw[i]
	}
	var out [][]any
	for rows.Next() {
		if len(out) == max {
			break
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, fmt.Errorf("read table %s: %w", table, err)
		}
		row := make([]any, len(cols))
		for i, v := range raw {
			cv, err := sqldest.ConvertValue(cols[i].typ, v)
			if err != nil {
				return nil, fmt.Errorf("read table %s: column %s: %w", table, cols[i].name, err)
			}
			row[i] = cv
		}
		out = append(out, row)
	}
	return out, rows.Err()
}

// children reads the child rows of the page's rows for each expanded
// table: per child table, the rows of each parent row id, in list order.
func (h *Handler) children(ctx context.Context, pl *plan, rows [][]any) ([]map[string][]map[string]any, error) {
	out := make([]map[string][]map[string]any, len(pl.expand))
	ids := make([]any, 0, len(rows))
	for _, r := range rows {
		if id, ok := r[pl.rowID].(string); ok {
			ids = append(ids, id)
		}
	}
	f := pl.t.st.f
	budget := h.opts.MaxExpandRows
	for i, c := range pl.expand {
		out[i] = map[string][]map[string]any{}
		if len(ids) == 0 {
			continue
		}
		cols := make([]*column, 0, len(c.cols)+1)
		names := make([]string, 0, len(c.cols)+1)
		for j := range c.cols {
			cols = append(cols, &c.cols[j])
			names = append(names, f.d.Quote(c.cols[j].name))
		}
		parent := column{name: schema.ColParentRowID, typ: schema.Text}
		cols = append(cols, &parent)
		names = append(names, f.d.Quote(parent.name))
		b := &builder{f: f}
		ph := make([]string, len(ids))
		for j, id := range ids {
			ph[j] = b.arg(id)
		}
		q := fmt.Sprintf("SELECT %s FROM %s WHERE %s IN (%s) ORDER BY %s, %s LIMIT %d", strings.Join(names, ", "), f.d.Table(c.name),
			f.d.Quote(parent.name), strings.Join(ph, ", "), f.d.Quote(parent.name), f.d.Quote(schema.ColListIndex), budget+1)
		rs, err := pl.t.st.db.Query(ctx, q, b.args...)
		if err != nil {
			return nil, fmt.Errorf("read child table %s: %w", c.name, err)
		}
		crows, err := scanRows(rs, cols, budget+1, c.name)
		rs.Close()
		if err != nil {
			return nil, err
		}
		if len(crows) > budget {
			return nil, paramErr(paramExpand, "the page's %s rows are more than %d: ask for a smaller limit", c.expand, h.opts.MaxExpandRows)
		}
		budget -= len(crows)
		for _, cr := range crows {
			obj := make(map[string]any, len(c.cols))
			for j := range c.cols {
				obj[c.cols[j].name] = cr[j]
			}
			pid, _ := cr[len(cr)-1].(string)
			out[i][pid] = append(out[i][pid], obj)
		}
	}
	return out, nil
}

// etag returns the entity tag of a response: the stream's freshness, who
// asks (their role and its row filter), what they ask and in which
// format. Empty when the table's freshness is unknown.
func etag(s *snapshot, g *grant, r *http.Request, format string) string {
	if s.fresh.IsZero() {
		return ""
	}
	sum := sha256.New()
	fmt.Fprintf(sum, "%d\x00%s\x00%s\x00%s\x00%s", s.fresh.UnixNano(), g.tag, r.URL.EscapedPath(), r.URL.RawQuery, format)
	return `"` + hex.EncodeToString(sum.Sum(nil)[:12]) + `"`
}

// notModified sets the validators and reports whether the request's
// conditions say the client's copy is current.
func notModified(w http.ResponseWriter, r *http.Request, s *snapshot, tag string) bool {
	if tag == "" {
		return false
	}
	w.Header().Set("ETag", tag)
	w.Header().Set("Last-Modified", s.fresh.UTC().Format(http.TimeFormat))
	w.Header().Set("Cache-Control", "no-cache")
	if inm := r.Header.Get("If-None-Match"); inm != "" {
		for _, t := range strings.Split(inm, ",") {
			t = strings.TrimSpace(t)
			if t == "*" || strings.TrimPrefix(t, "W/") == tag {
				return true
			}
		}
		return false
	}
	if ims := r.Header.Get("If-Modified-Since"); ims != "" {
		if t, err := http.ParseTime(ims); err == nil && !s.fresh.Truncate(time.Second).After(t) {
			return true
		}
	}
	return false
}

// prepareRead negotiates the format, takes the table's current snapshot
// and plans the read; done is true when the request was answered 304
// Not Modified from the snapshot's ETag.
func (h *Handler) prepareRead(ctx context.Context, w http.ResponseWriter, r *http.Request, g *grant, t *table, req *Request, keyVals []string) (pl *plan, f format, done bool, err error) {
	if f, err = negotiate(r); err != nil {
		return
	}
	s, err := t.current(ctx, h.opts.FreshnessTTL)
	if err != nil {
		return
	}
	if pl, err = h.planRead(t, s, g, req, keyVals); err != nil {
		return
	}
	if notModified(w, r, s, etag(s, g, r, f.name)) {
		w.WriteHeader(http.StatusNotModified)
		done = true
	}
	return
}

// serveCollection answers GET /{table}.
func (h *Handler) serveCollection(ctx context.Context, w http.ResponseWriter, r *http.Request, p *principal, g *grant, t *table) error {
	req, err := ParseRequest(r.URL.Query())
	if err != nil {
		return err
	}
	pl, format, done, err := h.prepareRead(ctx, w, r, g, t, req, nil)
	if err != nil || done {
		return err
	}
	rows, err := pl.run(ctx)
	if err != nil {
		return err
	}
	more := len(rows) > pl.limit
	if more {
		rows = rows[:pl.limit]
	}
	var kids []map[string][]map[string]any
	if len(pl.expand) > 0 {
		if kids, err = h.children(ctx, pl, rows); err != nil {
			return err
		}
	}
	var body bytes.Buffer
	enc := format.newEncoder(&body, pl)
	enc.begin()
	n := 0
	for i, row := range rows {
		enc.row(row, pl, kids, i)
		n++
		if body.Len() >= h.opts.MaxResponseBytes && i < len(rows)-1 {
			more = true
			break
		}
	}
	enc.end()
	if more && n > 0 {
		last := rows[n-1]
		vals := make([]*string, len(pl.order))
		for i := range pl.order {
			vals[i] = cursorText(last[len(pl.out)+i])
		}
		next := url.Values{}
		for k, v := range r.URL.Query() {
			if k != paramCursor {
				next[k] = v
			}
		}
		next.Set(paramCursor, EncodeCursor(t.name, pl.sig, vals))
		w.Header().Set("Link", fmt.Sprintf(`<%s/%s?%s>; rel="next"`, h.opts.Prefix, url.PathEscape(t.name), next.Encode()))
	}
	w.Header().Set("Content-Type", format.contentType)
	w.Header().Set("Vary", "Accept, Authorization")
	w.Header().Set("Content-Length", itoa(body.Len()))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(body.Bytes())
	}
	return nil
}

// splitKey splits the key segment of /{table}/{key}: values separated by
// commas, each percent-encoded.
func splitKey(raw string) ([]string, error) {
	if raw == "" || strings.Contains(raw, "/") {
		return nil, errNotFound("no such row: the path is /{table}/{key}")
	}
	parts := strings.Split(raw, ",")
	for i, p := range parts {
		v, err := url.PathUnescape(p)
		if err != nil {
			return nil, errNotFound("no such row: the key is not percent-encoded properly")
		}
		parts[i] = v
	}
	return parts, nil
}

// serveItem answers GET /{table}/{key}.
func (h *Handler) serveItem(ctx context.Context, w http.ResponseWriter, r *http.Request, p *principal, g *grant, t *table, rawKey string) error {
	keyVals, err := splitKey(rawKey)
	if err != nil {
		return err
	}
	req, err := ParseRequest(r.URL.Query())
	if err != nil {
		return err
	}
	if len(req.Filters) > 0 || req.Order != nil || req.Limit != 0 || req.Cursor != "" {
		return errBad("a row by key takes only select and expand")
	}
	pl, format, done, err := h.prepareRead(ctx, w, r, g, t, req, keyVals)
	if err != nil || done {
		return err
	}
	rows, err := pl.run(ctx)
	if err != nil {
		return err
	}
	if len(rows) == 0 {
		w.Header().Del("ETag")
		w.Header().Del("Last-Modified")
		return errNotFound(fmt.Sprintf("table %s has no row with key %s", t.name, strings.Join(keyVals, ",")))
	}
	var kids []map[string][]map[string]any
	if len(pl.expand) > 0 {
		if kids, err = h.children(ctx, pl, rows[:1]); err != nil {
			return err
		}
	}
	var body bytes.Buffer
	enc := format.newEncoder(&body, pl)
	enc.single(rows[0], pl, kids)
	w.Header().Set("Content-Type", format.contentType)
	w.Header().Set("Vary", "Accept, Authorization")
	w.Header().Set("Content-Length", itoa(body.Len()))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(body.Bytes())
	}
	return nil
}
