// Package httpdest is the http destination: every row or change of a
// stream becomes a request to an API (one per change, or a JSON array per
// batch), with the method and path chosen by the operation, headers and
// auth from the sources' schemes, an idempotency key derived from the
// change's source position and key, and retries through the one HTTP
// client (internal/httpx).
//
// Delivery is at least once and in order per key: the changes of one key
// always go through the same lane, one request at a time; different keys
// go in parallel. Commit returns once every change written before it was
// delivered (2xx, or a status in ok_statuses) or dead-lettered, so that
// the engine saves the state, and a CDC source confirms its position,
// only after delivery. A change the API refuses for good (a 4xx that is
// not retried) goes to the dead-letter table with its request and the
// response, and can be replayed (ferry dlq). A change that cannot be
// delivered after every attempt (5xx, timeouts) fails the commit: the
// stream starts over from its last commit, and the changes are sent again
// with the same idempotency keys. With an API that honours idempotency
// keys, the effect is exactly once.
package httpdest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
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
	"github.com/ferry-dev/ferry/internal/change"
	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/httpx"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/redact"
	"github.com/ferry-dev/ferry/internal/schema"
	"github.com/ferry-dev/ferry/internal/spec"
	"github.com/ferry-dev/ferry/internal/template"
)

func init() {
	dest.Register("http", "An HTTP API: a templated request per change or per batch, idempotency keys, retries, a dead-letter table. Needs a state: section.", Open)
}

// Destination delivers to one API.
type Destination struct {
	cfg      *Config
	base     string
	client   *httpx.Client
	letters  *Letters
	log      *slog.Logger
	red      httpx.Redactor
	headers  []kv
	reqs     map[record.Op]*compiled
	batch    *compiledBatch
	idemp    string
	ok       map[int]bool
	lanes    int
	readOnly bool
	sync     *syncTemplates // reverse ETL, nil when off
	twoWay   *twoWay        // two-way sync, nil when off
	dryMu    sync.Mutex
}

type kv struct {
	key string
	tpl *template.Template
}

type compiled struct {
	method      string
	path        *template.Template
	defaultPath bool // the default path: built without a template
	body        any  // nil: the row (none for DELETE); else templates
}

type compiledBatch struct {
	size   int
	method string
	path   *template.Template
	item   any
	wait   time.Duration
}

var (
	_ dest.Destination = (*Destination)(nil)
	_ dest.Checker     = (*Destination)(nil)
)

