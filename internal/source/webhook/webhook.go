// Package webhook is the webhook source: it receives deliveries over HTTP,
// verifies each one's signature (a provider preset, a generic HMAC or a
// shared secret; package verify), keeps it in a durable local queue
// (package queue) and answers 2xx only once it is on stable storage, then
// applies the kept events to their tables in batches, through the same
// typing as pulls. Events route to streams by path, event type (globs) or
// an expr expression; events whose type says so (*.deleted) delete their
// row in dedup mode.
//
// The source's streams are unbounded. Its HTTP side is Routes, which
// ferry serve mounts; Deliveries and Stats report what arrived.
//
// Guarantees: a delivery answered 2xx is durable and lands in its table
// (once per event id: a repeated id is stored once and answered 2xx);
// nothing is acknowledged before the fsync of the group commit that
// stores it. An event is marked applied only after the destination's
// commit covering it, so a destination that is down delays events but
// loses none, and a crash re-applies at most the events of the last
// uncommitted batch (idempotent in dedup mode).
package webhook

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"

	"github.com/ferry-dev/ferry/internal/jsonpath"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/schema"
	"github.com/ferry-dev/ferry/internal/source"
	"github.com/ferry-dev/ferry/internal/source/webhook/queue"
	"github.com/ferry-dev/ferry/internal/source/webhook/verify"
	"github.com/ferry-dev/ferry/internal/spec"
	"github.com/ferry-dev/ferry/internal/template"
)

func init() {
	source.Register("webhook", "Deliveries pushed over HTTP (GitHub, Stripe, Shopify, Slack, Standard Webhooks, HMAC, shared secret): verified, kept in a durable queue before the 2xx, routed to tables by event type.", New)
}

// Source receives webhooks and applies them to its streams.
type Source struct {
	cfg      *Config
	name     string
	log      *slog.Logger
	verifier verify.Verifier
	slack    bool
	dir      string
	maxBody  int64
	bodyWait time.Duration
	keep     time.Duration
	streams  []source.Stream
	routes   map[string][]*route // path → its streams, in file order
	idPath   *jsonpath.Path
	typePath *jsonpath.Path
	needBody bool // some when: reads the body

	mu     sync.Mutex
	q      queue.Queue
	qErr   error
	closed bool
	stop   chan struct{}
	pruned sync.WaitGroup

	stats   counters
	ringMu  sync.Mutex
	ring    []Delivery
	ringPos int
	now     func() time.Time
}

// route is one stream's share of a path.
type route struct {
	stream  string
	events  []string
	when    *vm.Program
	record  *jsonpath.Path
	deletes []string
}

type counters struct {
	received, accepted, duplicates, refused, tooLarge, malformed, invalid, failed, applied, rejected atomic.Int64
}

var (
	_ source.Source = (*Source)(nil)
)

// ringSize is how many recent deliveries Deliveries can return.
const ringSize = 512

