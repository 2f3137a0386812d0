package httpx

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// An Exchange is one recorded HTTP request and its response, as
// Recorder writes it and Replayer serves it: one JSON file per exchange,
// easy to write by hand from an API's documentation.
type Exchange struct {
	Request  ExchangeRequest  `json:"request"`
	Response ExchangeResponse `json:"response"`
}

// ExchangeRequest identifies a request: its method and URL (secrets
// redacted; the query in any order).
type ExchangeRequest struct {
	Method string `json:"method"`
	URL    string `json:"url"`
	// Body is the request's JSON body, for the reader (not matched).
	Body json.RawMessage `json:"body,omitempty"`
}

// ExchangeResponse is what the API answered. A JSON body is kept as JSON
// (Body); any other as text (Text) or, if it is not UTF-8, base64 (Base64).
type ExchangeResponse struct {
	Status  int               `json:"status"`
	Headers map[string]string `json:"headers,omitempty"`
	Body    json.RawMessage   `json:"body,omitempty"`
	Text    *string           `json:"text,omitempty"`
	Base64  []byte            `json:"base64,omitempty"`
}

// secretHeaders are never recorded.
var secretHeaders = []string{"Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie", "X-Api-Key", "Api-Key"}

// Recorder is a RoundTripper that sends requests through Next and writes
// every exchange into Dir, numbered in the order responses arrive, with
// every secret the Redactor knows (and credentials in URLs and the
// headers above) removed.
type Recorder struct {
	Next     http.RoundTripper
	Dir      string
	Redactor Redactor

	mu sync.Mutex
	n  int
}

// RoundTrip implements http.RoundTripper.
func (r *Recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	var reqBody []byte
	if req.Body != nil && req.GetBody != nil {
		if b, err := req.GetBody(); err == nil {
			reqBody, _ = io.ReadAll(b)
			b.Close()
		}
	}
	resp, err := r.Next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	red := r.Redactor
	ex := Exchange{Request: ExchangeRequest{Method: req.Method, URL: red.URL(req.URL.String())}}
	if len(reqBody) > 0 && json.Valid(reqBody) {
		ex.Request.Body = json.RawMessage(red.String(string(reqBody)))
	}
	ex.Response.Status = resp.StatusCode
	ex.Response.Headers = map[string]string{}
	for k, v := range resp.Header {
		if slices.ContainsFunc(secretHeaders, func(s string) bool { return strings.EqualFold(s, k) }) {
			continue
		}
		switch http.CanonicalHeaderKey(k) {
		case "Date", "Content-Length", "Transfer-Encoding", "Connection":
			continue
		}
		ex.Response.Headers[k] = red.String(strings.Join(v, ", "))
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	switch s := red.String(string(body)); {
	case len(body) > 0 && (body[0] == '{' || body[0] == '[') && (strings.Contains(mt, "json") || mt == "") && json.Valid([]byte(s)):
		ex.Response.Body = json.RawMessage(s)
	case isText(body):
		ex.Response.Text = &s
	default:
		ex.Response.Base64 = body
	}
	out, err := json.MarshalIndent(ex, "", "  ")
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.n++
	name := filepath.Join(r.Dir, fmt.Sprintf("%04d.json", r.n))
	r.mu.Unlock()
	if err := os.MkdirAll(r.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("recording: %w", err)
	}
	if err := os.WriteFile(name, append(out, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("recording: %w", err)
	}
	return resp, nil
}

func isText(b []byte) bool {
	if !utf8Valid(b) {
		return false
	}
	return !bytes.ContainsRune(b, 0)
}

func utf8Valid(b []byte) bool { return strings.ToValidUTF8(string(b), "\uFFFD") == string(b) }

// ErrNotRecorded is the Replayer's error for a request it has no
// exchange for; it is not retried.
var ErrNotRecorded = errors.New("replay: no recorded exchange")

// Replayer is a RoundTripper that answers from recorded exchanges and
// sends nothing: a request matches an exchange with the same method, the
// same URL without secrets, and the same query parameters in any order.
// Exchanges of one request are served in order, the last one again once
// they are used up. A request with no exchange fails, naming it.
type Replayer struct {
	Redactor Redactor

	mu    sync.Mutex
	byKey map[string][]*Exchange
	used  map[string]int
}

// NewReplayer reads the exchanges in dir (*.json, in name order).
func NewReplayer(dir string, red Redactor) (*Replayer, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("replay: no recorded exchanges (*.json) in %s", dir)
	}
	slices.Sort(names)
	r := &Replayer{Redactor: red, byKey: map[string][]*Exchange{}, used: map[string]int{}}
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			return nil, err
		}
		var ex Exchange
		if err := json.Unmarshal(b, &ex); err != nil {
			return nil, fmt.Errorf("replay: %s: %w", n, err)
		}
		if ex.Request.Method == "" {
			ex.Request.Method = http.MethodGet
		}
		// Redacted as live requests are, so that a recording written by
		// hand with a value where Ferry hides one (a pageToken) matches.
		key, err := exchangeKey(ex.Request.Method, red.URL(ex.Request.URL))
		if err != nil {
			return nil, fmt.Errorf("replay: %s: %w", n, err)
		}
		r.byKey[key] = append(r.byKey[key], &ex)
	}
	return r, nil
}

// exchangeKey is a request's method and URL with its query sorted.
func exchangeKey(method, raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	u.RawQuery = u.Query().Encode()
	u.Fragment = ""
	return strings.ToUpper(method) + " " + u.String(), nil
}

// RoundTrip implements http.RoundTripper.
func (r *Replayer) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		req.Body.Close()
	}
	key, err := exchangeKey(req.Method, r.Redactor.URL(req.URL.String()))
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	list := r.byKey[key]
	i := r.used[key]
	if i < len(list)-1 {
		r.used[key] = i + 1
	}
	r.mu.Unlock()
	if len(list) == 0 {
		return nil, fmt.Errorf("%w for %s", ErrNotRecorded, key)
	}
	ex := list[min(i, len(list)-1)]
	resp := &http.Response{StatusCode: ex.Response.Status, Status: fmt.Sprintf("%d %s", ex.Response.Status, http.StatusText(ex.Response.Status)),
		Header: http.Header{}, Request: req, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
	for k, v := range ex.Response.Headers {
		resp.Header.Set(k, v)
	}
	var body []byte
	switch {
	case ex.Response.Body != nil:
		body = ex.Response.Body
		if resp.Header.Get("Content-Type") == "" {
			resp.Header.Set("Content-Type", "application/json")
		}
	case ex.Response.Text != nil:
		body = []byte(*ex.Response.Text)
	default:
		body = ex.Response.Base64
	}
	resp.ContentLength = int64(len(body))
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}
