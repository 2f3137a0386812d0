package spec

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"

	"github.com/ferry-dev/ferry/internal/component"
)

// Section is a part of a file that configures one registered component:
// a mapping whose type field names the component, and whose other fields
// belong to it. Config is a pointer to the component's registered
// configuration type, decoded strictly.
type Section struct {
	// Type is the component's name, as written ("postgres").
	Type string
	// Config is the decoded configuration, e.g. *postgres.Config.
	Config any
}

// DestinationSection is a pipeline's destination: (or state:) section.
type DestinationSection struct{ Section }

// UnmarshalYAML decodes the section into the registered destination's
// configuration type.
func (s *DestinationSection) UnmarshalYAML(n ast.Node) error {
	return s.decode(component.Destination, n, "")
}

// JSONSchema describes every registered destination.
func (DestinationSection) JSONSchema() map[string]any {
	return sectionSchema(component.Destination, "", "Where rows go: type names the destination; the other fields are its own.")
}

// AuthSection is a connector's auth: section.
type AuthSection struct{ Section }

// UnmarshalYAML decodes the section into the registered auth scheme's
// configuration type.
func (s *AuthSection) UnmarshalYAML(n ast.Node) error {
	return s.decode(component.Auth, n, "")
}

// JSONSchema describes every registered auth scheme.
func (AuthSection) JSONSchema() map[string]any {
	return sectionSchema(component.Auth, "", "How requests authenticate: type names the scheme; the other fields are its own.")
}

// decode reads the type field of mapping node n, and decodes the other
// fields strictly into a new configuration of that component.
func (s *Section) decode(kind component.Kind, n ast.Node, defaultType string) error {
	m := mapping(n)
	if m == nil {
		return fmt.Errorf("%s must be a mapping with a type field", kind)
	}
	typ := defaultType
	rest := *m
	rest.Values = nil
	for _, mv := range m.Values {
		if keyString(mv.Key) == "type" {
			if sv, ok := unwrap(mv.Value).(*ast.StringNode); ok {
				typ = sv.Value
			} else {
				typ = mv.Value.String()
			}
			continue
		}
		rest.Values = append(rest.Values, mv)
	}
	info, err := component.Lookup(kind, typ)
	if err != nil {
		return err
	}
	cfg := info.Config()
	if len(rest.Values) > 0 {
		if err := yaml.NodeToValue(&rest, cfg); err != nil {
			return err
		}
	}
	s.Type, s.Config = typ, cfg
	return nil
}

// componentKey is the annotation that marks a component's schema, so that
// a problem in it can name the component.
const componentKey = "x-ferry-component"

// sectionSchema returns the schema of a section of kind: the type field
// with the registered names, and per name the component's own fields.
// With a defaultType, a section without type is that component.
func sectionSchema(kind component.Kind, defaultType, doc string) map[string]any {
	infos := component.List(kind)
	names := make([]any, len(infos))
	defs := map[string]any{}
	var allOf []any
	for i, info := range infos {
		names[i] = info.Name
		s := structSchema(info.ConfigType())
		if shared, ok := s["$defs"].(map[string]any); ok {
			for k, v := range shared {
				defs[k] = v
			}
			delete(s, "$defs")
		}
		props := s["properties"].(map[string]any)
		props["type"] = map[string]any{"const": info.Name, "description": info.Summary}
		s[componentKey] = info.ID()
		if info.Summary != "" {
			s["description"] = info.Summary
		}
		defs[info.ID()] = s
		cond := map[string]any{"properties": map[string]any{"type": map[string]any{"const": info.Name}}, "required": []any{"type"}}
		if info.Name == defaultType {
			cond = map[string]any{"anyOf": []any{map[string]any{"not": map[string]any{"required": []any{"type"}}}, cond}}
		}
		allOf = append(allOf, map[string]any{"if": cond, "then": map[string]any{"$ref": "#/$defs/" + info.ID()}})
	}
	out := map[string]any{
		"type":        "object",
		"description": doc,
		"properties":  map[string]any{"type": map[string]any{"enum": names}},
		"$defs":       defs,
	}
	if defaultType == "" {
		out["required"] = []any{"type"}
	}
	if len(allOf) > 0 {
		out["allOf"] = allOf
	}
	return out
}

// configWalker visits every configuration value reachable from a decoded
// file, with its YAML path: structs by their yaml field names, mappings by
// key, sequences by index, and a Section's component configuration at the
// section's own path.
type configWalker func(v reflect.Value, p []string)

func (fn configWalker) walk(v reflect.Value, p []string) {
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return
		}
		v = v.Elem()
	}
	switch v.Kind() {
	case reflect.Struct:
		if cfg, ok := sectionConfig(v); ok {
			fn.walk(cfg, p)
			return
		}
		if v.CanAddr() {
			fn(v.Addr(), p)
		}
		for _, f := range fieldsOf(v.Type()) {
			fn.walk(v.FieldByIndex(f.Index), path(p, f.Name))
		}
	case reflect.Map:
		if v.Type().Key().Kind() != reflect.String {
			return
		}
		for _, k := range v.MapKeys() {
			fn.walk(v.MapIndex(k), path(p, k.String()))
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			fn.walk(v.Index(i), path(p, strconv.Itoa(i)))
		}
	}
}