// New builds the source; the queue opens on the first delivery or read.
func New(c *Config, opts source.Options) (source.Source, error) {
	s := &Source{cfg: c, name: opts.Name, log: opts.Logger, maxBody: c.MaxBodyBytes, bodyWait: 10 * time.Second,
		keep: 7 * 24 * time.Hour, routes: map[string][]*route{}, ring: make([]Delivery, 0, ringSize), now: time.Now}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	var secrets []string
	for i, src := range c.Verify.Secrets {
		tpl, err := template.Parse(src)
		if err != nil {
			return nil, fmt.Errorf("verify.secrets[%d]: %w", i, err)
		}
		v, _, err := tpl.Render(template.Env{"config": opts.Config, "stream": ""})
		if err != nil {
			return nil, fmt.Errorf("verify.secrets[%d]: %w", i, err)
		}
		if v == "" {
			return nil, fmt.Errorf("verify.secrets[%d] is empty: set the secret config parameter it reads", i)
		}
		opts.Redactor.Add(v)
		secrets = append(secrets, v)
	}
	vc, err := c.Verify.verifyConfig(secrets)
	if err != nil {
		return nil, err
	}
	if s.verifier, err = verify.New(vc); err != nil {
		return nil, err
	}
	s.slack = c.Verify.Preset == "slack"
	if c.BodyTimeout != "" {
		if s.bodyWait, err = spec.ParseDuration(c.BodyTimeout); err != nil {
			return nil, err
		}
	}
	if c.Queue.Retention != "" {
		if s.keep, err = spec.ParseDuration(c.Queue.Retention); err != nil {
			return nil, err
		}
	}
	s.dir = c.Queue.Dir
	if s.dir == "" {
		s.dir = filepath.Join(".ferry-webhooks", opts.Name)
	}
	if !filepath.IsAbs(s.dir) && opts.Dir != "" {
		s.dir = filepath.Join(opts.Dir, s.dir)
	}
	if s.idPath, err = jsonpath.Compile(c.Event.ID); err != nil {
		return nil, fmt.Errorf("event.id: %w", err)
	}
	if s.typePath, err = jsonpath.Compile(c.Event.Type); err != nil {
		return nil, fmt.Errorf("event.type: %w", err)
	}
	for _, name := range c.StreamOrder {
		st := c.Streams[name]
		r := &route{stream: name, events: st.Events, deletes: st.Deletes}
		if r.record, err = jsonpath.Compile(st.Record); err != nil {
			return nil, fmt.Errorf("streams.%s.record: %w", name, err)
		}
		if st.When != "" {
			if r.when, err = expr.Compile(st.When, expr.Env(whenEnv{}), expr.AsBool()); err != nil {
				return nil, fmt.Errorf("streams.%s.when: %w", name, err)
			}
			s.needBody = s.needBody || strings.Contains(st.When, "body")
		}
		s.routes[st.Path] = append(s.routes[st.Path], r)
		hints := map[string]schema.Type{ColID: schema.Text, ColType: schema.Text, ColReceivedAt: schema.Timestamp}
		s.streams = append(s.streams, source.Stream{Name: name, PrimaryKey: st.PrimaryKey, Cursor: st.Cursor, Unbounded: true, Hints: hints})
	}
	return s, nil
}

// Streams lists the streams.
func (s *Source) Streams() []source.Stream { return s.streams }

// QueueDir returns the directory of the source's durable queue.
func (s *Source) QueueDir() string { return s.dir }

// Queue returns the source's queue, opening it on first use.
func (s *Source) Queue() (queue.Queue, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, queue.ErrClosed
	}
	if s.q != nil || s.qErr != nil {
		return s.q, s.qErr
	}
	q, err := queue.Open(s.dir)
	if err != nil {
		s.qErr = err
		return nil, err
	}
	s.q = q
	s.stop = make(chan struct{})
	s.pruned.Add(1)
	go s.pruneLoop(q, s.stop)
	return q, nil
}

// pruneLoop deletes applied events older than the retention, now and
// then, until Close.
func (s *Source) pruneLoop(q queue.Queue, stop chan struct{}) {
	defer s.pruned.Done()
	every := min(max(s.keep/10, time.Second), time.Hour)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			if n, err := q.Prune(ctx, s.now().Add(-s.keep)); err != nil {
				s.log.Warn("pruning the webhook queue failed", "error", err)
			} else if n > 0 {
				s.log.Debug("pruned applied webhook events past the retention", "events", n)
			}
			cancel()
		}
	}
}

// Close stops receiving and closes the queue (deliveries already being
// stored are committed first).
func (s *Source) Close() error {
	s.mu.Lock()
	q, stop := s.q, s.stop
	s.closed = true
	s.mu.Unlock()
	if q == nil {
		return nil
	}
	close(stop)
	s.pruned.Wait()
	return q.Close()
}

// position is a page's position: the queue sequence of its last event.
type position struct {
	Seq uint64 `json:"seq"`
}

