// Package tableapi serves the tables Ferry syncs as a REST API: reads
// straight from the destination database (PostgREST-style filters,
// keyset pages, ETags from the sync's freshness, JSON, JSON Lines or CSV),
// and writes sent through to the source API, whose returned record is
// applied to the table the way a sync would, so a caller reads its own
// write. The OpenAPI 3 document is generated from the recorded layouts.
//
// The Handler is self-contained: ferry serve mounts it at /api/ (Mount),
// tests run it under httptest. Only tables a pipeline opts in (its api:
// settings) are served; Ferry's own _ferry_* tables and columns never are.
// See docs/table-api.md.
package tableapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/redact"
	"github.com/ferry-dev/ferry/internal/schema"
	"github.com/ferry-dev/ferry/internal/spec"
)

// Pipeline is a pipeline whose tables may be served: as loaded, and with
// its values resolved (Resolve for writes through, which need the
// connector's config and secrets; ResolveStores is enough to read).
type Pipeline struct {
	Spec     *spec.Pipeline
	Resolved *spec.Resolved
}

// Options configure a Handler.
type Options struct {
	// Pipelines whose opted-in tables are served.
	Pipelines []Pipeline
	// Prefix is the path the handler is mounted at (default /api); links
	// and the OpenAPI document's server use it.
	Prefix string
	// Security says who may do what. Nil serves every table to anyone who
	// can reach the handler: read-only, unless OpenWrites.
	Security *Security
	// OpenWrites, with Security nil, accepts writes through from every
	// caller: for a server that authenticates requests itself before they
	// reach the handler (ferry serve with its operator tokens).
	OpenWrites bool
	// DefaultPageSize is the rows of a page without limit (default 100);
	// MaxPageSize the most a limit may ask (default 1000).
	DefaultPageSize, MaxPageSize int
	// MaxExpandRows bounds the child rows embedded in one page (default
	// 10000): a page that would embed more fails with 400.
	MaxExpandRows int
	// MaxResponseBytes bounds a page's body (default 8 MiB): a page ends
	// early, with a next link, once it is reached.
	MaxResponseBytes int
	// QueryTimeout bounds each request's queries (default 10s).
	QueryTimeout time.Duration
	// FreshnessTTL is how long the stream's freshness (its last commit,
	// behind ETag and Last-Modified) is reused before it is read again
	// (default 1s; a write through refreshes it at once).
	FreshnessTTL time.Duration
	// Logger receives the handler's logs (nil: discard).
	Logger *slog.Logger
	// Redactor hides secrets in messages (nil: none).
	Redactor dest.Redactor
	// HTTPClient is the base transport's client for writes through, for
	// tests (nil: the connector's own).
	HTTPClient *http.Client
	// Now returns the time (nil: time.Now), for tests of rate limits.
	Now func() time.Time
}

// Handler serves the tables. It is safe for concurrent use.
type Handler struct {
	opts   Options
	tables map[string]*table
	order  []string // table names, sorted
	stores []*store
	sec    *security
	log    *slog.Logger
	red    dest.Redactor
}

var _ http.Handler = (*Handler)(nil)