// provisionAll runs every Provisioner, then every Validator, reachable
// from root (a pointer), each with a Checker at its own path.
func provisionAll(ps *problems, conn *Connector, root any, base []string) {
	walker := func(call func(v reflect.Value, c *Checker)) configWalker {
		return func(v reflect.Value, p []string) {
			call(v, &Checker{ps: ps, base: p, conn: conn})
		}
	}
	rv := reflect.ValueOf(root)
	walker(func(v reflect.Value, c *Checker) {
		if pv, ok := v.Interface().(Provisioner); ok {
			pv.Provision(c)
		}
	}).walk(rv, base)
	walker(func(v reflect.Value, c *Checker) {
		if vv, ok := v.Interface().(Validator); ok {
			vv.Validate(c)
		}
	}).walk(rv, base)
}

// stringField is one string of a configuration, with its path, its
// field's secret tag, and a way to replace it.
type stringField struct {
	value  string
	set    func(string)
	path   []string
	secret string // the field's secret tag
}

// stringsOf lists every string reachable from v (a pointer): in struct
// fields, sequences, mappings (keys are not values) and values of
// interface type (a request body), each with a setter that writes
// through to where it is held.
func stringsOf(v any, base []string) []stringField {
	var out []stringField
	// walk visits v; replace puts a new value where v is held.
	var walk func(v reflect.Value, p []string, secret string, replace func(reflect.Value))
	walk = func(v reflect.Value, p []string, secret string, replace func(reflect.Value)) {
		switch v.Kind() {
		case reflect.Pointer:
			if !v.IsNil() {
				e := v.Elem()
				walk(e, p, secret, e.Set)
			}
		case reflect.Interface:
			if !v.IsNil() {
				walk(v.Elem(), p, secret, replace)
			}
		case reflect.String:
			typ := v.Type()
			out = append(out, stringField{value: v.String(), path: p, secret: secret, set: func(s string) {
				replace(reflect.ValueOf(s).Convert(typ))
			}})
		case reflect.Struct:
			if cfg, ok := sectionConfig(v); ok {
				walk(cfg, p, "", cfg.Set)
				return
			}
			for _, f := range fieldsOf(v.Type()) {
				fv := v.FieldByIndex(f.Index)
				walk(fv, path(p, f.Name), f.Secret, fv.Set)
			}
		case reflect.Slice:
			for i := 0; i < v.Len(); i++ {
				e := v.Index(i)
				walk(e, path(p, strconv.Itoa(i)), secret, e.Set)
			}
		case reflect.Map:
			if v.Type().Key().Kind() != reflect.String {
				return
			}
			for _, k := range v.MapKeys() {
				m, key := v, k
				walk(v.MapIndex(k), path(p, k.String()), secret, func(nv reflect.Value) { m.SetMapIndex(key, nv) })
			}
		}
	}
	walk(reflect.ValueOf(v), base, "", func(reflect.Value) {})
	return out
}

// deepCopy returns a copy of a configuration value (a pointer) that shares
// nothing mutable with it.
func deepCopy(v any) any {
	if v == nil {
		return nil
	}
	return copyValue(reflect.ValueOf(v)).Interface()
}

func copyValue(v reflect.Value) reflect.Value {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return v
		}
		out := reflect.New(v.Type().Elem())
		out.Elem().Set(copyValue(v.Elem()))
		return out
	case reflect.Interface:
		if v.IsNil() {
			return v
		}
		out := reflect.New(v.Type()).Elem()
		out.Set(copyValue(v.Elem()))
		return out
	case reflect.Struct:
		out := reflect.New(v.Type()).Elem()
		out.Set(v) // unexported fields keep their values
		for i := 0; i < v.NumField(); i++ {
			if out.Field(i).CanSet() {
				out.Field(i).Set(copyValue(v.Field(i)))
			}
		}
		return out
	case reflect.Map:
		if v.IsNil() {
			return v
		}
		out := reflect.MakeMapWithSize(v.Type(), v.Len())
		for _, k := range v.MapKeys() {
			out.SetMapIndex(k, copyValue(v.MapIndex(k)))
		}
		return out
	case reflect.Slice:
		if v.IsNil() {
			return v
		}
		out := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		for i := 0; i < v.Len(); i++ {
			out.Index(i).Set(copyValue(v.Index(i)))
		}
		return out
	}
	return v
}

// unknownInComponent explains an unknown field of a component's section:
// a field another component of the same kind has is "not used by" this
// one.
func unknownInComponent(id, prop string) string {
	kind, name, ok := strings.Cut(id, ".")
	if !ok {
		return ""
	}
	for _, info := range component.List(component.Kind(kind)) {
		if info.Name == name {
			continue
		}
		for _, f := range fieldsOf(info.ConfigType()) {
			if f.Name == prop {
				return fmt.Sprintf("%s is not used by the %s %s", prop, name, kind)
			}
		}
	}
	return ""
}

// sectionConfig returns the configuration of a Section, or of a struct
// that embeds one (DestinationSection, AuthSection).
func sectionConfig(v reflect.Value) (reflect.Value, bool) {
	st := reflect.TypeFor[Section]()
	if v.Type() == st {
		return v.FieldByName("Config"), true
	}
	for i := 0; i < v.NumField(); i++ {
		if sf := v.Type().Field(i); sf.Anonymous && sf.Type == st {
			return v.Field(i).FieldByName("Config"), true
		}
	}
	return reflect.Value{}, false
}
