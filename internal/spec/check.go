package spec

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ferry-dev/ferry/internal/jsonpath"
	"github.com/ferry-dev/ferry/internal/schema"
	"github.com/ferry-dev/ferry/internal/template"
)

// basePath is the connector's YAML path within its file.
func (c *Connector) basePath() []string {
	if c.Base == "" {
		return nil
	}
	return []string{c.Base}
}

// vars says which template variables a setting may use.
type vars uint8

const (
	varConfig vars = 1 << iota
	varParent
	varPage
	varIncremental
	varStream
)

// check validates the connector's meaning, merges defaults into streams,
// and records every problem.
func (c *Connector) check(ps *problems) {
	base := c.basePath()
	if c.Type == "" {
		c.Type = "rest"
	}
	for _, name := range slices.Sorted(maps.Keys(c.Config)) {
		c.checkParam(ps, path(base, "config", name), c.Config[name])
	}
	c.template(ps, path(base, "base_url"), c.BaseURL, varConfig)
	if a := c.Auth; a != nil {
		c.checkAuth(ps, path(base, "auth"), a)
	}
	if h := c.HTTP; h != nil {
		for _, f := range []struct {
			name, val string
		}{{"timeout", h.Timeout}, {"initial_backoff", h.InitialBackoff}, {"max_backoff", h.MaxBackoff}, {"max_retry_after", h.MaxRetryAfter}} {
			if f.val != "" {
				if _, err := ParseDuration(f.val); err != nil {
					ps.atValue(path(base, "http", f.name), "%v", err)
				}
			}
		}
		for _, k := range slices.Sorted(maps.Keys(h.Headers)) {
			c.template(ps, path(base, "http", "headers", k), h.Headers[k], varConfig|varStream)
		}
		for i, o := range h.CredentialOrigins {
			p := path(base, "http", "credential_origins", strconv.Itoa(i))
			c.template(ps, p, o, varConfig)
			if !strings.Contains(o, "{{") {
				if err := CheckOrigin(o); err != nil {
					ps.atValue(p, "%v", err)
				}
			}
		}
	}
	d := c.Defaults
	if d == nil {
		d = &StreamDefaults{}
	}
	dp := path(base, "defaults")
	all := varConfig | varParent | varPage | varIncremental | varStream
	for _, k := range slices.Sorted(maps.Keys(d.Params)) {
		c.template(ps, path(dp, "params", k), d.Params[k], all)
	}
	for _, k := range slices.Sorted(maps.Keys(d.Headers)) {
		c.template(ps, path(dp, "headers", k), d.Headers[k], all)
	}
	for _, name := range c.StreamOrder {
		s := c.Streams[name]
		if s == nil {
			ps.at(path(base, "streams", name), "stream is empty: give at least its path")
			continue
		}
		c.mergeDefaults(s, d, dp, path(base, "streams", name))
		c.checkStream(ps, name, s)
	}
	c.checkParents(ps)
}

func (c *Connector) checkParam(ps *problems, p []string, param *ConfigParam) {
	if param == nil {
		return
	}
	if param.Default != nil {
		if _, err := convertParam(param, param.Default); err != nil {
			ps.atValue(path(p, "default"), "%v", err)
		}
		if param.Secret {
			ps.at(path(p, "default"), "a secret parameter cannot have a default: secrets come from the environment or a file")
		}
	}
}

func (c *Connector) checkAuth(ps *problems, p []string, a *Auth) {
	used := map[string]string{"token": a.Token, "name": a.Name, "in": a.In, "value": a.Value, "prefix": a.Prefix, "username": a.Username, "password": a.Password}
	allowed := map[string][]string{
		"none":    nil,
		"bearer":  {"token"},
		"api_key": {"name", "in", "value", "prefix"},
		"basic":   {"username", "password"},
	}[a.Type]
	for _, k := range slices.Sorted(maps.Keys(used)) {
		if used[k] != "" && !slices.Contains(allowed, k) {
			ps.at(path(p, k), "%s is not used by %s auth", k, a.Type)
		}
	}
	if a.Prefix != "" && a.In == "query" {
		ps.at(path(p, "prefix"), "prefix applies to header keys only")
	}
	for _, k := range []string{"token", "value", "username", "password"} {
		if used[k] != "" {
			c.template(ps, path(p, k), used[k], varConfig)
		}
	}
}

