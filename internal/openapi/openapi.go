// Package openapi turns an OpenAPI 3 document into a Ferry connector, as
// dlt-init-openapi does: every GET path that answers a list becomes a
// stream (a path under another stream's item, /customers/{id}/orders,
// becomes its child), and the base URL, auth, records path, pagination,
// primary key and cursor are guessed from the document. Every guess is
// marked "# REVIEW" in the file, so the author checks it before use.
package openapi

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"unicode"

	"github.com/getkin/kin-openapi/openapi3"
)

// Load reads and checks an OpenAPI 3 document (local references only).
func Load(path string) (*openapi3.T, error) {
	l := openapi3.NewLoader()
	doc, err := l.LoadFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		return nil, fmt.Errorf("%s: openapi %q: only OpenAPI 3 documents are supported", path, doc.OpenAPI)
	}
	return doc, nil
}

// Stream is one guessed stream.
type Stream struct {
	Name       string
	Path       string // with {{ parent.x }} for a child
	Parent     string
	ParentKey  string // the parent field in the path
	Records    string
	PrimaryKey string
	Cursor     string
	Paginate   string // the YAML of the paginate setting
	Params     map[string]string
	Review     []string
	Summary    string
}

// Connector is the guessed connector.
type Connector struct {
	Name    string
	Title   string
	BaseURL string
	Config  []string // YAML lines under config:
	Auth    string   // YAML of auth, "" for none
	Review  []string
	Streams []*Stream
}

// Convert guesses a connector from a document.
func Convert(doc *openapi3.T, name string) (*Connector, error) {
	c := &Connector{Name: name}
	if doc.Info != nil {
		c.Title = doc.Info.Title
		if c.Name == "" {
			c.Name = snake(doc.Info.Title)
		}
	}
	if c.Name == "" {
		c.Name = "api"
	}
	c.baseURL(doc)
	c.auth(doc)
	paths := doc.Paths.InMatchingOrder()
	sort.Strings(paths)            // parents before children
	byItem := map[string]*Stream{} // "/customers/{id}" → stream customers
	for _, p := range paths {
		item := doc.Paths.Value(p)
		if item == nil || item.Get == nil {
			continue
		}
		op := item.Get
		schema := okSchema(op)
		if schema == nil {
			continue
		}
		records, itemSchema, ok := listOf(schema)
		if !ok {
			continue
		}
		st := &Stream{Name: streamName(p, op), Path: p, Records: records, Params: map[string]string{}, Summary: op.Summary}
		// A path parameter: a child of the stream whose item path it is.
		params := pathParams.FindAllStringSubmatch(p, -1)
		if len(params) > 0 {
			last := params[len(params)-1]
			prefix := p[:strings.LastIndex(p, last[0])] + last[0]
			parent := byItem[collectionItem(prefix)]
			if parent == nil || len(params) > 1 {
				continue // a path that needs values no stream gives
			}
			st.Parent = parent.Name
			st.ParentKey = parent.PrimaryKey
			if st.ParentKey == "" {
				st.ParentKey = "id"
				st.Review = append(st.Review, "the parent's key is guessed as id")
			}
			st.Path = strings.Replace(p, last[0], "{{ parent."+st.ParentKey+" }}", 1)
		}
		st.guessKeys(itemSchema)
		st.guessPagination(op, schema)
		for _, prm := range op.Parameters {
			if prm.Value != nil && prm.Value.In == "query" && prm.Value.Required && !st.usesParam(prm.Value.Name) {
				st.Params[prm.Value.Name] = ""
				st.Review = append(st.Review, fmt.Sprintf("query parameter %s is required: give it a value", prm.Value.Name))
			}
		}
		for _, s := range c.Streams {
			if s.Name == st.Name {
				st.Name += "_" + fmt.Sprint(len(c.Streams))
			}
		}
		c.Streams = append(c.Streams, st)
		byItem[p+"/{}"] = st
	}
	if len(c.Streams) == 0 {
		return nil, fmt.Errorf("no GET path of the document answers a list of records (an array, or an object with an array property)")
	}
	return c, nil
}

var pathParams = regexp.MustCompile(`\{([^}]+)\}`)

// collectionItem maps "/customers/{customerId}" to the key byItem uses.
func collectionItem(p string) string {
	i := strings.LastIndex(p, "/")
	if i < 0 {
		return p
	}
	return p[:i] + "/{}"
}

