package spec

import (
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
)

// The JSON Schema, the Go types and docs/connector-spec.md describe the
// same files; these tests keep them in step.

func loadSchemaDoc(t *testing.T, kind string) map[string]any {
	t.Helper()
	data, err := SchemaJSON(kind)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

// resolve follows a local $ref.
func resolve(doc, node map[string]any) map[string]any {
	for {
		ref, ok := node["$ref"].(string)
		if !ok || !strings.HasPrefix(ref, "#/") {
			return node
		}
		cur := any(doc)
		for _, seg := range strings.Split(ref[2:], "/") {
			cur = cur.(map[string]any)[seg]
		}
		node = cur.(map[string]any)
	}
}

// properties returns an object schema's property names, looking through
// oneOf alternatives.
func properties(doc, node map[string]any) map[string]map[string]any {
	node = resolve(doc, node)
	out := map[string]map[string]any{}
	if props, ok := node["properties"].(map[string]any); ok {
		for k, v := range props {
			out[k] = v.(map[string]any)
		}
	}
	if alts, ok := node["oneOf"].([]any); ok {
		for _, a := range alts {
			for k, v := range properties(doc, a.(map[string]any)) {
				out[k] = v
			}
		}
	}
	return out
}

func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if tag == "" || tag == "-" || !f.IsExported() {
			continue
		}
		out[tag] = f.Type
	}
	return out
}

func elem(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Map || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	return t
}

// compare walks a struct type and its schema together.
func compare(t *testing.T, doc, node map[string]any, typ reflect.Type, path string) {
	t.Helper()
	props := properties(doc, node)
	fields := yamlFields(typ)
	var onlySchema, onlyGo []string
	for k := range props {
		if _, ok := fields[k]; !ok {
			onlySchema = append(onlySchema, k)
		}
	}
	for k := range fields {
		if _, ok := props[k]; !ok {
			onlyGo = append(onlyGo, k)
		}
	}
	sort.Strings(onlySchema)
	sort.Strings(onlyGo)
	if len(onlySchema)+len(onlyGo) > 0 {
		t.Errorf("%s: only in the schema %v, only in %s %v", path, onlySchema, typ.Name(), onlyGo)
	}
	for k, ft := range fields {
		sub, ok := props[k]
		if !ok {
			continue
		}
		et := elem(ft)
		if et.Kind() != reflect.Struct || et.Name() == "ConnectorRef" || et.Name() == "ConfigValue" {
			continue
		}
		sub = resolve(doc, sub)
		if ap, ok := sub["additionalProperties"].(map[string]any); ok && ft.Kind() == reflect.Map {
			sub = ap
		}
		compare(t, doc, sub, et, path+"."+k)
	}
}

func TestSchemaMatchesTypes(t *testing.T) {
	conn := loadSchemaDoc(t, "connector")
	compare(t, conn, conn, reflect.TypeOf(Connector{}), "connector")
	pipe := loadSchemaDoc(t, "pipeline")
	compare(t, pipe, pipe, reflect.TypeOf(Pipeline{}), "pipeline")
}

// TestDocsCoverSchema checks that docs/connector-spec.md names every field
// and every enumerated value the schemas allow.
func TestDocsCoverSchema(t *testing.T) {
	raw, err := os.ReadFile("../../docs/connector-spec.md")
	if err != nil {
		t.Fatal(err)
	}
	docs := string(raw)
	for _, kind := range []string{"connector", "pipeline"} {
		doc := loadSchemaDoc(t, kind)
		var walk func(node map[string]any, path string, seen map[string]bool)
		walk = func(node map[string]any, path string, seen map[string]bool) {
			node = resolve(doc, node)
			key := path
			if seen[key] {
				return
			}
			seen[key] = true
			for name, sub := range properties(doc, node) {
				if !strings.Contains(docs, "`"+name+"`") {
					t.Errorf("docs/connector-spec.md does not mention %s field `%s`", kind, path+"."+name)
				}
				walk(sub, path+"."+name, seen)
			}
			if ap, ok := node["additionalProperties"].(map[string]any); ok {
				walk(ap, path+".*", seen)
			}
			if enum, ok := node["enum"].([]any); ok {
				for _, v := range enum {
					s, _ := v.(string)
					if s != "" && !strings.Contains(docs, "`"+s+"`") && !slices.Contains([]string{"boolean", "integer", "bigint", "double", "number", "numeric", "datetime", "date-time", "string", "object", "array", "allow", "prefer"}, s) {
						t.Errorf("docs/connector-spec.md does not mention value `%s` of %s", s, path)
					}
				}
			}
			for _, alts := range []string{"oneOf", "allOf"} {
				if list, ok := node[alts].([]any); ok {
					for _, a := range list {
						walk(a.(map[string]any), path, map[string]bool{})
					}
				}
			}
		}
		walk(doc, kind, map[string]bool{})
	}
}

// TestExamplesInDocsAreValid loads the YAML examples of the docs.
func TestExamplesInDocsAreValid(t *testing.T) {
	for _, f := range []string{"../demo/files/shop.connector.yaml"} {
		if _, err := LoadConnector(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if _, err := LoadPipeline("../demo/files/shop.pipeline.yaml"); err != nil {
		t.Errorf("demo pipeline: %v", err)
	}
	raw, err := os.ReadFile("../../docs/connector-spec.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := strings.Split(string(raw), "```yaml\n")
	conn := ""
	for _, b := range blocks[1:] {
		y := b[:strings.Index(b, "```")]
		if strings.HasPrefix(y, "name: github") {
			conn = y
		}
	}
	if conn == "" {
		t.Fatal("the smallest-connector example is gone")
	}
	if _, err := ParseConnector("docs example", []byte(conn)); err != nil {
		t.Fatalf("docs example: %v", err)
	}
}