// mergeDefaults applies the connector's defaults to a stream, remembering
// where each merged setting was written for messages.
func (c *Connector) mergeDefaults(s *Stream, d *StreamDefaults, dp, sp []string) {
	s.yamlPath = sp
	if s.Method == "" {
		s.Method = d.Method
	}
	if s.Method == "" {
		s.Method = "GET"
	}
	s.Params = mergeTemplates(d.Params, s.Params)
	s.Headers = mergeTemplates(d.Headers, s.Headers)
	s.recordsPath = path(sp, "records")
	if s.Records == nil && d.Records != nil {
		s.Records, s.recordsPath = d.Records, path(dp, "records")
	}
	s.paginatePath = path(sp, "paginate")
	if s.Paginate == nil && d.Paginate != nil {
		cp := *d.Paginate
		s.Paginate, s.paginatePath = &cp, path(dp, "paginate")
	}
	if s.Paginate == nil {
		s.Paginate = &Paginate{Type: "none"}
	}
	if len(s.PrimaryKey) == 0 {
		s.PrimaryKey = d.PrimaryKey
	}
	s.incrementalPath = path(sp, "incremental")
	if d.Incremental != nil && s.Cursor != "" {
		if s.Incremental == nil {
			cp := *d.Incremental
			s.Incremental, s.incrementalPath = &cp, path(dp, "incremental")
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
			s.Incremental = &inc
		}
	}
}

func mergeTemplates(a, b Templates) Templates {
	if len(a) == 0 {
		return b
	}
	out := maps.Clone(a)
	maps.Copy(out, b)
	return out
}

// paginateFields lists, per pagination type, the fields it uses.
var paginateFields = map[string][]string{
	"none":        {},
	"page_number": {"param", "start", "size", "size_param", "has_more_path", "total_path", "total_pages_path", "stop_on_empty", "stop_on_short_page", "max_pages"},
	"offset":      {"param", "start", "size", "size_param", "has_more_path", "total_path", "stop_on_empty", "stop_on_short_page", "max_pages"},
	"cursor":      {"param", "size", "size_param", "cursor_path", "has_more_path", "total_path", "stop_on_empty", "max_pages"},
	"last_record": {"param", "size", "size_param", "field", "has_more_path", "total_path", "stop_on_empty", "stop_on_short_page", "max_pages"},
	"next_url":    {"size", "size_param", "next_path", "has_more_path", "total_path", "stop_on_empty", "max_pages"},
	"link_header": {"size", "size_param", "has_more_path", "total_path", "stop_on_empty", "max_pages"},
}

func (c *Connector) checkStream(ps *problems, name string, s *Stream) {
	sp := s.yamlPath
	all := varConfig | varPage | varIncremental | varStream
	if s.Parent != nil {
		all |= varParent
	}
	c.template(ps, path(sp, "path"), s.Path, all)
	for _, k := range slices.Sorted(maps.Keys(s.Params)) {
		c.template(ps, path(sp, "params", k), s.Params[k], all)
	}
	for _, k := range slices.Sorted(maps.Keys(s.Headers)) {
		c.template(ps, path(sp, "headers", k), s.Headers[k], all)
	}
	if s.Body != nil {
		if s.Method != "POST" {
			ps.at(path(sp, "body"), "a body needs method: POST")
		}
		c.bodyTemplates(ps, path(sp, "body"), s.Body, all)
	}
	if s.Records != nil {
		if _, err := jsonpath.Compile(*s.Records); err != nil {
			ps.atValue(s.recordsPath, "%v", err)
		}
	}
	for i, k := range s.PrimaryKey {
		if strings.TrimSpace(k) == "" {
			ps.atValue(path(sp, "primary_key", strconv.Itoa(i)), "empty field name")
		}
	}
	for _, k := range slices.Sorted(maps.Keys(s.Columns)) {
		if _, err := schema.ParseType(s.Columns[k]); err != nil {
			ps.atValue(path(sp, "columns", k), "%v", err)
		}
	}
	if inc := s.Incremental; inc != nil {
		ip := s.incrementalPath
		if s.Cursor == "" {
			ps.at(ip, "incremental needs cursor: name the field that orders records, such as updated_at")
		}
		if inc.Start != "" {
			c.template(ps, path(ip, "start"), string(inc.Start), varConfig)
		}
		if inc.Lookback != "" {
			if _, err := ParseLookback(string(inc.Lookback)); err != nil {
				ps.atValue(path(ip, "lookback"), "%v", err)
			}
		}
		if err := checkFormat(inc.Format); err != nil {
			ps.atValue(path(ip, "format"), "%v", err)
		}
	}
	c.checkPaginate(ps, s)
	for i, st := range s.IgnoreStatus {
		if st == 429 || st >= 500 {
			ps.atValue(path(sp, "ignore_status", strconv.Itoa(i)), "status %d is retried, it cannot be ignored", st)
		}
	}
	_ = name
}