// Open builds the client; it sends nothing.
func Open(ctx context.Context, cfg *Config, opts dest.Options) (dest.Destination, error) {
	d := &Destination{cfg: cfg, base: strings.TrimRight(cfg.URL, "/"), log: opts.Logger, reqs: map[record.Op]*compiled{}, ok: map[int]bool{}, lanes: cfg.Concurrency, readOnly: opts.ReadOnly}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.lanes == 0 {
		d.lanes = 8
	}
	for _, s := range cfg.OKStatuses {
		d.ok[s] = true
	}
	d.idemp = cfg.IdempotencyHeader
	if d.idemp == "" {
		d.idemp = "Idempotency-Key"
	}
	if strings.EqualFold(d.idemp, "none") {
		d.idemp = ""
	}
	var err error
	for _, k := range slices.Sorted(maps.Keys(cfg.Headers)) {
		t, err := template.ParseEnv(cfg.Headers[k], env)
		if err != nil {
			return nil, fmt.Errorf("headers.%s: %w", k, err)
		}
		d.headers = append(d.headers, kv{k, t})
	}
	defaults := map[record.Op]Request{
		record.Insert: {Method: "POST", Path: "/{{ stream }}"},
		record.Update: {Method: "PATCH", Path: "/{{ stream }}/{{ change.key }}"},
		record.Delete: {Method: "DELETE", Path: "/{{ stream }}/{{ change.key }}"},
	}
	given := map[record.Op]*Request{record.Insert: cfg.Create, record.Update: cfg.Update, record.Delete: cfg.Delete}
	for op, def := range defaults {
		r := def
		if g := given[op]; g != nil {
			if g.Method != "" {
				r.Method = g.Method
			}
			if g.Path != "" {
				r.Path = g.Path
			}
			r.Body = g.Body
		}
		c := &compiled{method: r.Method, defaultPath: r.Path == def.Path}
		if c.path, err = template.ParseEnv(r.Path, env); err != nil {
			return nil, fmt.Errorf("%s.path: %w", op, err)
		}
		if c.body, err = template.ParseTree(r.Body, env); err != nil {
			return nil, fmt.Errorf("%s.body: %w", op, err)
		}
		d.reqs[op] = c
	}
	d.reqs[record.Upsert] = d.reqs[record.Insert]
	if b := cfg.Batch; b != nil {
		cb := &compiledBatch{size: b.Size, method: b.Method, wait: 10 * time.Millisecond}
		if cb.size == 0 {
			cb.size = 100
		}
		if cb.method == "" {
			cb.method = "POST"
		}
		path := b.Path
		if path == "" {
			path = "/{{ stream }}/batch"
		}
		if cb.path, err = template.ParseEnv(path, env); err != nil {
			return nil, fmt.Errorf("batch.path: %w", err)
		}
		if cb.item, err = template.ParseTree(b.Item, env); err != nil {
			return nil, fmt.Errorf("batch.item: %w", err)
		}
		if b.Wait != "" {
			if cb.wait, err = spec.ParseDuration(b.Wait); err != nil {
				return nil, fmt.Errorf("batch.wait: %w", err)
			}
		}
		d.batch = cb
	}
	if cfg.Sync != nil {
		if d.sync, err = compileSync(cfg.Sync); err != nil {
			return nil, err
		}
	}
	if cfg.TwoWay != nil && !opts.ReadOnly && cfg.DryRun == nil {
		if d.twoWay, err = openTwoWay(ctx, cfg.TwoWay); err != nil {
			return nil, err
		}
	}
	hc := httpx.Config{MaxAttempts: cfg.MaxAttempts, RequestsPerSecond: cfg.RequestsPerSecond, Concurrency: d.lanes, Logger: d.log}
	if cfg.Timeout != "" {
		hc.Timeout, _ = spec.ParseDuration(cfg.Timeout)
	}
	if cfg.MaxBackoff != "" {
		hc.MaxBackoff, _ = spec.ParseDuration(cfg.MaxBackoff)
	}
	if opts.Redactor != nil {
		hc.Redactor, d.red = opts.Redactor, opts.Redactor
	} else {
		d.red = redact.New()
		hc.Redactor = d.red
	}
	if cfg.Auth != nil && cfg.Auth.Type != "" {
		a, secrets, err := auth.New(cfg.Auth.Type, cfg.Auth.Config, auth.Env{
			Eval: func(s string) (string, error) {
				t, err := template.Parse(s)
				if err != nil {
					return "", err
				}
				out, _, err := t.Render(template.Env{"config": map[string]any{}, "stream": ""})
				return out, err
			},
			AddSecret: func(s ...string) {
				if opts.Redactor != nil {
					opts.Redactor.Add(s...)
				}
			},
			Logger: d.log,
		})
		if err != nil {
			return nil, fmt.Errorf("auth: %w", err)
		}
		if opts.Redactor != nil {
			opts.Redactor.Add(secrets...)
		}
		hc.Auth = a
	}
	d.client = httpx.New(hc)
	switch {
	case cfg.DryRun != nil:
		// A preview reads what was delivered, if anything was, and writes
		// nothing.
		if l, err := OpenLetters(ctx, cfg.DeadLetter, opts.Dir, true); err == nil {
			d.letters = l
		}
	case !opts.ReadOnly:
		if d.letters, err = OpenLetters(ctx, cfg.DeadLetter, opts.Dir, false); err != nil {
			d.client.Close()
			return nil, err
		}
	}
	return d, nil
}

