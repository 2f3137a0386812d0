// Package rest is the declarative REST source: it reads the streams a
// connector file describes, building each request from templates, walking
// pages with the connector's pagination, and emitting the records it
// selects from each response, with the position to resume from.
package rest

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferry-dev/ferry/internal/auth"
	"github.com/ferry-dev/ferry/internal/httpx"
	"github.com/ferry-dev/ferry/internal/jsonpath"
	"github.com/ferry-dev/ferry/internal/jsonscan"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/redact"
	"github.com/ferry-dev/ferry/internal/schema"
	"github.com/ferry-dev/ferry/internal/source"
	"github.com/ferry-dev/ferry/internal/spec"
	"github.com/ferry-dev/ferry/internal/template"
)

func init() {
	source.Register("rest", "A REST or JSON-over-HTTP API, described declaratively: requests from templates, pagination, incremental cursors, parent/child streams.", New)
}

// maxPartitionErrors is how many child partitions may fail before the
// whole stream stops.
const maxPartitionErrors = 20

// errTooManyFailed stops a child stream's partitions once
// maxPartitionErrors of them failed.
var errTooManyFailed = errors.New("too many partitions failed")

// Source reads a connector's streams over HTTP.
type Source struct {
	name     string
	client   *httpx.Client
	red      source.Redactor
	obs      source.Observer
	log      *slog.Logger
	config   map[string]any
	baseURL  string
	headers  []kv
	streams  []source.Stream
	compiled map[string]*stream
	// stripParam is a query parameter carrying credentials, removed from
	// URLs kept in state.
	stripParam string
	// origins are the origins credentials may go to (httpx.Origin form):
	// base_url's and http.credential_origins.
	origins map[string]bool
}

type kv struct {
	key string
	tpl *template.Template
}

// stream is a compiled stream.
type stream struct {
	// writes are the write operations by name (create, update, delete).
	writes    map[string]*compiledWrite
	name      string
	method    string
	path      *template.Template
	params    []kv
	headers   []kv
	body      any // JSON body with *template.Template leaves
	records   *jsonpath.Path
	pag       *paginator
	incParam  string
	incFormat string
	ignore    map[int]bool
	parent    *stream
	fields    []parentField // parent field → child column
	parentKey []string      // parent record keys that identify a partition
	workers   int           // partitions read at once
	rules     []*rule       // response rules: the stream's, then the defaults'
	graphql   bool          // a GraphQL query: errors in a 200 are errors
	info      source.Stream
	// dec decodes bodies as they arrive (nil: JSON read whole); batch is
	// how many records make a page then.
	dec   *decodeOptions
	batch int
	// shape turns selected records into the table's (nil: as they are).
	shape *shaper
	// async runs an export job (nil: the request returns the records).
	async *asyncJob
	// keyPaths and cursorPath find an event's entity key and cursor.
	keyPaths   []*jsonpath.Path
	cursorPath *jsonpath.Path
}

type parentField struct {
	column string
	path   *jsonpath.Path
}

var (
	_ source.Source  = (*Source)(nil)
	_ source.Checker = (*Source)(nil)
)

