package spec

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/schema"
)

// A configuration type describes its fields with struct tags, from which
// the JSON Schema (validation, editors) and the reference tables of the
// docs are generated:
//
//	yaml:"name,omitempty"  the field's name in files (",inline" embeds a struct's fields)
//	doc:"…"                what the field means, one or two sentences
//	required:"true"        the field must be given
//	enum:"a,b,c"           the values a string field takes
//	default:"…"            the value used when the field is absent (docs only)
//	pattern:"…"            a regular expression a string must match
//	min:"1", max:"64"      bounds: minLength for strings, minimum/maximum for numbers
//	secret:"true"          the value is a secret (redacted everywhere)
//	secret:"url"           the password of the URL is a secret
//	def:"duration"         the value has a shared shape: template, templates, duration, path
//	keys:"^[a-z_]+$"       the keys of a mapping must match this pattern
//	unique:"true"          the items of a sequence must differ
//	exclusiveMin:"0"       a number must be greater than this
//
// A type can describe itself instead by implementing SchemaDescriber.

// SchemaDescriber is implemented by configuration types whose JSON Schema
// is not what their Go shape says (a string or a list, a scalar or a
// mapping). It is called on the zero value.
type SchemaDescriber interface {
	JSONSchema() map[string]any
}

var describerType = reflect.TypeFor[SchemaDescriber]()

// sharedDefs are the shapes the def tag names.
var sharedDefs = map[string]map[string]any{
	"template":  {"type": "string", "description": "A string with {{ expression }} parts evaluated per request."},
	"templates": {"type": "object", "additionalProperties": map[string]any{"type": []any{"string", "number", "boolean"}}},
	"duration":  {"type": "string", "pattern": `^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h|d))+$`, "description": "A duration such as 500ms, 30s, 2h or 3d."},
	"path":      {"type": "string", "description": "A dotted path into a JSON document, such as data.items or paging.next.after; * matches every element."},
	"scalar":    {"type": []any{"string", "number", "boolean"}},
}

// generator builds one JSON Schema document, collecting shared shapes
// under $defs.
type generator struct {
	defs map[string]any
}

func newGenerator() *generator { return &generator{defs: map[string]any{}} }

