package rest

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/ferry-dev/ferry/internal/jsonpath"
	"github.com/ferry-dev/ferry/internal/schema"
	"github.com/ferry-dev/ferry/internal/spec"
	"github.com/ferry-dev/ferry/internal/transform"
)

// Column types beyond the schema's: Unix epochs, stored as timestamps.
const (
	colUnix   = "unix"
	colUnixMS = "unix_ms"
)

// columnType reads a columns: type, Unix epochs included.
func columnType(v ColumnType) (schema.Type, error) {
	switch strings.ToLower(strings.TrimSpace(string(v))) {
	case colUnix, colUnixMS:
		return schema.Timestamp, nil
	}
	t, err := schema.ParseType(string(v))
	if err != nil {
		return t, fmt.Errorf("%v, or unix / unix_ms for epoch seconds / milliseconds stored as timestamps", err)
	}
	return t, nil
}

// provisionShapes merges the response default and remembers the order
// of each add step's fields.
func provisionShapes(chk *spec.Checker, s *Stream, d *StreamDefaults, sp []string) {
	if s.Response == nil && d.Response != nil {
		cp := *d.Response
		s.Response = &cp
	}
	for i := range s.Transform {
		s.Transform[i].addOrder = chk.Abs(sp).Keys("transform", strconv.Itoa(i), "add")
	}
}

// streamed reports whether a stream's bodies are decoded as they arrive.
func (s *Stream) streamed() bool {
	r := s.Response
	if s.Async != nil {
		return true
	}
	if r == nil {
		return false
	}
	return r.Stream || (r.Format != "" && r.Format != "json") || r.Compression == "gzip" || r.Compression == "zip"
}

