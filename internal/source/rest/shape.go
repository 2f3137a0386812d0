package rest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/ferry-dev/ferry/internal/cursor"
	"github.com/ferry-dev/ferry/internal/decode"
	"github.com/ferry-dev/ferry/internal/jsonpath"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/template"
	"github.com/ferry-dev/ferry/internal/transform"
)

// shaper turns the records selected from a response into the records of
// the table: the entity of each event (events), values from the body
// (envelope), the transform steps, Unix epochs cast to timestamps, and
// the declared JSON Schema. What cannot be shaped is rejected with the
// reason, never dropped without a word.
type shaper struct {
	events   *eventShape
	envelope []envField
	prog     *transform.Program
	schema   *jsonschema.Schema
}

type envField struct {
	column string
	path   *jsonpath.Path
}

type eventShape struct {
	typ     *jsonpath.Path
	include []string
	object  *jsonpath.Path
	deletes []string
	fields  []envField
}

// compileShapes compiles the decoding and shaping settings of a stream.
func (st *stream) compileShapes(sp *Stream, dir string) error {
	if sp.streamed() {
		o := &decode.Options{Format: decode.JSON}
		if sp.Records != nil {
			o.Records = *sp.Records
		}
		st.batch = 1000
		if r := sp.Response; r != nil {
			o.Format = orDefault(r.Format, decode.JSON)
			o.Compression, o.Files, o.Encoding = r.Compression, r.Files, r.Encoding
			if r.Batch > 0 {
				st.batch = r.Batch
			}
			if c := r.CSV; c != nil {
				o.CSV = decode.CSVOptions{Columns: c.Columns, LazyQuotes: c.LazyQuotes, SkipRows: c.SkipRows, Infer: c.Infer, KeepEmpty: c.KeepEmpty}
				o.CSV.NoHeader = c.Header != nil && !*c.Header
				o.CSV.Delimiter = firstRune(c.Delimiter)
				o.CSV.Comment = firstRune(c.Comment)
			}
			if x := r.XML; x != nil {
				o.XML = decode.XMLOptions{AttrPrefix: x.AttrPrefix, TextKey: x.TextKey, Arrays: x.Arrays}
			}
		}
		st.dec = o
	}
	sh := &shaper{}
	any := false
	for _, col := range slices.Sorted(maps.Keys(sp.Envelope)) {
		p, err := jsonpath.Compile(sp.Envelope[col])
		if err != nil {
			return fmt.Errorf("envelope.%s: %w", col, err)
		}
		sh.envelope = append(sh.envelope, envField{col, p})
		any = true
	}
	if e := sp.Events; e != nil {
		for _, k := range sp.PrimaryKey {
			p, err := jsonpath.Compile(k)
			if err != nil {
				return fmt.Errorf("primary_key: %w", err)
			}
			st.keyPaths = append(st.keyPaths, p)
		}
		if sp.Cursor != "" {
			p, err := jsonpath.Compile(sp.Cursor)
			if err != nil {
				return fmt.Errorf("cursor: %w", err)
			}
			st.cursorPath = p
		}
		es := &eventShape{include: e.Include, deletes: e.Deletes}
		var err error
		if es.typ, err = jsonpath.Compile(orDefault(e.Type, "type")); err != nil {
			return fmt.Errorf("events.type: %w", err)
		}
		if es.object, err = jsonpath.Compile(e.Object); err != nil {
			return fmt.Errorf("events.object: %w", err)
		}
		if es.deletes == nil {
			es.deletes = []string{"*.deleted"}
		}
		for _, col := range slices.Sorted(maps.Keys(e.Fields)) {
			p, err := jsonpath.Compile(e.Fields[col])
			if err != nil {
				return fmt.Errorf("events.fields.%s: %w", col, err)
			}
			es.fields = append(es.fields, envField{col, p})
		}
		sh.events = es
		any = true
	}
	steps := transformSteps(sp.Transform)
	// Columns declared as Unix epochs are cast to timestamps last.
	casts := map[string]string{}
	for col, t := range sp.Columns {
		switch strings.ToLower(string(t)) {
		case colUnix, colUnixMS:
			casts[col] = strings.ToLower(string(t))
		}
	}
	if len(casts) > 0 {
		steps = append(steps, transform.Step{Cast: casts})
	}
	if len(steps) > 0 {
		prog, err := transform.Compile(steps)
		if err != nil {
			return fmt.Errorf("transform: %w", err)
		}
		sh.prog = prog
		any = true
	}
	doc := sp.Schema
	where := "schema"
	if sp.SchemaFile != "" {
		path := sp.SchemaFile
		if !filepath.IsAbs(path) {
			path = filepath.Join(dir, path)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("schema_file: %w", err)
		}
		if err := json.Unmarshal(b, &doc); err != nil {
			return fmt.Errorf("schema_file %s: not JSON: %w", sp.SchemaFile, err)
		}
		where = sp.SchemaFile
	}
	if doc != nil {
		sch, err := compileSchema(doc, where)
		if err != nil {
			return err
		}
		sh.schema = sch
		any = true
	}
	if any {
		st.shape = sh
	}
	return nil
}