// New compiles a connector's REST configuration (decoded, provisioned and
// validated by package spec) into a source. It sends no request.
func New(c *Config, opts source.Options) (source.Source, error) {
	s := &Source{
		name:     opts.Name,
		red:      opts.Redactor,
		log:      opts.Logger,
		obs:      opts.Observer,
		config:   opts.Config,
		compiled: map[string]*stream{},
	}
	if s.config == nil {
		s.config = map[string]any{}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	cfgEnv := template.Env{"config": s.config, "stream": ""}
	baseTpl, err := template.Parse(c.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("base_url: %w", err)
	}
	base, err := baseTpl.Eval(cfgEnv)
	if err != nil {
		return nil, fmt.Errorf("base_url: %w", err)
	}
	s.baseURL = strings.TrimRight(template.Format(base), "/")
	if u, err := redact.ParseURLWith(s.red, s.baseURL); err != nil {
		return nil, fmt.Errorf("base_url: %w", err) // redacted, quoting nothing of it
	} else if u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("base_url %q is not an absolute URL", s.red.URL(s.baseURL))
	}
	eval := func(src string) (string, error) {
		t, err := template.Parse(src)
		if err != nil {
			return "", err
		}
		v, err := t.Eval(cfgEnv)
		if err != nil {
			return "", err
		}
		return template.Format(v), nil
	}
	hcTLS, err := c.HTTP.tlsOf(eval)
	if err != nil {
		return nil, err
	}
	var authn auth.Authenticator
	if c.Auth != nil {
		var secrets []string
		authn, secrets, err = auth.New(c.Auth.Type, c.Auth.Config, auth.Env{Eval: eval, AddSecret: s.red.Add, Logger: s.log,
			BaseURL: s.baseURL, Dir: opts.Dir, HTTPClient: c.HTTP.authClient(hcTLS)})
		if err != nil {
			return nil, err
		}
		s.red.Add(secrets...)
	}
	if qk, ok := authn.(auth.QueryKey); ok {
		s.stripParam = qk.QueryParam()
	}
	s.origins = map[string]bool{httpx.Origin(s.baseURL): true}
	hc := httpx.Config{Redactor: s.red, Logger: s.log, Concurrency: 4, TLS: hcTLS}
	switch t := opts.Transport.(type) {
	case nil:
	case http.RoundTripper:
		hc.Transport = t
	case func(http.RoundTripper) http.RoundTripper:
		hc.WrapTransport = t
	default:
		return nil, fmt.Errorf("source options: Transport is %T, not an http.RoundTripper or a func wrapping one", opts.Transport)
	}
	if authn != nil {
		hc.Auth = authn
	}
	if s.obs != nil {
		hc.Observer = observer{s.obs}
	}
	if h := c.HTTP; h != nil {
		for _, d := range []struct {
			dst  *time.Duration
			name string
			val  string
		}{{&hc.Timeout, "timeout", h.Timeout}, {&hc.InitialBackoff, "initial_backoff", h.InitialBackoff}, {&hc.MaxBackoff, "max_backoff", h.MaxBackoff}, {&hc.MaxRetryAfter, "max_retry_after", h.MaxRetryAfter}} {
			if d.val == "" {
				continue
			}
			if *d.dst, err = spec.ParseDuration(d.val); err != nil {
				return nil, fmt.Errorf("http.%s: %w", d.name, err)
			}
		}
		for i, src := range h.CredentialOrigins {
			o, err := eval(src)
			if err == nil {
				err = checkOrigin(o)
			}
			if err != nil {
				return nil, fmt.Errorf("http.credential_origins[%d]: %w", i, err)
			}
			s.origins[httpx.Origin(o)] = true
		}
		hc.MaxAttempts = h.MaxAttempts
		if err := applyLimits(&hc, h); err != nil {
			return nil, err
		}
		hc.RequestsPerSecond = h.RequestsPerSecond
		hc.Burst = h.Burst
		hc.MaxBodyBytes = h.MaxBodyBytes
		if h.Concurrency > 0 {
			hc.Concurrency = h.Concurrency
		}
		for _, k := range slices.Sorted(maps.Keys(h.Headers)) {
			t, err := template.Parse(h.Headers[k])
			if err != nil {
				return nil, fmt.Errorf("http.headers.%s: %w", k, err)
			}
			s.headers = append(s.headers, kv{k, t})
		}
	}
	if opts.MaxAttempts > 0 {
		hc.MaxAttempts = opts.MaxAttempts
	}
	hc.CredentialOrigins = slices.Sorted(maps.Keys(s.origins))
	s.client = httpx.New(hc)
	for _, name := range c.StreamOrder {
		st, err := compileStream(name, c.Streams[name])
		if err == nil {
			err = st.compileShapes(c.Streams[name], opts.Dir)
		}
		if err == nil {
			err = st.compileAsync(c.Streams[name])
		}
		if err == nil && strings.Contains(st.info.Start, "{{") {
			// incremental.start is a template over config.
			var v string
			if v, err = eval(st.info.Start); err == nil {
				st.info.Start = v
			} else {
				err = fmt.Errorf("incremental.start: %w", err)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("stream %s: %w", name, err)
		}
		if err := st.compileRules(c.Streams[name]); err != nil {
			return nil, fmt.Errorf("stream %s: %w", name, err)
		}
		if err := st.compileWrites(c.Streams[name]); err != nil {
			return nil, fmt.Errorf("stream %s: %w", name, err)
		}
		s.compiled[name] = st
	}
	for _, name := range c.StreamOrder {
		st := s.compiled[name]
		sp := c.Streams[name]
		if sp.Parent != nil {
			st.parent = s.compiled[sp.Parent.Stream]
			if st.parent == nil {
				return nil, fmt.Errorf("stream %s: unknown parent stream %q", name, sp.Parent.Stream)
			}
			st.parentKey = st.parent.info.PrimaryKey
			for _, col := range slices.Sorted(maps.Keys(sp.Parent.Fields)) {
				p, err := jsonpath.Compile(sp.Parent.Fields[col])
				if err != nil {
					return nil, fmt.Errorf("stream %s: parent field %s: %w", name, col, err)
				}
				st.fields = append(st.fields, parentField{column: col, path: p})
				st.info.ParentFields = append(st.info.ParentFields, col)
			}
			if len(st.parentKey) == 0 {
				for _, f := range st.fields {
					st.parentKey = append(st.parentKey, f.path.String())
				}
			}
			st.info.Parent = sp.Parent.Stream
			st.workers = cmp.Or(sp.Parent.Concurrency, hc.Concurrency, 1)
		}
		s.streams = append(s.streams, st.info)
	}
	return s, nil
}

// observer passes the HTTP client's attempts on as source requests.
type observer struct{ obs source.Observer }

func (o observer) Attempt(a httpx.AttemptInfo) {
	r := source.Request{Stream: a.Label, Method: a.Method, URL: a.URL, Status: a.Status, Attempt: a.Attempt,
		Retry: a.RetryIn > 0, Wait: a.RetryIn, Duration: a.Duration, Bytes: a.Bytes}
	if a.Err != nil {
		r.Err = a.Err.Error()
	}
	o.obs.Requested(r)
}

// Close releases the HTTP client's idle connections.
func (s *Source) Close() error {
	s.client.Close()
	return nil
}

func compileStream(name string, sp *Stream) (*stream, error) {
	path, err := template.Parse(sp.Path)
	if err != nil {
		return nil, fmt.Errorf("path: %w", err)
	}
	st := &stream{name: name, method: sp.Method, path: path, ignore: map[int]bool{}}
	for _, k := range slices.Sorted(maps.Keys(sp.Params)) {
		t, err := template.Parse(sp.Params[k])
		if err != nil {
			return nil, fmt.Errorf("params.%s: %w", k, err)
		}
		st.params = append(st.params, kv{k, t})
	}
	for _, k := range slices.Sorted(maps.Keys(sp.Headers)) {
		t, err := template.Parse(sp.Headers[k])
		if err != nil {
			return nil, fmt.Errorf("headers.%s: %w", k, err)
		}
		st.headers = append(st.headers, kv{k, t})
	}
	if st.body, err = compileBody(sp.Body); err != nil {
		return nil, fmt.Errorf("body: %w", err)
	}
	rec := ""
	if sp.Records != nil {
		rec = *sp.Records
	}
	if st.records, err = jsonpath.Compile(rec); err != nil {
		return nil, err
	}
	st.records.Spread = true
	st.records.Announce = true
	st.records.Skim = true // the normalizer validates each record strictly
	if st.pag, err = newPaginator(sp.Paginate, sp.PrimaryKey); err != nil {
		return nil, err
	}
	for _, code := range sp.IgnoreStatus {
		st.ignore[int(code)] = true
	}
	st.info = source.Stream{Name: name, PrimaryKey: slices.Clone([]string(sp.PrimaryKey)), Cursor: sp.Cursor}
	if len(sp.Columns) > 0 {
		st.info.Hints = map[string]schema.Type{}
		for k, v := range sp.Columns {
			t, err := columnType(v)
			if err != nil {
				return nil, fmt.Errorf("columns.%s: %w", k, err)
			}
			st.info.Hints[k] = t
		}
	}
	if inc := sp.Incremental; inc != nil {
		st.incParam = inc.Param
		st.incFormat = inc.Format
		st.info.ServerFilter = inc.Param != "" || usesIncremental(sp)
		if inc.Lookback != "" {
			if st.info.Lookback, err = spec.ParseLookback(string(inc.Lookback)); err != nil {
				return nil, err
			}
		}
		st.info.Start = string(inc.Start)
		if inc.Exclusive {
			st.info.Exclusive, st.info.Granularity = true, time.Second
		}
		if inc.Granularity != "" {
			if st.info.Granularity, err = spec.ParseDuration(inc.Granularity); err != nil {
				return nil, fmt.Errorf("incremental.granularity: %w", err)
			}
		}
	}
	return st, nil
}

// usesIncremental reports whether a stream's templates read
// incremental.since, which makes the API filter by itself.
func usesIncremental(sp *Stream) bool {
	uses := func(src string) bool {
		t, err := template.Parse(src)
		if err != nil {
			return false
		}
		for _, r := range t.Refs() {
			if r.Var == "incremental" {
				return true
			}
		}
		return false
	}
	for _, v := range sp.Params {
		if uses(v) {
			return true
		}
	}
	found := uses(sp.Path)
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case string:
			found = found || uses(x)
		case map[string]any:
			for _, e := range x {
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(sp.Body)
	return found
}

func compileBody(v any) (any, error) {
	switch x := v.(type) {
	case string:
		return template.Parse(x)
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			c, err := compileBody(e)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			out[k] = c
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			c, err := compileBody(e)
			if err != nil {
				return nil, fmt.Errorf("%d: %w", i, err)
			}
			out[i] = c
		}
		return out, nil
	}
	return v, nil
}

func renderBody(v any, env template.Env) (any, error) {
	switch x := v.(type) {
	case *template.Template:
		return x.Eval(env)
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			r, err := renderBody(e, env)
			if err != nil {
				return nil, err
			}
			out[k] = r
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			r, err := renderBody(e, env)
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	}
	return v, nil
}

// Streams lists the streams in declaration order.
func (s *Source) Streams() []source.Stream { return s.streams }

// emitError marks an error returned by the consumer, which ends the read.
type emitError struct{ err error }

func (e *emitError) Error() string { return e.err.Error() }
func (e *emitError) Unwrap() error { return e.err }

// Read reads every partition of a stream.
func (s *Source) Read(ctx context.Context, req source.ReadRequest) error {
	st, ok := s.compiled[req.Stream]
	if !ok {
		return fmt.Errorf("unknown stream %q", req.Stream)
	}
	err := s.read(ctx, st, req)
	var ee *emitError
	if errors.As(err, &ee) {
		return ee.err
	}
	return err
}

func (s *Source) read(ctx context.Context, st *stream, req source.ReadRequest) error {
	if st.parent == nil {
		return s.readPartition(ctx, st, &record.Partition{}, nil, req)
	}
	// Up to st.workers partitions are read at once, each by one goroutine
	// (so its pages stay in order); reading the parent waits for a free
	// worker, which bounds memory. A failed partition is set aside; an
	// error that is not the partition's own (the consumer gave up, the
	// context ended, too many partitions failed) stops them all.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type failure struct {
		seq int64 // the partition's place in parent order
		source.PartitionError
	}
	var (
		mu     sync.Mutex
		failed []failure
		fatal  error
		wg     sync.WaitGroup
		seq    atomic.Int64
	)
	stop := func(err error) {
		mu.Lock()
		if fatal == nil {
			fatal = err
		}
		mu.Unlock()
		cancel()
	}
	slots := make(chan struct{}, st.workers)
	err := s.eachParent(ctx, st, func(part *record.Partition, parent map[string]any) error {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		n := seq.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			err := s.readPartition(ctx, st, part, parent, req)
			if err == nil {
				return
			}
			var ee *emitError
			if errors.As(err, &ee) || ctx.Err() != nil || isFatal(err) {
				stop(err)
				return
			}
			s.log.Warn("partition failed", "stream", st.name, "partition", part.Key, "error", s.red.String(err.Error()))
			mu.Lock()
			failed = append(failed, failure{n, source.PartitionError{Partition: part.Key, Err: err}})
			tooMany := len(failed) >= maxPartitionErrors
			mu.Unlock()
			if tooMany {
				stop(errTooManyFailed)
			}
		}()
		return nil
	})
	wg.Wait()
	// Failed partitions are reported in parent order, whatever order
	// they failed in.
	slices.SortFunc(failed, func(a, b failure) int { return cmp.Compare(a.seq, b.seq) })
	pe := &source.PartitionErrors{Stream: st.name}
	for _, f := range failed {
		pe.Errs = append(pe.Errs, f.PartitionError)
	}
	switch {
	case fatal == errTooManyFailed:
		return pe
	case fatal != nil:
		return fatal
	case err != nil:
		return err
	case len(failed) > 0:
		return pe
	}
	return nil
}

