package rest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/ferry-dev/ferry/internal/httpx"
	"github.com/ferry-dev/ferry/internal/jsonpath"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/source"
	"github.com/ferry-dev/ferry/internal/spec"
	"github.com/ferry-dev/ferry/internal/template"
)

// asyncJob is a compiled async setting.
type asyncJob struct {
	id                             *jsonpath.Path
	pollPath                       *template.Template
	pollMethod                     string
	pollParams                     []kv
	status                         *jsonpath.Path
	completed, failed              []string
	interval, maxInterval, timeout time.Duration
	dlURL                          *jsonpath.Path
	dlPath                         *template.Template
	dlParams                       []kv
	nextHeader, nextParam          string
}

// asyncPosition is an async stream's resume position: the job it
// created, and how many records of its result were emitted. It is kept
// in state: add fields, never rename them.
type asyncPosition struct {
	Job  *jobState `json:"job,omitempty"`
	Skip int64     `json:"skip,omitempty"`
	// Part is the next_param value of the result part being read ("" for
	// the first part).
	Part string `json:"part,omitempty"`
}

type jobState struct {
	ID string `json:"id"`
	// Created is when the job was created, in Unix microseconds: the
	// poll timeout counts from it, across runs.
	Created int64 `json:"created"`
}

func (st *stream) compileAsync(sp *Stream) error {
	a := sp.Async
	if a == nil {
		return nil
	}
	j := &asyncJob{pollMethod: orDefault(a.Poll.Method, http.MethodGet), completed: a.Poll.Completed, failed: a.Poll.Failed,
		interval: time.Second, maxInterval: time.Minute, timeout: time.Hour}
	var err error
	if j.id, err = jsonpath.Compile(a.ID); err != nil {
		return fmt.Errorf("async.id: %w", err)
	}
	if j.pollPath, err = template.Parse(a.Poll.Path); err != nil {
		return fmt.Errorf("async.poll.path: %w", err)
	}
	if j.status, err = jsonpath.Compile(a.Poll.Status); err != nil {
		return fmt.Errorf("async.poll.status: %w", err)
	}
	for _, d := range []struct {
		dst *time.Duration
		src string
	}{{&j.interval, a.Poll.Interval}, {&j.maxInterval, a.Poll.MaxInterval}, {&j.timeout, a.Poll.Timeout}} {
		if d.src != "" {
			if *d.dst, err = spec.ParseDuration(d.src); err != nil {
				return fmt.Errorf("async.poll: %w", err)
			}
		}
	}
	j.maxInterval = max(j.maxInterval, j.interval)
	if j.pollParams, err = compileKVs(a.Poll.Params); err != nil {
		return fmt.Errorf("async.poll.params.%w", err)
	}
	if a.Download.URL != "" {
		if j.dlURL, err = jsonpath.Compile(a.Download.URL); err != nil {
			return fmt.Errorf("async.download.url: %w", err)
		}
	} else if j.dlPath, err = template.Parse(a.Download.Path); err != nil {
		return fmt.Errorf("async.download.path: %w", err)
	}
	if j.dlParams, err = compileKVs(a.Download.Params); err != nil {
		return fmt.Errorf("async.download.params.%w", err)
	}
	j.nextHeader, j.nextParam = a.Download.NextHeader, a.Download.NextParam
	st.async = j
	return nil
}

func compileKVs(m map[string]string) ([]kv, error) {
	var out []kv
	for _, k := range slices.Sorted(maps.Keys(m)) {
		t, err := template.Parse(m[k])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		out = append(out, kv{k, t})
	}
	return out, nil
}

// errJobGone marks a resumed job the API no longer knows.
var errJobGone = errors.New("the job is gone")

