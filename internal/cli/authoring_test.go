package cli

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// authorAPI serves /items in pages of 2 (page numbers, 3 pages) and
// wants the secret api key in a query parameter and a bearer token.
func authorAPI(t *testing.T) (*httptest.Server, *atomic.Int32) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.Header.Get("Authorization") != "Bearer tok-XYZ-123" || r.URL.Query().Get("api_key") != "key-ABC-987" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		page := r.URL.Query().Get("page")
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Set-Cookie", "session=tok-XYZ-123")
		switch page {
		case "1":
			fmt.Fprint(w, `{"data":[{"id":1,"name":"a"},{"id":2,"name":"b"}],"echo":"tok-XYZ-123"}`)
		case "2":
			fmt.Fprint(w, `{"data":[{"id":3,"name":"c"},{"id":4,"name":"d"}]}`)
		default:
			fmt.Fprint(w, `{"data":[]}`)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func authorFiles(t *testing.T, url string) string {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "c.yaml"), []byte(`name: author
base_url: `+url+`
config:
  token: {secret: true}
  key: {secret: true}
auth: {type: bearer, token: "{{ config.token }}"}
streams:
  items:
    path: /items
    params: {api_key: "{{ config.key }}"}
    records: data
    primary_key: id
    paginate: {type: page_number}
`), 0o644)
	os.WriteFile(filepath.Join(dir, "p.yaml"), []byte("connector: c.yaml\nconfig: {token: \"${T}\", key: \"${K}\"}\ndestination: {type: sqlite, path: out.db}\n"), 0o644)
	return dir
}

// TestDryRunLimitVerbose: --dry-run prints records as JSON Lines and
// writes nothing, --limit cuts each stream, -v logs each request with
// its status and no secret.
func TestDryRunLimitVerbose(t *testing.T) {
	srv, _ := authorAPI(t)
	dir := authorFiles(t, srv.URL)
	t.Setenv("T", "tok-XYZ-123")
	t.Setenv("K", "key-ABC-987")
	code, out, errs := ferry(t, "run", "-v", "--dry-run", "--limit", "3", filepath.Join(dir, "p.yaml"))
	if code != 0 {
		t.Fatalf("dry run: %d\n%s%s", code, out, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := []string{`{"table":"items","record":{"id":1,"name":"a"}}`, `{"table":"items","record":{"id":2,"name":"b"}}`, `{"table":"items","record":{"id":3,"name":"c"}}`}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("dry run printed\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "out.db")); err == nil {
		t.Error("a dry run created the destination")
	}
	if !strings.Contains(errs, "msg=http") || !strings.Contains(errs, "status=200") || !strings.Contains(errs, "page=2") {
		t.Errorf("-v logged no request:\n%s", errs)
	}
	if strings.Contains(errs, "tok-XYZ-123") || strings.Contains(errs, "key-ABC-987") {
		t.Errorf("-v logged a secret:\n%s", errs)
	}
}

// TestRecordReplay records a run (secrets removed from every file) and
// replays it offline into the same rows.
func TestRecordReplay(t *testing.T) {
	srv, hits := authorAPI(t)
	dir := authorFiles(t, srv.URL)
	t.Setenv("T", "tok-XYZ-123")
	t.Setenv("K", "key-ABC-987")
	rec := filepath.Join(dir, "rec")
	if code, out, errs := ferry(t, "run", "-q", "--record", rec, filepath.Join(dir, "p.yaml")); code != 0 {
		t.Fatalf("record: %d\n%s%s", code, out, errs)
	}
	files, _ := filepath.Glob(filepath.Join(rec, "*.json"))
	if len(files) != 3 {
		t.Fatalf("%d exchanges recorded, want 3", len(files))
	}
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if strings.Contains(string(b), "tok-XYZ-123") || strings.Contains(string(b), "key-ABC-987") {
			t.Fatalf("%s holds a secret:\n%s", f, b)
		}
	}
	before := hits.Load()
	os.Remove(filepath.Join(dir, "out.db"))
	// Other secrets at replay time: the recording matches without them.
	t.Setenv("T", "other-token")
	t.Setenv("K", "other-key")
	code, out, errs := ferry(t, "run", "-q", "--replay", rec, filepath.Join(dir, "p.yaml"))
	if code != 0 {
		t.Fatalf("replay: %d\n%s%s", code, out, errs)
	}
	if hits.Load() != before {
		t.Errorf("replay sent %d requests", hits.Load()-before)
	}
	code, out, _ = ferry(t, "query", filepath.Join(dir, "out.db"), "SELECT id, name FROM items ORDER BY id")
	for _, w := range []string{"1", "a", "4", "d"} {
		if code != 0 || !strings.Contains(out, w) {
			t.Fatalf("replayed rows: %d\n%s", code, out)
		}
	}
	// A request the recording lacks fails the stream, naming it.
	os.WriteFile(filepath.Join(dir, "c.yaml"), []byte(strings.Replace(mustRead(t, filepath.Join(dir, "c.yaml")), "path: /items", "path: /other", 1)), 0o644)
	code, _, errs = ferry(t, "run", "-q", "--replay", rec, filepath.Join(dir, "p.yaml"))
	if code != 1 || !strings.Contains(errs, "no recorded exchange for GET "+srv.URL+"/other") {
		t.Fatalf("replay of an unrecorded request: %d\n%s", code, errs)
	}
}

func mustRead(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestDryRunOutputDir: --dry-run --output DIR writes one JSON Lines file
// per table instead of printing, and creates no destination.
func TestDryRunOutputDir(t *testing.T) {
	srv, _ := authorAPI(t)
	dir := authorFiles(t, srv.URL)
	t.Setenv("T", "tok-XYZ-123")
	t.Setenv("K", "key-ABC-987")
	outDir := filepath.Join(t.TempDir(), "records")
	code, out, errs := ferry(t, "run", "--dry-run", "--limit", "2", "--output", outDir, filepath.Join(dir, "p.yaml"))
	if code != 0 || strings.Contains(out, `"record"`) {
		t.Fatalf("dry run: %d\n%s%s", code, out, errs)
	}
	entries, err := os.ReadDir(outDir)
	if err != nil || len(entries) == 0 {
		t.Fatalf("output dir: %v %v", entries, err)
	}
	data, err := os.ReadFile(filepath.Join(outDir, "items.jsonl"))
	if err != nil {
		t.Fatalf("no items.jsonl among %v: %v", entries, err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"id":1`) || !strings.Contains(lines[1], `"id":2`) {
		t.Fatalf("items.jsonl:\n%s", data)
	}
	if _, err := os.Stat(filepath.Join(dir, "out.db")); err == nil {
		t.Error("a dry run created the destination")
	}
}