// eachParent reads the whole parent stream of st (no state, no filter)
// and calls fn with the partition of each parent record.
func (s *Source) eachParent(ctx context.Context, st *stream, fn func(*record.Partition, map[string]any) error) error {
	parent := st.parent
	preq := source.ReadRequest{
		Stream: parent.name,
		Start:  func(context.Context, *record.Partition) (source.Start, error) { return source.Start{}, nil },
		Emit: func(ctx context.Context, p *record.Page) error {
			for _, rec := range p.Records {
				part, env, err := st.partition(rec)
				if err != nil {
					return &emitError{fmt.Errorf("parent stream %s: %w", parent.name, err)}
				}
				if err := fn(part, env); err != nil {
					return &emitError{err}
				}
			}
			return nil
		},
	}
	err := s.read(ctx, parent, preq)
	var ee *emitError
	if errors.As(err, &ee) {
		return ee.err
	}
	if err != nil {
		return fmt.Errorf("reading parent stream %s: %w", parent.name, err)
	}
	return nil
}

// partition builds the partition of a child stream for one parent record.
func (st *stream) partition(rec []byte) (*record.Partition, map[string]any, error) {
	var parent map[string]any
	d := json.NewDecoder(bytes.NewReader(rec))
	d.UseNumber()
	if err := d.Decode(&parent); err != nil {
		return nil, nil, fmt.Errorf("parent record is not a JSON object: %w", err)
	}
	part := &record.Partition{}
	for _, f := range st.fields {
		raw, found, err := jsonpath.Lookup(rec, f.path)
		if err != nil || !found || string(raw) == "null" {
			return nil, nil, fmt.Errorf("parent record has no field %q (needed for column %s): %s", f.path, f.column, excerpt(rec))
		}
		part.Fields = append(part.Fields, record.Field{Name: f.column, Value: bytes.Clone(raw)})
	}
	// The key: the parent's identifying values as a JSON object, keys sorted.
	key := map[string]json.RawMessage{}
	for _, k := range st.parentKey {
		raw, found, err := jsonpath.Lookup(rec, jsonpath.MustCompile(k))
		if err != nil || !found {
			return nil, nil, fmt.Errorf("parent record has no key field %q: %s", k, excerpt(rec))
		}
		key[k] = json.RawMessage(raw)
	}
	kb, err := json.Marshal(key)
	if err != nil {
		return nil, nil, err
	}
	part.Key = string(kb)
	return part, parent, nil
}

