// Package spec loads and checks Ferry's YAML files: connectors, which
// configure a source (for the declarative REST source: an API, its auth
// and its streams), and pipelines, which bind a connector to config
// values, a destination and per-stream sync modes.
//
// Loading goes decode → provision → validate. The YAML is parsed with
// positions, checked against a JSON Schema generated from the registered
// components' configuration types (the same schema editors load, from
// ferry schema), decoded strictly into those types, completed by their
// Provision methods and checked by their Validate methods. Every problem
// is reported at once, each as file:line:col: path: message, with a "did
// you mean" hint for unknown keys.
//
// Components own their configuration: a destination's section decodes
// into the type it registered with dest.Register, an auth section into
// its scheme's, a connector's streams into its source kind's. This
// package knows none of them by name.
package spec

import (
	"fmt"
	"os"
	"reflect"

	"github.com/goccy/go-yaml"

	"github.com/ferry-dev/ferry/internal/component"
)

// DefaultSourceType is the source kind of a connector without type:.
const DefaultSourceType = "rest"

// Connector is a connector file: its name, the config parameters it
// declares, and its source kind's configuration.
type Connector struct {
	// Name identifies the connector; it is also the default pipeline name.
	Name string `yaml:"name" required:"true" min:"1" doc:"Identifies the connector; also the default pipeline name."`
	// Description says what the source is, for humans.
	Description string `yaml:"description,omitempty" doc:"What the API is, for humans."`
	// Type is the kind of source (default rest).
	Type string `yaml:"type,omitempty" doc:"Kind of source (default rest)."`
	// Config declares the parameters a pipeline supplies, by name.
	Config map[string]*ConfigParam `yaml:"config,omitempty" keys:"^[A-Za-z_][A-Za-z0-9_]*$" doc:"Parameters a pipeline supplies, by name."`

	// Body is the source kind's configuration, decoded strictly into the
	// type the kind registered (e.g. *rest.Config), provisioned and
	// validated.
	Body any `yaml:"-"`
	// Streams declares the connector's streams in file order.
	Streams []StreamDecl `yaml:"-"`
	// Source locates the file the connector came from, for messages.
	Source *File `yaml:"-"`
	// Base is the YAML path of the connector within Source: "" for a
	// connector file, "connector" when inlined in a pipeline.
	Base string `yaml:"-"`
}

// StreamDecl is what a pipeline needs to know of a connector's stream.
type StreamDecl struct {
	Name string
	// PrimaryKey and Cursor, as the connector declares them.
	PrimaryKey []string
	Cursor     string
	// Parent names the parent stream of a child stream.
	Parent string
	// Children lists the names of tables the stream writes besides its own
	// (none known before data arrives, except as the source declares).
	// Path is the stream's YAML path, for messages.
	Path []string
}

// StreamLister is implemented by source kinds' configurations: after
// Provision, it declares the streams.
type StreamLister interface {
	StreamDecls() []StreamDecl
}

// Stream returns the declaration of a stream, or false.
func (c *Connector) Stream(name string) (StreamDecl, bool) {
	for _, s := range c.Streams {
		if s.Name == name {
			return s, true
		}
	}
	return StreamDecl{}, false
}

// StreamNames lists the connector's streams in file order.
func (c *Connector) StreamNames() []string {
	out := make([]string, len(c.Streams))
	for i, s := range c.Streams {
		out[i] = s.Name
	}
	return out
}

// ConfigParam declares one configuration parameter of a connector.
type ConfigParam struct {
	// Description says what the value is.
	Description string `yaml:"description,omitempty" doc:"What the value is."`
	// Type is string (default), integer, number or boolean.
	Type string `yaml:"type,omitempty" enum:"string,integer,number,boolean" doc:"Value type (default string)."`
	// Default is used when the pipeline gives no value.
	Default any `yaml:"default,omitempty" def:"scalar" doc:"Used when the pipeline gives no value."`
	// Secret values must come from the environment or a file, never inline,
	// and are redacted from every log, error and state row.
	Secret bool `yaml:"secret,omitempty" doc:"Must come from the environment or a file, never inline; redacted everywhere."`
	// Required values must be given; parameters without a default are
	// required unless this is set to false.
	Required *bool `yaml:"required,omitempty" doc:"Default: true unless a default is given."`
}

// connectorHeader is the part of a connector every source kind shares.
var headerFields = map[string]bool{"name": true, "description": true, "type": true, "config": true}

// LoadConnector reads and checks a connector file.
func LoadConnector(name string) (*Connector, error) {
	data, err := readLimited(name, "connector")
	if err != nil {
		return nil, err
	}
	return ParseConnector(name, data)
}

// readLimited reads a file of Ferry's, refusing one larger than
// MaxFileSize before reading it.
func readLimited(name, what string) ([]byte, error) {
	st, err := os.Stat(name)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	if st.Size() > MaxFileSize {
		return nil, fmt.Errorf("%s: the %s file is %d bytes; Ferry reads files of at most %d bytes", name, what, st.Size(), MaxFileSize)
	}
	// A device or pipe has no size: read no more than ParseFile takes.
	data, err := ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	return data, nil
}

// MaxFileSize bounds connector and pipeline files (4 MiB).
const MaxFileSize = 4 << 20