// Read applies a stream's events until ctx ends: those after the
// position the engine resumes from (or, for a destination without state
// yet, after the last event acknowledged), then each as it arrives.
func (s *Source) Read(ctx context.Context, req source.ReadRequest) error {
	r := s.route(req.Stream)
	if r == nil {
		return fmt.Errorf("unknown stream %q", req.Stream)
	}
	part := &record.Partition{}
	st, err := req.Start(ctx, part)
	if err != nil {
		return err
	}
	q, err := s.Queue()
	if err != nil {
		return err
	}
	var pos uint64
	if len(st.Resume) > 0 {
		var p position
		if err := json.Unmarshal(st.Resume, &p); err != nil {
			return fmt.Errorf("stream %s: the saved position %s is not a webhook queue position: %w", req.Stream, st.Resume, err)
		}
		pos = p.Seq
	} else if pos, err = q.Acked(ctx, req.Stream); err != nil {
		return err
	}
	number := 0
	poll := time.NewTicker(time.Second) // events replayed by another process
	defer poll.Stop()
	for {
		notify := q.Notify()
		evs, err := q.Read(ctx, req.Stream, pos, s.cfg.Queue.BatchSize)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		if len(evs) == 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-notify:
			case <-poll.C:
			}
			continue
		}
		number++
		pg := s.page(r, evs)
		pg.Partition, pg.Number = part, number
		last := evs[len(evs)-1].Seq
		pg.Position, _ = json.Marshal(position{Seq: last})
		n := int64(len(evs))
		stream := req.Stream
		pg.Ack = func(err error) {
			if err == nil {
				q.Ack(stream, last)
				s.stats.applied.Add(n)
			}
		}
		if err := req.Emit(ctx, pg); err != nil {
			return err
		}
		pos = last
	}
}

func (s *Source) route(stream string) *route {
	for _, rs := range s.routes {
		for _, r := range rs {
			if r.stream == stream {
				return r
			}
		}
	}
	return nil
}

// page turns kept events into a page: each event's record with the
// event's id, type and time of delivery, its operation, and the rejects
// (bodies that are not JSON, events without a record).
func (s *Source) page(r *route, evs []queue.Event) *record.Page {
	pg := &record.Page{Stream: r.stream, Request: "webhook " + evs[0].Path, FetchedAt: s.now().UnixMicro()}
	ops := make([]record.Op, 0, len(evs))
	deletes := false
	for _, e := range evs {
		if e.Status == queue.Malformed {
			pg.Rejects = append(pg.Rejects, record.Reject{Stream: r.stream, Reason: "the delivery's body is not JSON (answered 400)", Record: quoteJSON(e.Body)})
			s.stats.rejected.Add(1)
			continue
		}
		rec, found, err := jsonpath.Lookup(e.Body, r.record)
		switch {
		case err != nil:
			pg.Rejects = append(pg.Rejects, record.Reject{Stream: r.stream, Reason: err.Error(), Record: e.Body})
			s.stats.rejected.Add(1)
			continue
		case !found || len(rec) == 0 || rec[0] != '{':
			reason := fmt.Sprintf("event %s (%s) has no object at %s", e.ID, e.Type, r.record)
			pg.Rejects = append(pg.Rejects, record.Reject{Stream: r.stream, Reason: reason, Record: e.Body})
			s.stats.rejected.Add(1)
			continue
		}
		pg.Records = append(pg.Records, withMeta(rec, e))
		op := record.Upsert
		if e.Type != "" && matchAny(r.deletes, e.Type) {
			op, deletes = record.Delete, true
		}
		ops = append(ops, op)
	}
	if deletes {
		pg.Ops = ops
	}
	return pg
}