func excerpt(b []byte) string {
	if len(b) > 120 {
		return string(b[:120]) + "…"
	}
	return string(b)
}

// readPartition reads the pages of one partition and emits them.
func (s *Source) readPartition(ctx context.Context, st *stream, part *record.Partition, parent map[string]any, req source.ReadRequest) error {
	start, err := req.Start(ctx, part)
	if err != nil {
		return &emitError{err}
	}
	if start.Skip {
		return nil
	}
	pos := st.pag.first()
	if start.Resume != nil {
		if err := json.Unmarshal(start.Resume, &pos); err != nil {
			return fmt.Errorf("saved position %s is unreadable: %w (reset the stream's state with ferry state reset)", start.Resume, err)
		}
	}
	guard := newLoopGuard()
	env := template.Env{
		"config":      s.config,
		"parent":      parent,
		"stream":      st.name,
		"incremental": map[string]any{"since": nullable(st.formatSince(start.Since)), "start": nullable(st.info.Start)},
	}
	memo := deletes{}
	if st.async != nil {
		return s.readAsync(ctx, st, part, env, start, req)
	}
	for page := pos.Pages + 1; ; page++ {
		env["page"] = st.pag.vars(pos)
		hreq, err := s.request(st, pos, env, start.Since)
		if err != nil {
			return err
		}
		if st.dec != nil {
			next, done, err := s.fetchStreamed(ctx, st, hreq, streamedPage{part: part, req: req, env: env, pos: pos, page: page, guard: guard, memo: memo})
			if err != nil || done {
				return err
			}
			pos = next
			continue
		}
		resp, parsed, err := s.fetch(ctx, st, hreq)
		if err != nil {
			return err
		}
		p := &record.Page{
			Stream:    st.name,
			Partition: part,
			Body:      resp.Body,
			Number:    page,
			Request:   hreq.Method + " " + resp.URL,
			FetchedAt: time.Now().UnixMicro(),
		}
		var next position
		done := true
		if parsed != nil {
			sh, err := st.shape.apply(st, part, parsed.records, resp.Body, env, memo)
			if err != nil {
				return fmt.Errorf("%s: %w", p.Request, err)
			}
			p.Records, p.Ops, p.Rejects = sh.records, sh.ops, sh.rejects
			parsed.link = resp.Header.Values("Link")
			next, done, err = st.pag.next(pos, parsed, page, guard)
			if err != nil {
				return fmt.Errorf("%s: %w", p.Request, err)
			}
			done = done || parsed.last
		}
		p.Last = done
		if !done {
			next.URL = s.stripURL(next.URL)
			if p.Position, err = json.Marshal(next); err != nil {
				return err
			}
		}
		if err := req.Emit(ctx, p); err != nil {
			return &emitError{err}
		}
		if done {
			return nil
		}
		pos = next
	}
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// formatSince renders the since value the way the API wants it.
func (st *stream) formatSince(since string) string {
	if since == "" || st.incFormat == "" || st.incFormat == "rfc3339" {
		return since
	}
	us, ok := schema.ParseTimestamp([]byte(since))
	if !ok {
		return since
	}
	t := time.UnixMicro(us).UTC()
	switch st.incFormat {
	case "unix":
		return fmt.Sprint(t.Unix())
	case "unix_ms":
		return fmt.Sprint(t.UnixMilli())
	case "date":
		return t.Format(time.DateOnly)
	}
	return t.Format(st.incFormat)
}

// request builds the HTTP request for a page.
func (s *Source) request(st *stream, pos position, env template.Env, since string) (*httpx.Request, error) {
	req := &httpx.Request{Method: st.method, Header: http.Header{}, Label: st.name}
	var u *url.URL
	if pos.URL != "" {
		// next_url and link_header: the API said where to go; keep its query.
		base, err := redact.ParseURLWith(s.red, s.baseURL+"/")
		if err != nil {
			return nil, err
		}
		ref, err := redact.ParseURLWith(s.red, pos.URL)
		if err != nil {
			return nil, fmt.Errorf("next page URL: %w", err) // redacted, quoting nothing of it
		}
		u = base.ResolveReference(ref)
	} else {
		path, err := st.path.RenderEach(env, escapeSegment)
		if err != nil {
			return nil, fmt.Errorf("path: %w", err)
		}
		if u, err = s.requestURL(st, path); err != nil {
			return nil, err
		}
		q := u.Query()
		for _, p := range st.params {
			v, null, err := p.tpl.Render(env)
			if err != nil {
				return nil, fmt.Errorf("params.%s: %w", p.key, err)
			}
			if !null {
				q.Set(p.key, v)
			}
		}
		if st.incParam != "" && since != "" {
			q.Set(st.incParam, st.formatSince(since))
		}
		st.pag.query(pos, q)
		u.RawQuery = q.Encode()
	}
	req.URL = u.String()
	for _, group := range [][]kv{s.headers, st.headers} {
		for _, h := range group {
			v, null, err := h.tpl.Render(env)
			if err != nil {
				return nil, fmt.Errorf("headers.%s: %w", h.key, err)
			}
			if !null {
				req.Header.Set(h.key, v)
			}
		}
	}
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "application/json")
	}
	if st.body != nil {
		body, err := renderBody(st.body, env)
		if err != nil {
			return nil, fmt.Errorf("body: %w", err)
		}
		if req.Body, err = json.Marshal(body); err != nil {
			return nil, fmt.Errorf("body: %w", err)
		}
		req.Header.Set("Content-Type", "application/json")
	}
	return req, nil
}