// Close closes the client and the dead-letter store.
func (d *Destination) Close() error {
	d.client.Close()
	if d.twoWay != nil {
		d.twoWay.close()
	}
	if d.letters != nil {
		return d.letters.Close()
	}
	return nil
}

// Check opens the dead-letter store's database and says where requests go;
// it sends no request (an API has no harmless write to try).
func (d *Destination) Check(ctx context.Context) (string, error) {
	l, err := OpenLetters(ctx, d.cfg.DeadLetter, "", true)
	if err == nil {
		l.Close()
	}
	where := DefaultDeadLetter
	if d.cfg.DeadLetter != "" {
		where = "the configured store"
	}
	return fmt.Sprintf("requests go to %s; dead letters to %s (nothing was sent)", d.red.URL(d.base), where), nil
}

// OpenStream starts the lanes of one stream.
func (d *Destination) OpenStream(ctx context.Context, sc dest.StreamConfig) (dest.StreamWriter, error) {
	if d.readOnly {
		return nil, dest.ErrReadOnly
	}
	w := &writer{d: d, sc: sc, lanes: make([]*lane, d.lanes), pendingRec: map[string]delivered{}, seenAll: map[string]bool{}, pass: sc.RunID}
	if d.sync != nil {
		if d.cfg.Sync.Deletes {
			if err := refuseIncrementalDeletes(sc.Mode); err != nil {
				return nil, err
			}
		}
		if d.letters != nil && d.cfg.DryRun == nil {
			p, err := d.letters.pass(ctx, sc.Pipeline, sc.Stream, sc.RunID, sc.Resume)
			if err != nil {
				return nil, fmt.Errorf("reverse ETL state in %s: %w", d.letters.Target, err)
			}
			w.pass = p
		}
	}
	if d.batch != nil {
		if p, ok := fixed(d.batch.path, sc.Stream, url.PathEscape); ok {
			w.batchPath = d.base + p
		}
	}
	w.ctx, w.cancel = context.WithCancel(context.WithoutCancel(ctx))
	for i := range w.lanes {
		l := &lane{w: w, in: make(chan item, 256)}
		w.lanes[i] = l
		w.wg.Add(1)
		go l.run()
	}
	return w, nil
}

// item is one change for a lane, or a flush marker.
type item struct {
	req   *outgoing
	flush chan error
}

// outgoing is one change's request (or, in batch mode, its element).
type outgoing struct {
	method, url string
	header      http.Header
	body        []byte
	id          string // idempotency key
	key         string // the change's key as JSON
	position    string
	sync        *syncInfo // reverse ETL, nil when off
	tw          *twInfo   // two-way sync, nil when off
}

type writer struct {
	d     *Destination
	sc    dest.StreamConfig
	lanes []*lane
	wg    sync.WaitGroup
	rd    *change.Reader
	// batchPath is the batch request's URL when it depends only on the
	// stream.
	batchPath string
	// ctx ends the requests in flight when the writer is aborted.
	ctx    context.Context
	cancel context.CancelFunc

	written   atomic.Int64
	delivered atomic.Int64
	dead      atomic.Int64
	closed    bool

	// Reverse ETL: the pass this writer's reads belong to, what the lanes
	// delivered since the last commit, the keys seen, the rows not sent.
	pass       string
	syncMu     sync.Mutex
	pendingRec map[string]delivered
	seen       []string
	seenAll    map[string]bool // previews only
	deleted    []string
	unchanged  atomic.Int64

	// Two-way sync: changes written back, Ferry's own writes not echoed,
	// conflicts.
	twoWaySent, twoWayEchoes, twoWayConflicts atomic.Int64
}

