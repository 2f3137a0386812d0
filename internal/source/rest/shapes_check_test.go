package rest

import (
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/internal/spec"
)

// TestShapeChecks: mistakes in the new settings are reported at their
// place when the file is loaded.
func TestShapeChecks(t *testing.T) {
	for _, tc := range []struct{ stream, want string }{
		{`{path: /x, response: {format: xml}}`, "streams.s.records: format: xml needs records"},
		{`{path: /x, response: {format: csv, csv: {delimiter: ";;"}}}`, "streams.s.response.csv.delimiter: delimiter is one character"},
		{`{path: /x, response: {format: jsonl, xml: {text_key: t}}}`, "xml settings need format: xml"},
		{`{path: /x, response: {format: csv}, paginate: {type: cursor, cursor_path: next}}`, "cursor_path cannot be read from it"},
		{`{path: /x, response: {stream: true}, envelope: {e: end}}`, "envelope reads the body whole"},
		{`{path: /x, events: {object: data.object, deletes: ["*.deleted"]}}`, "deleting events need primary_key"},
		{`{path: /x, transform: [{filter: "record.a >"}]}`, "streams.s.transform.0.filter"},
		{`{path: /x, transform: [{remove: [a], rename: {b: c}}]}`, "exactly one of add, remove"},
		{`{path: /x, transform: [{cast: {a: money}}]}`, `unknown type "money"`},
		{`{path: /x, schema: {type: object, required: 3}}`, "streams.s.schema: schema is not a valid JSON Schema"},
		{`{path: /x, async: {id: id, poll: {path: "/j/{{ job.nope }}", status: s, completed: [done]}, download: {url: u}}}`, `unknown job variable "nope"`},
		{`{path: /x, async: {id: id, poll: {path: "/j", status: s, completed: [done], failed: [done]}, download: {url: u}}}`, `status "done" is both completed and failed`},
		{`{path: /x, async: {id: id, poll: {path: "/j", status: s, completed: [done]}, download: {}}}`, "give url"},
		{`{path: /x, async: {id: id, poll: {path: "/j", status: s, completed: [done]}, download: {url: u, next_header: L}}}`, "next_header and next_param go together"},
		{`{path: "/x/{{ job.id }}"}`, "job is only available in async.poll and async.download"},
		{`{path: /x, columns: {a: epoch}}`, "unix, unix_ms"},
	} {
		_, err := spec.ParseConnector("c.yaml", []byte("name: c\nbase_url: https://x\nstreams:\n  s: "+tc.stream+"\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n got %v\nwant %q", tc.stream, err, tc.want)
		}
	}
	// An async stream in a connector whose defaults paginate is fine.
	_, err := spec.ParseConnector("c.yaml", []byte("name: c\nbase_url: https://x\ndefaults: {paginate: {type: page_number}}\nstreams:\n  s: {path: /x, async: {id: id, poll: {path: /j, status: s, completed: [done]}, download: {url: u}}}\n"))
	if err != nil {
		t.Errorf("async with paginated defaults: %v", err)
	}
}
