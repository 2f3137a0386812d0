package rest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/ferry-dev/ferry/internal/httpx"
	"github.com/ferry-dev/ferry/internal/jsonpath"
	"github.com/ferry-dev/ferry/internal/template"
)

// Writes are a stream's write operations: how the table API creates,
// updates and deletes a record through the API (writes through).
type Writes struct {
	// Create sends a new record (default method POST).
	Create *WriteOp `yaml:"create,omitempty" doc:"Creates a record (default method POST)."`
	// Update changes a record (default method PATCH).
	Update *WriteOp `yaml:"update,omitempty" doc:"Changes a record (default method PATCH)."`
	// Delete removes a record (default method DELETE).
	Delete *WriteOp `yaml:"delete,omitempty" doc:"Removes a record (default method DELETE)."`
}

// WriteOp is one write operation. Its templates read config (the
// connector's parameters), key (the row's key fields, by name) and body
// (the JSON object the caller sent, checked against the table).
type WriteOp struct {
	// Method is the HTTP method.
	Method string `yaml:"method,omitempty" enum:"POST,PUT,PATCH,DELETE" doc:"HTTP method (default POST for create, PATCH for update, DELETE for delete)."`
	// Path is appended to base_url. Template over config, key and body;
	// values are path-escaped.
	Path string `yaml:"path" required:"true" min:"1" doc:"Appended to base_url. Template over config, key and body; values are path-escaped."`
	// Body is the JSON request body; strings in it are templates, and a
	// string that is exactly one {{ expression }} keeps its type (body:
	// "{{ body }}" sends the caller's object). Default: the caller's object
	// for create and update, none for delete.
	Body any `yaml:"body,omitempty" doc:"JSON request body; strings are templates over config, key and body (default: the caller's object; none for delete)."`
	// Headers are request headers, besides http.headers. Templates.
	Headers map[string]string `yaml:"headers,omitempty" doc:"Request headers besides http.headers. Templates."`
	// Record is the path to the record the API returns ("data", "order").
	// Empty means the whole body. The record is written to the table as a
	// sync would; for delete, nothing is read.
	Record *string `yaml:"record,omitempty" def:"path" doc:"Path to the record in the response (default: the whole body); not read for delete."`
}

// writeEnv declares the variables write templates read.
var writeEnv = map[string]any{"config": map[string]any{}, "key": map[string]any{}, "body": map[string]any{}, "stream": ""}

// compiledWrite is a WriteOp ready to send.
type compiledWrite struct {
	method  string
	path    *template.Template
	body    any
	headers []kv
	record  *jsonpath.Path
}

// WriteResult is what the API answered a write.
type WriteResult struct {
	// Status is the response's status.
	Status int
	// Body is the response body (at most its first 64 KiB when the status
	// is not 2xx).
	Body []byte
	// Record is the record selected from a 2xx body (nil for a delete, or
	// when the body is empty).
	Record []byte
}

func compileWriteOp(op string, w *WriteOp) (*compiledWrite, error) {
	if w == nil {
		return nil, nil
	}
	c := &compiledWrite{method: w.Method}
	if c.method == "" {
		c.method = map[string]string{"create": http.MethodPost, "update": http.MethodPatch, "delete": http.MethodDelete}[op]
	}
	var err error
	if c.path, err = template.ParseEnv(w.Path, writeEnv); err != nil {
		return nil, fmt.Errorf("writes.%s.path: %w", op, err)
	}
	switch {
	case w.Body != nil:
		if c.body, err = compileWriteBody(w.Body); err != nil {
			return nil, fmt.Errorf("writes.%s.body: %w", op, err)
		}
	case op != "delete":
		c.body, _ = template.ParseEnv("{{ body }}", writeEnv)
	}
	for _, k := range slices.Sorted(maps.Keys(w.Headers)) {
		t, err := template.ParseEnv(w.Headers[k], writeEnv)
		if err != nil {
			return nil, fmt.Errorf("writes.%s.headers.%s: %w", op, k, err)
		}
		c.headers = append(c.headers, kv{k, t})
	}
	if op != "delete" && w.Record != nil && *w.Record != "" {
		if c.record, err = jsonpath.Compile(*w.Record); err != nil {
			return nil, fmt.Errorf("writes.%s.record: %w", op, err)
		}
	}
	return c, nil
}