// checkShapes checks response, envelope, events, async, transform and
// schema settings.
func checkShapes(chk *spec.Checker, s *Stream) {
	sc := chk.Abs(s.yamlPath)
	pathOK := func(p []string, v string) {
		if _, err := jsonpath.Compile(v); err != nil {
			sc.AtValue(p, "%v", err)
		}
	}
	if r := s.Response; r != nil {
		if r.Format == "xml" && (s.Records == nil || *s.Records == "") {
			sc.At([]string{"records"}, "format: xml needs records: the path of the record elements, such as feed.entry")
		}
		if r.CSV != nil && r.Format != "csv" {
			sc.At([]string{"response", "csv"}, "csv settings need format: csv")
		}
		if r.XML != nil && r.Format != "xml" {
			sc.At([]string{"response", "xml"}, "xml settings need format: xml")
		}
		if c := r.CSV; c != nil {
			for _, f := range []struct{ name, v string }{{"delimiter", c.Delimiter}, {"comment", c.Comment}} {
				if f.v != "" && f.v != `\t` && utf8.RuneCountInString(f.v) != 1 {
					sc.AtValue([]string{"response", "csv", f.name}, "%s is one character", f.name)
				}
			}
			if c.Header != nil && !*c.Header && len(c.Columns) == 0 {
				sc.At([]string{"response", "csv"}, "a file without a header needs columns: the names of its fields")
			}
		}
		if r.Files != "" && r.Compression != "zip" && r.Compression != "" && r.Compression != "auto" {
			sc.At([]string{"response", "files"}, "files selects the files of a zip archive: it needs compression zip or auto")
		}
	}
	if s.streamed() && s.Async == nil {
		pg := s.Paginate
		for _, f := range []struct{ name, v string }{{"cursor_path", pg.CursorPath}, {"next_path", pg.NextPath}, {"has_more_path", pg.HasMorePath}, {"total_path", pg.TotalPath}, {"total_pages_path", pg.TotalPagesPath}} {
			if f.v != "" {
				atValue(chk, join(s.paginatePath, f.name), "a streamed body is not read whole, so %s cannot be read from it; use page_number, offset, last_record or link_header pagination", f.name)
			}
		}
		if pg.Type == pageCursor || pg.Type == pageNextURL {
			atValue(chk, join(s.paginatePath, "type"), "%s pagination reads the body whole; a streamed body (response.format other than json, compression, response.stream or async) pages with page_number, offset, last_record or link_header", pg.Type)
		}
		if len(s.Envelope) > 0 {
			sc.At([]string{"envelope"}, "envelope reads the body whole; it cannot be used with a streamed body")
		}
	}
	for _, k := range slices.Sorted(maps.Keys(s.Envelope)) {
		pathOK([]string{"envelope", k}, s.Envelope[k])
	}
	if e := s.Events; e != nil {
		for _, f := range []struct{ name, v string }{{"type", e.Type}, {"object", e.Object}} {
			if f.v != "" {
				pathOK([]string{"events", f.name}, f.v)
			}
		}
		for _, k := range slices.Sorted(maps.Keys(e.Fields)) {
			pathOK([]string{"events", "fields", k}, e.Fields[k])
		}
		if len(s.PrimaryKey) == 0 && len(e.Deletes) > 0 {
			sc.At([]string{"events", "deletes"}, "deleting events need primary_key: the entity's key finds the row to delete")
		}
	}
	if a := s.Async; a != nil {
		jobVars := spec.VarConfig | spec.VarJob | spec.VarStream
		if s.Parent != nil {
			jobVars |= spec.VarParent
		}
		pathOK([]string{"async", "id"}, a.ID)
		if p := a.Poll; p != nil {
			sc.Template([]string{"async", "poll", "path"}, p.Path, jobVars)
			for _, k := range slices.Sorted(maps.Keys(p.Params)) {
				sc.Template([]string{"async", "poll", "params", k}, p.Params[k], jobVars)
			}
			pathOK([]string{"async", "poll", "status"}, p.Status)
			for _, f := range []struct{ name, v string }{{"interval", p.Interval}, {"max_interval", p.MaxInterval}, {"timeout", p.Timeout}} {
				if f.v != "" {
					if _, err := spec.ParseDuration(f.v); err != nil {
						sc.AtValue([]string{"async", "poll", f.name}, "%v", err)
					}
				}
			}
			for _, st := range p.Failed {
				if slices.Contains(p.Completed, st) {
					sc.AtValue([]string{"async", "poll", "failed"}, "status %q is both completed and failed", st)
				}
			}
		}
		if d := a.Download; d != nil {
			switch {
			case d.URL == "" && d.Path == "":
				sc.At([]string{"async", "download"}, "give url (where the result's URL is in the poll response) or path")
			case d.URL != "" && d.Path != "":
				sc.At([]string{"async", "download"}, "give url or path, not both")
			case d.URL != "":
				pathOK([]string{"async", "download", "url"}, d.URL)
			default:
				sc.Template([]string{"async", "download", "path"}, d.Path, jobVars)
			}
			for _, k := range slices.Sorted(maps.Keys(d.Params)) {
				sc.Template([]string{"async", "download", "params", k}, d.Params[k], jobVars)
			}
			if (d.NextHeader == "") != (d.NextParam == "") {
				sc.At([]string{"async", "download"}, "next_header and next_param go together")
			}
		}
		own := len(s.paginatePath) > len(s.yamlPath) && slices.Equal(s.paginatePath[:len(s.yamlPath)], s.yamlPath)
		if s.Paginate != nil && s.Paginate.Type != pageNone && own {
			atValue(chk, join(s.paginatePath, "type"), "an async stream downloads one result; it has no pagination")
		}
	}
	if len(s.Transform) > 0 {
		if _, err := transform.Compile(transformSteps(s.Transform)); err != nil {
			if se, ok := err.(*transform.StepError); ok {
				p := []string{"transform", strconv.Itoa(se.Step)}
				if se.Field != "" && se.Field != "filter" {
					p = append(p, "add", se.Field)
				} else if se.Field == "filter" {
					p = append(p, "filter")
				}
				sc.AtValue(p, "%v", se.Err)
			} else {
				sc.At([]string{"transform"}, "%v", err)
			}
		}
	}
	if s.Schema != nil && s.SchemaFile != "" {
		sc.At([]string{"schema_file"}, "give schema or schema_file, not both")
	}
	if s.Schema != nil {
		if _, err := compileSchema(s.Schema, "schema"); err != nil {
			sc.At([]string{"schema"}, "%v", err)
		}
	}
}

// transformSteps converts the file's steps.
func transformSteps(in []TransformStep) []transform.Step {
	out := make([]transform.Step, len(in))
	for i, t := range in {
		out[i] = transform.Step{Add: t.Add, AddOrder: t.addOrder, Remove: t.Remove, Rename: t.Rename, Cast: t.Cast, Flatten: t.Flatten, Explode: t.Explode, Filter: t.Filter}
	}
	return out
}
