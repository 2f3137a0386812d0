package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"weak"

	"github.com/goccy/go-yaml"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// Schema URLs, as the documents' $id.
const (
	ConnectorSchemaURL = "https://ferry.dev/schema/connector.schema.json"
	PipelineSchemaURL  = "https://ferry.dev/schema/pipeline.schema.json"
)

// SchemaJSON returns the JSON Schema of connector ("connector") or pipeline
// ("pipeline") files, for editors. It is generated from the registered
// components' configuration types, so it covers exactly the components
// built into this binary.
func SchemaJSON(kind string) ([]byte, error) {
	s, err := loadSchemas()
	if err != nil {
		return nil, err
	}
	switch kind {
	case "connector":
		return s.connectorJSON, nil
	case "pipeline":
		return s.pipelineJSON, nil
	}
	return nil, fmt.Errorf("no schema %q: want connector or pipeline", kind)
}

type schemas struct {
	connector, pipeline         *jsonschema.Schema
	connectorJSON, pipelineJSON []byte
	raw                         map[string]any // $id → parsed schema document
}

// pipelineSchema returns the schema document of pipeline files.
func pipelineSchema() map[string]any {
	return newGenerator().document(PipelineSchemaURL, "Ferry pipeline",
		"Binds a connector to config values, a destination and per-stream sync modes. See docs/connector-spec.md.", reflect.TypeFor[Pipeline]())
}

// schemaCache holds the compiled schemas weakly: a command that loads its
// files once (ferry run) does not keep several megabytes of schema alive
// for the whole sync, and the garbage collector's target (a multiple of
// the live heap) does not grow with them; a long-lived process that
// validates often compiles again only after a collection freed them.
var schemaCache struct {
	sync.Mutex
	p weak.Pointer[schemas]
}

// loadSchemas returns the generated and compiled schemas, compiling them
// when no caller holds them (after every component's init function has
// registered it).
func loadSchemas() (*schemas, error) {
	schemaCache.Lock()
	defer schemaCache.Unlock()
	if s := schemaCache.p.Value(); s != nil {
		return s, nil
	}
	s, err := compileSchemas()
	if err != nil {
		return nil, err
	}
	schemaCache.p = weak.Make(s)
	return s, nil
}

// compileSchemas generates the connector and pipeline schemas from the
// registered components and compiles them.
func compileSchemas() (*schemas, error) {
	s := &schemas{raw: map[string]any{}}
	s.connectorJSON = marshalSchema(connectorSchema())
	s.pipelineJSON = marshalSchema(pipelineSchema())
	c := jsonschema.NewCompiler()
	for _, f := range []struct {
		data []byte
		url  string
	}{{s.connectorJSON, ConnectorSchemaURL}, {s.pipelineJSON, PipelineSchemaURL}} {
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(f.data))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.url, err)
		}
		s.raw[f.url] = doc
		if err := c.AddResource(f.url, doc); err != nil {
			return nil, err
		}
	}
	var err error
	if s.connector, err = c.Compile(ConnectorSchemaURL); err != nil {
		return nil, fmt.Errorf("the generated connector schema: %w", err)
	}
	if s.pipeline, err = c.Compile(PipelineSchemaURL); err != nil {
		return nil, fmt.Errorf("the generated pipeline schema: %w", err)
	}
	return s, nil
}

// Kind tells a connector file from a pipeline file by its top-level keys.
func Kind(data []byte) string {
	f, err := ParseFile("", data)
	if err != nil {
		return ""
	}
	keys := f.Keys(nil)
	if slices.Contains(keys, "connector") || slices.Contains(keys, "destination") {
		return "pipeline"
	}
	return "connector"
}

// LoadPipeline reads and checks a pipeline file and its connector. It does
// not read environment variables or secret files: see Pipeline.Resolve.
func LoadPipeline(name string) (*Pipeline, error) {
	data, err := readLimited(name, "pipeline")
	if err != nil {
		return nil, err
	}
	return ParsePipeline(name, data)
}

// schemaProblems validates f at base against sch: it returns the problems
// found (to report with the meaning checks' own), or an error that is not
// about the file.
func schemaProblems(f *File, base []string, sch *jsonschema.Schema, s *schemas) (Problems, error) {
	err := validateSchema(f, base, sch, s)
	var ps Problems
	if err == nil || errors.As(err, &ps) {
		return ps, nil
	}
	return nil, err
}