// document returns the schema of root as a standalone document.
func (g *generator) document(id, title, description string, root reflect.Type) map[string]any {
	doc := g.schema(root)
	doc["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	doc["$id"] = id
	doc["title"] = title
	doc["description"] = description
	if len(g.defs) > 0 {
		doc["$defs"] = g.defs
	}
	return doc
}

// hoist moves the $defs of a describer's schema into the document's.
func (g *generator) hoist(s map[string]any) map[string]any {
	if defs, ok := s["$defs"].(map[string]any); ok {
		for k, v := range defs {
			g.defs[k] = v
		}
		delete(s, "$defs")
	}
	return s
}

// enumTypes are the string types of other packages whose values are a
// closed list.
var enumTypes = map[reflect.Type][]string{}

func init() {
	for _, m := range dest.Modes {
		enumTypes[reflect.TypeFor[dest.Mode]()] = append(enumTypes[reflect.TypeFor[dest.Mode]()], string(m))
	}
	for _, p := range schema.Policies {
		enumTypes[reflect.TypeFor[schema.Policy]()] = append(enumTypes[reflect.TypeFor[schema.Policy]()], string(p))
	}
	for _, n := range schema.Nestings {
		enumTypes[reflect.TypeFor[schema.Nesting]()] = append(enumTypes[reflect.TypeFor[schema.Nesting]()], string(n))
	}
}

// schema returns the JSON Schema of a Go type.
func (g *generator) schema(t reflect.Type) map[string]any {
	if t.Kind() == reflect.Pointer {
		return g.schema(t.Elem())
	}
	if values, ok := enumTypes[t]; ok {
		enum := make([]any, len(values))
		for i, v := range values {
			enum[i] = v
		}
		return map[string]any{"enum": enum}
	}
	if t.Implements(describerType) {
		return g.hoist(reflect.Zero(t).Interface().(SchemaDescriber).JSONSchema())
	}
	if reflect.PointerTo(t).Implements(describerType) {
		return g.hoist(reflect.New(t).Interface().(SchemaDescriber).JSONSchema())
	}
	switch t.Kind() {
	case reflect.Pointer:
		return g.schema(t.Elem())
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Slice, reflect.Array:
		return map[string]any{"type": "array", "items": g.schema(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": g.schema(t.Elem())}
	case reflect.Struct:
		return g.structSchema(t)
	}
	return map[string]any{} // any value
}

// StructSchema returns the JSON Schema of a configuration struct, for
// SchemaDescriber implementations (its shared shapes under $defs, which
// the document generator hoists).
func StructSchema(t reflect.Type) map[string]any { return structSchema(t) }

// structSchema returns the JSON Schema of a configuration struct, with
// the shared shapes it uses under $defs.
func structSchema(t reflect.Type) map[string]any {
	g := newGenerator()
	s := g.structSchema(t)
	if len(g.defs) > 0 {
		s["$defs"] = g.defs
	}
	return s
}

// field is one configuration field as files spell it.
type field struct {
	Name     string
	Type     reflect.Type
	Index    []int
	Doc      string
	Required bool
	Enum     []string
	Default  string
	Secret   string
	tag      reflect.StructTag
}

// fieldsOf lists the fields of a configuration struct, embedded ",inline"
// structs flattened, in declaration order.
func fieldsOf(t reflect.Type) []field {
	var out []field
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		if strings.Contains(opts, "inline") || (f.Anonymous && name == "") {
			et := f.Type
			if et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			for _, sub := range fieldsOf(et) {
				sub.Index = append([]int{i}, sub.Index...)
				out = append(out, sub)
			}
			continue
		}
		if name == "" {
			continue
		}
		fl := field{Name: name, Type: f.Type, Index: []int{i}, Doc: f.Tag.Get("doc"), Required: f.Tag.Get("required") == "true",
			Default: f.Tag.Get("default"), Secret: f.Tag.Get("secret"), tag: f.Tag}
		if e := f.Tag.Get("enum"); e != "" {
			fl.Enum = strings.Split(e, ",")
		}
		out = append(out, fl)
	}
	return out
}

// structSchema returns the object schema of a configuration struct.
func (g *generator) structSchema(t reflect.Type) map[string]any {
	props := map[string]any{}
	var required []string
	for _, f := range fieldsOf(t) {
		var ps map[string]any
		if def := f.tag.Get("def"); def != "" {
			shape, ok := sharedDefs[def]
			if !ok {
				panic(fmt.Sprintf("spec: %s.%s: unknown def %q", t, f.Name, def))
			}
			g.defs[def] = shape
			ps = map[string]any{"$ref": "#/$defs/" + def}
		} else {
			ps = g.schema(f.Type)
		}
		if f.Doc != "" {
			ps["description"] = f.Doc
		}
		if len(f.Enum) > 0 {
			enum := make([]any, len(f.Enum))
			for i, e := range f.Enum {
				enum[i] = e
			}
			delete(ps, "type")
			ps["enum"] = enum
		}
		if p := f.tag.Get("pattern"); p != "" {
			ps["pattern"] = p
		}
		if p := f.tag.Get("keys"); p != "" {
			ps["propertyNames"] = map[string]any{"pattern": p}
		}
		if f.tag.Get("unique") == "true" {
			ps["uniqueItems"] = true
		}
		for tag, kw := range map[string][3]string{"min": {"minLength", "minimum", "minProperties"}, "max": {"maxLength", "maximum", "maxProperties"}, "exclusiveMin": {"", "exclusiveMinimum", ""}} {
			v := f.tag.Get(tag)
			if v == "" {
				continue
			}
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				panic(fmt.Sprintf("spec: %s.%s: %s:%q is not a number", t, f.Name, tag, v))
			}
			switch ps["type"] {
			case "string":
				ps[kw[0]] = n
			case "object":
				ps[kw[2]] = n
			default:
				ps[kw[1]] = n
			}
		}
		if f.Default != "" {
			ps["default"] = defaultValue(f.Default, ps["type"])
		}
		props[f.Name] = ps
		if f.Required {
			required = append(required, f.Name)
		}
	}
	s := map[string]any{"type": "object", "additionalProperties": false, "properties": props}
	if len(required) > 0 {
		s["required"] = required
	}
	return s
}

// defaultValue types a default tag for the schema.
func defaultValue(v string, typ any) any {
	switch typ {
	case "integer":
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
	case "number":
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			return f
		}
	case "boolean":
		if b, err := strconv.ParseBool(v); err == nil {
			return b
		}
	}
	return v
}

// marshalSchema renders a schema document with sorted keys and two-space
// indentation, the form the committed files have.
func marshalSchema(doc map[string]any) []byte {
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		panic(err) // maps of strings, numbers and slices only
	}
	return append(b, '\n')
}