// ParseConnector checks connector YAML read from name.
func ParseConnector(name string, data []byte) (*Connector, error) {
	f, err := ParseFile(name, data)
	if err != nil {
		return nil, err
	}
	s, err := loadSchemas()
	if err != nil {
		return nil, err
	}
	if err := validateSchema(f, nil, s.connector, s); err != nil {
		return nil, err
	}
	ps := &problems{file: f}
	c := decodeConnector(ps, f, nil)
	if err := ps.err(); err != nil {
		return nil, err
	}
	return c, nil
}

// decodeConnector decodes the connector at base in f: the header, then
// the kind's configuration, which it provisions and validates. Problems
// go to ps; the result is nil when decoding failed.
func decodeConnector(ps *problems, f *File, base []string) *Connector {
	c := &Connector{}
	node := f.body()
	for _, seg := range base {
		node, _ = child(node, seg)
	}
	if node == nil {
		ps.list = append(ps.list, Problem{File: f.Name, Line: 1, Col: 1, Message: "the connector is empty"})
		return nil
	}
	if err := yaml.NodeToValue(node, c); err != nil {
		ps.list = append(ps.list, decodeProblem(f, err))
		return nil
	}
	c.Source = f
	if len(base) > 0 {
		c.Base = base[0]
	}
	if c.Type == "" {
		c.Type = DefaultSourceType
	}
	info, err := component.Lookup(component.Source, c.Type)
	if err != nil {
		ps.atValue(path(base, "type"), "%v", err)
		return nil
	}
	m := mapping(node)
	rest := *m
	rest.Values = nil
	for _, mv := range m.Values {
		if !headerFields[keyString(mv.Key)] {
			rest.Values = append(rest.Values, mv)
		}
	}
	body := info.Config()
	if len(rest.Values) > 0 {
		if err := yaml.NodeToValue(&rest, body); err != nil {
			ps.list = append(ps.list, decodeProblem(f, err))
			return nil
		}
	}
	c.Body = body
	for _, k := range sortedParams(c.Config) {
		checkParam(ps, path(base, "config", k), c.Config[k])
	}
	checkConnectorStrings(ps, body, base)
	provisionAll(ps, c, body, base)
	if sl, ok := body.(StreamLister); ok {
		c.Streams = sl.StreamDecls()
	}
	return c
}

// checkConnectorStrings refuses ${VAR} in a connector's strings: a
// connector does not read the environment; its pipeline does, through
// config parameters.
func checkConnectorStrings(ps *problems, body any, base []string) {
	for _, sf := range stringsOf(body, base) {
		if hasEnvRef(sf.value) {
			ps.atValue(sf.path, "a connector does not read the environment: declare a config parameter (config: {x: {secret: true}}), pass it from the pipeline (config: {x: ${X}}) and use {{ config.x }} here; write $${ for a literal ${")
		}
	}
}

// hasEnvRef reports whether s holds a ${…} reference ($${ is a literal).
func hasEnvRef(s string) bool {
	for i := 0; i+1 < len(s); i++ {
		if s[i] != '$' {
			continue
		}
		if s[i+1] == '$' {
			i++
			continue
		}
		if s[i+1] == '{' {
			return true
		}
	}
	return false
}

func sortedParams(m map[string]*ConfigParam) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sortStrings(out)
	return out
}

// connectorSchema returns the schema of a connector: the shared header
// and, per source kind, the kind's own fields.
func connectorSchema() map[string]any {
	g := newGenerator()
	header := g.structSchema(reflect.TypeFor[Connector]())
	hprops := header["properties"].(map[string]any)
	names := component.Names(component.Source)
	enum := make([]any, len(names))
	for i, n := range names {
		enum[i] = n
	}
	hprops["type"] = map[string]any{"enum": enum, "description": "Kind of source (default " + DefaultSourceType + ")."}
	var allOf []any
	for _, info := range component.List(component.Source) {
		ks := g.structSchema(info.ConfigType())
		props := ks["properties"].(map[string]any)
		for k, v := range hprops {
			props[k] = v
		}
		props["type"] = map[string]any{"const": info.Name, "description": info.Summary}
		req, _ := ks["required"].([]string)
		ks["required"] = append([]string{"name"}, req...)
		ks[componentKey] = info.ID()
		id := info.ID()
		g.defs[id] = ks
		cond := map[string]any{"properties": map[string]any{"type": map[string]any{"const": info.Name}}, "required": []any{"type"}}
		if info.Name == DefaultSourceType {
			cond = map[string]any{"anyOf": []any{map[string]any{"not": map[string]any{"required": []any{"type"}}}, cond}}
		}
		allOf = append(allOf, map[string]any{"if": cond, "then": map[string]any{"$ref": "#/$defs/" + id}})
	}
	doc := map[string]any{
		"$schema":     "https://json-schema.org/draft/2020-12/schema",
		"$id":         ConnectorSchemaURL,
		"title":       "Ferry connector",
		"description": "Configures one source: for the REST source, an API, how to authenticate, and the streams of records it offers. See docs/connector-spec.md.",
		"type":        "object",
		"required":    []any{"name"},
		"properties":  map[string]any{"name": hprops["name"], "description": hprops["description"], "type": hprops["type"], "config": hprops["config"]},
		"$defs":       g.defs,
	}
	if len(allOf) > 0 {
		doc["allOf"] = allOf
	}
	return doc
}
