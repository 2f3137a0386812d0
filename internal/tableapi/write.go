package tableapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/engine"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/schema"
	"github.com/ferry-dev/ferry/internal/source"
	"github.com/ferry-dev/ferry/internal/source/rest"
	"github.com/ferry-dev/ferry/internal/spec"
)

// writeOp is a write through: create, update or delete.
type writeOp string

const (
	opCreate writeOp = "create"
	opUpdate writeOp = "update"
	opDelete writeOp = "delete"
)

// sourceWriter is a source that sends write operations to its API (the
// REST source, with a stream's writes: section).
type sourceWriter interface {
	source.Source
	CanWrite(stream, op string) bool
	Write(ctx context.Context, stream, op string, key, body map[string]any) (*rest.WriteResult, error)
}

// maxWriteBody bounds a write's request body.
const maxWriteBody = 1 << 20

// writer sends a stream's writes to its source API and applies the
// records the API returns to the table, as a sync would.
type writer struct {
	pipeline, stream string
	src              sourceWriter
	d                dest.Destination
	state            dest.StateStore
	info             source.Stream
	sch              spec.SchemaSettings
}

// newWriter builds the source and opens the destination for writing.
func newWriter(ctx context.Context, h *Handler, p Pipeline, pipeline, stream string, t *table) (*writer, error) {
	ps, r := p.Spec, p.Resolved
	fail := func(format string, args ...any) error {
		return fmt.Errorf("pipeline %s: stream %s: api.write: "+format, append([]any{pipeline, stream}, args...)...)
	}
	if mode := ps.ModeOf(stream); !mode.Upserts() {
		return nil, fail("the stream's mode is %s; writes through need a mode that replaces rows by key (incremental_dedup or full_refresh_overwrite)", mode)
	}
	conn := ps.Connector.Inline
	if conn == nil {
		return nil, fail("the connector is not loaded")
	}
	src, err := source.New(conn.Type, conn.Body, source.Options{Name: conn.Name, Config: r.Config, Redactor: h.red, Logger: h.log, Dir: ps.Dir})
	if err != nil {
		return nil, fail("%v", err)
	}
	sw, ok := src.(sourceWriter)
	if !ok {
		src.Close()
		return nil, fail("the %s source cannot send writes", conn.Type)
	}
	w := &writer{pipeline: pipeline, stream: stream, src: sw, sch: ps.SchemaOf(stream)}
	found := false
	for _, s := range src.Streams() {
		if s.Name == stream {
			w.info, found = s, true
		}
	}
	switch {
	case !found:
		err = fail("the connector has no such stream")
	case w.info.Parent != "":
		err = fail("a child stream (parent %s) cannot be written through", w.info.Parent)
	case len(w.info.PrimaryKey) == 0:
		err = fail("the stream has no primary_key")
	case !sw.CanWrite(stream, string(opCreate)) && !sw.CanWrite(stream, string(opUpdate)) && !sw.CanWrite(stream, string(opDelete)):
		err = fail("the connector declares no writes: (create, update, delete) for the stream")
	}
	if err != nil {
		src.Close()
		return nil, err
	}
	d, err := dest.Open(ctx, ps.Destination.Type, r.Destination, dest.Options{Dir: ps.Dir, Logger: h.log, Redactor: h.red})
	if err != nil {
		src.Close()
		return nil, fail("open destination %s for writing: %v", ps.Destination.Type, err)
	}
	sk, ok := d.(dest.StateKeeper)
	if !ok {
		d.Close()
		src.Close()
		return nil, fail("destination %s keeps no state", ps.Destination.Type)
	}
	w.d, w.state = d, sk.State()
	return w, nil
}

func (w *writer) close() error {
	return errors.Join(w.src.Close(), w.d.Close())
}

// upstreamError is the source API refusing a write: its status and body.
type upstreamError struct {
	status int
	msg    string
	body   []byte
}

func (e *upstreamError) Error() string { return e.msg }