func (w *writer) Existing() *schema.Table            { return nil }
func (w *writer) ExistingChild(string) *schema.Table { return nil }
func (w *writer) Rejected() int                      { return int(w.dead.Load()) }
func (w *writer) Committed() int64                   { return w.delivered.Load() }
func (w *writer) Finish(ctx context.Context, _ []record.Checkpoint) error {
	if err := w.Commit(ctx); err != nil {
		return err
	}
	if err := w.sendDeletes(ctx); err != nil {
		return err
	}
	if n := w.unchanged.Load(); n > 0 {
		w.d.log.Info("rows unchanged since their last delivery were not sent", "stream", w.sc.Stream, "rows", n)
	}
	return nil
}

// TwoWayCounts returns, for two-way sync, the changes written back to the
// API, Ferry's own writes recognised and not echoed, and the conflicts.
func (w *writer) TwoWayCounts() (sent, echoes, conflicts int64) {
	return w.twoWaySent.Load(), w.twoWayEchoes.Load(), w.twoWayConflicts.Load()
}

// Unchanged returns how many rows were not sent because their content is
// what was last delivered (reverse ETL).
func (w *writer) Unchanged() int64 { return w.unchanged.Load() }

// Write builds each row's request and hands it to its key's lane. It
// returns once every request is queued; Commit waits for them.
func (w *writer) Write(ctx context.Context, c *record.Chunk) error {
	if len(c.Children) > 0 {
		return errors.New("the http destination sends nested values as JSON: schema.nested unnest does not apply to it")
	}
	if w.rd == nil || w.rd.Table() != c.Table {
		w.rd = change.NewReader(c.Table)
	}
	if w.d.twoWay != nil {
		for i := 0; i < c.Len; i++ {
			ch := w.rd.Read(c, i)
			if err := w.dispatch(ctx, &outgoing{key: string(ch.KeyJSON), tw: &twInfo{ch: ch}}); err != nil {
				return err
			}
		}
		return nil
	}
	if w.d.sync != nil {
		changes, infos, err := w.prepare(ctx, c)
		if err != nil {
			return err
		}
		for n, ch := range changes {
			out, err := w.build(ch, infos[n])
			if err != nil {
				return fmt.Errorf("%s: %w", c.Source, err)
			}
			out.sync = infos[n]
			if err := w.dispatch(ctx, out); err != nil {
				return err
			}
		}
		return nil
	}
	for i := 0; i < c.Len; i++ {
		ch := w.rd.Read(c, i)
		out, err := w.build(ch, nil)
		if err != nil {
			return fmt.Errorf("%s: row %d: %w", c.Source, i, err)
		}
		if err := w.dispatch(ctx, out); err != nil {
			return err
		}
	}
	return nil
}