// readAsync creates an export job (or takes up the one the saved
// position names), polls it until it completes, and downloads and
// decodes its result. The job is emitted as a position with Flush before
// the first poll, so a run killed while the job runs polls the same job
// again instead of creating another.
func (s *Source) readAsync(ctx context.Context, st *stream, part *record.Partition, env template.Env, start source.Start, req source.ReadRequest) error {
	var pos asyncPosition
	if start.Resume != nil {
		if err := json.Unmarshal(start.Resume, &pos); err != nil {
			return fmt.Errorf("saved position %s is unreadable: %w (reset the stream's state with ferry state reset)", start.Resume, err)
		}
	}
	for {
		if pos.Job == nil {
			job, err := s.createJob(ctx, st, env, start.Since)
			if err != nil {
				return err
			}
			pos = asyncPosition{Job: job}
			raw, _ := json.Marshal(pos)
			p := &record.Page{Stream: st.name, Partition: part, Position: raw, Flush: true, Number: 1,
				Request: "create job " + job.ID, FetchedAt: time.Now().UnixMicro()}
			if err := req.Emit(ctx, p); err != nil {
				return &emitError{err}
			}
		} else {
			s.log.Info("resuming the export job an earlier run created", "stream", st.name, "job", pos.Job.ID)
		}
		status, err := s.pollJob(ctx, st, env, pos.Job)
		if errors.Is(err, errJobGone) {
			s.log.Warn("the saved export job is gone; creating a new one", "stream", st.name, "job", pos.Job.ID)
			pos = asyncPosition{}
			continue
		}
		if err != nil {
			return err
		}
		return s.downloadJob(ctx, st, part, env, req, pos, status)
	}
}

