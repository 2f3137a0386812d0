package rest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/ferry-dev/ferry/internal/httpx"
	"github.com/ferry-dev/ferry/internal/jsonpath"
	"github.com/ferry-dev/ferry/internal/spec"
)

// GraphQL makes a stream a GraphQL query: the request is a POST of the
// query and its variables, and with a Relay connection the records and
// the pagination (pageInfo { hasNextPage endCursor }) follow from the
// connection's path, with no hand-written paths. Errors in a 200 are
// errors; throttling errors are retried after the wait they give.
type GraphQL struct {
	// Query is the GraphQL document.
	Query string `yaml:"query" required:"true" min:"1" doc:"The GraphQL query. With connection, it declares the cursor and size variables ($after: String, $first: Int!) and selects the connection's nodes (or edges { node }) and pageInfo { hasNextPage endCursor }."`
	// Variables are the query's variables; strings in them are templates.
	Variables map[string]any `yaml:"variables,omitempty" doc:"The query's variables; strings are templates."`
	// Connection is the path, under data, of a Relay connection.
	Connection string `yaml:"connection,omitempty" def:"path" doc:"The path under data of a Relay connection (repository.issues): its nodes are the records, its pageInfo the pagination."`
	// PageSize is sent in the size variable (default 50).
	PageSize int `yaml:"page_size,omitempty" min:"1" default:"50" doc:"Records per page, sent in size_variable."`
	// CursorVariable and SizeVariable name the variables pagination sets.
	CursorVariable string `yaml:"cursor_variable,omitempty" min:"1" default:"after" doc:"The variable that receives the cursor (null on the first page)."`
	SizeVariable   string `yaml:"size_variable,omitempty" min:"1" default:"first" doc:"The variable that receives page_size."`
}

