package rest

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/ferry-dev/ferry/internal/jsonpath"
	"github.com/ferry-dev/ferry/internal/spec"
	"github.com/ferry-dev/ferry/internal/template"
)

var (
	_ spec.Provisioner  = (*Config)(nil)
	_ spec.Validator    = (*Config)(nil)
	_ spec.StreamLister = (*Config)(nil)
)

// Provision records the streams' file order and merges the connector's
// defaults into each stream, remembering where each merged setting was
// written for messages. A child stream without parent.fields gets the
// parent's primary key as <parent>_<key>.
func (c *Config) Provision(chk *spec.Checker) {
	c.StreamOrder = chk.Keys("streams")
	d := c.Defaults
	if d == nil {
		d = &StreamDefaults{}
	}
	dp := chk.Path("defaults")
	for _, name := range c.StreamOrder {
		if s := c.Streams[name]; s != nil {
			mergeDefaults(s, d, dp, chk.Path("streams", name))
			provisionShapes(chk, s, d, chk.Path("streams", name))
		}
	}
	for _, name := range c.StreamOrder {
		s := c.Streams[name]
		if s == nil || s.Parent == nil || len(s.Parent.Fields) > 0 {
			continue
		}
		if parent := c.Streams[s.Parent.Stream]; parent != nil && len(parent.PrimaryKey) > 0 {
			s.Parent.Fields = map[string]string{}
			for _, k := range parent.PrimaryKey {
				s.Parent.Fields[s.Parent.Stream+"_"+k] = k
			}
		}
	}
}

// StreamDecls declares the streams to pipelines.
func (c *Config) StreamDecls() []spec.StreamDecl {
	var out []spec.StreamDecl
	for _, name := range c.StreamOrder {
		s := c.Streams[name]
		if s == nil {
			continue
		}
		d := spec.StreamDecl{Name: name, PrimaryKey: slices.Clone([]string(s.PrimaryKey)), Cursor: s.Cursor, Path: s.yamlPath}
		if s.Parent != nil {
			d.Parent = s.Parent.Stream
		}
		out = append(out, d)
	}
	return out
}

// Validate checks the connector's meaning: templates compile and read
// only what they may, pagination settings fit their style, parents exist
// and form no cycle.
func (c *Config) Validate(chk *spec.Checker) {
	chk.Template([]string{"base_url"}, c.BaseURL, spec.VarConfig)
	if h := c.HTTP; h != nil {
		checkLimits(chk, h)
		for _, f := range []struct {
			name, val string
		}{{"timeout", h.Timeout}, {"initial_backoff", h.InitialBackoff}, {"max_backoff", h.MaxBackoff}, {"max_retry_after", h.MaxRetryAfter}} {
			if f.val != "" {
				if _, err := spec.ParseDuration(f.val); err != nil {
					chk.AtValue([]string{"http", f.name}, "%v", err)
				}
			}
		}
		for _, k := range slices.Sorted(maps.Keys(h.Headers)) {
			chk.Template([]string{"http", "headers", k}, h.Headers[k], spec.VarConfig|spec.VarStream)
		}
		for i, o := range h.CredentialOrigins {
			p := []string{"http", "credential_origins", strconv.Itoa(i)}
			chk.Template(p, o, spec.VarConfig)
			if !strings.Contains(o, "{{") {
				if err := checkOrigin(o); err != nil {
					chk.AtValue(p, "%v", err)
				}
			}
		}
	}
	if d := c.Defaults; d != nil {
		all := spec.VarConfig | spec.VarParent | spec.VarPage | spec.VarIncremental | spec.VarStream
		for _, k := range slices.Sorted(maps.Keys(d.Params)) {
			chk.Template([]string{"defaults", "params", k}, d.Params[k], all)
		}
		for _, k := range slices.Sorted(maps.Keys(d.Headers)) {
			chk.Template([]string{"defaults", "headers", k}, d.Headers[k], all)
		}
		checkRules(chk, chk.Path("defaults", "rules"), d.Rules)
	}
	for _, name := range c.StreamOrder {
		s := c.Streams[name]
		if s == nil {
			chk.At([]string{"streams", name}, "stream is empty: give at least its path")
			continue
		}
		checkStream(chk, s)
	}
	c.checkParents(chk)
}