// serveWrite answers POST /{table}, PATCH /{table}/{key} and DELETE
// /{table}/{key}: the body is checked against the table, sent to the
// source API, and the record the API returns is written to the table in
// one transaction before the answer, so the caller reads its own write.
func (h *Handler) serveWrite(ctx context.Context, rw http.ResponseWriter, r *http.Request, p *principal, g *grant, t *table, op writeOp, rawKey string) error {
	w := t.write
	if w == nil {
		return &httpError{status: http.StatusMethodNotAllowed, message: fmt.Sprintf("table %s is read-only (its stream does not set api.write)", t.name), header: http.Header{"Allow": {"GET, HEAD"}}}
	}
	if !g.write {
		return errForbidden(fmt.Sprintf("your role may not write to table %s", t.name))
	}
	if !w.src.CanWrite(w.stream, string(op)) {
		return &httpError{status: http.StatusMethodNotAllowed, message: fmt.Sprintf("the connector declares no %s operation for stream %s", op, w.stream)}
	}
	s, err := t.current(ctx, h.opts.FreshnessTTL)
	if err != nil {
		return err
	}
	var keyVals []string
	key := map[string]any{}
	if op != opCreate {
		if keyVals, err = splitKey(rawKey); err != nil {
			return err
		}
		if len(keyVals) != len(s.key) || len(s.key) != len(w.info.PrimaryKey) {
			return errNotFound(fmt.Sprintf("table %s is keyed by %s: give %d value(s) separated by commas", t.name, strings.Join(s.key, ", "), len(s.key)))
		}
		for i, k := range s.key {
			v, err := jsonValue(s.byName[k], keyVals[i])
			if err != nil {
				return errNotFound(fmt.Sprintf("no row with key %s: %v", strings.Join(keyVals, ","), err))
			}
			key[w.info.PrimaryKey[i]] = v
		}
		// The row must exist and be one the role may see.
		pl, err := h.planRead(t, s, g, &Request{Select: s.key}, keyVals)
		if err != nil {
			return err
		}
		rows, err := pl.run(ctx)
		if err != nil {
			return err
		}
		if len(rows) == 0 {
			return errNotFound(fmt.Sprintf("table %s has no row with key %s", t.name, strings.Join(keyVals, ",")))
		}
	}
	var body map[string]any
	if op != opDelete {
		if body, err = h.readBody(r, s, g, op); err != nil {
			return err
		}
		for i, k := range w.info.PrimaryKey {
			if v, ok := body[k]; ok && op == opUpdate && fmt.Sprint(v) != fmt.Sprint(key[k]) {
				return errBad(fmt.Sprintf("the body's %s (%v) is not the key in the path (%v): a key cannot change", k, v, keyVals[i]))
			}
		}
		if op == opCreate {
			if err := checkCreateFilter(g, body); err != nil {
				return err
			}
		}
	}
	// One write at a time per stream, and none while a sync of it runs.
	release, err := w.state.Lock(ctx, w.pipeline, w.stream, dest.Holder{RunID: "api-" + randomID(), Host: hostname(), PID: os.Getpid(), Since: time.Now()})
	if err != nil {
		var le *dest.LockedError
		if errors.As(err, &le) {
			return &httpError{status: http.StatusConflict, message: le.Error() + "; nothing was sent to the API, retry", header: http.Header{"Retry-After": {"5"}}}
		}
		return err
	}
	defer release()
	res, err := w.src.Write(ctx, w.stream, string(op), key, body)
	if err != nil {
		return &httpError{status: http.StatusBadGateway, message: fmt.Sprintf("the source API did not answer the %s: %v", op, h.red.String(err.Error()))}
	}
	if res.Status < 200 || res.Status > 299 {
		return upstream(res)
	}
	var rec []byte
	var ops []record.Op
	if op == opDelete {
		rec, _ = json.Marshal(key)
		ops = []record.Op{record.Delete}
	} else {
		if len(bytes.TrimSpace(res.Record)) == 0 || !json.Valid(res.Record) || bytes.TrimSpace(res.Record)[0] != '{' {
			return &httpError{status: http.StatusBadGateway, message: fmt.Sprintf("the source API accepted the %s (status %d) but returned no record object to write: the table shows it after the next sync (set writes.%s.record to the record's path in the response)", op, res.Status, op)}
		}
		rec = res.Record
	}
	if err := w.apply(ctx, t, rec, ops); err != nil {
		return &httpError{status: http.StatusBadGateway, message: fmt.Sprintf("the source API accepted the %s (status %d) but its record could not be written to table %s: %v; the next sync brings it", op, res.Status, t.name, h.red.String(err.Error()))}
	}
	t.invalidate()
	if op == opDelete {
		rw.WriteHeader(http.StatusNoContent)
		return nil
	}
	// Read the row back, as the caller's role sees it.
	var fields map[string]any
	d := json.NewDecoder(bytes.NewReader(rec))
	d.UseNumber()
	if err := d.Decode(&fields); err != nil {
		return err
	}
	keyVals = keyVals[:0]
	for _, k := range w.info.PrimaryKey {
		keyVals = append(keyVals, fmt.Sprint(fields[k]))
	}
	s, err = t.current(ctx, 0)
	if err != nil {
		return err
	}
	pl, err := h.planRead(t, s, g, &Request{}, keyVals)
	if err != nil {
		return err
	}
	rows, err := pl.run(ctx)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if op == opCreate {
		status = http.StatusCreated
		esc := make([]string, len(keyVals))
		for i, v := range keyVals {
			esc[i] = url.PathEscape(v)
		}
		rw.Header().Set("Location", h.opts.Prefix+"/"+url.PathEscape(t.name)+"/"+strings.Join(esc, ","))
	}
	var out bytes.Buffer
	if len(rows) > 0 {
		(&jsonEncoder{b: &out}).single(rows[0], pl, nil)
	} else {
		out.WriteString("{}\n") // the role's row filter hides the row
	}
	rw.Header().Set("Content-Type", "application/json")
	rw.Header().Set("Cache-Control", "no-store")
	rw.WriteHeader(status)
	rw.Write(out.Bytes())
	return nil
}

