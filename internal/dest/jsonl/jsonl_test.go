package jsonl_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/dest/desttest"
	"github.com/ferry-dev/ferry/internal/dest/jsonl"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/schema"
)

func open(t *testing.T, dir string, cfg jsonl.Config) *jsonl.Destination {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = "out"
	}
	d, err := dest.Open(context.Background(), "jsonl", &cfg, dest.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d.(*jsonl.Destination)
}

// TestConformance runs the destination suite with what a file that only
// appends can do: append modes and child tables of unnested arrays.
func TestConformance(t *testing.T) {
	desttest.Run(t, func(t *testing.T) dest.Destination {
		return open(t, t.TempDir(), jsonl.Config{})
	}, desttest.Caps{Unnest: true, Rejects: true})
}

// TestManyColumns: a file bounds neither the columns of a table nor the
// widening of one.
func TestManyColumns(t *testing.T) {
	d := open(t, t.TempDir(), jsonl.Config{})
	if err := desttest.WriteColumns(t, d, "wide", 2000); err != nil {
		t.Fatal(err)
	}
}

// layout is a table of the given columns (name:type), with the metadata
// columns a run adds.
func layout(name string, pk []string, cols ...string) *schema.Table {
	tb := &schema.Table{Name: name, PrimaryKey: pk, Version: 1}
	for _, c := range cols {
		n, typ, _ := strings.Cut(c, ":")
		var ty schema.Type
		if err := ty.UnmarshalText([]byte(typ)); err != nil {
			panic(err)
		}
		tb.Columns = append(tb.Columns, schema.Column{Name: n, Path: []string{n}, Type: ty})
	}
	tb.Columns = append(tb.Columns,
		schema.Column{Name: schema.ColExtractedAt, Type: schema.Timestamp, Origin: schema.FromMeta},
		schema.Column{Name: schema.ColRunID, Type: schema.Text, Origin: schema.FromMeta})
	return tb
}