func (c *Connector) checkPaginate(ps *problems, s *Stream) {
	pg, pp := s.Paginate, s.paginatePath
	allowed, ok := paginateFields[pg.Type]
	if !ok {
		ps.atValue(path(pp, "type"), "unknown pagination type %q", pg.Type)
		return
	}
	set := map[string]bool{
		"param": pg.Param != "", "start": pg.Start != nil, "size": pg.Size != 0, "size_param": pg.SizeParam != "",
		"cursor_path": pg.CursorPath != "", "field": pg.Field != "", "next_path": pg.NextPath != "",
		"has_more_path": pg.HasMorePath != "", "total_path": pg.TotalPath != "", "total_pages_path": pg.TotalPagesPath != "",
		"stop_on_empty": pg.StopOnEmpty != nil, "stop_on_short_page": pg.StopOnShortPage, "max_pages": pg.MaxPages != 0,
	}
	for _, k := range slices.Sorted(maps.Keys(set)) {
		if set[k] && !slices.Contains(allowed, k) {
			ps.at(path(pp, k), "%s is not used by %s pagination", k, pg.Type)
		}
	}
	for _, k := range []struct {
		name, val string
	}{{"cursor_path", pg.CursorPath}, {"next_path", pg.NextPath}, {"has_more_path", pg.HasMorePath}, {"total_path", pg.TotalPath}, {"total_pages_path", pg.TotalPagesPath}} {
		if k.val != "" {
			if _, err := jsonpath.Compile(k.val); err != nil {
				ps.atValue(path(pp, k.name), "%v", err)
			}
		}
	}
	if pg.Size != 0 && pg.SizeParam == "" && pg.Type != "offset" && !usesPage(s, "size") {
		ps.at(path(pp, "size"), "size needs size_param: the query parameter that carries the page size")
	}
	if pg.StopOnShortPage && pg.Size == 0 {
		ps.at(path(pp, "stop_on_short_page"), "stop_on_short_page needs size")
	}
	switch pg.Type {
	case "cursor":
		if pg.Param == "" && !usesPage(s, "cursor") {
			ps.at(pp, "cursor pagination needs param, or {{ page.cursor }} in params, headers or body")
		}
	case "last_record":
		if pg.Field == "" && len(s.PrimaryKey) != 1 {
			ps.at(pp, "last_record pagination needs field: the record field whose last value starts the next page")
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

func (c *Connector) bodyTemplates(ps *problems, p []string, v any, allow vars) {
	switch x := v.(type) {
	case string:
		c.template(ps, p, x, allow)
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(x)) {
			c.bodyTemplates(ps, path(p, k), x[k], allow)
		}
	case []any:
		for i, e := range x {
			c.bodyTemplates(ps, path(p, strconv.Itoa(i)), e, allow)
		}
	}
}

// template compiles src and checks the variables it reads.
func (c *Connector) template(ps *problems, p []string, src string, allow vars) {
	t, err := template.Parse(src)
	if err != nil {
		te, _ := err.(*template.Error)
		off := 0
		if te != nil {
			off = te.Offset
		}
		ps.atOffset(p, off, "%v", err)
		return
	}
	for _, r := range t.Refs() {
		var need vars
		switch r.Var {
		case "config":
			need = varConfig
			if r.Member != "" {
				if _, ok := c.Config[r.Member]; !ok {
					msg := fmt.Sprintf("unknown config parameter %q", r.Member)
					if hint := didYouMean(r.Member, slices.Sorted(maps.Keys(c.Config))); hint != "" {
						msg += fmt.Sprintf(" (did you mean %q?)", hint)
					} else {
						msg += " (declare it under config:)"
					}
					ps.atOffset(p, r.Offset, "%s", msg)
				}
			}
		case "parent":
			need = varParent
		case "page":
			need = varPage
			if r.Member != "" && !slices.Contains([]string{"number", "offset", "size", "cursor"}, r.Member) {
				ps.atOffset(p, r.Offset, "unknown page variable %q (want number, offset, size or cursor)", r.Member)
			}
		case "incremental":
			need = varIncremental
			if r.Member != "" && !slices.Contains([]string{"since", "start"}, r.Member) {
				ps.atOffset(p, r.Offset, "unknown incremental variable %q (want since or start)", r.Member)
			}
		case "stream":
			need = varStream
		}
		if allow&need == 0 {
			var why string
			switch need {
			case varParent:
				why = "parent is only available in child streams (set parent:)"
			default:
				why = fmt.Sprintf("%s is not available here", r.Var)
			}
			ps.atOffset(p, r.Offset, "%s", why)
		}
	}
}

// checkParents resolves parent links and rejects cycles.
func (c *Connector) checkParents(ps *problems) {
	for _, name := range c.StreamOrder {
		s := c.Streams[name]
		if s == nil || s.Parent == nil {
			continue
		}
		pp := path(s.yamlPath, "parent")
		parent, ok := c.Streams[s.Parent.Stream]
		if !ok || parent == nil {
			msg := fmt.Sprintf("unknown parent stream %q", s.Parent.Stream)
			if hint := didYouMean(s.Parent.Stream, c.StreamOrder); hint != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", hint)
			}
			ps.atValue(pp, "%s", msg)
			continue
		}
		if s.Parent.Stream == name {
			ps.atValue(pp, "a stream cannot be its own parent")
			continue
		}
		// Walk up the chain looking for a cycle.
		seen := map[string]bool{name: true}
		for cur := parent; cur != nil && cur.Parent != nil; cur = c.Streams[cur.Parent.Stream] {
			if seen[cur.Parent.Stream] {
				ps.atValue(pp, "parent streams form a cycle through %q", cur.Parent.Stream)
				break
			}
			seen[cur.Parent.Stream] = true
		}
		if len(s.Parent.Fields) == 0 {
			if len(parent.PrimaryKey) == 0 {
				ps.at(pp, "parent stream %q has no primary_key: set parent.fields to say which parent fields identify it", s.Parent.Stream)
				continue
			}
			s.Parent.Fields = map[string]string{}
			for _, k := range parent.PrimaryKey {
				s.Parent.Fields[s.Parent.Stream+"_"+k] = k
			}
		}
	}
}

// ParseDuration parses a Go duration with an extra unit d (24h).
func ParseDuration(s string) (time.Duration, error) {
	var total time.Duration
	rest := s
	for rest != "" {
		i := strings.IndexByte(rest, 'd')
		if i < 0 {
			d, err := time.ParseDuration(rest)
			if err != nil {
				return 0, fmt.Errorf("invalid duration %q (examples: 500ms, 30s, 2h, 3d)", s)
			}
			return total + d, nil
		}
		n, err := strconv.ParseFloat(rest[:i], 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("invalid duration %q (examples: 500ms, 30s, 2h, 3d)", s)
		}
		total += time.Duration(n * float64(24*time.Hour))
		rest = rest[i+1:]
	}
	if total < 0 {
		return 0, fmt.Errorf("invalid duration %q: negative", s)
	}
	return total, nil
}

// Lookback is a parsed incremental lookback: a duration for timestamp
// cursors or an amount for numeric ones.
type Lookback struct {
	Duration time.Duration
	Amount   int64
	IsAmount bool
}

// ParseLookback parses "2h", "3d" or "100".
func ParseLookback(s string) (Lookback, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 {
			return Lookback{}, fmt.Errorf("lookback %q is negative", s)
		}
		return Lookback{Amount: n, IsAmount: true}, nil
	}
	d, err := ParseDuration(s)
	if err != nil {
		return Lookback{}, fmt.Errorf("invalid lookback %q: want a duration such as 2h or 3d, or a number for integer cursors", s)
	}
	return Lookback{Duration: d}, nil
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

// convertParam converts a config value to the parameter's declared type.
func convertParam(p *ConfigParam, v any) (any, error) {
	switch p.Type {
	case "", "string":
		s, err := scalarString(v)
		if err != nil {
			return nil, err
		}
		return s, nil
	case "integer":
		switch x := v.(type) {
		case int, int64, uint64:
			s, _ := scalarString(x)
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%v is not an integer", v)
			}
			return n, nil
		case string:
			n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%q is not an integer", x)
			}
			return n, nil
		}
		return nil, fmt.Errorf("%v is not an integer", v)
	case "number":
		switch x := v.(type) {
		case int, int64, uint64, float64:
			s, _ := scalarString(x)
			f, _ := strconv.ParseFloat(s, 64)
			return f, nil
		case string:
			f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
			if err != nil {
				return nil, fmt.Errorf("%q is not a number", x)
			}
			return f, nil
		}
		return nil, fmt.Errorf("%v is not a number", v)
	case "boolean":
		switch x := v.(type) {
		case bool:
			return x, nil
		case string:
			b, err := strconv.ParseBool(strings.TrimSpace(x))
			if err != nil {
				return nil, fmt.Errorf("%q is not a boolean", x)
			}
			return b, nil
		}
		return nil, fmt.Errorf("%v is not a boolean", v)
	}
	return nil, fmt.Errorf("unknown parameter type %q", p.Type)
}

// CheckOrigin reports whether s is an origin, as http.credential_origins
// lists them: an http or https URL with a host and nothing after it.
func CheckOrigin(s string) error {
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