// upstream turns the API's refusal into the answer: its status and
// message, its body alongside.
func upstream(res *rest.WriteResult) error {
	msg := apiMessage(res.Body)
	e := &upstreamError{status: res.Status, msg: fmt.Sprintf("the source API refused the write: status %d", res.Status)}
	if msg != "" {
		e.msg += ": " + msg
	}
	if json.Valid(res.Body) {
		e.body = res.Body
	}
	if e.status < 400 {
		e.status = http.StatusBadGateway
	}
	return e
}

// apiMessage finds the message in an API's error body: a top-level
// message, error (a string, or an object with a message), or the body.
func apiMessage(b []byte) string {
	var v map[string]any
	if json.Unmarshal(b, &v) == nil {
		for _, k := range []string{"message", "error", "error_description", "detail", "title"} {
			switch x := v[k].(type) {
			case string:
				return x
			case map[string]any:
				if m, ok := x["message"].(string); ok {
					return m
				}
			}
		}
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// readBody reads a create or update body: a JSON object whose fields
// are columns of the table the role may see (or child tables, as
// arrays), each of a value the column's type holds.
func (h *Handler) readBody(r *http.Request, s *snapshot, g *grant, op writeOp) (map[string]any, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return nil, &httpError{status: http.StatusUnsupportedMediaType, message: "the body must be application/json"}
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, maxWriteBody+1))
	if err != nil {
		return nil, errBad("the body could not be read")
	}
	if len(raw) > maxWriteBody {
		return nil, &httpError{status: http.StatusRequestEntityTooLarge, message: fmt.Sprintf("the body is more than %d bytes", maxWriteBody)}
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var body map[string]any
	if err := d.Decode(&body); err != nil || body == nil || d.More() {
		return nil, errBad("the body must be one JSON object")
	}
	if len(body) == 0 && op == opUpdate {
		return nil, errBad("the body names no field to change")
	}
	for k, v := range body {
		if c := s.children[k]; c != nil && (g.columns == nil || g.columns[k]) {
			if _, ok := v.([]any); !ok && v != nil {
				return nil, &httpError{status: http.StatusBadRequest, message: fmt.Sprintf("field %s: the child table %s takes an array", k, c.name), param: k}
			}
			continue
		}
		c := s.byName[k]
		if c == nil || !g.visible(c) {
			return nil, &httpError{status: http.StatusBadRequest, message: fmt.Sprintf("field %s: table has no column %q", k, k), param: k}
		}
		if err := checkType(c, v); err != nil {
			return nil, &httpError{status: http.StatusBadRequest, message: fmt.Sprintf("field %s: %v", k, err), param: k}
		}
	}
	return body, nil
}

// checkType checks a JSON value (numbers as json.Number) against a
// column's logical type.
func checkType(c *column, v any) error {
	if v == nil {
		if c.key {
			return fmt.Errorf("a key cannot be null")
		}
		return nil
	}
	bad := func() error { return fmt.Errorf("%s holds %s values, not %v", c.name, c.typ, v) }
	switch c.typ {
	case schema.Int:
		n, ok := v.(json.Number)
		if _, err := n.Int64(); !ok || err != nil {
			return bad()
		}
	case schema.Float:
		n, ok := v.(json.Number)
		if _, err := n.Float64(); !ok || err != nil {
			return bad()
		}
	case schema.Decimal:
		switch x := v.(type) {
		case json.Number:
		case string:
			if !decimalRE.MatchString(x) {
				return bad()
			}
		default:
			return bad()
		}
	case schema.Bool:
		if _, ok := v.(bool); !ok {
			return bad()
		}
	case schema.Timestamp:
		x, ok := v.(string)
		if !ok {
			return bad()
		}
		if _, err := time.Parse(time.RFC3339Nano, x); err != nil {
			return fmt.Errorf("%s holds timestamps (RFC 3339), not %q", c.name, x)
		}
	case schema.Text:
		x, ok := v.(string)
		if !ok {
			return bad()
		}
		if err := checkText(x); err != nil {
			return err
		}
	}
	return nil
}

// checkCreateFilter refuses a create a role with a row filter could not
// read back: the body must set each column of an eq filter to its value;
// other filters forbid creating.
func checkCreateFilter(g *grant, body map[string]any) error {
	for _, f := range g.filters {
		if f.Op != OpEq || f.Not {
			return errForbidden(fmt.Sprintf("your role's row filter on %s is not an eq filter: it cannot create rows", f.Column))
		}
		if fmt.Sprint(body[f.Column]) != f.Values[0] {
			return errForbidden(fmt.Sprintf("your role may only create rows whose %s is %s", f.Column, f.Values[0]))
		}
	}
	return nil
}

// jsonValue converts a key's text to the JSON value a template sees.
func jsonValue(c *column, s string) (any, error) {
	switch c.typ {
	case schema.Int:
		return strconv.ParseInt(s, 10, 64)
	case schema.Float:
		return strconv.ParseFloat(s, 64)
	case schema.Bool:
		return strconv.ParseBool(s)
	}
	return s, checkText(s)
}

// apply writes the API's record (or the deletion of a key) to the
// stream's table the way a sync does: normalized with the stream's
// settings against the recorded layout, upserted by key in one
// transaction. The stream's state is saved again unchanged in that
// transaction, so its freshness (and every ETag) moves.
func (w *writer) apply(ctx context.Context, t *table, rec []byte, ops []record.Op) error {
	runID := "api-" + randomID()
	sw, err := w.d.OpenStream(ctx, dest.StreamConfig{Pipeline: w.pipeline, Stream: w.stream, Table: t.name, Mode: dest.IncrementalDedup, RunID: runID})
	if err != nil {
		return err
	}
	defer sw.Abort(context.WithoutCancel(ctx))
	n, err := engine.NewNormalizer(t.name, w.info, w.sch, w.d, sw, runID)
	if err != nil {
		return err
	}
	page := &record.Page{Stream: w.stream, Partition: &record.Partition{}, Records: [][]byte{rec}, Ops: ops, Body: rec}
	chunk, _, err := n.Page(page, nil)
	if err != nil {
		return err
	}
	if len(chunk.Rejects) > 0 {
		return fmt.Errorf("the record was rejected: %s", chunk.Rejects[0].Reason)
	}
	states, err := w.state.List(ctx, w.pipeline, w.stream)
	if err != nil {
		return err
	}
	for _, e := range states {
		chunk.Checkpoints = append(chunk.Checkpoints, record.Checkpoint{Stream: w.stream, Partition: e.Partition, State: e.State})
	}
	wctx := context.WithoutCancel(ctx) // a write that started is finished
	if err := sw.Write(wctx, chunk); err != nil {
		return err
	}
	if sw.Rejected() > 0 {
		return fmt.Errorf("the database refused the record (it is in %s)", dest.RejectedTable)
	}
	return sw.Commit(wctx)
}

func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}