// mergeDefaults applies the connector's defaults to a stream.
func mergeDefaults(s *Stream, d *StreamDefaults, dp, sp []string) {
	s.yamlPath = sp
	s.own = ownSettings{method: s.Method, body: s.Body != nil, paginate: s.Paginate != nil, records: s.Records != nil}
	s.rulesAt, s.defaultRulesAt, s.defaultRules = join(sp, "rules"), join(dp, "rules"), d.Rules
	if s.GraphQL != nil {
		// A graphql stream's request, records and pagination are its
		// query's: the defaults' do not apply.
		if !s.own.paginate {
			s.Paginate = nil
		}
		defer provisionGraphQL(s)
	}
	if s.Method == "" {
		s.Method = d.Method
	}
	if s.Method == "" {
		s.Method = "GET"
	}
	s.ownParams, s.ownHeaders = keySet(s.Params), keySet(s.Headers)
	s.Params = mergeTemplates(d.Params, s.Params)
	s.Headers = mergeTemplates(d.Headers, s.Headers)
	s.recordsPath = join(sp, "records")
	if s.Records == nil && d.Records != nil && (s.GraphQL == nil || s.GraphQL.Connection == "") {
		s.Records, s.recordsPath = d.Records, join(dp, "records")
	}
	s.paginatePath = join(sp, "paginate")
	if s.Paginate == nil && d.Paginate != nil && s.GraphQL == nil {
		cp := *d.Paginate
		s.Paginate, s.paginatePath = &cp, join(dp, "paginate")
	}
	if s.Paginate == nil {
		s.Paginate = &Paginate{Type: "none"}
	}
	if len(s.PrimaryKey) == 0 {
		s.PrimaryKey = d.PrimaryKey
	}
	s.incrementalPath = join(sp, "incremental")
	if d.Incremental != nil && s.Cursor != "" {
		if s.Incremental == nil {
			cp := *d.Incremental
			s.Incremental, s.incrementalPath = &cp, join(dp, "incremental")
		} else {
			inc := *s.Incremental
			if inc.Param == "" {
				inc.Param = d.Incremental.Param
			}
			if inc.Start == "" {
				inc.Start = d.Incremental.Start
			}
			if inc.Lookback == "" {
				inc.Lookback = d.Incremental.Lookback
			}
			if inc.Format == "" {
				inc.Format = d.Incremental.Format
			}
			inc.Exclusive = inc.Exclusive || d.Incremental.Exclusive
			if inc.Granularity == "" {
				inc.Granularity = d.Incremental.Granularity
			}
			s.Incremental = &inc
		}
	}
}

func keySet(t spec.Templates) map[string]bool {
	out := make(map[string]bool, len(t))
	for k := range t {
		out[k] = true
	}
	return out
}

func mergeTemplates(a, b spec.Templates) spec.Templates {
	if len(a) == 0 {
		return b
	}
	out := maps.Clone(a)
	maps.Copy(out, b)
	return out
}

// join builds a YAML path without aliasing.
func join(base []string, more ...string) []string {
	out := make([]string, 0, len(base)+len(more))
	return append(append(out, base...), more...)
}

// paginateFields lists, per pagination type, the fields it uses.
var paginateFields = map[string][]string{
	"none":        {},
	"page_number": {"param", "start", "size", "size_param", "has_more_path", "total_path", "total_pages_path", "stop_on_empty", "stop_on_short_page", "max_pages", "max_results"},
	"offset":      {"param", "start", "size", "size_param", "offset_path", "limit_path", "has_more_path", "total_path", "stop_on_empty", "stop_on_short_page", "max_pages", "max_results"},
	"cursor":      {"param", "size", "size_param", "cursor_path", "has_more_path", "total_path", "stop_on_empty", "stop_on_missing", "max_pages", "max_results"},
	"last_record": {"param", "size", "size_param", "field", "has_more_path", "total_path", "stop_on_empty", "stop_on_short_page", "max_pages", "max_results"},
	"next_url":    {"size", "size_param", "next_path", "has_more_path", "total_path", "stop_on_empty", "stop_on_missing", "max_pages", "max_results"},
	"link_header": {"size", "size_param", "has_more_path", "total_path", "stop_on_empty", "max_pages", "max_results"},
}