// ParsePipeline checks pipeline YAML read from name; a connector path in it
// is resolved against name's directory. Every problem is reported at once:
// those the schema finds and those the meaning checks find.
func ParsePipeline(name string, data []byte) (*Pipeline, error) {
	f, err := ParseFile(name, data)
	if err != nil {
		return nil, err
	}
	s, err := loadSchemas()
	if err != nil {
		return nil, err
	}
	found, err := schemaProblems(f, nil, s.pipeline, s)
	if err != nil {
		return nil, err
	}
	var p Pipeline
	if err := decode(f, nil, &p); err != nil {
		if len(found) > 0 {
			return nil, found.sort()
		}
		return nil, err
	}
	p.Source = f
	p.Dir = filepath.Dir(name)
	ps := &problems{file: f, list: found}
	if p.Connector.node != nil {
		p.Connector.Inline = decodeConnector(ps, f, []string{"connector"})
	} else {
		cpath := p.Connector.Path
		if !filepath.IsAbs(cpath) {
			cpath = filepath.Join(p.Dir, cpath)
		}
		conn, err := LoadConnector(cpath)
		if err != nil {
			var probs Problems
			if errors.As(err, &probs) {
				return nil, append(probs, ps.list...).sort()
			}
			ps.atValue([]string{"connector"}, "%v", err)
			return nil, ps.err()
		}
		p.Connector.Inline = conn
	}
	if p.Connector.Inline == nil {
		return nil, ps.err()
	}
	p.check(ps)
	if err := ps.err(); err != nil {
		return nil, err
	}
	return &p, nil
}

// decode decodes the node at base strictly into v.
func decode(f *File, base []string, v any) error {
	node := f.body()
	for _, seg := range base {
		node, _ = child(node, seg)
	}
	if node == nil {
		return Problems{{File: f.Name, Line: 1, Col: 1, Message: "the file is empty"}}
	}
	if err := yaml.NodeToValue(node, v); err != nil {
		return Problems{decodeProblem(f, err)}
	}
	return nil
}

// decodeProblem turns a decoding error into a problem at its token.
func decodeProblem(f *File, err error) Problem { return f.yamlProblem(nil, err) }

// generic converts the node at base to JSON-like values for the validator.
func generic(f *File, base []string) (any, error) {
	node := f.body()
	for _, seg := range base {
		node, _ = child(node, seg)
	}
	if node == nil {
		return nil, nil
	}
	var v any
	if err := yaml.NodeToValue(node, &v); err != nil {
		return nil, err
	}
	// Round-trip through JSON so numbers and maps have the types the
	// validator expects.
	data, err := json.Marshal(jsonable(v))
	if err != nil {
		return nil, err
	}
	return jsonschema.UnmarshalJSON(bytes.NewReader(data))
}

// jsonable turns YAML maps with non-string keys into string-keyed maps.
func jsonable(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = jsonable(e)
		}
		return x
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[fmt.Sprint(k)] = jsonable(e)
		}
		return m
	case []any:
		for i, e := range x {
			x[i] = jsonable(e)
		}
		return x
	}
	return v
}

var printer = message.NewPrinter(language.English)

// validateSchema checks the node at base against sch and reports every
// violation at its position.
func validateSchema(f *File, base []string, sch *jsonschema.Schema, s *schemas) error {
	v, err := generic(f, base)
	if err != nil {
		return Problems{f.yamlProblem(base, err)}
	}
	if v == nil {
		return Problems{{File: f.Name, Line: 1, Col: 1, Message: "the file is empty"}}
	}
	err = sch.Validate(v)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return err
	}
	ps := &problems{file: f}
	for _, leaf := range leaves(ve) {
		at := path(base, leaf.InstanceLocation...)
		switch k := leaf.ErrorKind.(type) {
		case *keyKind:
			ps.at(k.locate(f, at), "%s", k.msg)
		case *kind.AdditionalProperties:
			allowed := s.allowedProperties(leaf.SchemaURL)
			comp, _ := s.objectNode(leaf.SchemaURL)[componentKey].(string)
			for _, prop := range k.Properties {
				if msg := unknownInComponent(comp, prop); msg != "" {
					ps.at(path(at, prop), "%s", msg)
					continue
				}
				msg := fmt.Sprintf("unknown field %q", prop)
				if hint := didYouMean(prop, allowed); hint != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", hint)
				} else if len(allowed) > 0 {
					msg += fmt.Sprintf(" (expected one of: %s)", strings.Join(allowed, ", "))
				}
				ps.at(path(at, prop), "%s", msg)
			}
		case *kind.Required:
			for _, prop := range k.Missing {
				ps.at(at, "missing required field %q", prop)
			}
		case *kind.Enum:
			var want []string
			for _, w := range k.Want {
				want = append(want, fmt.Sprint(w))
			}
			got := fmt.Sprint(k.Got)
			if hint := didYouMean(got, want); hint != "" {
				ps.atValue(at, "unknown value %q (did you mean %q?)", got, hint)
			} else {
				ps.atValue(at, "unknown value %q (want one of: %s)", got, strings.Join(want, ", "))
			}
		case *kind.Pattern:
			desc := s.schemaNode(strings.TrimSuffix(leaf.SchemaURL, "/pattern"))["description"]
			if d, ok := desc.(string); ok {
				ps.atValue(at, "invalid value %q: want %s", k.Got, lowerFirst(strings.TrimSuffix(d, ".")))
			} else {
				ps.atValue(at, "%s", leaf.ErrorKind.LocalizedString(printer))
			}
		default:
			ps.atValue(at, "%s", leaf.ErrorKind.LocalizedString(printer))
		}
	}
	return ps.err()
}

