package spec

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/ferry-dev/ferry/internal/component"
)

// Reference returns the Markdown reference of every registered component
// of a kind: per component, its summary and a table of its fields (name,
// type, default, meaning), generated from its configuration type like the
// JSON Schema, so that the docs cannot drift from the code.
func Reference(kind component.Kind) string {
	var b strings.Builder
	for i, info := range component.List(kind) {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "#### `%s`\n\n", info.Name)
		if info.Summary != "" {
			fmt.Fprintf(&b, "%s\n\n", info.Summary)
		}
		if info.Doc != "" {
			fmt.Fprintf(&b, "%s\n\n", strings.TrimSpace(info.Doc))
		}
		fields := fieldsOf(info.ConfigType())
		if len(fields) == 0 {
			b.WriteString("No other fields.\n")
			continue
		}
		b.WriteString("| field | type | default | meaning |\n|---|---|---|---|\n")
		for _, f := range fields {
			typ := docType(f)
			if f.Required {
				typ += ", required"
			}
			def := ""
			if f.Default != "" {
				def = "`" + f.Default + "`"
			}
			doc := cell(f.Doc)
			switch f.Secret {
			case "true":
				doc += " Secret: redacted everywhere."
			case "url":
				doc += " The password in it is a secret."
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", f.Name, typ, def, doc)
		}
	}
	return b.String()
}

// cell makes text safe in a Markdown table cell: no column breaks, no
// HTML (a <table> in a doc would vanish).
func cell(s string) string {
	return strings.NewReplacer("|", `\|`, "<", "&lt;", ">", "&gt;").Replace(s)
}

// docType names a field's type for people.
func docType(f field) string {
	if len(f.Enum) > 0 {
		return "`" + strings.Join(f.Enum, "`, `") + "`"
	}
	if def := f.tag.Get("def"); def != "" {
		return def
	}
	t := f.Type
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if values, ok := enumTypes[t]; ok {
		return "`" + strings.Join(values, "`, `") + "`"
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "integer"
	case reflect.Float64, reflect.Float32:
		return "number"
	case reflect.Slice:
		return "list"
	case reflect.Map:
		return "map"
	}
	return "mapping"
}

// GeneratedBlocks are the parts of the docs generated from the registered
// components: the marker name each block sits between, and its text.
func GeneratedBlocks() map[string]string {
	return map[string]string{
		"destinations": Reference(component.Destination),
		"auth":         Reference(component.Auth),
		"sources":      Reference(component.Source),
	}
}

// BlockMarkers returns the lines a generated block sits between in a doc.
func BlockMarkers(name string) (begin, end string) {
	return "<!-- generated: " + name + " (go test ./internal/spec -run TestDocsGenerated -update) -->", "<!-- end generated: " + name + " -->"
}