// withMeta returns the record object with the event's columns first.
func withMeta(rec []byte, e queue.Event) []byte {
	out := make([]byte, 0, len(rec)+len(e.ID)+len(e.Type)+96)
	out = append(out, `{"`+ColID+`":`...)
	out = appendJSONString(out, e.ID)
	out = append(out, `,"`+ColType+`":`...)
	out = appendJSONString(out, e.Type)
	out = append(out, `,"`+ColReceivedAt+`":"`...)
	out = e.ReceivedAt.UTC().AppendFormat(out, "2006-01-02T15:04:05.000000Z")
	out = append(out, '"')
	body := strings.TrimSpace(string(rec[1:]))
	if body != "}" {
		out = append(out, ',')
	}
	return append(out, body...)
}

func appendJSONString(dst []byte, s string) []byte {
	b, _ := json.Marshal(s)
	return append(dst, b...)
}

// quoteJSON returns a body that is not JSON as a JSON string, so that the
// rejected table (a JSON column on some databases) can hold it.
func quoteJSON(b []byte) []byte {
	return appendJSONString(nil, strings.ToValidUTF8(string(b), "\uFFFD"))
}

func matchAny(globs []string, s string) bool {
	for _, g := range globs {
		if ok, _ := path.Match(g, s); ok {
			return true
		}
	}
	return false
}

// pick returns the stream of path that takes an event ("" for none).
func (s *Source) pick(p, typ string, h http.Header, body []byte) (string, error) {
	var env *whenEnv
	for _, r := range s.routes[p] {
		if len(r.events) > 0 && !matchAny(r.events, typ) {
			continue
		}
		if r.when != nil {
			if env == nil {
				env = &whenEnv{Type: typ, Path: p, Headers: map[string]string{}}
				for k, v := range h {
					env.Headers[strings.ToLower(k)] = strings.Join(v, ", ")
				}
				if s.needBody {
					if err := json.Unmarshal(body, &env.Body); err != nil {
						return "", err
					}
				}
			}
			out, err := expr.Run(r.when, *env)
			if err != nil {
				return "", fmt.Errorf("streams.%s.when: %w", r.stream, err)
			}
			if b, _ := out.(bool); !b {
				continue
			}
		}
		return r.stream, nil
	}
	return "", nil
}

// Route returns the stream a kept event goes to under the current
// configuration ("" for none), for replays after a connector change.
func (s *Source) Route(e queue.Event) string {
	if e.Status == queue.Malformed {
		if rs := s.routes[e.Path]; len(rs) > 0 {
			return rs[0].stream
		}
		return ""
	}
	st, err := s.pick(e.Path, e.Type, http.Header{}, e.Body)
	if err != nil {
		return e.Stream
	}
	return st
}

// Routes returns the source's HTTP handlers by full URL path, for ferry
// serve to mount. A handler verifies each delivery, stores it durably and
// only then answers: 200 (stored, or already kept under its id), 401 (bad
// signature, with a body that says nothing more), 413 (body over
// max_body_bytes), 400 (not JSON: kept for the rejected records), 405
// (not POST), 408 (the body came too slowly) or 503 (the queue failed:
// the sender should retry).
func (s *Source) Routes() map[string]http.Handler {
	out := map[string]http.Handler{}
	for p := range s.routes {
		out[p] = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.serve(w, r, p) })
	}
	return out
}

// Endpoint is one path of the source and how it verifies, for ferry
// serve's API.
type Endpoint struct {
	Path string `json:"path"`
	// Verify is the verification preset (stripe, github, …).
	Verify string `json:"verify"`
	// Streams are the streams taking its deliveries, in routing order.
	Streams []string `json:"streams"`
}

// Endpoints lists the source's paths, sorted.
func (s *Source) Endpoints() []Endpoint {
	var out []Endpoint
	for p, rs := range s.routes {
		e := Endpoint{Path: p, Verify: s.cfg.Verify.Preset}
		for _, r := range rs {
			e.Streams = append(e.Streams, r.stream)
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Endpoint) int { return strings.Compare(a.Path, b.Path) })
	return out
}

// ServeHTTP serves every path of the source (404 for others), for tests
// and single-source servers.
func (s *Source) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.routes[r.URL.Path]; !ok {
		http.NotFound(w, r)
		return
	}
	s.serve(w, r, r.URL.Path)
}