// createJob sends the stream's request and reads the job id.
func (s *Source) createJob(ctx context.Context, st *stream, env template.Env, since string) (*jobState, error) {
	hreq, err := s.request(st, position{}, env, since)
	if err != nil {
		return nil, err
	}
	var id string
	resp, err := s.client.Do(ctx, hreq, func(r *httpx.Response) error {
		raw, found, err := jsonpath.Lookup(r.Body, st.async.id)
		tok, ok := jsonToken(raw)
		if err != nil || !found || !ok {
			return fmt.Errorf("the create response has no job id at %q; body: %s", st.async.id, httpx.Describe(s.red, r.Header, r.Body))
		}
		id = tok
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.log.Info("export job created", "stream", st.name, "job", id, "url", resp.URL)
	return &jobState{ID: id, Created: time.Now().UnixMicro()}, nil
}

// pollJob polls until the job completes and returns the last poll
// response, decoded.
func (s *Source) pollJob(ctx context.Context, st *stream, env template.Env, job *jobState) (any, error) {
	a := st.async
	wait := a.interval
	deadline := time.UnixMicro(job.Created).Add(a.timeout)
	for polls := 1; ; polls++ {
		env["job"] = map[string]any{"id": job.ID, "status": nil}
		path, err := a.pollPath.RenderEach(env, escapeSegment)
		if err != nil {
			return nil, fmt.Errorf("async.poll.path: %w", err)
		}
		hreq, err := s.jobRequest(st, a.pollMethod, path, a.pollParams, env)
		if err != nil {
			return nil, err
		}
		var status string
		var doc any
		_, err = s.client.Do(ctx, hreq, func(r *httpx.Response) error {
			raw, found, err := jsonpath.Lookup(r.Body, a.status)
			tok, ok := jsonToken(raw)
			if err != nil || !found || !ok {
				return fmt.Errorf("the poll response has no status at %q; body: %s", a.status, httpx.Describe(s.red, r.Header, r.Body))
			}
			status = tok
			d := json.NewDecoder(bytes.NewReader(r.Body))
			d.UseNumber()
			if err := d.Decode(&doc); err != nil {
				return fmt.Errorf("the poll response is not JSON: %w", err)
			}
			if slices.Contains(a.failed, status) {
				return fmt.Errorf("export job %s failed with status %q: %s", job.ID, status, httpx.Describe(s.red, r.Header, r.Body))
			}
			return nil
		})
		var se *httpx.StatusError
		if errors.As(err, &se) && (se.Status == http.StatusNotFound || se.Status == http.StatusGone) && polls == 1 {
			return nil, errJobGone
		}
		if err != nil {
			return nil, err
		}
		if slices.Contains(a.completed, status) {
			return doc, nil
		}
		if time.Now().Add(wait).After(deadline) {
			return nil, fmt.Errorf("export job %s is still %q after %s (async.poll.timeout); the next run polls it again", job.ID, status, a.timeout)
		}
		s.log.Debug("export job running", "stream", st.name, "job", job.ID, "status", status, "next_poll", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, a.maxInterval)
	}
}

// jobRequest builds a poll or download request from a rendered path (or
// absolute URL) and parameters.
func (s *Source) jobRequest(st *stream, method, path string, params []kv, env template.Env) (*httpx.Request, error) {
	u, err := s.requestURL(st, path)
	if err != nil {
		return nil, err
	}
	q := u.Query()
	for _, p := range params {
		v, null, err := p.tpl.Render(env)
		if err != nil {
			return nil, fmt.Errorf("params.%s: %w", p.key, err)
		}
		if !null {
			q.Set(p.key, v)
		}
	}
	u.RawQuery = q.Encode()
	req := &httpx.Request{Method: method, URL: u.String(), Header: http.Header{}, Label: st.name}
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
	return req, nil
}

// downloadJob downloads a completed job's result and emits its records.
func (s *Source) downloadJob(ctx context.Context, st *stream, part *record.Partition, env template.Env, req source.ReadRequest, pos asyncPosition, status any) error {
	a := st.async
	env["job"] = map[string]any{"id": pos.Job.ID, "status": status}
	var hreq *httpx.Request
	if a.dlURL != nil {
		b, err := json.Marshal(status)
		if err != nil {
			return err
		}
		raw, found, err := jsonpath.Lookup(b, a.dlURL)
		link, ok := jsonToken(raw)
		if err != nil || !found || !ok {
			return fmt.Errorf("export job %s completed, but its status has no result URL at %q", pos.Job.ID, a.dlURL)
		}
		// An absolute URL is used as it is; credentials go only to the
		// connector's origins (httpx withholds them elsewhere).
		u, err := resolveURL(s.baseURL, link)
		if err != nil {
			return fmt.Errorf("export job %s: result URL: %w", pos.Job.ID, err)
		}
		if len(a.dlParams) > 0 {
			pu, err := url.Parse(u)
			if err != nil {
				return fmt.Errorf("export job %s: result URL: %w", pos.Job.ID, err)
			}
			q := pu.Query()
			for _, p := range a.dlParams {
				v, null, err := p.tpl.Render(env)
				if err != nil {
					return fmt.Errorf("async.download.params.%s: %w", p.key, err)
				}
				if !null {
					q.Set(p.key, v)
				}
			}
			pu.RawQuery = q.Encode()
			u = pu.String()
		}
		hreq = &httpx.Request{Method: http.MethodGet, URL: u, Header: http.Header{}, Label: st.name}
	} else {
		path, err := a.dlPath.RenderEach(env, escapeSegment)
		if err != nil {
			return fmt.Errorf("async.download.path: %w", err)
		}
		if hreq, err = s.jobRequest(st, http.MethodGet, path, a.dlParams, env); err != nil {
			return err
		}
	}
	hreq.Header.Set("Accept", "*/*")
	first := hreq.URL
	for {
		if pos.Part != "" {
			u, err := url.Parse(first)
			if err != nil {
				return err
			}
			q := u.Query()
			q.Set(a.nextParam, pos.Part)
			u.RawQuery = q.Encode()
			hreq.URL = u.String()
		}
		var nextPart string
		cur := pos
		// Pages within a part resume in it (Skip > 0); the part's last page
		// resumes at the next part.
		wrap := func(p position) any {
			if p.Skip == 0 && nextPart != "" {
				return asyncPosition{Job: cur.Job, Part: nextPart}
			}
			return asyncPosition{Job: cur.Job, Skip: p.Skip, Part: cur.Part}
		}
		next := func(_ *response, h http.Header) (position, bool, error) {
			if a.nextHeader != "" && h != nil {
				if v := h.Get(a.nextHeader); v != "" && v != "null" {
					nextPart = v
					return position{}, false, nil
				}
			}
			return position{}, true, nil
		}
		_, done, err := s.fetchStreamed(ctx, st, hreq, streamedPage{part: part, req: req, env: env, pos: position{Skip: cur.Skip}, page: 2, next: next, wrap: wrap})
		if err != nil || done {
			return err
		}
		pos = asyncPosition{Job: pos.Job, Part: nextPart}
	}
}

// resolveURL resolves a result URL against base_url: an absolute one is
// kept as it is (not appended to base_url).
func resolveURL(base, link string) (string, error) {
	ref, err := url.Parse(link)
	if err != nil {
		return "", errors.New("not a URL")
	}
	if ref.IsAbs() {
		if ref.Scheme != "http" && ref.Scheme != "https" {
			return "", fmt.Errorf("scheme %q is not http or https", ref.Scheme)
		}
		return link, nil
	}
	b, err := url.Parse(base + "/")
	if err != nil {
		return "", err
	}
	return b.ResolveReference(ref).String(), nil
}