func (c *Connector) baseURL(doc *openapi3.T) {
	if len(doc.Servers) == 0 {
		c.BaseURL = "{{ config.base_url }}"
		c.Config = append(c.Config, "base_url: {description: the API's base URL}  # REVIEW: the document names no server")
		return
	}
	s := doc.Servers[0]
	u := s.URL
	for _, name := range sortedKeys(s.Variables) {
		v := s.Variables[name]
		param := snake(name)
		u = strings.ReplaceAll(u, "{"+name+"}", "{{ config."+param+" }}")
		def := ""
		if v != nil && v.Default != "" {
			def = fmt.Sprintf(", default: %q", v.Default)
		}
		c.Config = append(c.Config, fmt.Sprintf("%s: {description: %q%s}", param, "server variable "+name, def))
	}
	c.BaseURL = strings.TrimRight(u, "/")
	if len(doc.Servers) > 1 {
		c.Review = append(c.Review, fmt.Sprintf("base_url is the first of %d servers", len(doc.Servers)))
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (c *Connector) auth(doc *openapi3.T) {
	if doc.Components == nil || len(doc.Components.SecuritySchemes) == 0 {
		return
	}
	// The scheme the document requires first, else the first declared.
	var name string
	for _, req := range doc.Security {
		for k := range req {
			name = k
			break
		}
		if name != "" {
			break
		}
	}
	if name == "" {
		name = sortedKeys(doc.Components.SecuritySchemes)[0]
	}
	ref := doc.Components.SecuritySchemes[name]
	if ref == nil || ref.Value == nil {
		return
	}
	s := ref.Value
	switch {
	case s.Type == "http" && strings.EqualFold(s.Scheme, "bearer"), s.Type == "oauth2", s.Type == "openIdConnect":
		c.Config = append(c.Config, "token: {secret: true, description: the API token}")
		c.Auth = `{type: bearer, token: "{{ config.token }}"}`
		if s.Type != "http" {
			c.Review = append(c.Review, fmt.Sprintf("security scheme %s is %s: Ferry sends a token you obtain as a bearer token", name, s.Type))
		}
	case s.Type == "http" && strings.EqualFold(s.Scheme, "basic"):
		c.Config = append(c.Config, "username: {description: the user name}", "password: {secret: true}")
		c.Auth = `{type: basic, username: "{{ config.username }}", password: "{{ config.password }}"}`
	case s.Type == "apiKey" && (s.In == "header" || s.In == "query"):
		c.Config = append(c.Config, "api_key: {secret: true}")
		c.Auth = fmt.Sprintf(`{type: api_key, name: %q, in: %s, value: "{{ config.api_key }}"}`, s.Name, s.In)
	default:
		c.Review = append(c.Review, fmt.Sprintf("security scheme %s (%s %s) has no Ferry equivalent: set auth by hand", name, s.Type, s.Scheme))
	}
}

// okSchema returns the JSON schema of a GET's success response.
func okSchema(op *openapi3.Operation) *openapi3.Schema {
	if op.Responses == nil {
		return nil
	}
	for _, code := range []int{200, 206} {
		r := op.Responses.Status(code)
		if r == nil || r.Value == nil {
			continue
		}
		for mt, m := range r.Value.Content {
			if (strings.Contains(mt, "json") || mt == "*/*") && m.Schema != nil && m.Schema.Value != nil {
				return merged(m.Schema.Value)
			}
		}
	}
	return nil
}

// merged folds allOf into one schema's properties.
func merged(s *openapi3.Schema) *openapi3.Schema {
	if len(s.AllOf) == 0 {
		return s
	}
	out := *s
	out.Properties = openapi3.Schemas{}
	for k, v := range s.Properties {
		out.Properties[k] = v
	}
	for _, a := range s.AllOf {
		if a.Value == nil {
			continue
		}
		m := merged(a.Value)
		for k, v := range m.Properties {
			out.Properties[k] = v
		}
		if out.Type == nil {
			out.Type = m.Type
		}
		if out.Items == nil {
			out.Items = m.Items
		}
	}
	return &out
}

func isArray(s *openapi3.Schema) bool { return s != nil && s.Type != nil && s.Type.Is("array") }

// listOf finds the records of a response: the body itself, or an array
// property of it (preferring the usual names), one object deep at most.
func listOf(s *openapi3.Schema) (records string, item *openapi3.Schema, ok bool) {
	if isArray(s) {
		return "", itemOf(s), true
	}
	preferred := []string{"data", "results", "items", "records", "entries", "values", "list"}
	var arrays []string
	for name, p := range s.Properties {
		if p.Value != nil && isArray(merged(p.Value)) {
			arrays = append(arrays, name)
		}
	}
	sort.Strings(arrays)
	for _, want := range preferred {
		if slices.Contains(arrays, want) {
			return want, itemOf(merged(s.Properties[want].Value)), true
		}
	}
	if len(arrays) > 0 {
		return arrays[0], itemOf(merged(s.Properties[arrays[0]].Value)), true
	}
	// {"data": {"items": [...]}}
	for _, want := range preferred {
		if p := s.Properties[want]; p != nil && p.Value != nil {
			if r, it, ok := listOf(merged(p.Value)); ok && r != "" {
				return want + "." + r, it, true
			}
		}
	}
	return "", nil, false
}

func itemOf(s *openapi3.Schema) *openapi3.Schema {
	if s.Items == nil || s.Items.Value == nil {
		return &openapi3.Schema{}
	}
	return merged(s.Items.Value)
}

func (st *Stream) guessKeys(item *openapi3.Schema) {
	props := item.Properties
	for _, k := range []string{"id", "uuid", "key", "guid", snake(st.Name) + "_id", strings.TrimSuffix(snake(st.Name), "s") + "_id"} {
		if _, ok := props[k]; ok {
			st.PrimaryKey = k
			break
		}
	}
	if st.PrimaryKey == "" {
		st.Review = append(st.Review, "no primary key found: set primary_key, or the stream is a full refresh without one")
	} else if st.PrimaryKey != "id" {
		st.Review = append(st.Review, "primary_key guessed as "+st.PrimaryKey)
	}
	for _, k := range []string{"updated_at", "updatedAt", "modified_at", "modifiedAt", "last_modified", "lastModified", "updated", "modified", "date_modified"} {
		if p, ok := props[k]; ok && p.Value != nil && (p.Value.Format == "date-time" || p.Value.Type.Is("integer") || p.Value.Type.Is("string")) {
			st.Cursor = k
			st.Review = append(st.Review, "cursor guessed as "+k+": check it changes on every update")
			break
		}
	}
}

func (st *Stream) usesParam(name string) bool {
	return strings.Contains(st.Paginate, `param: `+name) || strings.Contains(st.Paginate, `size_param: `+name)
}

// guessPagination reads the operation's query parameters and the
// response's fields.
func (st *Stream) guessPagination(op *openapi3.Operation, resp *openapi3.Schema) {
	query := map[string]bool{}
	for _, p := range op.Parameters {
		if p.Value != nil && p.Value.In == "query" {
			query[p.Value.Name] = true
		}
	}
	first := func(names ...string) string {
		for _, n := range names {
			if query[n] {
				return n
			}
		}
		return ""
	}
	size := first("per_page", "page_size", "pageSize", "limit", "size", "count", "maxResults", "max_results")
	sizePart := ""
	if size != "" {
		sizePart = ", size: 100, size_param: " + size
	}
	fields := flatFields(resp, "", 2)
	field := func(names ...string) string {
		for _, n := range names {
			for _, f := range fields {
				if f == n || strings.HasSuffix(f, "."+n) {
					return f
				}
			}
		}
		return ""
	}
	hasMore := field("has_more", "hasMore", "has_next", "hasNextPage")
	more := ""
	if hasMore != "" {
		more = ", has_more_path: " + hasMore
	}
	linkHeader := false
	if r := op.Responses.Status(200); r != nil && r.Value != nil {
		for h := range r.Value.Headers {
			if strings.EqualFold(h, "Link") {
				linkHeader = true
			}
		}
	}
	switch {
	case linkHeader:
		st.Paginate = "{type: link_header" + sizePart + "}"
	case first("cursor", "after", "page_token", "pageToken", "next_token", "nextPageToken", "continuation") != "" && field("next_cursor", "nextCursor", "cursor", "after", "next_page_token", "nextPageToken", "next_token", "continuation") != "":
		p := first("cursor", "after", "page_token", "pageToken", "next_token", "nextPageToken", "continuation")
		st.Paginate = fmt.Sprintf("{type: cursor, param: %s, cursor_path: %s%s%s}", p, field("next_cursor", "nextCursor", "next_page_token", "nextPageToken", "next_token", "after", "cursor", "continuation"), sizePart, more)
	case first("starting_after") != "":
		st.Paginate = "{type: last_record, param: starting_after" + sizePart + more + "}"
	case field("next", "next_url", "nextUrl", "next_page_url", "nextPage") != "" && first("page", "offset") == "":
		st.Paginate = fmt.Sprintf("{type: next_url, next_path: %s%s}", field("next", "next_url", "nextUrl", "next_page_url", "nextPage"), sizePart)
	case first("offset", "skip", "start", "startAt") != "":
		sp := size
		if sp == "" {
			sp = "limit"
		}
		st.Paginate = fmt.Sprintf("{type: offset, param: %s, size: 100, size_param: %s%s}", first("offset", "skip", "start", "startAt"), sp, more)
		if t := field("total", "total_count", "totalCount", "count"); t != "" {
			st.Paginate = strings.TrimSuffix(st.Paginate, "}") + ", total_path: " + t + "}"
		}
	case first("page", "page_number", "pageNumber") != "":
		st.Paginate = fmt.Sprintf("{type: page_number, param: %s%s%s}", first("page", "page_number", "pageNumber"), sizePart, more)
	default:
		st.Paginate = "{type: none}"
		st.Review = append(st.Review, "no pagination found: check the API returns everything at once")
		return
	}
	st.Review = append(st.Review, "pagination guessed from the parameters and the response")
}

// flatFields lists an object schema's scalar fields as dotted paths.
func flatFields(s *openapi3.Schema, prefix string, depth int) []string {
	var out []string
	for _, name := range sortedKeys(s.Properties) {
		p := s.Properties[name]
		if p.Value == nil {
			continue
		}
		v := merged(p.Value)
		if v.Type != nil && v.Type.Is("object") && depth > 0 {
			out = append(out, flatFields(v, prefix+name+".", depth-1)...)
			continue
		}
		out = append(out, prefix+name)
	}
	return out
}

func streamName(path string, op *openapi3.Operation) string {
	var segs []string
	for _, s := range strings.Split(path, "/") {
		if s != "" && !strings.HasPrefix(s, "{") && !versionSeg.MatchString(s) {
			segs = append(segs, s)
		}
	}
	if len(segs) > 0 {
		return snake(segs[len(segs)-1])
	}
	if op.OperationID != "" {
		return snake(op.OperationID)
	}
	return "root"
}

var versionSeg = regexp.MustCompile(`^v[0-9]+(\.[0-9]+)?$`)

// snake turns a name into letters, digits and _ in snake_case.
func snake(s string) string {
	var b strings.Builder
	prevLower := false
	for _, r := range s {
		switch {
		case unicode.IsUpper(r):
			if prevLower {
				b.WriteByte('_')
			}
			b.WriteRune(unicode.ToLower(r))
			prevLower = false
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
			prevLower = true
		default:
			if b.Len() > 0 && !strings.HasSuffix(b.String(), "_") {
				b.WriteByte('_')
			}
			prevLower = false
		}
	}
	out := strings.Trim(b.String(), "_")
	if out == "" || unicode.IsDigit(rune(out[0])) {
		out = "s_" + out
	}
	return out
}

// YAML writes the connector file, guesses marked "# REVIEW".
func (c *Connector) YAML(source string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Generated by ferry import openapi from %s.\n", source)
	b.WriteString("# Lines marked REVIEW are guesses: check them against the API's documentation,\n# then run ferry validate and ferry run --dry-run --limit 5.\n")
	fmt.Fprintf(&b, "name: %s\n", c.Name)
	if c.Title != "" {
		fmt.Fprintf(&b, "description: %q\n", c.Title)
	}
	fmt.Fprintf(&b, "base_url: %q\n", c.BaseURL)
	for _, r := range c.Review {
		fmt.Fprintf(&b, "# REVIEW: %s\n", r)
	}
	if len(c.Config) > 0 {
		b.WriteString("config:\n")
		for _, l := range c.Config {
			fmt.Fprintf(&b, "  %s\n", l)
		}
	}
	if c.Auth != "" {
		fmt.Fprintf(&b, "auth: %s  # REVIEW: from the document's security schemes\n", c.Auth)
	}
	b.WriteString("streams:\n")
	for _, st := range c.Streams {
		fmt.Fprintf(&b, "  %s:\n", st.Name)
		if st.Summary != "" {
			fmt.Fprintf(&b, "    description: %q\n", st.Summary)
		}
		for _, r := range st.Review {
			fmt.Fprintf(&b, "    # REVIEW: %s\n", r)
		}
		if st.Parent != "" {
			fmt.Fprintf(&b, "    parent: %s\n", st.Parent)
		}
		fmt.Fprintf(&b, "    path: %q\n", st.Path)
		if len(st.Params) > 0 {
			b.WriteString("    params:\n")
			for _, k := range sortedKeys(st.Params) {
				fmt.Fprintf(&b, "      %q: %q\n", k, st.Params[k])
			}
		}
		if st.Records != "" {
			fmt.Fprintf(&b, "    records: %s\n", st.Records)
		}
		if st.PrimaryKey != "" {
			fmt.Fprintf(&b, "    primary_key: %s\n", st.PrimaryKey)
		}
		if st.Cursor != "" {
			fmt.Fprintf(&b, "    cursor: %s\n", st.Cursor)
		}
		fmt.Fprintf(&b, "    paginate: %s\n", st.Paginate)
	}
	return b.String()
}