func reply(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	fmt.Fprintln(w, body)
}

// serve handles one delivery.
func (s *Source) serve(w http.ResponseWriter, r *http.Request, p string) {
	start := s.now()
	d := Delivery{ID: "d-" + strconv.FormatInt(s.stats.received.Add(1), 10), ReceivedAt: start, Path: p}
	defer func() {
		d.Duration = s.now().Sub(start)
		if d.Status != http.StatusOK {
			d.Reason = strPtr(d.Result)
		}
		s.remember(d)
	}()
	if r.Method != http.MethodPost {
		s.stats.invalid.Add(1)
		d.Status, d.Result = http.StatusMethodNotAllowed, "method "+r.Method
		w.Header().Set("Allow", "POST")
		reply(w, d.Status, `{"error":"use POST"}`)
		return
	}
	if r.ContentLength > s.maxBody {
		s.stats.tooLarge.Add(1)
		d.Status, d.Result, d.Bytes = http.StatusRequestEntityTooLarge, "body too large", r.ContentLength
		reply(w, d.Status, `{"error":"body too large"}`)
		return
	}
	_ = http.NewResponseController(w).SetReadDeadline(start.Add(s.bodyWait))
	body, err := readBody(http.MaxBytesReader(w, r.Body, s.maxBody), r.ContentLength)
	d.Bytes = int64(len(body))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.stats.tooLarge.Add(1)
			d.Status, d.Result = http.StatusRequestEntityTooLarge, "body too large"
			reply(w, d.Status, `{"error":"body too large"}`)
			return
		}
		s.stats.failed.Add(1)
		d.Status, d.Result = http.StatusRequestTimeout, "reading the body: "+err.Error()
		reply(w, d.Status, `{"error":"the body could not be read"}`)
		return
	}
	if err := s.verifier.Verify(r.Header, body, start); err != nil {
		s.stats.refused.Add(1)
		d.Status, d.Result = http.StatusUnauthorized, "refused: "+err.Error()
		reply(w, d.Status, `{"error":"unauthorized"}`)
		return
	}
	d.Verified = true
	q, err := s.Queue()
	if err != nil {
		s.stats.failed.Add(1)
		d.Status, d.Result = http.StatusServiceUnavailable, "queue: "+err.Error()
		s.log.Error("the webhook queue cannot be opened", "path", p, "error", err)
		reply(w, d.Status, `{"error":"unavailable, retry later"}`)
		return
	}
	e := &queue.Event{Path: p, ReceivedAt: start.UTC(), Body: body}
	if err := s.identify(e, r.Header); err != nil {
		e.Status = queue.Malformed
		sum := sha256.Sum256(body)
		e.ID = "sha256:" + hex.EncodeToString(sum[:])
		if rs := s.routes[p]; len(rs) > 0 {
			e.Stream = rs[0].stream
		}
	} else if s.slack && e.Type == "" {
		if challenge, ok := slackChallenge(body); ok {
			d.Status, d.Result = http.StatusOK, "slack url_verification"
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusOK)
			w.Write([]byte(challenge))
			return
		}
	}
	if e.Status != queue.Malformed {
		if e.Stream, err = s.pick(p, e.Type, r.Header, body); err != nil {
			s.log.Warn("routing a webhook failed; kept unrouted", "path", p, "event", e.ID, "error", err)
		}
	}
	d.EventID, d.Type, d.Stream = strPtr(e.ID), e.Type, strPtr(e.Stream)
	dup, err := q.Append(r.Context(), []*queue.Event{e})
	if err != nil {
		s.stats.failed.Add(1)
		d.Status, d.Result = http.StatusServiceUnavailable, "queue: "+err.Error()
		s.log.Error("storing a webhook failed; the sender was told to retry", "path", p, "event", e.ID, "error", err)
		reply(w, d.Status, `{"error":"unavailable, retry later"}`)
		return
	}
	switch {
	case e.Status == queue.Malformed:
		s.stats.malformed.Add(1)
		d.Status, d.Result = http.StatusBadRequest, "body is not JSON (kept for the rejected records)"
		reply(w, d.Status, `{"error":"the body is not JSON"}`)
	case dup[0]:
		s.stats.duplicates.Add(1)
		d.Status, d.Result = http.StatusOK, "duplicate (already kept)"
		reply(w, d.Status, `{"status":"duplicate"}`)
	default:
		s.stats.accepted.Add(1)
		d.Status, d.Result, d.Seq = http.StatusOK, "accepted", e.Seq
		if e.Stream == "" {
			d.Result = "accepted (no stream takes it; kept for a replay)"
		}
		reply(w, d.Status, `{"status":"accepted"}`)
	}
}