// dispatch hands a request to its key's lane.
func (w *writer) dispatch(ctx context.Context, out *outgoing) error {
	h := fnv.New32a()
	h.Write([]byte(out.key))
	l := w.lanes[h.Sum32()%uint32(len(w.lanes))]
	select {
	case l.in <- item{req: out}:
		w.written.Add(1)
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// streamOnly reports whether a template reads nothing but the stream's
// name (or nothing): it is rendered once per stream.
func streamOnly(t *template.Template) bool {
	for _, r := range t.Refs() {
		if r.Var != "stream" {
			return false
		}
	}
	return true
}

// fixed renders a stream-only template once.
func fixed(t *template.Template, stream string, escape func(string) string) (string, bool) {
	if t == nil || !streamOnly(t) {
		return "", false
	}
	out, err := t.RenderEach(template.Env{"stream": stream}, escape)
	return out, err == nil
}

// env returns the template environment of a change.
func (w *writer) env(ch *change.Change, id string) template.Env {
	key, row := ch.Fields()
	var before any
	if ch.Before != nil {
		_ = json.Unmarshal(ch.Before, &before)
	}
	return template.Env{
		"row": row, "key": key, "before": before, "op": change.OpName(ch.Op), "stream": w.sc.Stream, "idempotency_key": id, "remote_id": "",
		"change": map[string]any{"position": ch.Position, "committed_at": ch.CommittedAt, "key": strings.Join(ch.KeyValues(), ","), "id": id},
	}
}

// build renders a change's request. Templates that read only the stream
// are rendered once; the environment of the change is made only when a
// template reads it.
func (w *writer) build(ch change.Change, info *syncInfo) (*outgoing, error) {
	d := w.d
	id := change.ID(w.sc.Stream, ch)
	out := &outgoing{id: id, key: string(ch.KeyJSON), position: ch.Position, header: http.Header{}}
	var e template.Env
	lazy := func() template.Env {
		if e == nil {
			e = w.env(&ch, id)
			if info != nil {
				e["remote_id"] = info.remote
			}
		}
		return e
	}
	for _, h := range d.headers {
		v, null, err := h.tpl.Render(lazy())
		if err != nil {
			return nil, fmt.Errorf("headers.%s: %w", h.key, err)
		}
		if !null {
			out.header.Set(h.key, v)
		}
	}
	if d.batch != nil {
		if d.batch.item == nil {
			out.body = change.AppendItem(make([]byte, 0, 96+len(ch.RowJSON)+len(ch.KeyJSON)+len(ch.Before)), "", ch, id)
		} else {
			v, err := template.EvalTree(d.batch.item, lazy())
			if err != nil {
				return nil, fmt.Errorf("batch.item: %w", err)
			}
			if out.body, err = json.Marshal(v); err != nil {
				return nil, err
			}
		}
		if w.batchPath == "" {
			p, err := d.batch.path.RenderEach(lazy(), url.PathEscape)
			if err != nil {
				return nil, fmt.Errorf("batch.path: %w", err)
			}
			out.url = d.base + p
		} else {
			out.url = w.batchPath
		}
		out.method = d.batch.method
		return out, nil
	}
	r := d.reqs[ch.Op]
	if r == nil {
		r = d.reqs[record.Insert]
	}
	switch {
	case r.defaultPath && ch.Op == record.Insert || r.defaultPath && ch.Op == record.Upsert:
		out.url = d.base + "/" + url.PathEscape(w.sc.Stream)
	case r.defaultPath:
		keys := ch.KeyValues()
		for i := range keys {
			keys[i] = url.PathEscape(keys[i])
		}
		out.url = d.base + "/" + url.PathEscape(w.sc.Stream) + "/" + strings.Join(keys, ",")
	default:
		p, err := r.path.RenderEach(lazy(), url.PathEscape)
		if err != nil {
			return nil, fmt.Errorf("%s path: %w", change.OpName(ch.Op), err)
		}
		out.url = d.base + p
	}
	out.method = r.method
	switch {
	case r.body != nil:
		v, err := template.EvalTree(r.body, lazy())
		if err != nil {
			return nil, fmt.Errorf("%s body: %w", change.OpName(ch.Op), err)
		}
		if out.body, err = json.Marshal(v); err != nil {
			return nil, err
		}
	case ch.Op != record.Delete:
		out.body = ch.RowJSON
	}
	if out.body != nil {
		out.header.Set("Content-Type", "application/json")
	}
	if d.idemp != "" {
		out.header.Set(d.idemp, id)
	}
	return out, nil
}

// Commit waits until every change written so far is delivered or
// dead-lettered. An error means some were not: the writer is unusable.
func (w *writer) Commit(ctx context.Context) error {
	if w.closed {
		return errors.New("the writer is closed")
	}
	var errs []error
	chans := make([]chan error, len(w.lanes))
	for i, l := range w.lanes {
		chans[i] = make(chan error, 1)
		select {
		case l.in <- item{flush: chans[i]}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for _, ch := range chans {
		select {
		case err := <-ch:
			if err != nil {
				errs = append(errs, err)
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if len(errs) > 0 {
		return errs[0]
	}
	return w.storeDelivered(ctx)
}

// Abort stops the lanes. Requests in flight end; nothing is rolled back
// (an API cannot be): the engine sends the uncommitted changes again.
func (w *writer) Abort(ctx context.Context) error {
	if w.closed {
		return nil
	}
	w.closed = true
	w.cancel()
	for _, l := range w.lanes {
		close(l.in)
	}
	w.wg.Wait()
	return nil
}

// lane sends one key group's changes in order.
type lane struct {
	w      *writer
	in     chan item
	failed error
	batch  []*outgoing
}

func (l *lane) run() {
	defer l.w.wg.Done()
	var timer *time.Timer
	var tc <-chan time.Time
	for {
		select {
		case it, ok := <-l.in:
			if !ok {
				return
			}
			if it.flush != nil {
				l.send()
				it.flush <- l.failed
				continue
			}
			if l.failed != nil {
				continue // nothing after a failure: order per key
			}
			if l.w.d.batch == nil {
				l.batch = append(l.batch[:0], it.req)
				l.send()
				continue
			}
			l.batch = append(l.batch, it.req)
			if len(l.batch) >= l.w.d.batch.size {
				l.send()
			} else if timer == nil {
				timer = time.NewTimer(l.w.d.batch.wait)
				tc = timer.C
			}
		case <-tc:
			timer, tc = nil, nil
			l.send()
		}
		if len(l.batch) == 0 && timer != nil {
			timer.Stop()
			timer, tc = nil, nil
		}
	}
}

// send delivers the pending request(s): one change, or one batch.
func (l *lane) send() {
	if len(l.batch) == 0 || l.failed != nil {
		l.batch = l.batch[:0]
		return
	}
	w, d := l.w, l.w.d
	pending := l.batch
	l.batch = l.batch[:0]
	if pending[0].tw != nil {
		if err := l.processTwoWay(pending[0].tw); err != nil {
			l.failed = &dest.TransientError{Err: fmt.Errorf("two-way sync: %w", err)}
			return
		}
		w.delivered.Add(1)
		return
	}
	if len(pending) == 1 && pending[0].sync != nil && pending[0].sync.lookup {
		// Reverse ETL without a stored remote id: does the API have the row?
		info := pending[0].sync
		if d.cfg.DryRun != nil {
			d.dryMu.Lock()
			fmt.Fprintf(d.cfg.DryRun, "LOOKUP %s (then PATCH the row found, or the create below)\n", d.cfg.Sync.Lookup.Path)
			d.dryMu.Unlock()
		} else {
			remote, err := l.lookup(info)
			if err != nil {
				l.failed = &dest.TransientError{Err: fmt.Errorf("look up a row before creating it: %w", err)}
				return
			}
			if remote != "" {
				info.remote = remote
				info.ch.Op = record.Update
				out, err := w.build(info.ch, info)
				if err != nil {
					l.failed = err
					return
				}
				out.sync = info
				pending[0] = out
			}
		}
	}
	req := &httpx.Request{Method: pending[0].method, URL: pending[0].url, Header: pending[0].header.Clone(), Body: pending[0].body, Label: w.sc.Stream}
	if len(pending) > 1 || d.batch != nil {
		size := 2
		for _, p := range pending {
			size += len(p.body) + 1
		}
		body := make([]byte, 0, size)
		body = append(body, '[')
		ids := make([]string, len(pending))
		for i, p := range pending {
			if i > 0 {
				body = append(body, ',')
			}
			body = append(body, p.body...)
			ids[i] = p.id
		}
		req.Body = append(body, ']')
		req.Header.Set("Content-Type", "application/json")
		if d.idemp != "" {
			req.Header.Set(d.idemp, batchID(ids))
		}
	}
	n := int64(len(pending))
	done := func(resp *httpx.Response) {
		for _, p := range pending {
			if p.sync != nil {
				w.recordDelivered(p.sync, resp)
			}
		}
	}
	if d.cfg.DryRun != nil {
		d.dryMu.Lock()
		body := string(req.Body)
		if len(body) > 2000 {
			body = body[:2000] + "…"
		}
		fmt.Fprintf(d.cfg.DryRun, "%s %s %s\n", req.Method, d.red.URL(req.URL), body)
		d.dryMu.Unlock()
		w.delivered.Add(n)
		return
	}
	resp, err := d.client.Do(w.ctx, req, nil)
	if err == nil {
		w.delivered.Add(n)
		done(resp)
		return
	}
	var se *httpx.StatusError
	if errors.As(err, &se) {
		if d.ok[se.Status] {
			w.delivered.Add(n)
			done(nil)
			return
		}
		if permanent(se.Status) {
			if lerr := l.deadLetter(req, pending, resp, se); lerr != nil {
				l.failed = lerr
				return
			}
			w.dead.Add(n)
			done(nil) // a dead letter is not sent again by the next run: replay it
			return
		}
	}
	l.failed = &dest.TransientError{Err: fmt.Errorf("%d changes not delivered: %w", n, err)}
}

// permanent reports a status the API will give again for the same request.
func permanent(status int) bool {
	return status >= 400 && status < 500 && status != 408 && status != 425 && status != 429
}

func batchID(ids []string) string {
	h := fnv.New128a()
	for _, id := range ids {
		h.Write([]byte(id))
		h.Write([]byte{0})
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// deadLetter stores a refused request durably, one letter per change for
// a batch (the batch's request is the same in each).
func (l *lane) deadLetter(req *httpx.Request, pending []*outgoing, resp *httpx.Response, se *httpx.StatusError) error {
	w := l.w
	hdr, _ := json.Marshal(req.Header)
	response := ""
	if resp != nil {
		response = string(resp.Body)
		if len(response) > 64<<10 {
			response = response[:64<<10]
		}
	}
	x := Letter{Pipeline: w.sc.Pipeline, Stream: w.sc.Stream, RunID: w.sc.RunID, IdempotencyKey: pending[0].id, Key: pending[0].key, Position: pending[0].position,
		Method: req.Method, URL: req.URL, Header: string(hdr), Body: string(req.Body), Status: se.Status, Response: response, Error: se.Error()}
	if len(pending) > 1 || w.d.batch != nil {
		// One letter per refused batch: a replay sends the batch once.
		keys := make([]json.RawMessage, len(pending))
		for i, p := range pending {
			keys[i] = json.RawMessage(p.key)
		}
		k, _ := json.Marshal(keys)
		x.Key, x.IdempotencyKey = string(k), req.Header.Get(w.d.idemp)
		if last := pending[len(pending)-1].position; last != "" {
			x.Position = pending[0].position + ".." + last
		}
	}
	if w.d.red != nil {
		x.URL, x.Error, x.Response = w.d.red.URL(x.URL), w.d.red.String(x.Error), w.d.red.String(x.Response)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	err := w.d.letters.Add(ctx, x)
	cancel()
	if err != nil {
		return err
	}
	w.d.log.Warn("the API refused changes for good; they are in the dead-letter table", "stream", w.sc.Stream, "changes", len(pending), "status", se.Status, "table", DeadLetterTable)
	return nil
}

// Replay sends a dead letter's request again as it was (with the
// destination's current auth) and reports the API's answer.
func (d *Destination) Replay(ctx context.Context, x Letter) (int, error) {
	var h http.Header
	_ = json.Unmarshal([]byte(x.Header), &h)
	req := &httpx.Request{Method: x.Method, URL: x.URL, Header: h, Label: "dlq"}
	if x.Body != "" {
		req.Body = []byte(x.Body)
	}
	resp, err := d.client.Do(ctx, req, nil)
	if err != nil {
		var se *httpx.StatusError
		if errors.As(err, &se) && d.ok[se.Status] {
			return se.Status, nil
		}
		if errors.As(err, &se) {
			return se.Status, err
		}
		return 0, err
	}
	return resp.Status, nil
}

// Letters returns the dead-letter store (nil when opened read-only).
func (d *Destination) Letters() *Letters { return d.letters }