// leaves returns the most specific errors of a validation error tree. For
// oneOf/anyOf it keeps the branches that got furthest into the document,
// or the alternative error itself when every branch failed at once.
func leaves(e *jsonschema.ValidationError) []*jsonschema.ValidationError {
	if leaf := propertyNameLeaf(e); leaf != nil {
		return []*jsonschema.ValidationError{leaf}
	}
	if len(e.Causes) == 0 {
		return []*jsonschema.ValidationError{e}
	}
	switch e.ErrorKind.(type) {
	case *kind.OneOf, *kind.AnyOf:
		deepest := -1
		for _, c := range e.Causes {
			deepest = max(deepest, depth(c))
		}
		if deepest <= len(e.InstanceLocation) {
			// Every alternative failed at this value. Prefer the alternatives
			// whose type matched: their complaint is the real one.
			var typed []*jsonschema.ValidationError
			for _, c := range e.Causes {
				if !hasTypeError(c) {
					typed = append(typed, leaves(c)...)
				}
			}
			if len(typed) > 0 {
				return typed
			}
			if msg := alternatives(e); msg != "" {
				e.ErrorKind = messageKind(msg)
			}
			return []*jsonschema.ValidationError{{InstanceLocation: e.InstanceLocation, ErrorKind: e.ErrorKind, SchemaURL: e.SchemaURL}}
		}
		var out []*jsonschema.ValidationError
		for _, c := range e.Causes {
			if depth(c) == deepest {
				out = append(out, leaves(c)...)
			}
		}
		return out
	}
	var out []*jsonschema.ValidationError
	for _, c := range e.Causes {
		out = append(out, leaves(c)...)
	}
	return out
}

func hasTypeError(e *jsonschema.ValidationError) bool {
	if _, ok := e.ErrorKind.(*kind.Type); ok {
		return true
	}
	for _, c := range e.Causes {
		if len(c.InstanceLocation) == len(e.InstanceLocation) && hasTypeError(c) {
			return true
		}
	}
	return false
}

func depth(e *jsonschema.ValidationError) int {
	d := len(e.InstanceLocation)
	for _, c := range e.Causes {
		d = max(d, depth(c))
	}
	return d
}

// alternatives summarises the types a oneOf accepted, from its causes'
// type errors.
func alternatives(e *jsonschema.ValidationError) string {
	var want []string
	var got string
	for _, c := range e.Causes {
		for _, l := range leaves(c) {
			if t, ok := l.ErrorKind.(*kind.Type); ok {
				want = append(want, t.Want...)
				got = t.Got
			}
		}
	}
	if len(want) == 0 {
		return ""
	}
	slices.Sort(want)
	want = slices.Compact(want)
	return fmt.Sprintf("got %s, want %s", got, strings.Join(want, " or "))
}

type messageKind string

func (m messageKind) KeywordPath() []string                   { return nil }
func (m messageKind) LocalizedString(*message.Printer) string { return string(m) }

// allowedProperties returns the property names the schema at url allows,
// for "did you mean" hints.
func (s *schemas) allowedProperties(url string) []string {
	props, _ := s.objectNode(url)["properties"].(map[string]any)
	var names []string
	for k := range props {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

// objectNode returns the object schema an additionalProperties error
// names: the schema at url, or the one holding the keyword at url.
func (s *schemas) objectNode(url string) map[string]any {
	if m := s.schemaNode(url); m != nil {
		if _, ok := m["properties"]; ok {
			return m
		}
	}
	return s.schemaNode(strings.TrimSuffix(url, "/additionalProperties"))
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}

// schemaNode returns the schema object at url (a $id with a JSON pointer
// fragment), or nil.
func (s *schemas) schemaNode(url string) map[string]any {
	base, ptr, _ := strings.Cut(url, "#")
	doc := s.raw[base]
	node := doc
	for _, seg := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
		if seg == "" {
			continue
		}
		seg = strings.NewReplacer("~1", "/", "~0", "~").Replace(seg)
		switch x := node.(type) {
		case map[string]any:
			node = x[seg]
		case []any:
			var i int
			if _, err := fmt.Sscan(seg, &i); err != nil || i >= len(x) {
				return nil
			}
			node = x[i]
		default:
			return nil
		}
	}
	m, _ := node.(map[string]any)
	return m
}

// didYouMean returns the allowed name closest to got, if close enough.
func didYouMean(got string, allowed []string) string {
	best, bestDist := "", 1<<30
	for _, a := range hintCandidates(got, allowed) {
		d := levenshtein(strings.ToLower(got), strings.ToLower(a))
		if d < bestDist {
			best, bestDist = a, d
		}
	}
	if bestDist <= max(2, len(got)/3) {
		return best
	}
	return ""
}

func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