// readBody reads a body whole, sized by its Content-Length when given.
func readBody(r io.Reader, n int64) ([]byte, error) {
	size := 4096
	if n > 0 {
		size = int(n) + 1
	}
	buf := make([]byte, 0, size)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		m, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if err != nil {
			if errors.Is(err, io.EOF) {
				return buf, nil
			}
			return buf, err
		}
	}
}

// identify finds the event's id and type (headers first), checking that
// the body is JSON on the way.
func (s *Source) identify(e *queue.Event, h http.Header) error {
	ev := s.cfg.Event
	var id, typ []byte
	err := jsonpath.Scan(e.Body, []*jsonpath.Path{s.idPath, s.typePath}, func(i int, v []byte) error {
		if i == 0 && id == nil {
			id = v
		} else if i == 1 && typ == nil {
			typ = v
		}
		return nil
	})
	if err != nil {
		return err
	}
	e.ID, e.Type = scalar(id), scalar(typ)
	if ev.IDHeader != "" {
		if v := h.Get(ev.IDHeader); v != "" {
			e.ID = v
		}
	}
	if ev.TypeHeader != "" {
		if v := h.Get(ev.TypeHeader); v != "" {
			e.Type = v
		}
	}
	if e.ID == "" || (ev.ID == "" && ev.IDHeader == "") {
		sum := sha256.Sum256(e.Body)
		e.ID = "sha256:" + hex.EncodeToString(sum[:])
	}
	return nil
}

// scalar renders a selected JSON scalar as text ("" for objects, arrays
// and null).
func scalar(v []byte) string {
	if len(v) == 0 {
		return ""
	}
	switch v[0] {
	case '"':
		var s string
		if json.Unmarshal(v, &s) == nil {
			return s
		}
		return ""
	case '{', '[', 'n':
		return ""
	}
	return string(v)
}

func slackChallenge(body []byte) (string, bool) {
	var m struct {
		Type      string `json:"type"`
		Challenge string `json:"challenge"`
	}
	if json.Unmarshal(body, &m) != nil || m.Type != "url_verification" {
		return "", false
	}
	return m.Challenge, true
}

// Delivery is one request to a webhook path, as Deliveries reports it.
// Its JSON form is what ferry serve's API shows.
type Delivery struct {
	// ID identifies the delivery within this process (d-1, d-2, …).
	ID string `json:"id"`
	// ReceivedAt is when the request arrived.
	ReceivedAt time.Time `json:"received_at"`
	// Path is the URL path it was posted to.
	Path string `json:"path"`
	// Verified is true when the signature (or secret) was valid.
	Verified bool `json:"verified"`
	// Status is the HTTP status answered.
	Status int `json:"status"`
	// Result says what happened: "accepted", "duplicate (already kept)",
	// "refused: …", "body too large", "body is not JSON …", ….
	Result string `json:"result"`
	// Reason, for a delivery not accepted, is why: the verification's
	// detail (missing, malformed, mismatch or stale, naming the header;
	// never a secret or signature), or what else went wrong.
	Reason *string `json:"reason"`
	// EventID, Type and Stream are the event's id, type and stream, once
	// known (Stream is null for an event no stream takes).
	EventID *string `json:"event_id"`
	Type    string  `json:"type,omitempty"`
	Stream  *string `json:"stream"`
	// Seq is the event's queue position when it was stored.
	Seq uint64 `json:"seq,omitempty"`
	// Bytes is the body's size.
	Bytes int64 `json:"bytes"`
	// Duration is how long answering took (the fsync included).
	Duration time.Duration `json:"duration_ns"`
}

