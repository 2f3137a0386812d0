package rest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sync"

	"github.com/ferry-dev/ferry/internal/httpx"
	"github.com/ferry-dev/ferry/internal/jsonpath"
	"github.com/ferry-dev/ferry/internal/template"
)

// dynFields asks for the fields a metadata endpoint lists (HubSpot's
// properties), read once per run.
type dynFields struct {
	path          *template.Template
	records, name *jsonpath.Path
	param, sep    string
	maxURL        int

	mu     sync.Mutex
	names  []string
	loaded bool
}

func compileDynamic(d *DynamicFields) (*dynFields, error) {
	if d == nil {
		return nil, nil
	}
	out := &dynFields{param: d.Param, sep: d.Separator, maxURL: d.MaxURLLength}
	if out.sep == "" {
		out.sep = ","
	}
	if out.maxURL == 0 {
		out.maxURL = 4000
	}
	var err error
	if out.path, err = template.Parse(d.Path); err != nil {
		return nil, fmt.Errorf("dynamic_fields.path: %w", err)
	}
	if out.records, err = jsonpath.Compile(d.Records); err != nil {
		return nil, fmt.Errorf("dynamic_fields.records: %w", err)
	}
	out.records.Spread = true
	name := d.Name
	if name == "" {
		name = "name"
	}
	if out.name, err = jsonpath.Compile(name); err != nil {
		return nil, fmt.Errorf("dynamic_fields.name: %w", err)
	}
	return out, nil
}

// fieldNames returns the names the metadata endpoint lists, asking it on
// the first call of the run.
func (s *Source) fieldNames(ctx context.Context, st *stream) ([]string, error) {
	d := st.dyn
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.loaded {
		return d.names, nil
	}
	env := template.Env{"config": s.config, "stream": st.name}
	path, err := d.path.RenderEach(env, escapeSegment)
	if err != nil {
		return nil, fmt.Errorf("dynamic_fields.path: %w", err)
	}
	u, err := s.requestURL(st, path)
	if err != nil {
		return nil, err
	}
	req := &httpx.Request{Method: http.MethodGet, URL: u.String(), Header: http.Header{"Accept": {"application/json"}}, Label: st.name}
	for _, h := range s.headers {
		if v, null, err := h.tpl.Render(env); err == nil && !null {
			req.Header.Set(h.key, v)
		}
	}
	resp, err := s.client.Do(ctx, req, nil)
	if err != nil {
		return nil, fmt.Errorf("dynamic_fields: %w", asStop(err))
	}
	seen := map[string]bool{}
	var names []string
	err = jsonpath.Scan(resp.Body, []*jsonpath.Path{d.records}, func(_ int, v []byte) error {
		if len(v) == 0 || v[0] == 'n' {
			return nil
		}
		raw, found, err := jsonpath.Lookup(v, d.name)
		if err != nil || !found {
			return fmt.Errorf("an item has no field %q: %s", d.name, excerpt(v))
		}
		if n, ok := jsonToken(raw); ok && !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dynamic_fields: GET %s: %w", s.red.URL(req.URL), err)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("dynamic_fields: GET %s listed no fields at %q; body: %s", s.red.URL(req.URL), d.records, httpx.Describe(s.red, resp.Header, resp.Body))
	}
	d.names, d.loaded = names, true
	return names, nil
}

// parts splits names into groups, each short enough to add to rawURL
// within the longest URL; one group when all fit.
func (d *dynFields) parts(rawURL string, names []string) [][]string {
	var out [][]string
	var cur []string
	size := 0
	room := d.maxURL - len(rawURL) - len(d.param) - 2
	for _, n := range names {
		l := len(url.QueryEscape(n)) + len(url.QueryEscape(d.sep))
		if len(cur) > 0 && size+l > room {
			out = append(out, cur)
			cur, size = nil, 0
		}
		cur = append(cur, n)
		size += l
	}
	return append(out, cur)
}

// mergeParts merges the records of the other parts of a page into the
// first part's, by primary key.
func (st *stream) mergeParts(first [][]byte, others [][][]byte) ([][]byte, error) {
	if len(st.pag.keyPaths) == 0 {
		return nil, fmt.Errorf("dynamic_fields are split across requests (the URL would be longer than max_url_length), and merging the parts of a record needs primary_key")
	}
	keyOf := func(rec []byte) (string, error) {
		var b bytes.Buffer
		for _, k := range st.pag.keyPaths {
			raw, found, err := jsonpath.Lookup(rec, k)
			if err != nil || !found {
				return "", fmt.Errorf("dynamic_fields split across requests needs each record's primary key, and a record has none: %s", excerpt(rec))
			}
			b.Write(raw)
			b.WriteByte(0)
		}
		return b.String(), nil
	}
	at := map[string]int{}
	out := make([][]byte, len(first))
	for i, rec := range first {
		k, err := keyOf(rec)
		if err != nil {
			return nil, err
		}
		at[k], out[i] = i, rec
	}
	for _, part := range others {
		for _, rec := range part {
			k, err := keyOf(rec)
			if err != nil {
				return nil, err
			}
			i, ok := at[k]
			if !ok {
				return nil, fmt.Errorf("the requests of one page with different dynamic_fields returned different records (%s is only in a later part): the API's pages moved between them", excerpt(rec))
			}
			if out[i], err = mergeObjects(out[i], rec); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// mergeObjects merges JSON object b into a, objects within merged too.
func mergeObjects(a, b []byte) ([]byte, error) {
	var ma, mb map[string]json.RawMessage
	if err := json.Unmarshal(a, &ma); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &mb); err != nil {
		return nil, err
	}
	for k, v := range mb {
		if old, ok := ma[k]; ok && len(old) > 0 && old[0] == '{' && len(v) > 0 && v[0] == '{' {
			m, err := mergeObjects(old, v)
			if err != nil {
				return nil, err
			}
			ma[k] = m
			continue
		}
		ma[k] = v
	}
	return json.Marshal(ma)
}