// provisionGraphQL turns a GraphQL stream into the request, records and
// pagination it means.
func provisionGraphQL(s *Stream) {
	q := s.GraphQL
	s.Method = "POST"
	vars := map[string]any{}
	for k, v := range q.Variables {
		vars[k] = v
	}
	if q.Connection != "" {
		size := q.PageSize
		if size == 0 {
			size = 50
		}
		vars[cmpOr(q.CursorVariable, "after")] = "{{ page.cursor }}"
		vars[cmpOr(q.SizeVariable, "first")] = size
		conn := "data." + q.Connection
		if !s.own.records {
			rec := conn + ".nodes"
			if sel := connectionFields(q.Query, q.Connection); sel["edges"] && !sel["nodes"] {
				rec = conn + ".edges.*.node"
			}
			s.Records = &rec
			s.recordsPath = join(s.yamlPath, "graphql", "connection")
		}
		if !s.own.paginate {
			s.Paginate = &Paginate{Type: "cursor", CursorPath: conn + ".pageInfo.endCursor", HasMorePath: conn + ".pageInfo.hasNextPage"}
			s.paginatePath = join(s.yamlPath, "graphql")
		}
	}
	s.Body = map[string]any{"query": q.Query, "variables": vars}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// checkGraphQL checks a GraphQL stream: what it may not set besides,
// its variables' templates, and that the query selects what the
// connection needs.
func checkGraphQL(chk *spec.Checker, s *Stream, allow spec.Vars) {
	q := s.GraphQL
	gc := chk.Abs(join(s.yamlPath, "graphql"))
	if s.own.body {
		chk.Abs(s.yamlPath).At([]string{"body"}, "a graphql stream's body is its query and variables: remove body")
	}
	if s.own.method == "GET" {
		chk.Abs(s.yamlPath).At([]string{"method"}, "a graphql stream is a POST")
	}
	for k, v := range q.Variables {
		bodyTemplates(gc, []string{"variables", k}, v, allow)
	}
	if q.Connection == "" {
		for _, f := range []struct {
			name string
			set  bool
		}{{"page_size", q.PageSize != 0}, {"cursor_variable", q.CursorVariable != ""}, {"size_variable", q.SizeVariable != ""}} {
			if f.set {
				gc.At([]string{f.name}, "%s applies to a connection: set connection", f.name)
			}
		}
		if s.Records == nil {
			gc.At(nil, "a graphql stream needs connection (a Relay connection under data) or records (the path of the records, such as data.viewer.repositories.nodes)")
		}
		return
	}
	if _, err := jsonpath.Compile(q.Connection); err != nil {
		gc.AtValue([]string{"connection"}, "%v", err)
		return
	}
	if s.own.paginate {
		chk.Abs(s.yamlPath).At([]string{"paginate"}, "a graphql connection paginates by its pageInfo: remove paginate")
	}
	sel := connectionFields(q.Query, q.Connection)
	if sel == nil {
		gc.AtValue([]string{"connection"}, "the query selects no field at %s", q.Connection)
		return
	}
	if !sel["nodes"] && !sel["edges"] && !s.own.records {
		gc.AtValue([]string{"connection"}, "the query selects neither nodes nor edges { node } of %s", q.Connection)
	}
	if !sel["pageInfo"] {
		gc.AtValue([]string{"connection"}, "the query does not select pageInfo { hasNextPage endCursor } of %s", q.Connection)
	}
	for _, v := range []string{cmpOr(q.CursorVariable, "after"), cmpOr(q.SizeVariable, "first")} {
		if !strings.Contains(q.Query, "$"+v) {
			gc.At([]string{"query"}, "the query does not use $%s, which pagination sets", v)
		}
	}
}

// connectionFields returns the fields selected directly under the field
// at path (response names, dotted) of the query's first operation, nil
// when the query selects nothing there. It reads as much GraphQL as a
// selection's shape needs: names, aliases, arguments, directives,
// strings, comments and inline fragments (whose fields count as the
// selection's); a named fragment's fields are not seen.
func connectionFields(query, path string) map[string]bool {
	want := strings.Split(path, ".")
	toks := gqlTokens(query)
	// Find the first operation's selection set, skipping fragment
	// definitions and variable definitions (whose defaults may hold
	// braces).
	i := 0
	for i < len(toks) && toks[i] != "{" {
		switch toks[i] {
		case "fragment":
			for i < len(toks) && toks[i] != "{" {
				i++
			}
			i = skipBlock(toks, i)
			continue
		case "(":
			i = skipParens(toks, i)
		}
		i++
	}
	var stack []string // the response names of the open selections
	last := ""         // the last field's response name at this level
	out := map[string]bool{}
	found := false
	for ; i < len(toks); i++ {
		switch t := toks[i]; {
		case t == "{":
			stack = append(stack, last)
			last = ""
		case t == "}":
			stack = stack[:len(stack)-1]
			if len(stack) == 0 {
				i = len(toks)
			}
		case t == "(":
			i = skipParens(toks, i)
		case t == "...":
			if i+1 < len(toks) && toks[i+1] == "on" {
				// An inline fragment's fields count at this level.
				i += 2
				if i+1 < len(toks) && toks[i+1] == "{" {
					i++
					stack = append(stack, fragment)
				}
			} else {
				i++ // a named spread: its fields are not seen
			}
		case t == "@":
			i++ // the directive's name; its arguments follow as "("
		case t == ":":
			i++ // alias: name, and the response name is the alias
		case isName(t):
			last = t
			if equalPath(stack, want) {
				out[t], found = true, true
			}
		}
	}
	if !found {
		return nil
	}
	return out
}

// fragment marks an inline fragment's selection on the stack.
const fragment = "\x00fragment"

// equalPath reports whether the open selections are the path.
func equalPath(stack, want []string) bool {
	var names []string
	for _, s := range stack {
		if s != fragment {
			names = append(names, s)
		}
	}
	if len(names) != len(want)+1 {
		return false
	}
	for i, w := range want {
		if names[i+1] != w {
			return false
		}
	}
	return true
}

func isName(t string) bool {
	if t == "" {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func skipParens(toks []string, i int) int {
	depth := 0
	for ; i < len(toks); i++ {
		switch toks[i] {
		case "(":
			depth++
		case ")":
			if depth--; depth == 0 {
				return i
			}
		}
	}
	return i
}

func skipBlock(toks []string, i int) int {
	depth := 0
	for ; i < len(toks); i++ {
		switch toks[i] {
		case "{":
			depth++
		case "}":
			if depth--; depth == 0 {
				return i + 1
			}
		}
	}
	return i
}

// gqlTokens splits a GraphQL document into names, punctuation and
// values, dropping comments, commas and the contents of strings.
func gqlTokens(s string) []string {
	var out []string
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '#':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',':
			i++
		case strings.HasPrefix(s[i:], `"""`):
			end := strings.Index(s[i+3:], `"""`)
			if end < 0 {
				return out
			}
			out = append(out, `""`)
			i += 3 + end + 3
		case c == '"':
			j := i + 1
			for j < len(s) && s[j] != '"' {
				if s[j] == '\\' {
					j++
				}
				j++
			}
			out = append(out, `""`)
			i = j + 1
		case strings.HasPrefix(s[i:], "..."):
			out = append(out, "...")
			i += 3
		case strings.ContainsRune("{}():@$=[]!|&", rune(c)):
			out = append(out, string(c))
			i++
		default:
			j := i
			for j < len(s) && !strings.ContainsRune("{}():@$=[]!|&,#\" \t\n\r", rune(s[j])) {
				j++
			}
			if j == i {
				j++
			}
			out = append(out, s[i:j])
			i = j
		}
	}
	return out
}

// gqlError is one of a GraphQL response's errors.
type gqlError struct {
	Message    string         `json:"message"`
	Type       string         `json:"type"` // GitHub: RATE_LIMITED
	Path       []any          `json:"path"`
	Extensions map[string]any `json:"extensions"`
}

// gqlCost is Shopify's cost extension.
type gqlCost struct {
	Requested      float64 `json:"requestedQueryCost"`
	ThrottleStatus struct {
		Maximum     float64 `json:"maximumAvailable"`
		Available   float64 `json:"currentlyAvailable"`
		RestoreRate float64 `json:"restoreRate"`
	} `json:"throttleStatus"`
}

var (
	errorsPath     = jsonpath.MustCompile("errors")
	extensionsPath = jsonpath.MustCompile("extensions")
	dataPath       = jsonpath.MustCompile("data")
)

// throttleCodes are the error codes and types that mean "too many
// requests, try again later".
var throttleCodes = map[string]bool{"THROTTLED": true, "RATE_LIMITED": true, "TOO_MANY_REQUESTS": true, "RATE_LIMIT_EXCEEDED": true}

// graphqlVerdict reads a GraphQL response's errors: throttling is retried
// after the wait it gives; any other error fails the page, partial data
// or not, with the API's messages (a rule with action accept keeps
// partial data).
func (s *Source) graphqlVerdict(resp *httpx.Response, method string) httpx.Verdict {
	if resp.Status < 200 || resp.Status > 299 || !bytes.Contains(resp.Body, []byte(`"errors"`)) {
		return httpx.Verdict{}
	}
	raw, found, err := jsonpath.Lookup(resp.Body, errorsPath)
	if err != nil || !found {
		return httpx.Verdict{}
	}
	var errs []gqlError
	if json.Unmarshal(raw, &errs) != nil || len(errs) == 0 {
		return httpx.Verdict{}
	}
	var msgs []string
	size := 0
	throttled := ""
	for _, e := range errs {
		code, _ := e.Extensions["code"].(string)
		switch {
		case throttleCodes[strings.ToUpper(code)]:
			throttled = code
		case throttleCodes[strings.ToUpper(e.Type)]:
			throttled = e.Type
		}
		if size < 2048 {
			m := e.Message
			if len(e.Path) > 0 {
				m += fmt.Sprintf(" (at %v)", e.Path)
			}
			msgs = append(msgs, m)
			size += len(m)
		}
	}
	api := s.red.String(strings.Join(msgs, "; "))
	if len(api) > 2048 {
		api = api[:2048] + "…"
	}
	api = `the API says "` + strings.Join(strings.Fields(api), " ") + `"`
	if throttled != "" {
		rerr := &RuleError{Rule: "graphql throttling (" + throttled + ")", Method: method, URL: resp.URL, Status: resp.Status, API: api}
		return httpx.Verdict{Action: httpx.Retry, Wait: throttleWait(resp, errs), Err: rerr, Rule: rerr.Rule}
	}
	rerr := &RuleError{Rule: "graphql errors", Method: method, URL: resp.URL, Status: resp.Status, API: api}
	if d, ok, _ := jsonpath.Lookup(resp.Body, dataPath); ok && string(bytes.TrimSpace(d)) != "null" {
		rerr.Message = "the response has partial data and errors (a rule with action: accept keeps the data)"
	}
	return httpx.Verdict{Action: httpx.Fail, Err: rerr}
}

// throttleWait is how long a throttled GraphQL response asks to wait:
// an error's retryAfter, Shopify's cost (what the query needs beyond
// what is available, at the restore rate), or the reset of a spent rate
// limit in the headers (GitHub); 0 leaves it to the backoff.
func throttleWait(resp *httpx.Response, errs []gqlError) time.Duration {
	for _, e := range errs {
		for _, k := range []string{"retryAfter", "retry_after", "retryAfterSeconds"} {
			if v, ok := e.Extensions[k]; ok {
				if d := waitValue(numbers(jsonNumber(v)), time.Now()); d > 0 {
					return d
				}
			}
		}
	}
	if raw, ok, _ := jsonpath.Lookup(resp.Body, extensionsPath); ok {
		var ext struct {
			Cost *gqlCost `json:"cost"`
		}
		if json.Unmarshal(raw, &ext) == nil && ext.Cost != nil && ext.Cost.ThrottleStatus.RestoreRate > 0 {
			need := ext.Cost.Requested - ext.Cost.ThrottleStatus.Available
			if need > 0 {
				return time.Duration(math.Ceil(need/ext.Cost.ThrottleStatus.RestoreRate)) * time.Second
			}
			return time.Second
		}
	}
	if l, ok := httpx.ParseLimits(resp.Header, time.Now(), nil); ok && l.Exhausted(time.Now()) {
		return time.Until(l.Reset)
	}
	return 0
}

func jsonNumber(v any) any {
	if f, ok := v.(float64); ok {
		return json.Number(fmt.Sprint(f))
	}
	return v
}