// escapeSegment escapes a value rendered into a path: url.PathEscape,
// and a value that is "." or ".." has its dots escaped too, so that it
// stays one segment instead of moving the request up the path.
func escapeSegment(v string) string {
	if v == "." || v == ".." {
		return strings.Repeat("%2E", len(v))
	}
	return url.PathEscape(v)
}

// requestURL builds a stream's request URL from base_url and the rendered
// path, as a URL rather than by joining strings, so that it always has
// base_url's origin: "@other.host/x" after a base_url without a path,
// "//other.host", a backslash, or %2F cannot move it elsewhere. The path
// must start with "/" (or "?", or be empty); its query joins base_url's.
// An absolute URL is allowed only on an origin credentials may go to
// (base_url's, http.credential_origins).
func (s *Source) requestURL(st *stream, path string) (*url.URL, error) {
	base, err := redact.ParseURLWith(s.red, s.baseURL)
	if err != nil {
		return nil, err
	}
	leave := func(why string) error {
		return fmt.Errorf("stream %s: path %q would leave %s://%s: %s", st.name, s.red.URL(path), base.Scheme, base.Host, why)
	}
	path, _, _ = strings.Cut(path, "#")
	if i := strings.Index(path, "://"); i > 0 && !strings.ContainsAny(path[:i], "/?") {
		u, err := redact.ParseURLWith(s.red, path)
		if err != nil {
			return nil, fmt.Errorf("stream %s: path: %w", st.name, err)
		}
		if !s.origins[httpx.Origin(path)] {
			return nil, leave("an absolute URL as a path must be on that origin or one listed in http.credential_origins")
		}
		return u, nil
	}
	switch {
	case path == "" || path[0] == '?':
	case strings.HasPrefix(path, "//"), strings.HasPrefix(path, `\`):
		return nil, leave("it starts like the address of another host")
	case path[0] != '/':
		return nil, leave(`a path must start with "/"`)
	}
	p, q, _ := strings.Cut(path, "?")
	escaped := strings.TrimRight(base.EscapedPath(), "/") + p
	decoded, err := url.PathUnescape(escaped)
	if err != nil {
		return nil, fmt.Errorf("stream %s: path %q: invalid percent-escape (a %%%% not followed by two hex digits)", st.name, s.red.URL(path))
	}
	u := *base
	u.Path, u.RawPath, u.Fragment, u.RawFragment = decoded, escaped, "", ""
	switch {
	case base.RawQuery != "" && q != "":
		u.RawQuery = base.RawQuery + "&" + q
	case q != "":
		u.RawQuery = q
	}
	if httpx.Origin(u.String()) != httpx.Origin(base.String()) {
		return nil, leave("it changes the host") // cannot happen: scheme and host are base_url's
	}
	return &u, nil
}

// stripURL removes the credential query parameter from a URL kept in state.
func (s *Source) stripURL(raw string) string {
	if raw == "" || s.stripParam == "" {
		return raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	q := u.Query()
	if !q.Has(s.stripParam) {
		return raw
	}
	q.Del(s.stripParam)
	u.RawQuery = q.Encode()
	return u.String()
}

// fetch sends a request and selects records and pagination fields from
// the response. A response with an ignored status returns parsed == nil.
func (s *Source) fetch(ctx context.Context, st *stream, req *httpx.Request) (*httpx.Response, *response, error) {
	var parsed *response
	paths := append([]*jsonpath.Path{st.records}, st.pag.paths()...)
	var live []*jsonpath.Path
	var index []int
	for i, p := range paths {
		if p != nil {
			live = append(live, p)
			index = append(index, i)
		}
	}
	check := func(resp *httpx.Response) error {
		r := &response{}
		recordsFound := false
		err := jsonpath.Scan(resp.Body, live, func(i int, v []byte) error {
			if j := index[i]; j == 0 {
				recordsFound = true
				if v == nil || (len(v) > 0 && v[0] == 'n') {
					return nil // an array announced, or "data": null (an empty page)
				}
				r.records = append(r.records, v)
			} else if !r.found[j-1] {
				r.fields[j-1], r.found[j-1] = v, true
			}
			return nil
		})
		if err != nil {
			bad := fmt.Errorf("response is not JSON: %v; body: %s", err, httpx.Describe(s.red, resp.Header, resp.Body))
			if errors.Is(err, jsonscan.ErrDuplicateName) || errors.Is(err, jsonscan.ErrTooDeep) {
				return bad // complete, not truncated: asking again gets the same
			}
			return httpx.Retryable(bad)
		}
		if !recordsFound && st.records.Len() > 0 {
			// Where the path stopped matching, and the keys found there.
			why := jsonpath.Missing(resp.Body, st.records)
			if why == nil {
				why = fmt.Errorf("path %q not found", st.records)
			}
			return fmt.Errorf("records %v; body: %s", why, httpx.Describe(s.red, resp.Header, resp.Body))
		}
		parsed = r
		return nil
	}
	var took string // the action of a rule that took the response as it is
	req.Decide = s.decider(st, req.Method, &took)
	resp, err := s.client.Do(ctx, req, check)
	if err != nil {
		var se *httpx.StatusError
		if errors.As(err, &se) && st.ignore[se.Status] {
			s.log.Debug("ignored status", "stream", st.name, "status", se.Status, "url", se.URL)
			return &httpx.Response{Status: se.Status, URL: se.URL, Header: http.Header{}}, nil, nil
		}
		return nil, nil, asStop(err)
	}
	return s.taken(resp, &parsed, took, check)
}

// Check fetches the first page of a stream (for a child stream, of the
// first parent's partition).
func (s *Source) Check(ctx context.Context, name string) (string, error) {
	for st := s.compiled[name]; st != nil; st = st.parent {
		if st.async != nil {
			return fmt.Sprintf("not checked: stream %s reads through an export job, and checking it would leave a job on the server; try it with ferry run --dry-run --stream %s", st.name, name), nil
		}
	}
	var summary string
	req := source.ReadRequest{
		Stream: name,
		Start:  func(context.Context, *record.Partition) (source.Start, error) { return source.Start{}, nil },
		Emit: func(_ context.Context, p *record.Page) error {
			summary = fmt.Sprintf("%s: %d records on the first page", p.Request, len(p.Records))
			if p.Partition != nil && p.Partition.Key != "" {
				summary += " (partition " + p.Partition.Key + ")"
			}
			return source.ErrStop
		},
	}
	err := s.Read(ctx, req)
	if errors.Is(err, source.ErrStop) {
		return summary, nil
	}
	if err == nil {
		return "no records: the parent stream is empty", nil
	}
	return "", err
}