// New opens the destinations of the pipelines read-only (writable as well
// for streams that accept writes through) and returns the handler. It
// fails when a served table is ambiguous (two pipelines serve one name),
// a listed table does not exist, or the security settings do not hold
// together.
func New(ctx context.Context, opts Options) (*Handler, error) {
	if opts.Prefix == "" {
		opts.Prefix = "/api"
	}
	opts.Prefix = "/" + strings.Trim(opts.Prefix, "/")
	if opts.DefaultPageSize <= 0 {
		opts.DefaultPageSize = 100
	}
	if opts.MaxPageSize <= 0 {
		opts.MaxPageSize = 1000
	}
	if opts.DefaultPageSize > opts.MaxPageSize {
		opts.DefaultPageSize = opts.MaxPageSize
	}
	if opts.MaxExpandRows <= 0 {
		opts.MaxExpandRows = 10000
	}
	if opts.MaxResponseBytes <= 0 {
		opts.MaxResponseBytes = 8 << 20
	}
	if opts.QueryTimeout <= 0 {
		opts.QueryTimeout = 10 * time.Second
	}
	if opts.FreshnessTTL <= 0 {
		opts.FreshnessTTL = time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	h := &Handler{opts: opts, tables: map[string]*table{}, log: opts.Logger, red: opts.Redactor}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.red == nil {
		h.red = redact.New()
		h.opts.Redactor = h.red
	}
	for _, p := range opts.Pipelines {
		if p.Resolved != nil {
			h.red.Add(p.Resolved.Secrets...)
		}
	}
	ok := false
	defer func() {
		if !ok {
			h.Close()
		}
	}()
	for _, p := range opts.Pipelines {
		if err := h.addPipeline(ctx, p); err != nil {
			return nil, err
		}
	}
	for n := range h.tables {
		h.order = append(h.order, n)
	}
	sortStrings(h.order)
	sec, err := newSecurity(ctx, opts.Security, h)
	if err != nil {
		return nil, err
	}
	h.sec = sec
	ok = true
	return h, nil
}

// addPipeline opens a pipeline's destination and adds the tables it
// serves.
func (h *Handler) addPipeline(ctx context.Context, p Pipeline) error {
	ps := p.Spec
	name := ps.Name
	if name == "" && ps.Connector.Inline != nil {
		name = ps.Connector.Inline.Name
	}
	type served struct {
		stream, table, description string
		write                      bool
	}
	var streams []served
	for _, s := range ps.StreamOrder {
		set := ps.Streams[s]
		expose := ps.API != nil && ps.API.Expose
		var api *spec.StreamAPI
		if set != nil && set.API != nil {
			api = set.API
			if api.Expose != nil {
				expose = *api.Expose
			}
		}
		if !expose {
			if api != nil && api.Write {
				return fmt.Errorf("pipeline %s: stream %s: api.write needs the table served (api.expose)", name, s)
			}
			continue
		}
		sv := served{stream: s, table: ps.TableOf(s)}
		if api != nil {
			sv.write, sv.description = api.Write, api.Description
		}
		streams = append(streams, sv)
	}
	var listed []spec.APITable
	if ps.API != nil {
		listed = ps.API.Tables
	}
	if len(streams) == 0 && len(listed) == 0 {
		return nil
	}
	if ps.Destination == nil || p.Resolved == nil {
		return fmt.Errorf("pipeline %s: no resolved destination", name)
	}
	st := &store{pipeline: name, open: func(ctx context.Context) (sqlDestination, error) {
		d, err := dest.Open(ctx, ps.Destination.Type, p.Resolved.Destination, dest.Options{ReadOnly: true, Dir: ps.Dir, Logger: h.log, Redactor: h.red})
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, err
			}
			return nil, fmt.Errorf("pipeline %s: open destination %s read-only: %w", name, ps.Destination.Type, err)
		}
		sd, ok := d.(sqlDestination)
		if !ok {
			d.Close()
			return nil, fmt.Errorf("pipeline %s: the %s destination cannot be served (the table API reads SQL databases)", name, ps.Destination.Type)
		}
		return sd, nil
	}}
	h.stores = append(h.stores, st)
	if err := st.get(ctx); err != nil {
		var ns *notSyncedError
		if !errors.As(err, &ns) {
			return err
		}
		h.log.Warn("the table API serves a pipeline whose database does not exist yet; its tables answer 503 until it is synced", "pipeline", name)
	}
	add := func(t *table) error {
		if strings.HasPrefix(t.name, schema.MetaPrefix) {
			return fmt.Errorf("pipeline %s: table %s is Ferry's own and is never served", name, t.name)
		}
		if prev, dup := h.tables[t.name]; dup {
			return fmt.Errorf("table %s is served by pipeline %s and by pipeline %s: serve it from one", t.name, prev.pipeline, name)
		}
		h.tables[t.name] = t
		return nil
	}
	for _, s := range streams {
		t := &table{name: tableName(st, p.Resolved.Destination, s.table), pipeline: name, stream: s.stream, description: s.description, st: st}
		if s.write {
			w, err := newWriter(ctx, h, p, name, s.stream, t)
			if err != nil {
				return err
			}
			t.write = w
		}
		if err := add(t); err != nil {
			return err
		}
	}
	for _, lt := range listed {
		t := &table{name: lt.Name, pipeline: name, description: lt.Description, st: st, key: lt.Key}
		if err := add(t); err != nil {
			return err
		}
		if st.ready.Load() {
			if _, err := t.current(ctx, 0); err != nil {
				return err
			}
		}
	}
	return nil
}