func strPtr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func (s *Source) remember(d Delivery) {
	s.ringMu.Lock()
	defer s.ringMu.Unlock()
	if len(s.ring) < ringSize {
		s.ring = append(s.ring, d)
		return
	}
	s.ring[s.ringPos] = d
	s.ringPos = (s.ringPos + 1) % ringSize
}

// Deliveries returns up to n of the latest deliveries (at most 512 are
// remembered, in memory), newest first.
func (s *Source) Deliveries(n int) []Delivery {
	s.ringMu.Lock()
	defer s.ringMu.Unlock()
	out := make([]Delivery, 0, min(n, len(s.ring)))
	for i := 0; i < len(s.ring) && len(out) < n; i++ {
		j := (s.ringPos - 1 - i + 2*len(s.ring)) % len(s.ring)
		if len(s.ring) < ringSize {
			j = len(s.ring) - 1 - i
		}
		out = append(out, s.ring[j])
	}
	return out
}

// Stats are a source's counters since it started, for metrics. Its JSON
// form is what ferry serve reads.
type Stats struct {
	// Received counts requests to the source's paths.
	Received int64 `json:"received"`
	// Accepted counts events stored (answered 2xx); Duplicates, those
	// answered 2xx because their id was already kept.
	Accepted   int64 `json:"accepted"`
	Duplicates int64 `json:"duplicates"`
	// Rejected counts requests refused: Refused (bad signature, 401) +
	// TooLarge (413) + Malformed (not JSON, 400; kept for the rejected
	// records) + Invalid (not POST, 405).
	Rejected  int64 `json:"rejected"`
	Refused   int64 `json:"refused"`
	TooLarge  int64 `json:"too_large"`
	Malformed int64 `json:"malformed"`
	Invalid   int64 `json:"invalid"`
	// Failed counts deliveries the queue could not store or whose body
	// could not be read (503, 408): the sender retries.
	Failed int64 `json:"failed"`
	// Applied counts events committed to their tables; RejectedRecords,
	// kept events that went to the rejected records instead (bodies that
	// are not JSON, events without a record).
	Applied         int64 `json:"applied"`
	RejectedRecords int64 `json:"rejected_records"`
	// QueueDepth counts the stored events not yet applied; by stream in
	// QueueDepthByStream.
	QueueDepth         int64            `json:"queue_depth"`
	QueueDepthByStream map[string]int64 `json:"queue_depth_by_stream"`
}

// Stats returns the source's counters and the queue's depth per stream
// (read from the queue: it counts events kept by earlier processes too).
func (s *Source) Stats() Stats {
	st := Stats{Received: s.stats.received.Load(), Accepted: s.stats.accepted.Load(), Duplicates: s.stats.duplicates.Load(),
		Refused: s.stats.refused.Load(), TooLarge: s.stats.tooLarge.Load(), Malformed: s.stats.malformed.Load(), Invalid: s.stats.invalid.Load(),
		Failed: s.stats.failed.Load(), Applied: s.stats.applied.Load(), RejectedRecords: s.stats.rejected.Load(), QueueDepthByStream: map[string]int64{}}
	st.Rejected = st.Refused + st.TooLarge + st.Malformed + st.Invalid
	q, err := s.Queue()
	if err != nil {
		return st
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, str := range s.streams {
		if n, err := q.Depth(ctx, str.Name); err == nil {
			st.QueueDepthByStream[str.Name] = n
			st.QueueDepth += n
		}
	}
	return st
}