func compileWriteBody(v any) (any, error) {
	switch x := v.(type) {
	case string:
		return template.ParseEnv(x, writeEnv)
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			c, err := compileWriteBody(e)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			out[k] = c
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			c, err := compileWriteBody(e)
			if err != nil {
				return nil, fmt.Errorf("%d: %w", i, err)
			}
			out[i] = c
		}
		return out, nil
	}
	return v, nil
}

// CanWrite reports whether the connector declares the write operation op
// (create, update or delete) for a stream.
func (s *Source) CanWrite(stream, op string) bool {
	st := s.compiled[stream]
	return st != nil && st.writes[op] != nil
}

// ErrNoWrite is returned by Write for an operation the stream does not
// declare.
var ErrNoWrite = errors.New("the connector declares no such write operation for the stream")

// Write sends one write operation of a stream (create, update or
// delete) to the API with the connector's auth and HTTP settings, and
// returns its answer. It is sent once: a response of any status is
// returned as it is (the client only retries attempts that got no
// response), so that a create is not repeated after the API saw it.
func (s *Source) Write(ctx context.Context, stream, op string, key, body map[string]any) (*WriteResult, error) {
	st := s.compiled[stream]
	if st == nil || st.writes[op] == nil {
		return nil, fmt.Errorf("stream %s: %s: %w", stream, op, ErrNoWrite)
	}
	w := st.writes[op]
	if key == nil {
		key = map[string]any{}
	}
	if body == nil {
		body = map[string]any{}
	}
	env := template.Env{"config": s.config, "key": key, "body": body, "stream": stream}
	path, err := w.path.RenderEach(env, escapeSegment)
	if err != nil {
		return nil, fmt.Errorf("stream %s: writes.%s.path: %w", stream, op, err)
	}
	u, err := s.requestURL(st, path)
	if err != nil {
		return nil, err
	}
	req := &httpx.Request{Method: w.method, URL: u.String(), Header: http.Header{}, Label: stream,
		Decide: func(*httpx.Response) httpx.Verdict { return httpx.Verdict{Action: httpx.Accept} }}
	for _, group := range [][]kv{s.headers, w.headers} {
		for _, h := range group {
			v, null, err := h.tpl.Render(env)
			if err != nil {
				return nil, fmt.Errorf("stream %s: writes.%s.headers.%s: %w", stream, op, h.key, err)
			}
			if !null {
				req.Header.Set(h.key, v)
			}
		}
	}
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "application/json")
	}
	if w.body != nil {
		b, err := renderWriteBody(w.body, env)
		if err != nil {
			return nil, fmt.Errorf("stream %s: writes.%s.body: %w", stream, op, err)
		}
		if req.Body, err = json.Marshal(b); err != nil {
			return nil, fmt.Errorf("stream %s: writes.%s.body: %w", stream, op, err)
		}
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.client.Do(ctx, req, nil)
	if err != nil {
		return nil, err
	}
	res := &WriteResult{Status: resp.Status, Body: resp.Body}
	if resp.Status < 200 || resp.Status > 299 || op == "delete" || len(strings.TrimSpace(string(resp.Body))) == 0 {
		return res, nil
	}
	rec := resp.Body
	if w.record != nil {
		v, found, err := jsonpath.Lookup(resp.Body, w.record)
		if err != nil {
			return nil, fmt.Errorf("stream %s: writes.%s: the response is not JSON: %w", stream, op, err)
		}
		if !found {
			return nil, fmt.Errorf("stream %s: writes.%s: the response has no %s", stream, op, w.record)
		}
		rec = v
	}
	res.Record = rec
	return res, nil
}

func renderWriteBody(v any, env template.Env) (any, error) {
	switch x := v.(type) {
	case *template.Template:
		return x.Eval(env)
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			r, err := renderWriteBody(e, env)
			if err != nil {
				return nil, err
			}
			out[k] = r
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			r, err := renderWriteBody(e, env)
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	}
	return v, nil
}

// compileWrites compiles a stream's write operations.
func (st *stream) compileWrites(sp *Stream) error {
	if sp.Writes == nil {
		return nil
	}
	st.writes = map[string]*compiledWrite{}
	for op, w := range map[string]*WriteOp{"create": sp.Writes.Create, "update": sp.Writes.Update, "delete": sp.Writes.Delete} {
		c, err := compileWriteOp(op, w)
		if err != nil {
			return err
		}
		if c != nil {
			st.writes[op] = c
		}
	}
	return nil
}