// describe adds the write operations to the OpenAPI document.
func (w *writer) describe(coll, item, ref, props obj, t *table, s *snapshot) {
	bodySchema := obj{"type": "object", "properties": props, "additionalProperties": false}
	errs := obj{
		"400":     obj{"$ref": "#/components/responses/BadRequest"},
		"401":     obj{"$ref": "#/components/responses/Unauthorized"},
		"403":     obj{"$ref": "#/components/responses/BadRequest"},
		"409":     obj{"$ref": "#/components/responses/BadRequest"},
		"502":     obj{"$ref": "#/components/responses/Upstream"},
		"default": obj{"$ref": "#/components/responses/Upstream"},
	}
	with := func(code string, resp obj) obj {
		out := obj{code: resp}
		for k, v := range errs {
			out[k] = v
		}
		return out
	}
	rowResp := func(d string) obj {
		return obj{"description": d, "content": obj{"application/json": obj{"schema": ref}}}
	}
	if w.src.CanWrite(w.stream, string(opCreate)) {
		coll["post"] = obj{"operationId": "create_" + t.name, "summary": "Create a row of " + t.name + " through the source API",
			"requestBody": obj{"required": true, "content": obj{"application/json": obj{"schema": bodySchema}}},
			"responses":   with("201", rowResp("The row as the table now holds it."))}
	}
	if w.src.CanWrite(w.stream, string(opUpdate)) {
		item["patch"] = obj{"operationId": "update_" + t.name, "summary": "Change a row of " + t.name + " through the source API",
			"parameters":  item["get"].(obj)["parameters"].([]obj)[:1],
			"requestBody": obj{"required": true, "content": obj{"application/json": obj{"schema": bodySchema}}},
			"responses":   with("200", rowResp("The row as the table now holds it."))}
	}
	if w.src.CanWrite(w.stream, string(opDelete)) {
		item["delete"] = obj{"operationId": "delete_" + t.name, "summary": "Delete a row of " + t.name + " through the source API",
			"parameters": item["get"].(obj)["parameters"].([]obj)[:1],
			"responses":  with("204", obj{"description": "Deleted in the API and in the table."})}
	}
}