// tableName is the destination's name for a stream's table: what its
// Namer makes of the configured name (every SQL destination normalises,
// prefixes and shortens alike; the prefix is the destination's
// table_prefix).
func tableName(st *store, cfg any, name string) string {
	if st.ready.Load() {
		return st.d.TableName(name)
	}
	prefix := ""
	if d, ok := cfg.(dest.Declarer); ok {
		prefix = d.Declare().TablePrefix
	}
	return schema.Normalize(prefix + name)
}

// Close closes the destinations.
func (h *Handler) Close() error {
	var errs []error
	for _, s := range h.stores {
		if err := s.close(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, t := range h.tables {
		if t.write != nil {
			if err := t.write.close(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	h.stores = nil
	return errors.Join(errs...)
}

// Mount registers the handler on mux at its prefix (default /api/), for
// a server that owns the listener (ferry serve).
func Mount(mux *http.ServeMux, h *Handler) {
	mux.Handle(h.opts.Prefix+"/", h)
}

// Tables returns the names of the served tables, sorted.
func (h *Handler) Tables() []string { return append([]string(nil), h.order...) }

// ServeHTTP routes a request: /openapi.json, /{table}, /{table}/{key}.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), h.opts.Prefix)
	if !ok || (rest != "" && rest[0] != '/') {
		h.fail(w, r, errNotFound("no such path"))
		return
	}
	rest = strings.TrimPrefix(rest, "/")
	if h.sec.cors(w, r) {
		return // a preflight, answered
	}
	p, err := h.sec.authenticate(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if err := p.allow(); err != nil {
		h.fail(w, r, err)
		return
	}
	if rest == "openapi.json" || rest == "" {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.fail(w, r, errMethod("GET"))
			return
		}
		h.serveOpenAPI(w, r, p, rest == "")
		return
	}
	seg, key, hasKey := strings.Cut(rest, "/")
	name, err := unescape(seg)
	if err != nil {
		h.fail(w, r, errNotFound("no such table"))
		return
	}
	t := h.tables[name]
	if t == nil {
		h.fail(w, r, errNotFound(fmt.Sprintf("no table %q is served here (GET %s/openapi.json lists them)", name, h.opts.Prefix)))
		return
	}
	g := p.grant(t.name)
	if g == nil {
		h.fail(w, r, errNotFound(fmt.Sprintf("no table %q is served here (GET %s/openapi.json lists them)", name, h.opts.Prefix)))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.QueryTimeout)
	defer cancel()
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if hasKey {
			err = h.serveItem(ctx, w, r, p, g, t, key)
		} else {
			err = h.serveCollection(ctx, w, r, p, g, t)
		}
	case http.MethodPost:
		if hasKey {
			err = errMethod("GET, PATCH, DELETE")
			break
		}
		err = h.serveWrite(ctx, w, r, p, g, t, opCreate, "")
	case http.MethodPatch, http.MethodPut:
		if !hasKey {
			err = errMethod("GET, POST")
			break
		}
		err = h.serveWrite(ctx, w, r, p, g, t, opUpdate, key)
	case http.MethodDelete:
		if !hasKey {
			err = errMethod("GET, POST")
			break
		}
		err = h.serveWrite(ctx, w, r, p, g, t, opDelete, key)
	default:
		if hasKey {
			err = errMethod("GET, PATCH, DELETE")
		} else {
			err = errMethod("GET, POST")
		}
	}
	if err != nil {
		h.fail(w, r, err)
	}
}
