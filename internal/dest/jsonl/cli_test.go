package jsonl_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ferry-dev/ferry/internal/apitest"
	"github.com/ferry-dev/ferry/internal/cli"
	_ "github.com/ferry-dev/ferry/internal/components/all"
)

// ferry runs the command line in-process.
func ferry(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = cli.Main(args, &out, &errb)
	return code, out.String(), errb.String()
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

const connectorYAML = `name: test
base_url: %s
config:
  token: {secret: true}
auth: {type: bearer, token: "{{ config.token }}"}
streams:
  users:
    path: /users
    records: data
    primary_key: id
    cursor: updated_at
    incremental: {param: updated_since}
    paginate: {type: page_number, size: 2, size_param: per_page}
`

const pipelineYAML = `connector: connector.yaml
config: {token: "${API_TOKEN}"}
destination: {type: jsonl, dir: out, metadata: false}
state: {type: sqlite, path: state.db}
streams:
  users: {mode: incremental_append}
`

// TestRunTwiceIncremental syncs a fake API into JSON Lines files through
// the command line, with the state in SQLite; the second run appends only
// what changed.
func TestRunTwiceIncremental(t *testing.T) {
	users := []map[string]any{
		{"id": 1, "name": "ann", "score": 1.5, "active": true, "updated_at": "2024-01-01T00:00:00Z", "profile": map[string]any{"plan": "free"}},
		{"id": 2, "name": "bob", "score": 2, "active": false, "updated_at": "2024-01-02T00:00:00Z", "profile": nil},
		{"id": 3, "name": "cy", "score": 10.25, "active": true, "updated_at": "2024-01-03T00:00:00Z", "profile": map[string]any{"plan": "pro", "seats": 3}},
	}
	api := apitest.New(t, users, apitest.PageNumber, 2)
	api.Token = "s3cret"
	t.Setenv("API_TOKEN", "s3cret")
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"connector.yaml": strings.Replace(connectorYAML, "%s", api.URL, 1),
		"pipeline.yaml":  pipelineYAML,
	})
	pipeline := filepath.Join(dir, "pipeline.yaml")
	if code, out, errs := ferry(t, "validate", filepath.Join(dir, "connector.yaml"), pipeline); code != 0 {
		t.Fatalf("validate: %d\n%s%s", code, out, errs)
	}
	if code, out, errs := ferry(t, "run", pipeline); code != 0 {
		t.Fatalf("first run: %d\n%s%s", code, out, errs)
	}
	data := filepath.Join(dir, "out", "users.jsonl")
	// Columns in the order they first appeared (the API sorts its keys).
	first := `{"active":true,"id":1,"name":"ann","profile":{"plan":"free"},"score":1.5,"updated_at":"2024-01-01T00:00:00Z"}
{"active":false,"id":2,"name":"bob","profile":null,"score":2,"updated_at":"2024-01-02T00:00:00Z"}
{"active":true,"id":3,"name":"cy","profile":{"plan":"pro","seats":3},"score":10.25,"updated_at":"2024-01-03T00:00:00Z"}
`
	if got := readFile(t, data); got != first {
		t.Fatalf("after the first run:\n%s\nwant:\n%s", got, first)
	}
	// Bob changes, dan arrives; ann and cy do not change.
	api.Records = []map[string]any{
		users[0], users[2],
		{"id": 2, "name": "bob", "score": 2, "active": true, "updated_at": "2024-01-04T00:00:00Z", "profile": nil},
		{"id": 4, "name": "dan", "score": -1, "active": true, "updated_at": "2024-01-05T00:00:00Z", "nickname": "d"},
	}
	if code, out, errs := ferry(t, "run", pipeline); code != 0 {
		t.Fatalf("second run: %d\n%s%s", code, out, errs)
	}
	// A new column goes last, from the page that brought it on (bob came
	// on the page before dan's); older lines stay as they were.
	second := first + `{"active":true,"id":2,"name":"bob","profile":null,"score":2,"updated_at":"2024-01-04T00:00:00Z"}
{"active":true,"id":4,"name":"dan","profile":null,"score":-1,"updated_at":"2024-01-05T00:00:00Z","nickname":"d"}
`
	if got := readFile(t, data); got != second {
		t.Fatalf("after the second run:\n%s\nwant:\n%s", got, second)
	}
	// The sidecar counts what is committed; the state is in state.db.
	var side struct {
		Rows   int64 `json:"rows"`
		Bytes  int64 `json:"bytes"`
		Layout struct {
			Columns []struct{ Name, Type string } `json:"columns"`
		} `json:"layout"`
	}
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(dir, "out", "users.layout.json"))), &side); err != nil {
		t.Fatal(err)
	}
	if side.Rows != 5 || side.Bytes != int64(len(second)) {
		t.Fatalf("sidecar counts %d rows, %d bytes; want 5, %d", side.Rows, side.Bytes, len(second))
	}
	code, out, errs := ferry(t, "state", "show", pipeline)
	if code != 0 || !strings.Contains(out, "2024-01-05") {
		t.Fatalf("state show: %d\n%s%s", code, out, errs)
	}
	// Nothing is pending, and a third run with no change appends nothing.
	if code, out, errs := ferry(t, "run", pipeline); code != 0 {
		t.Fatalf("third run: %d\n%s%s", code, out, errs)
	}
	if got := readFile(t, data); got != second {
		t.Fatalf("a run with no change appended:\n%s", strings.TrimPrefix(got, second))
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "out"))
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "users.jsonl users.layout.json" {
		t.Fatalf("files in out/: %v", names)
	}
}