// atValue reports a problem at the value of an absolute YAML path (a
// stream's merged settings remember where they were written: the stream
// or the connector's defaults).
func atValue(chk *spec.Checker, p []string, format string, args ...any) {
	chk.Abs(p).AtValue(nil, format, args...)
}

func checkStream(chk *spec.Checker, s *Stream) {
	sp := s.yamlPath
	sc := chk.Abs(sp)
	all := spec.VarConfig | spec.VarPage | spec.VarIncremental | spec.VarStream
	if s.Parent != nil {
		all |= spec.VarParent
	}
	sc.Template([]string{"path"}, s.Path, all)
	// Settings merged from defaults are checked where they are written.
	for _, k := range slices.Sorted(maps.Keys(s.Params)) {
		if s.ownParams[k] {
			sc.Template([]string{"params", k}, s.Params[k], all)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(s.Headers)) {
		if s.ownHeaders[k] {
			sc.Template([]string{"headers", k}, s.Headers[k], all)
		}
	}
	if s.GraphQL != nil {
		checkGraphQL(chk, s, all)
	} else if s.Body != nil {
		if s.Method != "POST" {
			sc.At([]string{"body"}, "a body needs method: POST")
		}
		bodyTemplates(sc, []string{"body"}, s.Body, all)
	}
	checkRules(chk, s.rulesAt, s.Rules)
	if s.Records != nil {
		if _, err := jsonpath.Compile(*s.Records); err != nil {
			atValue(chk, s.recordsPath, "%v", err)
		}
	}
	for i, k := range s.PrimaryKey {
		if strings.TrimSpace(k) == "" {
			sc.AtValue([]string{"primary_key", strconv.Itoa(i)}, "empty field name")
		}
	}
	for _, k := range slices.Sorted(maps.Keys(s.Columns)) {
		if _, err := columnType(s.Columns[k]); err != nil {
			sc.AtValue([]string{"columns", k}, "%v", err)
		}
	}
	if inc := s.Incremental; inc != nil {
		ic := chk.Abs(s.incrementalPath)
		if s.Cursor == "" {
			ic.At(nil, "incremental needs cursor: name the field that orders records, such as updated_at")
		}
		if inc.Start != "" {
			ic.Template([]string{"start"}, string(inc.Start), spec.VarConfig)
		}
		if inc.Lookback != "" {
			if _, err := spec.ParseLookback(string(inc.Lookback)); err != nil {
				ic.AtValue([]string{"lookback"}, "%v", err)
			}
		}
		if err := checkFormat(inc.Format); err != nil {
			ic.AtValue([]string{"format"}, "%v", err)
		}
		if inc.Granularity != "" {
			if _, err := spec.ParseDuration(inc.Granularity); err != nil {
				ic.AtValue([]string{"granularity"}, "%v", err)
			}
			if !inc.Exclusive {
				ic.At([]string{"granularity"}, "granularity applies to an exclusive filter: set exclusive: true, or remove it")
			}
		}
		if inc.Window != "" {
			if d, err := spec.ParseDuration(inc.Window); err != nil || d <= 0 {
				ic.AtValue([]string{"window"}, "window must be a positive duration such as 1d or 6h")
			}
			if inc.Start == "" {
				ic.At([]string{"window"}, "window needs start: the windows run from incremental.start on the first sync")
			}
			if s.Paginate != nil && s.Paginate.MaxResults > 0 {
				ic.At([]string{"window"}, "window and paginate.max_results cannot be combined: choose windows small enough for the cap")
			}
		} else if inc.UntilParam != "" {
			ic.At([]string{"until_param"}, "until_param applies to a window: set window")
		}
		if inc.NewestFirst && s.Response != nil {
			ic.At([]string{"newest_first"}, "newest_first applies to JSON pages read whole: remove response, or newest_first")
		}
	}
	if d := s.DynamicFields; d != nil {
		dc := chk.Abs(join(s.yamlPath, "dynamic_fields"))
		dc.Template([]string{"path"}, d.Path, spec.VarConfig)
		if s.Response != nil {
			dc.At(nil, "dynamic_fields applies to JSON pages read whole: remove response, or dynamic_fields")
		}
	}
	checkPaginate(chk, s)
	checkShapes(chk, s)
	for i, st := range s.IgnoreStatus {
		if st == 429 || st >= 500 {
			sc.AtValue([]string{"ignore_status", strconv.Itoa(i)}, "status %d is retried, it cannot be ignored", st)
		}
	}
}

func checkPaginate(chk *spec.Checker, s *Stream) {
	pg := s.Paginate
	pc := chk.Abs(s.paginatePath)
	allowed, ok := paginateFields[pg.Type]
	if !ok {
		pc.AtValue([]string{"type"}, "unknown pagination type %q", pg.Type)
		return
	}
	set := map[string]bool{
		"param": pg.Param != "", "start": pg.Start != nil, "size": pg.Size != 0, "size_param": pg.SizeParam != "",
		"cursor_path": pg.CursorPath != "", "field": pg.Field != "", "next_path": pg.NextPath != "",
		"has_more_path": pg.HasMorePath != "", "total_path": pg.TotalPath != "", "total_pages_path": pg.TotalPagesPath != "",
		"stop_on_empty": pg.StopOnEmpty != nil, "stop_on_short_page": pg.StopOnShortPage, "max_pages": pg.MaxPages != 0, "max_results": pg.MaxResults != 0,
		"offset_path": pg.OffsetPath != "", "limit_path": pg.LimitPath != "", "stop_on_missing": pg.StopOnMissing,
	}
	for _, k := range slices.Sorted(maps.Keys(set)) {
		if set[k] && !slices.Contains(allowed, k) {
			pc.At([]string{k}, "%s is not used by %s pagination", k, pg.Type)
		}
	}
	for _, k := range []struct {
		name, val string
	}{{"cursor_path", pg.CursorPath}, {"next_path", pg.NextPath}, {"has_more_path", pg.HasMorePath}, {"total_path", pg.TotalPath}, {"total_pages_path", pg.TotalPagesPath}, {"offset_path", pg.OffsetPath}, {"limit_path", pg.LimitPath}} {
		if k.val != "" {
			if _, err := jsonpath.Compile(k.val); err != nil {
				pc.AtValue([]string{k.name}, "%v", err)
			}
		}
	}
	if pg.Size != 0 && pg.SizeParam == "" && pg.Type != "offset" && !usesPage(s, "size") {
		pc.At([]string{"size"}, "size needs size_param: the query parameter that carries the page size")
	}
	if pg.MaxResults > 0 && (s.Cursor == "" || s.Incremental == nil || (s.Incremental.Param == "" && !usesIncremental(s))) {
		pc.At([]string{"max_results"}, "max_results restarts the query from the largest cursor read: it needs cursor, and the cursor in the request (incremental.param, or {{ incremental.since }} in params or body)")
	}
	if pg.StopOnShortPage && pg.Size == 0 {
		pc.At([]string{"stop_on_short_page"}, "stop_on_short_page needs size")
	}
	switch pg.Type {
	case "cursor":
		if pg.CursorPath == "" {
			pc.At(nil, "cursor pagination needs cursor_path: where the next cursor is in the body")
		}
		if pg.Param == "" && !usesPage(s, "cursor") {
			pc.At(nil, "cursor pagination needs param, or {{ page.cursor }} in params, headers or body")
		}
	case "next_url":
		if pg.NextPath == "" {
			pc.At(nil, "next_url pagination needs next_path: where the next page's URL is in the body")
		}
	case "last_record":
		if pg.Field == "" && len(s.PrimaryKey) != 1 {
			pc.At(nil, "last_record pagination needs field: the record field whose last value starts the next page")
		}
	}
}

// usesPage reports whether any template of s reads page.<member>.
func usesPage(s *Stream, member string) bool {
	check := func(src string) bool {
		t, err := template.Parse(src)
		if err != nil {
			return false
		}
		for _, r := range t.Refs() {
			if r.Var == "page" && (r.Member == member || r.Member == "") {
				return true
			}
		}
		return false
	}
	for _, v := range s.Params {
		if check(v) {
			return true
		}
	}
	for _, v := range s.Headers {
		if check(v) {
			return true
		}
	}
	found := false
	walkBody(s.Body, func(v string) {
		found = found || check(v)
	})
	return found || check(s.Path)
}

func walkBody(v any, fn func(string)) {
	switch x := v.(type) {
	case string:
		fn(x)
	case map[string]any:
		for _, e := range x {
			walkBody(e, fn)
		}
	case []any:
		for _, e := range x {
			walkBody(e, fn)
		}
	}
}

func bodyTemplates(chk *spec.Checker, p []string, v any, allow spec.Vars) {
	switch x := v.(type) {
	case string:
		chk.Template(p, x, allow)
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(x)) {
			bodyTemplates(chk, join(p, k), x[k], allow)
		}
	case []any:
		for i, e := range x {
			bodyTemplates(chk, join(p, strconv.Itoa(i)), e, allow)
		}
	}
}

