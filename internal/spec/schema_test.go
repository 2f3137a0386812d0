package spec_test

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/internal/spec"
)

// The JSON Schema, the Go types and docs/connector-spec.md describe the
// same files; these tests keep them in step.

func loadSchemaDoc(t *testing.T, kind string) map[string]any {
	t.Helper()
	data, err := spec.SchemaJSON(kind)
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

// TestSchemaFiles: the schema files committed for editors are what this
// build generates from the registered components' types. Run with -update
// to rewrite them.
func TestSchemaFiles(t *testing.T) {
	for _, kind := range []string{"connector", "pipeline"} {
		got, err := spec.SchemaJSON(kind)
		if err != nil {
			t.Fatal(err)
		}
		file := "schema/" + kind + ".schema.json"
		if *update {
			if err := os.WriteFile(file, got, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("%s is not what the components generate: run go test ./internal/spec -run TestSchemaFiles -update", file)
		}
	}
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
		if _, err := spec.LoadConnector(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if _, err := spec.LoadPipeline("../demo/files/shop.pipeline.yaml"); err != nil {
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
	if _, err := spec.ParseConnector("docs example", []byte(conn)); err != nil {
		t.Fatalf("docs example: %v", err)
	}
}

// TestDocsGenerated: the reference blocks of the docs are what the
// registered components generate (so a new component appears in the docs
// by registering, and a changed field cannot drift). Run with -update to
// rewrite them.
func TestDocsGenerated(t *testing.T) {
	files := []string{"../../docs/connector-spec.md", "../../docs/destinations.md"}
	found := map[string]bool{}
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		text := string(raw)
		out := text
		for name, block := range spec.GeneratedBlocks() {
			begin, end := spec.BlockMarkers(name)
			i := strings.Index(out, begin)
			if i < 0 {
				continue
			}
			found[name] = true
			j := strings.Index(out[i:], end)
			if j < 0 {
				t.Fatalf("%s: %q has no end marker", file, begin)
			}
			out = out[:i+len(begin)] + "\n\n" + block + "\n" + out[i+j:]
		}
		if out != text {
			if *update {
				if err := os.WriteFile(file, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			t.Errorf("%s: the generated reference is out of date: run go test ./internal/spec -run TestDocsGenerated -update", file)
		}
	}
	for name := range spec.GeneratedBlocks() {
		if !found[name] {
			t.Errorf("no doc holds the generated block %q", name)
		}
	}
}