func openStream(t *testing.T, d dest.Destination, table string, mode dest.Mode) dest.StreamWriter {
	t.Helper()
	w, err := d.OpenStream(context.Background(), dest.StreamConfig{Pipeline: "p", Stream: table, Table: table, Mode: mode, RunID: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func write(t *testing.T, w dest.StreamWriter, c *record.Chunk) {
	t.Helper()
	if err := w.Write(context.Background(), c); err != nil {
		t.Fatal(err)
	}
}

func commit(t *testing.T, w dest.StreamWriter) {
	t.Helper()
	if err := w.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var at = time.Date(2024, 5, 1, 12, 30, 0, 123456000, time.UTC)

// TestLines: every type as the brief says, one line per row, metadata
// included by default.
func TestLines(t *testing.T) {
	dir := t.TempDir()
	d := open(t, dir, jsonl.Config{})
	tb := layout("t", nil, "b:bool", "i:int", "f:float", "d:decimal", "ts:timestamp", "s:text", "j:json", "u:unknown")
	w := openStream(t, d, "t", dest.IncrementalAppend)
	write(t, w, desttest.Chunk(tb,
		[]any{true, 9223372036854775807, 1.5, "123456789012345678901234567890.000000001", at, "é \"q\" \\ \n\t\x00 <&>", "{\n  \"a\": [1, \"x\", null]\n}", nil, at, "r1"},
		[]any{nil, nil, nil, nil, nil, nil, nil, nil, at, "r1"},
	))
	if err := w.Finish(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	got := readFile(t, filepath.Join(dir, "out", "t.jsonl"))
	want := `{"b":true,"i":9223372036854775807,"f":1.5,"d":123456789012345678901234567890.000000001,"ts":"2024-05-01T12:30:00.123456Z","s":"é \"q\" \\ \n\t\u0000 <&>","j":{"a":[1,"x",null]},"u":null,"_ferry_extracted_at":"2024-05-01T12:30:00.123456Z","_ferry_run_id":"r1"}
{"b":null,"i":null,"f":null,"d":null,"ts":null,"s":null,"j":null,"u":null,"_ferry_extracted_at":"2024-05-01T12:30:00.123456Z","_ferry_run_id":"r1"}
`
	if got != want {
		t.Fatalf("file:\n%s\nwant:\n%s", got, want)
	}
	for _, line := range strings.Split(strings.TrimSuffix(got, "\n"), "\n") {
		if !json.Valid([]byte(line)) {
			t.Fatalf("line is not JSON: %s", line)
		}
	}
	// Read back exactly, typed as the Reader contract says.
	var rows [][]any
	err := d.ReadRows(context.Background(), "t", nil, func(cols []string, row []any) error {
		rows = append(rows, row)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	wantRow := []any{true, int64(9223372036854775807), 1.5, "123456789012345678901234567890.000000001", at, "é \"q\" \\ \n\t\x00 <&>", `{"a":[1,"x",null]}`, nil, at, "r1", nil}
	if len(rows) != 2 || !reflect.DeepEqual(rows[0], wantRow) {
		t.Fatalf("rows = %#v\nwant %#v", rows, wantRow)
	}
	if n, err := d.Count(context.Background(), "t"); err != nil || n != 2 {
		t.Fatalf("Count = %d, %v", n, err)
	}
	if l, err := d.Layout(context.Background(), "t"); err != nil || !reflect.DeepEqual(l, tb) {
		t.Fatalf("Layout = %+v, %v", l, err)
	}
}

// TestMetadataOffAndDeletes: metadata: false leaves the run's columns out;
// a deleted row is a line with _ferry_op and the key.
func TestMetadataOffAndDeletes(t *testing.T) {
	dir := t.TempDir()
	off := false
	d := open(t, dir, jsonl.Config{Metadata: &off})
	tb := layout("users", []string{"id"}, "id:int", "name:text")
	w := openStream(t, d, "users", dest.IncrementalAppend)
	write(t, w, desttest.Chunk(tb, []any{1, "ann", at, "r1"}, []any{record.Delete, 1, nil, at, "r1"}))
	if err := w.Finish(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	got := readFile(t, filepath.Join(dir, "out", "users.jsonl"))
	want := `{"id":1,"name":"ann"}` + "\n" + `{"_ferry_op":"delete","id":1}` + "\n"
	if got != want {
		t.Fatalf("file:\n%s\nwant:\n%s", got, want)
	}
	var ops []any
	d.ReadRows(context.Background(), "users", nil, func(cols []string, row []any) error {
		ops = append(ops, row[len(row)-1])
		return nil
	})
	if !reflect.DeepEqual(ops, []any{nil, "delete"}) {
		t.Fatalf("_ferry_op read back = %v", ops)
	}
	// With metadata, a delete says when it was seen.
	d = open(t, dir, jsonl.Config{Dir: "meta"})
	w = openStream(t, d, "users", dest.IncrementalAppend)
	write(t, w, desttest.Chunk(tb, []any{record.Delete, 2, nil, at, "r1"}))
	if err := w.Finish(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dir, "meta", "users.jsonl")); got != `{"_ferry_op":"delete","id":2,"_ferry_extracted_at":"2024-05-01T12:30:00.123456Z","_ferry_run_id":"r1"}`+"\n" {
		t.Fatalf("delete with metadata: %s", got)
	}
}

// TestModesRefused: the modes a file that only appends cannot do fail at
// OpenStream, naming the mode and what to use instead.
func TestModesRefused(t *testing.T) {
	d := open(t, t.TempDir(), jsonl.Config{})
	for _, m := range []dest.Mode{dest.IncrementalDedup, dest.FullRefreshOverwrite} {
		_, err := d.OpenStream(context.Background(), dest.StreamConfig{Pipeline: "p", Stream: "users", Table: "users", Mode: m})
		if err == nil || !strings.Contains(err.Error(), "cannot sync in mode "+string(m)) || !strings.Contains(err.Error(), "incremental_append") {
			t.Errorf("mode %s: %v", m, err)
		}
	}
}

// TestUncommittedIsInvisible: lines written but not committed are neither
// in the file nor read back; Abort drops them; a reopen continues after
// the committed ones.
func TestUncommittedIsInvisible(t *testing.T) {
	dir := t.TempDir()
	d := open(t, dir, jsonl.Config{})
	tb := layout("ev", nil, "id:int")
	w := openStream(t, d, "ev", dest.IncrementalAppend)
	write(t, w, desttest.Chunk(tb, []any{1, at, "r1"}))
	commit(t, w)
	write(t, w, desttest.Chunk(tb, []any{2, at, "r1"}))
	data := filepath.Join(dir, "out", "ev.jsonl")
	if got := strings.Count(readFile(t, data), "\n"); got != 1 {
		t.Fatalf("%d lines in the file before the commit, want 1", got)
	}
	if n, _ := d.Count(context.Background(), "ev"); n != 1 || w.Committed() != 1 {
		t.Fatalf("Count = %d, Committed = %d before the commit", n, w.Committed())
	}
	w.Abort(context.Background())
	if _, err := os.Stat(data + ".pending"); !os.IsNotExist(err) {
		t.Fatalf("pending file left after Abort: %v", err)
	}
	w = openStream(t, d, "ev", dest.IncrementalAppend)
	if w.Existing() == nil || w.Existing().Column("id") == nil {
		t.Fatalf("Existing = %+v", w.Existing())
	}
	write(t, w, desttest.Chunk(tb, []any{3, at, "r1"}))
	w.Finish(context.Background(), nil)
	if got := ids(t, d, "ev"); got != "1,3" {
		t.Fatalf("ids = %s, want 1,3", got)
	}
}

func ids(t *testing.T, d dest.Reader, table string) string {
	t.Helper()
	var out []string
	err := d.ReadRows(context.Background(), table, []string{"id"}, func(cols []string, row []any) error {
		b, _ := json.Marshal(row[0])
		out = append(out, string(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(out, ",")
}

// TestCrashRecovery: what a crash in the middle of a commit leaves past
// the committed length (whole lines and half a line) is never read, and
// is cut off when the table opens next.
func TestCrashRecovery(t *testing.T) {
	dir := t.TempDir()
	d := open(t, dir, jsonl.Config{})
	tb := layout("ev", nil, "id:int")
	w := openStream(t, d, "ev", dest.IncrementalAppend)
	write(t, w, desttest.Chunk(tb, []any{1, at, "r1"}, []any{2, at, "r1"}))
	w.Finish(context.Background(), nil)
	data := filepath.Join(dir, "out", "ev.jsonl")
	committed := readFile(t, data)
	// The interrupted commit's lines, the last one cut.
	f, err := os.OpenFile(data, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"id":3,"_ferry_extracted_at":null,"_ferry_run_id":"r2"}` + "\n" + `{"id":4,"_ferr`)
	f.Close()
	if got := ids(t, d, "ev"); got != "1,2" {
		t.Fatalf("ids read past the committed length: %s", got)
	}
	w = openStream(t, d, "ev", dest.IncrementalAppend)
	if got := readFile(t, data); got != committed {
		t.Fatalf("after reopening, the file is\n%s\nwant\n%s", got, committed)
	}
	write(t, w, desttest.Chunk(tb, []any{5, at, "r3"}))
	w.Finish(context.Background(), nil)
	if got := ids(t, d, "ev"); got != "1,2,5" {
		t.Fatalf("ids = %s", got)
	}
	// A file shorter than committed was changed outside Ferry: refused.
	if err := os.Truncate(data, 10); err != nil {
		t.Fatal(err)
	}
	_, err = d.OpenStream(context.Background(), dest.StreamConfig{Pipeline: "p", Stream: "ev", Table: "ev", Mode: dest.IncrementalAppend})
	if err == nil || !strings.Contains(err.Error(), "changed outside Ferry") {
		t.Fatalf("OpenStream over a truncated file: %v", err)
	}
}

// TestForeignAndLockedFiles: Ferry neither appends to a file it did not
// write nor writes a table another run is writing.
func TestForeignAndLockedFiles(t *testing.T) {
	dir := t.TempDir()
	d := open(t, dir, jsonl.Config{})
	os.Mkdir(filepath.Join(dir, "out"), 0o755)
	if err := os.WriteFile(filepath.Join(dir, "out", "theirs.jsonl"), []byte("{\"x\":1}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := d.OpenStream(context.Background(), dest.StreamConfig{Pipeline: "p", Stream: "theirs", Table: "theirs", Mode: dest.IncrementalAppend})
	if err == nil || !strings.Contains(err.Error(), "Ferry did not write it") {
		t.Fatalf("OpenStream over a foreign file: %v", err)
	}
	if got := readFile(t, filepath.Join(dir, "out", "theirs.jsonl")); got != "{\"x\":1}\n" {
		t.Fatalf("foreign file changed: %q", got)
	}
	w := openStream(t, d, "mine", dest.IncrementalAppend)
	other := open(t, dir, jsonl.Config{})
	_, err = other.OpenStream(context.Background(), dest.StreamConfig{Pipeline: "q", Stream: "mine", Table: "mine", Mode: dest.IncrementalAppend})
	if err == nil || !strings.Contains(err.Error(), "being written by another Ferry run") {
		t.Fatalf("second writer of one table: %v", err)
	}
	// Nor can two streams of one run share a table.
	_, err = d.OpenStream(context.Background(), dest.StreamConfig{Pipeline: "p", Stream: "other", Table: "mine", Mode: dest.IncrementalAppend})
	if err == nil || !strings.Contains(err.Error(), "table mine is being written by stream mine of this run") {
		t.Fatalf("second stream on one table: %v", err)
	}
	w.Abort(context.Background())
	// Nothing was committed: no file is left behind.
	if _, err := os.Stat(filepath.Join(dir, "out", "mine.jsonl")); !os.IsNotExist(err) {
		t.Fatalf("empty file left by an aborted stream: %v", err)
	}
	w = openStream(t, other, "mine", dest.IncrementalAppend)
	w.Abort(context.Background())
}

// TestRejectedFile: rejected records of every stream go to
// _ferry_rejected.jsonl at commit, the record inline; an incomplete last
// line a crash left is cut before the next append.
func TestRejectedFile(t *testing.T) {
	dir := t.TempDir()
	d := open(t, dir, jsonl.Config{})
	tb := layout("a", nil, "id:int")
	w := openStream(t, d, "a", dest.IncrementalAppend)
	c := desttest.Chunk(tb, []any{1, at, "r1"})
	c.Rejects = []record.Reject{{Stream: "a", Reason: `missing primary key field "id"`, Record: []byte(`{"no_id": true}`)}, {Stream: "a", Reason: "not JSON", Record: []byte(`{"x":tru`), Column: "x"}}
	write(t, w, c)
	path := filepath.Join(dir, "out", "_ferry_rejected.jsonl")
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("rejects visible before the commit: %v", err)
	}
	if n, err := d.Count(context.Background(), dest.RejectedTable); n != 0 || err != nil {
		t.Fatalf("Count(rejected) before any = %d, %v", n, err)
	}
	commit(t, w)
	// A crash in another run's append left half a line.
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"run_id":"crashed","pipe`)
	f.Close()
	if n, err := d.Count(context.Background(), dest.RejectedTable); n != 2 || err != nil {
		t.Fatalf("Count(rejected) = %d, %v", n, err)
	}
	c = desttest.Chunk(tb)
	c.Rejects = []record.Reject{{Stream: "a", Reason: "third", Record: []byte(`"a string"`)}}
	write(t, w, c)
	w.Finish(context.Background(), nil)
	var got [][]any
	err := d.ReadRows(context.Background(), dest.RejectedTable, nil, func(cols []string, row []any) error {
		if cols[5] != "reason" || cols[7] != "record" {
			t.Fatalf("columns %v", cols)
		}
		got = append(got, []any{row[2], row[3], row[5], row[6], row[7]})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := [][]any{
		{"a", "a", `missing primary key field "id"`, "", `{"no_id":true}`},
		{"a", "a", "not JSON", "x", `"{\"x\":tru"`},
		{"a", "a", "third", "", `"a string"`},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("rejected:\n got %q\nwant %q", got, want)
	}
	if strings.Contains(readFile(t, path), "crashed") {
		t.Fatal("the incomplete line was not cut")
	}
}

// TestFileMode: files get the configured permissions exactly, the
// directory the same with x where r is set.
func TestFileMode(t *testing.T) {
	dir := t.TempDir()
	d := open(t, dir, jsonl.Config{Dir: "private/out", FileMode: "0600"})
	w := openStream(t, d, "t", dest.IncrementalAppend)
	write(t, w, desttest.Chunk(layout("t", nil, "id:int"), []any{1, at, "r1"}))
	w.Finish(context.Background(), nil)
	for _, f := range []string{"t.jsonl", "t.layout.json"} {
		fi, err := os.Stat(filepath.Join(dir, "private/out", f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, %v", f, fi.Mode().Perm(), err)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "private/out")); err != nil || fi.Mode().Perm()&^0o700 != 0 {
		t.Errorf("directory mode %v, %v", fi.Mode().Perm(), err)
	}
	if _, err := jsonl.Open(context.Background(), &jsonl.Config{Dir: "x", FileMode: "0999"}, dest.Options{Dir: dir}); err == nil {
		t.Error("file_mode 0999 accepted")
	}
}

// TestReadOnlyAndCheck: a read-only open creates nothing and cannot write;
// Check says whether the directory can be written.
func TestReadOnlyAndCheck(t *testing.T) {
	dir := t.TempDir()
	d, err := dest.Open(context.Background(), "jsonl", &jsonl.Config{Dir: "later"}, dest.Options{Dir: dir, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := os.Stat(filepath.Join(dir, "later")); !os.IsNotExist(err) {
		t.Fatalf("read-only open created the directory: %v", err)
	}
	// Nor does an open for writing, until a stream opens.
	w := open(t, dir, jsonl.Config{Dir: "later"})
	if _, err := os.Stat(filepath.Join(dir, "later")); !os.IsNotExist(err) {
		t.Fatalf("open created the directory before any stream: %v", err)
	}
	openStream(t, w, "t", dest.IncrementalAppend).Abort(context.Background())
	if entries, err := os.ReadDir(filepath.Join(dir, "later")); err != nil || len(entries) != 0 {
		t.Fatalf("after a stream opened and aborted: %v, %v", entries, err)
	}
	os.Remove(filepath.Join(dir, "later"))
	if _, err := d.OpenStream(context.Background(), dest.StreamConfig{Table: "t", Mode: dest.IncrementalAppend}); !errors.Is(err, dest.ErrReadOnly) {
		t.Fatalf("OpenStream read-only: %v", err)
	}
	if n, err := d.(dest.Reader).Count(context.Background(), "t"); n != -1 || err != nil {
		t.Fatalf("Count of a table never written = %d, %v", n, err)
	}
	msg, err := d.(dest.Checker).Check(context.Background())
	if err != nil || !strings.Contains(msg, "does not exist yet") {
		t.Fatalf("Check = %q, %v", msg, err)
	}
	os.WriteFile(filepath.Join(dir, "file"), nil, 0o644)
	if _, err := jsonl.Open(context.Background(), &jsonl.Config{Dir: "file"}, dest.Options{Dir: dir}); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("dir is a file: %v", err)
	}
	// Names cannot leave the directory.
	if _, err := d.(dest.Reader).Layout(context.Background(), "../x"); err == nil {
		t.Fatal("Layout(../x) accepted")
	}
}

// TestWidenedColumnsReadBack: lines keep the types they were written
// with; once a column widens, older lines read back as the wider type.
func TestWidenedColumnsReadBack(t *testing.T) {
	d := open(t, t.TempDir(), jsonl.Config{})
	v1 := layout("w", nil, "id:int", "v:int", "b:bool")
	w := openStream(t, d, "w", dest.IncrementalAppend)
	write(t, w, desttest.Chunk(v1, []any{1, 5, true, at, "r1"}))
	commit(t, w)
	v2 := layout("w", nil, "id:int", "v:text", "b:text")
	v2.Version = 2
	write(t, w, desttest.Chunk(v2, []any{2, "five", "maybe", at, "r1"}))
	w.Finish(context.Background(), nil)
	var got []string
	d.ReadRows(context.Background(), "w", []string{"id"}, func(cols []string, row []any) error {
		got = append(got, row[1].(string)+"|"+row[2].(string))
		return nil
	})
	if !reflect.DeepEqual(got, []string{"5|true", "five|maybe"}) {
		t.Fatalf("widened rows = %q", got)
	}
}