// checkParents resolves parent links and rejects cycles.
func (c *Config) checkParents(chk *spec.Checker) {
	for _, name := range c.StreamOrder {
		s := c.Streams[name]
		if s == nil || s.Parent == nil {
			continue
		}
		pc := chk.Abs(join(s.yamlPath, "parent"))
		parent, ok := c.Streams[s.Parent.Stream]
		if !ok || parent == nil {
			msg := fmt.Sprintf("unknown parent stream %q", s.Parent.Stream)
			if hint := spec.DidYouMean(s.Parent.Stream, c.StreamOrder); hint != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", hint)
			}
			pc.AtValue(nil, "%s", msg)
			continue
		}
		if s.Parent.Stream == name {
			pc.AtValue(nil, "a stream cannot be its own parent")
			continue
		}
		// Walk up the chain looking for a cycle.
		seen := map[string]bool{name: true}
		for cur := parent; cur != nil && cur.Parent != nil; cur = c.Streams[cur.Parent.Stream] {
			if seen[cur.Parent.Stream] {
				pc.AtValue(nil, "parent streams form a cycle through %q", cur.Parent.Stream)
				break
			}
			seen[cur.Parent.Stream] = true
		}
		if s.Parent.IncrementalDependency && parent.Cursor == "" {
			pc.At([]string{"incremental_dependency"}, "parent stream %q has no cursor: incremental_dependency follows the parent's cursor, so set streams.%s.cursor", s.Parent.Stream, s.Parent.Stream)
		}
		if len(s.Parent.Fields) == 0 {
			pc.At(nil, "parent stream %q has no primary_key: set parent.fields to say which parent fields identify it", s.Parent.Stream)
		}
	}
}

func checkFormat(f string) error {
	switch f {
	case "", "rfc3339", "unix", "unix_ms", "date":
		return nil
	}
	if !strings.Contains(f, "2006") && !strings.Contains(f, "06") {
		return fmt.Errorf("unknown format %q: want rfc3339, unix, unix_ms, date or a Go time layout such as 2006-01-02T15:04:05", f)
	}
	return nil
}

// checkOrigin reports whether s is an origin, as http.credential_origins
// lists them: an http or https URL with a host and nothing after it.
func checkOrigin(s string) error {
	u, err := url.Parse(s)
	bad := err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(s, "?") || strings.HasSuffix(s, "#")
	if bad {
		if err == nil && u.User != nil {
			return errors.New("an origin has no user name or password: write scheme://host[:port], such as https://files.example.com")
		}
		return fmt.Errorf("%q is not an origin: write scheme://host[:port], such as https://files.example.com", s)
	}
	return nil
}