func orDefault(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func firstRune(s string) rune {
	if s == `\t` {
		return '\t'
	}
	for _, r := range s {
		return r
	}
	return 0
}

// compileSchema compiles a JSON Schema given as a decoded document.
func compileSchema(doc any, where string) (*jsonschema.Schema, error) {
	// Through JSON, so YAML's integers and maps are what the compiler expects.
	b, err := json.Marshal(yamlToJSON(doc))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	url := "ferry:///" + strings.ReplaceAll(where, " ", "_")
	if err := c.AddResource(url, v); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	sch, err := c.Compile(url)
	if err != nil {
		return nil, fmt.Errorf("%s is not a valid JSON Schema: %w", where, err)
	}
	return sch, nil
}

// yamlToJSON turns YAML's map[any]any (if any) into map[string]any.
func yamlToJSON(v any) any {
	switch x := v.(type) {
	case map[any]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[fmt.Sprint(k)] = yamlToJSON(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = yamlToJSON(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = yamlToJSON(e)
		}
		return out
	}
	return v
}

// deletes remembers, for one read of an event log, the entities a
// deleting event removed and that event's cursor, so that an older event
// of the same entity read after it (Stripe lists events newest first)
// does not bring the row back. It holds one entry per deleted entity of
// the read, not per event.
type deletes map[string]string

// entityKey is an entity's primary key values as one string, or "" if a
// value is missing.
func entityKey(rec []byte, keys []*jsonpath.Path) string {
	var b []byte
	for _, p := range keys {
		v, found, err := jsonpath.Lookup(rec, p)
		if err != nil || !found {
			return ""
		}
		b = append(append(b, v...), 0)
	}
	return string(b)
}

// shaped is what shaping made of a page's records.
type shaped struct {
	records [][]byte
	ops     []record.Op
	rejects []record.Reject
}

// apply shapes the records of one page; body is the whole response body
// (nil for a streamed one).
func (sh *shaper) apply(st *stream, part *record.Partition, raw [][]byte, body []byte, env template.Env, memo deletes) (shaped, error) {
	var out shaped
	if sh == nil {
		out.records = raw
		return out, nil
	}
	key := ""
	if part != nil {
		key = part.Key
	}
	reject := func(rec []byte, why string) {
		out.rejects = append(out.rejects, record.Reject{Stream: st.name, Partition: key, Reason: why, Record: rec})
	}
	var envelope []record.Field
	for _, f := range sh.envelope {
		v, found, err := jsonpath.Lookup(body, f.path)
		if err != nil || !found {
			return out, fmt.Errorf("envelope.%s: %q is not in the response", f.column, f.path)
		}
		envelope = append(envelope, record.Field{Name: f.column, Value: v})
	}
	tenv := transform.Env{Config: asMap(env["config"]), Parent: asMap(env["parent"])}
	for _, rec := range raw {
		op := record.Upsert
		ent := rec
		extra := envelope
		if e := sh.events; e != nil {
			typ, ok := lookupString(rec, e.typ)
			if !ok {
				reject(rec, fmt.Sprintf("the event has no type at %q", e.typ))
				continue
			}
			if len(e.include) > 0 && !globAny(e.include, typ) {
				continue // another entity's event
			}
			obj, found, err := jsonpath.Lookup(rec, e.object)
			if err != nil || !found || len(obj) == 0 || obj[0] != '{' {
				reject(rec, fmt.Sprintf("event %s has no object at %q", typ, e.object))
				continue
			}
			if globAny(e.deletes, typ) {
				op = record.Delete
			}
			ent = obj
			extra = slices.Clone(envelope)
			for _, f := range e.fields {
				v, found, _ := jsonpath.Lookup(rec, f.path)
				if found {
					extra = append(extra, record.Field{Name: f.column, Value: v})
				}
			}
		}
		if len(extra) > 0 {
			var err error
			if ent, err = setFields(ent, extra); err != nil {
				reject(rec, err.Error())
				continue
			}
		}
		outs := [][]byte{ent}
		if sh.prog != nil {
			var err error
			outs, err = sh.prog.Apply(ent, tenv)
			if err != nil {
				reject(rec, err.Error())
				continue
			}
		}
		for _, o := range outs {
			if sh.schema != nil {
				if why := validate(sh.schema, o); why != "" {
					reject(o, why)
					continue
				}
			}
			if sh.events != nil && memo != nil && len(st.keyPaths) > 0 {
				if k := entityKey(o, st.keyPaths); k != "" {
					cur := ""
					if st.cursorPath != nil {
						if v, found, _ := jsonpath.Lookup(o, st.cursorPath); found {
							cur = string(v)
						}
					}
					if op == record.Delete {
						if old, ok := memo[k]; !ok || cursor.CompareText(unquote(cur), unquote(old)) > 0 {
							memo[k] = cur
						}
					} else if del, ok := memo[k]; ok && cursor.CompareText(unquote(cur), unquote(del)) <= 0 {
						continue // older than the event that deleted it
					}
				}
			}
			out.records = append(out.records, o)
			out.ops = append(out.ops, op)
		}
	}
	if !slices.Contains(out.ops, record.Delete) {
		out.ops = nil // all upserts
	}
	return out, nil
}

func unquote(s string) string {
	var out string
	if len(s) > 0 && s[0] == '"' && json.Unmarshal([]byte(s), &out) == nil {
		return out
	}
	return s
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func lookupString(rec []byte, p *jsonpath.Path) (string, bool) {
	v, found, err := jsonpath.Lookup(rec, p)
	if err != nil || !found {
		return "", false
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return "", false
	}
	return s, true
}

// globAny reports whether s matches one of the patterns, where * matches
// any run of characters (dots included).
func globAny(patterns []string, s string) bool {
	for _, p := range patterns {
		if glob(p, s) {
			return true
		}
	}
	return false
}

func glob(p, s string) bool {
	parts := strings.Split(p, "*")
	if len(parts) == 1 {
		return p == s
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	for _, mid := range parts[1 : len(parts)-1] {
		i := strings.Index(s, mid)
		if i < 0 {
			return false
		}
		s = s[i+len(mid):]
	}
	return strings.HasSuffix(s, parts[len(parts)-1])
}

// setFields sets top-level fields of a JSON object.
func setFields(rec []byte, fields []record.Field) ([]byte, error) {
	v, err := transform.Parse(rec)
	if err != nil {
		return nil, fmt.Errorf("record is not JSON: %v", err)
	}
	obj, ok := v.(*transform.Object)
	if !ok {
		return nil, fmt.Errorf("record is not a JSON object")
	}
	for _, f := range fields {
		fv, err := transform.Parse(f.Value)
		if err != nil {
			return nil, err
		}
		obj.Set(f.Name, fv)
	}
	return transform.Marshal(obj)
}

var printer = message.NewPrinter(language.English)

// validate checks a record against the schema and says why it fails ("" if
// it does not).
func validate(sch *jsonschema.Schema, rec []byte) string {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(rec))
	if err != nil {
		return "not JSON: " + err.Error()
	}
	err = sch.Validate(v)
	if err == nil {
		return ""
	}
	ve, ok := err.(*jsonschema.ValidationError)
	if !ok {
		return "schema: " + err.Error()
	}
	var msgs []string
	var leaves func(e *jsonschema.ValidationError)
	leaves = func(e *jsonschema.ValidationError) {
		if len(e.Causes) == 0 {
			msgs = append(msgs, fmt.Sprintf("at /%s: %s", strings.Join(e.InstanceLocation, "/"), e.ErrorKind.LocalizedString(printer)))
			return
		}
		for _, c := range e.Causes {
			leaves(c)
		}
	}
	leaves(ve)
	return "does not match the stream's schema: " + strings.Join(msgs, "; ")
}