// TestRunWithoutStateSection: a pipeline writing JSON Lines without a
// state: section is refused before any request (at validation, exit 2),
// saying what to add; so is one asking for a mode jsonl cannot do.
func TestRunWithoutStateSection(t *testing.T) {
	api := apitest.New(t, nil, apitest.PageNumber, 2)
	t.Setenv("API_TOKEN", "x")
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"connector.yaml": strings.Replace(connectorYAML, "%s", api.URL, 1),
		"pipeline.yaml":  strings.Replace(pipelineYAML, "state: {type: sqlite, path: state.db}\n", "", 1),
	})
	code, _, errs := ferry(t, "run", filepath.Join(dir, "pipeline.yaml"))
	if code != 2 || !strings.Contains(errs, "pipeline.yaml:3:1: destination: the jsonl destination keeps no sync state: add a state: section") {
		t.Fatalf("run without state: %d\n%s", code, errs)
	}
	writeFiles(t, dir, map[string]string{"pipeline.yaml": strings.Replace(pipelineYAML, "{mode: incremental_append}", "{mode: incremental_dedup}", 1)})
	code, _, errs = ferry(t, "validate", filepath.Join(dir, "pipeline.yaml"))
	if code != 2 || !strings.Contains(errs, "the jsonl destination does not support mode incremental_dedup") {
		t.Fatalf("validate a dedup mode: %d\n%s", code, errs)
	}
	if api.Requests() != 0 {
		t.Fatalf("%d requests sent", api.Requests())
	}
}

// TestSchemaAndValidateKnowJSONL: the generated schema describes the
// destination and ferry validate checks its section, without anything in
// internal/spec naming it.
func TestSchemaAndValidateKnowJSONL(t *testing.T) {
	code, out, errs := ferry(t, "schema", "pipeline")
	if code != 0 {
		t.Fatalf("schema pipeline: %d %s", code, errs)
	}
	var doc struct {
		Defs map[string]struct {
			Properties map[string]map[string]any `json:"properties"`
			Required   []string                  `json:"required"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	def, ok := doc.Defs["destination.jsonl"]
	if !ok || def.Properties["dir"] == nil || def.Properties["metadata"]["type"] != "boolean" || def.Properties["file_mode"]["default"] != "0644" || strings.Join(def.Required, ",") != "dir" {
		t.Fatalf("schema of destination.jsonl: %+v", def)
	}
	api := apitest.New(t, nil, apitest.PageNumber, 2)
	t.Setenv("API_TOKEN", "x")
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"connector.yaml": strings.Replace(connectorYAML, "%s", api.URL, 1)})
	for _, tc := range []struct{ destination, want string }{
		{"{type: jsonl, dri: out}", `pipeline.yaml:3:28: destination.dri: unknown field "dri" (did you mean "dir"?)`},
		{"{type: jsonl}", `missing required field "dir"`},
		{"{type: jsonl, dir: out, file_mode: \"0999\"}", "destination.file_mode"},
		{"{type: jsonl, dir: out, path: x.db}", "path is not used by the jsonl destination"},
		{"{type: jsonlines, dir: out}", "jsonl"},
	} {
		writeFiles(t, dir, map[string]string{"pipeline.yaml": strings.Replace(pipelineYAML, "{type: jsonl, dir: out, metadata: false}", tc.destination, 1)})
		code, out, errs := ferry(t, "validate", filepath.Join(dir, "pipeline.yaml"))
		if code != 2 || !strings.Contains(errs, tc.want) {
			t.Errorf("validate destination %s: %d %q\n%s%s", tc.destination, code, tc.want, out, errs)
		}
	}
}

// TestRunFailsThenResumes: a run that fails half-way keeps the lines it
// committed, with their state; the next run appends the rest, each record
// once.
func TestRunFailsThenResumes(t *testing.T) {
	users := apitest.Users(9)
	api := apitest.New(t, users, apitest.PageNumber, 2)
	api.Token = "s3cret"
	var failing atomic.Bool
	failing.Store(true)
	api.Fault = func(n int64, r *http.Request) apitest.Fault {
		if failing.Load() && r.URL.Query().Get("page") == "4" {
			return apitest.ServerError
		}
		return apitest.OK
	}
	t.Setenv("API_TOKEN", "s3cret")
	dir := t.TempDir()
	conn := strings.Replace(connectorYAML, "%s", api.URL, 1)
	conn = strings.Replace(conn, "streams:\n", "http: {initial_backoff: 1ms, max_backoff: 2ms, max_attempts: 2}\nstreams:\n", 1)
	writeFiles(t, dir, map[string]string{
		"connector.yaml": conn,
		"pipeline.yaml":  pipelineYAML + "sync: {checkpoint_rows: 1}\n",
	})
	pipeline := filepath.Join(dir, "pipeline.yaml")
	code, out, errs := ferry(t, "run", pipeline)
	if code == 0 || !strings.Contains(errs, "500") {
		t.Fatalf("run against a failing API: %d\n%s%s", code, out, errs)
	}
	data := filepath.Join(dir, "out", "users.jsonl")
	if n := strings.Count(readFile(t, data), "\n"); n != 6 {
		t.Fatalf("%d lines after the failure, want the 6 of the three pages before it", n)
	}
	failing.Store(false)
	if code, out, errs := ferry(t, "run", pipeline); code != 0 {
		t.Fatalf("second run: %d\n%s%s", code, out, errs)
	}
	var ids []string
	for _, line := range strings.Split(strings.TrimSuffix(readFile(t, data), "\n"), "\n") {
		var rec struct{ ID json.Number }
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, rec.ID.String())
	}
	var want []string
	for _, u := range users {
		want = append(want, fmt.Sprint(u["id"]))
	}
	if strings.Join(ids, ",") != strings.Join(want, ",") {
		t.Fatalf("ids in the file: %v, want each once: %v", ids, want)
	}
}
