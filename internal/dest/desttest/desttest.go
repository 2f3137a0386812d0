// Package desttest is the behavioural suite every Ferry destination
// passes: modes, atomic state, schema evolution, every type's round trip,
// hostile names, rejected records. A destination's test calls Run with a
// function that opens a fresh, empty destination and the capabilities it
// has; each behaviour runs when the destination has what it needs.
//
// The suite writes through the same normalizer wiring a run uses
// (engine.NewNormalizer) and reads back through the destination's own
// dest.Reader, so any destination kind can pass it. Behaviours that change
// a database behind Ferry's back (a foreign table, a dropped column, an
// index catalog) need the SQL hooks of Caps.
package desttest

import (
	"context"
	"encoding/json"
	"fmt"
	"math/big"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/engine"
	"github.com/ferry-dev/ferry/internal/jsonpath"
	"github.com/ferry-dev/ferry/internal/normalize"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/schema"
	"github.com/ferry-dev/ferry/internal/source"
	"github.com/ferry-dev/ferry/internal/spec"
)

// Open returns a destination over a fresh, empty database. It registers
// its own cleanup.
type Open func(t *testing.T) dest.Destination

// Caps says what a destination can do; the suite runs the behaviours it
// has what they need for, and skips the others (saying why).
type Caps struct {
	// Dedup: incremental_dedup upserts by primary key, the newest cursor
	// winning, and deletes.
	Dedup bool
	// Overwrite: full_refresh_overwrite stages the new rows and swaps them
	// in at Finish, readers seeing the old table until then.
	Overwrite bool
	// State: the destination is a dest.StateKeeper, its state committed in
	// the rows' transaction.
	State bool
	// Unnest: child tables of unnested arrays, replaced with their rows.
	Unnest bool
	// Rejects: rows the destination cannot store, and records the
	// normalizer rejects, land in dest.RejectedTable, readable with the
	// destination's Reader.
	Rejects bool
	// RunLog: the destination is a dest.RunLog readable with Query.
	RunLog bool
	// SQL reaches a destination's database behind Ferry's back; nil skips
	// the behaviours that need it.
	SQL func(d dest.Destination) SQL
}

// SQL is what the suite needs to change a SQL database behind Ferry's
// back and to look at its catalog.
type SQL interface {
	// Exec runs a statement outside Ferry.
	Exec(ctx context.Context, stmt string) error
	// Quote quotes an identifier; Table quotes (and qualifies) a table.
	Quote(ident string) string
	Table(name string) string
	// ColumnType spells a logical type as the destination would.
	ColumnType(t schema.Type) string
	// StagingName is the table a full refresh of table loads.
	StagingName(table string) string
	// IndexQuery returns a query listing table's indexes as rows of
	// (index name, comma-separated columns in order).
	IndexQuery(table string) string
	// TypeChecks reports whether the destination notices a column whose
	// type was changed behind its back.
	TypeChecks() bool
}

// SQLCaps are the capabilities of Ferry's SQL destinations (built on
// sqldest), with indexQuery listing a table's indexes as rows of (name,
// comma-separated columns).
func SQLCaps(indexQuery func(table string) string) Caps {
	return Caps{Dedup: true, Overwrite: true, State: true, Unnest: true, Rejects: true, RunLog: true,
		SQL: func(d dest.Destination) SQL { return SQLOf(d, indexQuery) }}
}

// need is a capability a behaviour needs.
type need func(Caps) bool

var (
	needDedup     need = func(c Caps) bool { return c.Dedup }
	needOverwrite need = func(c Caps) bool { return c.Overwrite }
	needState     need = func(c Caps) bool { return c.State }
	needUnnest    need = func(c Caps) bool { return c.Unnest }
	needRejects   need = func(c Caps) bool { return c.Rejects }
	needRunLog    need = func(c Caps) bool { return c.RunLog }
	needSQL       need = func(c Caps) bool { return c.SQL != nil }
)

// Run runs the suite.
func Run(t *testing.T, open Open, caps Caps) {
	tests := []struct {
		name  string
		fn    func(*testing.T, *target)
		needs []need
	}{
		{"Append", testAppend, nil},
		{"AbortLosesUncommitted", testAbort, []need{needDedup, needState}},
		{"Dedup", testDedup, []need{needDedup}},
		{"DedupNewestCursorWins", testNewestWins, []need{needDedup}},
		{"DedupNullCursor", testNullCursor, []need{needDedup}},
		{"DedupDecimalCursor", testDecimalCursor, []need{needDedup}},
		{"DedupCompositeKey", testCompositeKey, []need{needDedup}},
		{"DedupDelete", testDelete, []need{needDedup}},
		{"Overwrite", testOverwrite, []need{needOverwrite, needState}},
		{"OverwriteResume", testOverwriteResume, []need{needOverwrite}},
		{"OverwriteResumeChildren", testOverwriteResumeChildren, []need{needOverwrite, needUnnest, needSQL}},
		{"StateWithRows", testStateAtomic, []need{needState}},
		{"StateStore", testStateStore, []need{needState}},
		{"Types", testTypes, nil},
		{"AddColumns", testAddColumns, nil},
		{"MigrateMidTransaction", testMigrateMidTransaction, []need{needDedup}},
		{"Widen", testWiden, []need{needDedup}},
		{"HostileNames", testHostileNames, nil},
		{"Rejected", testRejected, []need{needRejects}},
		{"HardValues", testHardValues, []need{needRejects}},
		{"ForeignTable", testForeignTable, []need{needOverwrite, needSQL}},
		{"ChangedOutsideFerry", testChangedOutside, []need{needSQL}},
		{"SwitchAppendToDedup", testSwitchToDedup, []need{needDedup, needOverwrite}},
		{"Runs", testRuns, []need{needRunLog}},
		{"NestedFlatten", testFlatten, nil},
		{"NestedUnnestDedup", testUnnestDedup, []need{needDedup, needUnnest}},
		{"NestedUnnestOverwrite", testUnnestOverwrite, []need{needOverwrite, needUnnest}},
		{"OverwriteIndexes", testOverwriteIndexes, []need{needOverwrite, needUnnest, needSQL}},
		{"NestedUnnestAppend", testUnnestAppend, []need{needUnnest}},
		{"SystemColumnNames", testSystemColumnNames, []need{needDedup, needUnnest}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, n := range tt.needs {
				if !n(caps) {
					t.Skip("the destination lacks a capability this behaviour needs")
				}
			}
			t.Parallel()
			tt.fn(t, &target{Destination: open(t), caps: caps})
		})
	}
}

// target is the destination under test with its capabilities.
type target struct {
	dest.Destination
	caps Caps
}

func (d *target) sql() SQL { return d.caps.SQL(d.Destination) }

// TableName is the destination's name for a stream's table.
func (d *target) TableName(name string) string { return engine.TableName(d.Destination, name) }

// MaxIdentLen is the destination's identifier limit (0: none).
func (d *target) MaxIdentLen() int {
	if n, ok := d.Destination.(dest.Namer); ok {
		return n.MaxIdentLen()
	}
	return 0
}

// State is the destination's state store.
func (d *target) State() dest.StateStore { return d.Destination.(dest.StateKeeper).State() }

// Query runs a query through the destination's Querier.
func (d *target) Query(ctx context.Context, q string) ([]string, [][]string, error) {
	qr, ok := d.Destination.(dest.Querier)
	if !ok {
		return nil, nil, fmt.Errorf("the destination answers no queries")
	}
	return qr.Query(ctx, q)
}

// reader is the destination's Reader.
func (d *target) reader(t *testing.T) dest.Reader {
	t.Helper()
	r, ok := d.Destination.(dest.Reader)
	if !ok {
		t.Fatalf("the destination cannot be read back: it is not a dest.Reader")
	}
	return r
}

// stream writes pages of records through a normalizer, as the engine
// does.
type stream struct {
	t     *testing.T
	d     *target
	name  string
	table string
	mode  dest.Mode
	w     dest.StreamWriter
	n     *normalize.Normalizer
	run   string
}

type opts struct {
	pk     []string
	cursor string
	hints  map[string]schema.Type
	resume bool
	policy schema.Policy
	nested schema.Nesting
}

func open(t *testing.T, d *target, name string, mode dest.Mode, o opts) *stream {
	t.Helper()
	ctx := context.Background()
	s := &stream{t: t, d: d, name: name, table: d.TableName(name), mode: mode, run: fmt.Sprintf("run-%d", time.Now().UnixNano())}
	w, err := d.OpenStream(ctx, dest.StreamConfig{Pipeline: "p", Stream: name, Table: s.table, Mode: mode, RunID: s.run, Resume: o.resume})
	if err != nil {
		t.Fatalf("OpenStream(%s, %s): %v", name, mode, err)
	}
	s.w = w
	info := source.Stream{Name: name, PrimaryKey: o.pk, Cursor: o.cursor, Hints: o.hints}
	n, err := engine.NewNormalizer(s.table, info, spec.SchemaSettings{Policy: o.policy, Nested: o.nested, MaxDepth: 2}, d.Destination, w, s.run)
	if err != nil {
		t.Fatal(err)
	}
	s.n = n
	return s
}

// write converts a JSON array of records and writes it with a checkpoint.
func (s *stream) write(records string, state string) {
	s.t.Helper()
	c := s.chunk(records)
	if state != "" {
		c.Checkpoints = []record.Checkpoint{{Stream: s.name, State: json.RawMessage(state)}}
	}
	if err := s.w.Write(context.Background(), c); err != nil {
		s.t.Fatalf("Write: %v", err)
	}
}

func (s *stream) chunk(records string) *record.Chunk {
	s.t.Helper()
	p := &record.Page{Stream: s.name, Body: []byte(records), Request: "test", FetchedAt: time.Now().UnixMicro()}
	path := jsonpath.MustCompile("")
	path.Spread = true
	if err := jsonpath.Scan(p.Body, []*jsonpath.Path{path}, func(_ int, v []byte) error {
		p.Records = append(p.Records, v)
		return nil
	}); err != nil {
		s.t.Fatalf("records %s: %v", records, err)
	}
	c, _, err := s.n.Page(p, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	return c
}

func (s *stream) commit() {
	s.t.Helper()
	if err := s.w.Commit(context.Background()); err != nil {
		s.t.Fatalf("Commit: %v", err)
	}
}

func (s *stream) finish() {
	s.t.Helper()
	if err := s.w.Finish(context.Background(), nil); err != nil {
		s.t.Fatalf("Finish: %v", err)
	}
}

// rows returns the table's columns cols as canonical text ("|"-joined,
// NULL as NULL), sorted, read back through the destination's Reader.
func rows(t *testing.T, d *target, table string, cols ...string) []string {
	t.Helper()
	var out []string
	err := d.reader(t).ReadRows(context.Background(), table, nil, func(names []string, row []any) error {
		parts := make([]string, len(cols))
		for i, c := range cols {
			j := slices.Index(names, c)
			if j < 0 {
				return fmt.Errorf("table %s has no column %s (it has %v)", table, c, names)
			}
			parts[i] = render(row[j])
		}
		out = append(out, strings.Join(parts, "|"))
		return nil
	})
	if err != nil {
		t.Fatalf("read %s: %v", table, err)
	}
	slices.Sort(out)
	return out
}

// render writes a value read back as text: NULL, true/false, numbers in
// their shortest form, timestamps in RFC 3339 (UTC).
func render(v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case bool:
		return strconv.FormatBool(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case string:
		return x
	}
	return fmt.Sprint(v)
}

func count(t *testing.T, d *target, table string) int64 {
	t.Helper()
	n, err := d.reader(t).Count(context.Background(), table)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func expect(t *testing.T, got, want []string) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("rows:\n got %q\nwant %q", got, want)
	}
}

func testAppend(t *testing.T, d *target) {
	s := open(t, d, "events", dest.IncrementalAppend, opts{cursor: "at"})
	s.write(`[{"id":1,"at":1},{"id":1,"at":2}]`, `{"cursor":"2"}`)
	s.write(`[{"id":2,"at":3}]`, `{"cursor":"3"}`)
	s.commit()
	s.write(`[{"id":3,"at":4}]`, `{"cursor":"4"}`)
	s.finish()
	expect(t, rows(t, d, s.table, "id", "at"), []string{"1|1", "1|2", "2|3", "3|4"})
	// A second run appends.
	s = open(t, d, "events", dest.IncrementalAppend, opts{cursor: "at"})
	s.write(`[{"id":1,"at":5}]`, "")
	s.finish()
	if n := count(t, d, s.table); n != 5 {
		t.Fatalf("count = %d, want 5", n)
	}
}

func testAbort(t *testing.T, d *target) {
	s := open(t, d, "items", dest.IncrementalDedup, opts{pk: []string{"id"}})
	s.write(`[{"id":1}]`, `{"cursor":"a"}`)
	s.commit()
	s.write(`[{"id":2}]`, `{"cursor":"b"}`)
	if err := s.w.Abort(context.Background()); err != nil {
		t.Fatal(err)
	}
	expect(t, rows(t, d, s.table, "id"), []string{"1"})
	st, err := d.State().Load(context.Background(), "p", "items", "")
	if err != nil || string(st) != `{"cursor":"a"}` {
		t.Fatalf("state after abort = %s, %v", st, err)
	}
}

func testDedup(t *testing.T, d *target) {
	s := open(t, d, "users", dest.IncrementalDedup, opts{pk: []string{"id"}})
	s.write(`[{"id":1,"name":"a"},{"id":2,"name":"b"},{"id":1,"name":"a2"}]`, "")
	s.commit()
	s.write(`[{"id":2,"name":"b2"},{"id":3,"name":"c"}]`, "")
	s.finish()
	expect(t, rows(t, d, s.table, "id", "name"), []string{"1|a2", "2|b2", "3|c"})
	s = open(t, d, "users", dest.IncrementalDedup, opts{pk: []string{"id"}})
	s.write(`[{"id":3,"name":"c2"}]`, "")
	s.finish()
	expect(t, rows(t, d, s.table, "id", "name"), []string{"1|a2", "2|b2", "3|c2"})
}

func testNewestWins(t *testing.T, d *target) {
	s := open(t, d, "docs", dest.IncrementalDedup, opts{pk: []string{"id"}, cursor: "v"})
	s.write(`[{"id":1,"v":5,"s":"five"}]`, "")
	s.commit()
	// An older version arriving later (lookback, late page) loses; within
	// one chunk the newest wins whatever the order.
	s.write(`[{"id":1,"v":3,"s":"three"},{"id":2,"v":2,"s":"two"},{"id":2,"v":1,"s":"one"}]`, "")
	s.commit()
	s.write(`[{"id":1,"v":5,"s":"five again"}]`, "")
	s.finish()
	expect(t, rows(t, d, s.table, "id", "v", "s"), []string{"1|5|five again", "2|2|two"})
}

// testNullCursor: a version without a cursor value ranks below any
// version with one, and among equals the later one wins, so the result
// does not depend on how the versions were split into commits.
func testNullCursor(t *testing.T, d *target) {
	versions := []string{
		`{"id":1,"v":5,"s":"a"}`, `{"id":1,"v":null,"s":"b"}`, `{"id":1,"v":3,"s":"c"}`,
		`{"id":2,"v":null,"s":"d"}`, `{"id":2,"v":null,"s":"e"}`,
		`{"id":3,"v":null,"s":"f"}`, `{"id":3,"v":1,"s":"g"}`,
		`{"id":4,"v":2,"s":"h"}`, `{"id":4,"v":2,"s":"i"}`, `{"id":4,"v":null,"s":"j"}`,
	}
	want := []string{"1|a", "2|e", "3|g", "4|i"}
	o := opts{pk: []string{"id"}, cursor: "v", hints: map[string]schema.Type{"v": schema.Int}}
	// All versions in one chunk…
	s := open(t, d, "nullc1", dest.IncrementalDedup, o)
	s.write("["+strings.Join(versions, ",")+"]", "")
	s.finish()
	expect(t, rows(t, d, s.table, "id", "s"), want)
	// …or each in a commit of its own.
	s = open(t, d, "nullc2", dest.IncrementalDedup, o)
	for _, v := range versions {
		s.write("["+v+"]", "")
		s.commit()
	}
	s.finish()
	expect(t, rows(t, d, s.table, "id", "s"), want)
}

// testDecimalCursor: decimal cursors compare as numbers, not as text.
func testDecimalCursor(t *testing.T, d *target) {
	o := opts{pk: []string{"id"}, cursor: "v", hints: map[string]schema.Type{"v": schema.Decimal}}
	s := open(t, d, "decc", dest.IncrementalDedup, o)
	s.write(`[{"id":1,"v":"9.5","s":"old"}]`, "")
	s.commit()
	s.write(`[{"id":1,"v":"10.25","s":"new"}]`, "")
	s.commit()
	s.write(`[{"id":1,"v":"9.75","s":"late"}]`, "")
	s.finish()
	expect(t, rows(t, d, s.table, "id", "s"), []string{"1|new"})
}

func testCompositeKey(t *testing.T, d *target) {
	s := open(t, d, "lines", dest.IncrementalDedup, opts{pk: []string{"order", "line"}})
	s.write(`[{"order":"A","line":1,"q":1},{"order":"A","line":2,"q":2},{"order":"B","line":1,"q":3}]`, "")
	s.write(`[{"order":"A","line":2,"q":20}]`, "")
	s.finish()
	expect(t, rows(t, d, s.table, "order", "line", "q"), []string{"A|1|1", "A|2|20", "B|1|3"})
}

func testDelete(t *testing.T, d *target) {
	s := open(t, d, "del", dest.IncrementalDedup, opts{pk: []string{"id"}})
	s.write(`[{"id":1},{"id":2},{"id":3}]`, "")
	c := s.chunk(`[{"id":2},{"id":4},{"id":4}]`)
	c.Ops[0] = record.Delete
	c.Ops[2] = record.Delete
	if err := s.w.Write(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	s.finish()
	expect(t, rows(t, d, s.table, "id"), []string{"1", "3"})
}

func testOverwrite(t *testing.T, d *target) {
	ctx := context.Background()
	s := open(t, d, "snap", dest.FullRefreshOverwrite, opts{pk: []string{"id"}})
	s.write(`[{"id":1,"x":"old"},{"id":2,"x":"old"}]`, "")
	s.finish()
	expect(t, rows(t, d, s.table, "id", "x"), []string{"1|old", "2|old"})
	// During the next refresh, readers still see the old table, even after
	// commits; Finish swaps at once.
	s = open(t, d, "snap", dest.FullRefreshOverwrite, opts{pk: []string{"id"}})
	s.write(`[{"id":3,"x":"new","extra":true}]`, `{"pass":{"id":"r2"}}`)
	s.commit()
	expect(t, rows(t, d, s.table, "id", "x"), []string{"1|old", "2|old"})
	s.write(`[{"id":4,"x":"new"},{"id":4,"x":"newer"}]`, "")
	if err := s.w.Finish(ctx, []record.Checkpoint{{Stream: "snap", State: json.RawMessage(`{}`)}}); err != nil {
		t.Fatal(err)
	}
	expect(t, rows(t, d, s.table, "id", "x"), []string{"3|new", "4|newer"})
	if st, _ := d.State().Load(ctx, "p", "snap", ""); string(st) != `{}` {
		t.Fatalf("state after finish = %s", st)
	}
	// A third refresh on the new layout works (indexes and names survived
	// the swap).
	s = open(t, d, "snap", dest.FullRefreshOverwrite, opts{pk: []string{"id"}})
	s.write(`[{"id":5,"x":"third"}]`, "")
	s.finish()
	expect(t, rows(t, d, s.table, "id", "x"), []string{"5|third"})
}

func testOverwriteResume(t *testing.T, d *target) {
	s := open(t, d, "big", dest.FullRefreshOverwrite, opts{pk: []string{"id"}})
	s.write(`[{"id":1}]`, "")
	s.finish()
	// A refresh is interrupted after a commit…
	s = open(t, d, "big", dest.FullRefreshOverwrite, opts{pk: []string{"id"}})
	s.write(`[{"id":10},{"id":11}]`, `{"pass":{"id":"r"}}`)
	s.commit()
	s.write(`[{"id":12}]`, "")
	s.w.Abort(context.Background())
	// …and resumed: committed staged rows stay, the rest is re-read.
	s = open(t, d, "big", dest.FullRefreshOverwrite, opts{pk: []string{"id"}, resume: true})
	s.write(`[{"id":12},{"id":13}]`, "")
	s.finish()
	expect(t, rows(t, d, s.table, "id"), []string{"10", "11", "12", "13"})
	// A new (not resumed) refresh starts from an empty staging table.
	s = open(t, d, "big", dest.FullRefreshOverwrite, opts{pk: []string{"id"}})
	s.write(`[{"id":20}]`, "")
	s.commit()
	s.w.Abort(context.Background())
	s = open(t, d, "big", dest.FullRefreshOverwrite, opts{pk: []string{"id"}})
	s.write(`[{"id":21}]`, "")
	s.finish()
	expect(t, rows(t, d, s.table, "id"), []string{"21"})
}

// testOverwriteResumeChildren: a refresh interrupted after its last page
// committed, with child tables that never existed live, is resumed with
// nothing left to read; the swap still brings in every staged table.
func testOverwriteResumeChildren(t *testing.T, d *target) {
	o := opts{pk: []string{"id"}, nested: schema.Unnest}
	s := open(t, d, "fresh", dest.FullRefreshOverwrite, o)
	s.write(`[{"id":1,"items":[{"sku":"a","opts":[{"k":"x"}]}]},{"id":2,"items":[{"sku":"b"}]}]`, `{"pass":{"id":"r"}}`)
	s.commit()
	s.w.Abort(context.Background())
	o.resume = true
	s = open(t, d, "fresh", dest.FullRefreshOverwrite, o)
	s.finish()
	expect(t, rows(t, d, s.table, "id"), []string{"1", "2"})
	expect(t, children(t, d, s.table+"__items", "sku"), []string{"1|0|a", "2|0|b"})
	expect(t, children(t, d, s.table+"__items__opts", "k"), []string{"1|0|x"})
	for _, table := range []string{s.table, s.table + "__items", s.table + "__items__opts"} {
		if n, _ := d.reader(t).Count(context.Background(), d.sql().StagingName(table)); n >= 0 { // -1: no such table
			t.Errorf("staging table of %s left behind with %d rows", table, n)
		}
	}
	// The next refresh replaces them all, and empties the grandchildren.
	o.resume = false
	s = open(t, d, "fresh", dest.FullRefreshOverwrite, o)
	s.write(`[{"id":3,"items":[{"sku":"c"}]}]`, "")
	s.finish()
	expect(t, rows(t, d, s.table, "id"), []string{"3"})
	expect(t, children(t, d, s.table+"__items", "sku"), []string{"3|0|c"})
	expect(t, children(t, d, s.table+"__items__opts", "k"), nil)
}

func testStateAtomic(t *testing.T, d *target) {
	ctx := context.Background()
	s := open(t, d, "st", dest.IncrementalAppend, opts{cursor: "c"})
	c := s.chunk(`[{"c":1}]`)
	c.Checkpoints = []record.Checkpoint{
		{Stream: "st", Partition: `{"id":1}`, State: json.RawMessage(`{"cursor":"1"}`)},
		{Stream: "st", Partition: `{"id":2}`, State: json.RawMessage(`{"cursor":"x"}`)},
		{Stream: "st", Partition: `{"id":1}`, State: json.RawMessage(`{"cursor":"9"}`)},
	}
	if err := s.w.Write(ctx, c); err != nil {
		t.Fatal(err)
	}
	if st, _ := d.State().Load(ctx, "p", "st", `{"id":1}`); st != nil {
		t.Fatalf("state visible before commit: %s", st)
	}
	s.commit()
	for part, want := range map[string]string{`{"id":1}`: `{"cursor":"9"}`, `{"id":2}`: `{"cursor":"x"}`} {
		st, err := d.State().Load(ctx, "p", "st", part)
		if err != nil || string(st) != want {
			t.Fatalf("state %s = %s, %v; want %s", part, st, err, want)
		}
	}
	s.finish()
}

func testStateStore(t *testing.T, d *target) {
	ctx := context.Background()
	for _, name := range []string{"a", "b"} {
		s := open(t, d, name, dest.IncrementalAppend, opts{})
		c := s.chunk(`[]`)
		c.Checkpoints = []record.Checkpoint{{Stream: name, Partition: "", State: json.RawMessage(`{"cursor":"1"}`)}, {Stream: name, Partition: "k", State: json.RawMessage(`{"cursor":"2"}`)}}
		if err := s.w.Write(ctx, c); err != nil {
			t.Fatal(err)
		}
		s.finish()
	}
	all, err := d.State().List(ctx, "p", "")
	if err != nil || len(all) != 4 || all[0].Stream != "a" || all[0].Partition != "" || all[1].Partition != "k" || all[3].Stream != "b" {
		t.Fatalf("List = %+v, %v", all, err)
	}
	if all[0].UpdatedAt.IsZero() || time.Since(all[0].UpdatedAt) > time.Hour || all[0].RunID == "" {
		t.Fatalf("entry metadata = %+v", all[0])
	}
	if n, err := d.State().Reset(ctx, "p", "a"); err != nil || n != 2 {
		t.Fatalf("Reset(a) = %d, %v", n, err)
	}
	if rest, _ := d.State().List(ctx, "p", ""); len(rest) != 2 || rest[0].Stream != "b" {
		t.Fatalf("after reset: %+v", rest)
	}
	if other, _ := d.State().List(ctx, "other", ""); len(other) != 0 {
		t.Fatalf("other pipeline sees %d entries", len(other))
	}
	if n, _ := d.State().Reset(ctx, "p", ""); n != 2 {
		t.Fatalf("Reset(all) = %d", n)
	}
}

// typed reads the data columns back through the destination's Reader and
// renders each value canonically by its logical type, keyed by column
// name, ordered by order.
func typed(t *testing.T, d *target, table string, layout *schema.Table, order string) []map[string]string {
	t.Helper()
	types := map[string]schema.Type{}
	for _, c := range layout.Columns {
		if c.Origin == schema.FromData {
			types[c.Name] = c.Type
		}
	}
	var out []map[string]string
	err := d.reader(t).ReadRows(context.Background(), table, []string{order}, func(names []string, row []any) error {
		m := map[string]string{}
		for i, name := range names {
			if typ, ok := types[name]; ok {
				m[name] = canon(typ, render(row[i]))
			}
		}
		out = append(out, m)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// canon renders a value read back as text in one form per type.
func canon(t schema.Type, s string) string {
	if s == "NULL" {
		return s
	}
	switch t {
	case schema.Bool:
		switch strings.ToLower(s) {
		case "1", "t", "true":
			return "true"
		case "0", "f", "false":
			return "false"
		}
	case schema.Float:
		f, err := strconv.ParseFloat(s, 64)
		if err == nil {
			return strconv.FormatFloat(f, 'g', -1, 64)
		}
	case schema.Decimal:
		r, ok := new(big.Rat).SetString(s)
		if ok {
			return r.RatString()
		}
	case schema.Timestamp:
		for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999-07", "2006-01-02 15:04:05.999999-07:00", "2006-01-02 15:04:05.999999", "2006-01-02T15:04:05.000000Z"} {
			if ts, err := time.Parse(layout, s); err == nil {
				return ts.UTC().Format(time.RFC3339Nano)
			}
		}
	case schema.JSON:
		var v any
		if json.Unmarshal([]byte(s), &v) == nil {
			b, _ := json.Marshal(v)
			return string(b)
		}
	}
	return s
}

func testTypes(t *testing.T, d *target) {
	s := open(t, d, "types", valueMode(d), opts{pk: []string{"id"}, hints: map[string]schema.Type{"money": schema.Decimal}})
	s.write(`[
	 {"id":1,"b":true,"i":9223372036854775807,"f":1.5,"big":123456789012345678901234567890,"money":"12.50",
	  "ts":"2024-02-29T23:59:59.123456Z","txt":"héllo 🚀 'q' \"dq\" \\ back","j":{"a":[1,"x",null],"b":{"c":true}},"empty":""},
	 {"id":2,"b":false,"i":-9223372036854775808,"f":-0.000001,"big":-1,"money":"0.000000001",
	  "ts":"1969-07-20T20:17:40Z","txt":"line1\nline2\ttab","j":[],"empty":""},
	 {"id":3,"b":null,"i":0,"f":1e300,"big":0.1000000000000000055511151231257827,"money":"-99999999999999999999.99",
	  "ts":"2999-12-31T23:59:59.999999+05:30","txt":"中文","j":{"nested":{"deep":[{"x":1}]}},"empty":null}
	]`, "")
	s.finish()
	l := s.n.Table()
	for col, want := range map[string]schema.Type{"b": schema.Bool, "i": schema.Int, "f": schema.Float, "big": schema.Decimal, "money": schema.Decimal, "ts": schema.Timestamp, "txt": schema.Text, "j": schema.JSON, "empty": schema.Text} {
		if c := l.Column(col); c == nil || c.Type != want {
			t.Fatalf("column %s = %+v, want type %s", col, c, want)
		}
	}
	got := typed(t, d, s.table, l, "id")
	want := []map[string]string{
		{"id": "1", "b": "true", "i": "9223372036854775807", "f": "1.5", "big": "123456789012345678901234567890", "money": "25/2", "ts": "2024-02-29T23:59:59.123456Z", "txt": "héllo 🚀 'q' \"dq\" \\ back", "j": `{"a":[1,"x",null],"b":{"c":true}}`, "empty": ""},
		{"id": "2", "b": "false", "i": "-9223372036854775808", "f": "-1e-06", "big": "-1", "money": "1/1000000000", "ts": "1969-07-20T20:17:40Z", "txt": "line1\nline2\ttab", "j": "[]", "empty": ""},
		{"id": "3", "b": "NULL", "i": "0", "f": "1e+300", "big": "1000000000000000055511151231257827/10000000000000000000000000000000000", "money": "-9999999999999999999999/100", "ts": "2999-12-31T18:29:59.999999Z", "txt": "中文", "j": `{"nested":{"deep":[{"x":1}]}}`, "empty": "NULL"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("values:\n got %q\nwant %q", got, want)
	}
}

func testAddColumns(t *testing.T, d *target) {
	s := open(t, d, "grow", dest.IncrementalAppend, opts{})
	s.write(`[{"id":1}]`, "")
	s.commit()
	s.write(`[{"id":2,"new":"x"}]`, "")
	s.finish()
	s = open(t, d, "grow", dest.IncrementalAppend, opts{})
	if s.w.Existing() == nil || s.w.Existing().Column("new") == nil {
		t.Fatalf("layout not recorded: %+v", s.w.Existing())
	}
	s.write(`[{"id":3,"later":7}]`, "")
	s.finish()
	expect(t, rows(t, d, s.table, "id", "new", "later"), []string{"1|NULL|NULL", "2|x|NULL", "3|NULL|7"})
}

func testWiden(t *testing.T, d *target) {
	s := open(t, d, "wide", dest.IncrementalDedup, opts{pk: []string{"id"}})
	s.write(`[{"id":1,"v":1,"w":true}]`, "")
	s.commit()
	s.write(`[{"id":2,"v":2.5}]`, "")
	s.commit()
	s.write(`[{"id":3,"v":"three","w":"maybe"}]`, "")
	s.finish()
	l := s.n.Table()
	if l.Column("v").Type != schema.Text || l.Column("w").Type != schema.Text {
		t.Fatalf("types = %v %v", l.Column("v").Type, l.Column("w").Type)
	}
	got := rows(t, d, s.table, "id", "v", "w")
	want := []string{"1|1|true", "2|2.5|NULL", "3|three|maybe"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("widened rows:\n got %q\nwant %q", got, want)
	}
	// The key still holds after the widening.
	s = open(t, d, "wide", dest.IncrementalDedup, opts{pk: []string{"id"}})
	s.write(`[{"id":1,"v":"one"}]`, "")
	s.finish()
	if n := count(t, d, s.table); n != 3 {
		t.Fatalf("count after upsert = %d, want 3", n)
	}
}

func testHostileNames(t *testing.T, d *target) {
	long := strings.Repeat("a", 200)
	s := open(t, d, `select"; DROP TABLE x;--`, valueMode(d), opts{pk: []string{"order"}})
	s.write(`[{"order":1,"select":"s","from":"f","\"; DROP TABLE x;--":"inj","it's":"q","Name":"upper","name":"lower","NAME":"caps","日本語":"jp","`+long+`":"l1","`+long+`b":"l2","a.b":"dot","_ferry_run_id":"mine"}]`, "")
	s.finish()
	seen := map[string]bool{}
	var cols []string
	for _, c := range s.n.Table().Columns {
		if len(c.Name) > d.MaxIdentLen() {
			t.Fatalf("column %q longer than %d", c.Name, d.MaxIdentLen())
		}
		if seen[strings.ToLower(c.Name)] {
			t.Fatalf("duplicate column %q", c.Name)
		}
		seen[strings.ToLower(c.Name)] = true
		if c.Origin == schema.FromData {
			cols = append(cols, c.Name)
		}
	}
	got := rows(t, d, s.table, cols...)
	if len(got) != 1 {
		t.Fatalf("rows = %q", got)
	}
	want := "1|s|f|inj|q|upper|lower|caps|jp|l1|l2|dot|mine"
	if got[0] != want {
		t.Fatalf("row = %q, want %q (columns %q)", got[0], want, cols)
	}
}

// rejects reads a stream's rows of the rejected table through the
// destination's Reader, ordered by reason: the columns asked, rendered.
func rejects(t *testing.T, d *target, stream string, cols ...string) [][]string {
	t.Helper()
	var out [][]string
	err := d.reader(t).ReadRows(context.Background(), dest.RejectedTable, []string{"reason"}, func(names []string, row []any) error {
		if render(row[slices.Index(names, "stream")]) != stream {
			return nil
		}
		r := make([]string, len(cols))
		for i, c := range cols {
			j := slices.Index(names, c)
			if j < 0 {
				return fmt.Errorf("the rejected table has no column %s (it has %v)", c, names)
			}
			r[i] = render(row[j])
		}
		out = append(out, r)
		return nil
	})
	if err != nil {
		t.Fatalf("read the rejected table: %v", err)
	}
	return out
}

// valueMode is the mode of the behaviours that test values, names and
// layouts rather than upserts: dedup where the destination has it, append
// elsewhere (their records all have distinct keys).
func valueMode(d *target) dest.Mode {
	if d.caps.Dedup {
		return dest.IncrementalDedup
	}
	return dest.IncrementalAppend
}

func testRejected(t *testing.T, d *target) {
	s := open(t, d, "rej", valueMode(d), opts{pk: []string{"id"}})
	s.write(`[{"id":1},{"no_id":true},"not an object"]`, "")
	s.finish()
	data := rejects(t, d, "rej", "stream", "reason", "record")
	want := [][]string{{"rej", `missing primary key field "id"`, `{"no_id":true}`}, {"rej", "record is a JSON string, not an object", `"not an object"`}}
	if !reflect.DeepEqual(data, want) {
		t.Fatalf("rejected = %q, want %q", data, want)
	}
	// A destination that keeps rejects readable gives them back, with ids,
	// and removes exactly the ones asked.
	rk, ok := d.Destination.(dest.RejectKeeper)
	if !ok {
		return
	}
	ctx := context.Background()
	got, err := rk.Rejects(ctx, "p", "rej", 10)
	if err != nil || len(got) != 2 {
		t.Fatalf("Rejects = %+v, %v", got, err)
	}
	for _, r := range got {
		if r.ID == "" || r.RunID != s.run || r.Table != s.table || r.Stream != "rej" || r.At.IsZero() || r.Reason == "" {
			t.Fatalf("reject read back = %+v", r)
		}
	}
	if got[0].ID == got[1].ID {
		t.Fatalf("two different rejects share id %s", got[0].ID)
	}
	if other, _ := rk.Rejects(ctx, "other-pipeline", "", 10); len(other) != 0 {
		t.Fatalf("another pipeline's rejects = %+v", other)
	}
	n, err := rk.DeleteRejects(ctx, got[:1])
	if err != nil || n != 1 {
		t.Fatalf("DeleteRejects = %d, %v", n, err)
	}
	left, _ := rk.Rejects(ctx, "p", "", 10)
	if len(left) != 1 || left[0].ID != got[1].ID {
		t.Fatalf("left after deleting one = %+v", left)
	}
}

// testHardValues writes values some databases cannot store. Each record
// must end up either in the table with its exact value or in the rejected
// table with a reason naming the column; the batch and the stream go on.
func testHardValues(t *testing.T, d *target) {
	s := open(t, d, "hard", valueMode(d), opts{pk: []string{"id"}, hints: map[string]schema.Type{"n": schema.Decimal, "ts": schema.Timestamp}})
	records := []string{
		`{"id":1,"txt":"nul \u0000 byte"}`,
		`{"id":2,"ts":"0001-01-01T00:00:00Z"}`,
		`{"id":3,"ts":"9999-12-31T23:59:59.999999Z"}`,
		`{"id":4,"n":1e400}`,
		`{"id":5,"n":123456789012345678901234567890123456789012345678901234567890.123456789}`,
		`{"id":6,"txt":"` + strings.Repeat("x", 70000) + `"}`,
		`{"id":7,"txt":"ok"}`,
	}
	s.write("["+strings.Join(records, ",")+"]", "")
	s.finish()
	stored := map[string]bool{}
	for _, r := range rows(t, d, s.table, "id") {
		stored[r] = true
	}
	rej := rejects(t, d, "hard", "record", "reason", "column_name")
	rejected := map[string]string{}
	for _, r := range rej {
		var rec struct{ ID json.Number }
		if err := json.Unmarshal([]byte(r[0]), &rec); err != nil {
			t.Fatalf("rejected payload %.80q is not the record: %v", r[0], err)
		}
		if r[2] == "" || r[2] == "NULL" || !strings.Contains(r[1], r[2]) {
			t.Fatalf("rejection of record %s does not name the column: reason %q, column %q", rec.ID, r[1], r[2])
		}
		rejected[rec.ID.String()] = r[1]
	}
	for i := 1; i <= len(records); i++ {
		id := strconv.Itoa(i)
		if stored[id] == (rejected[id] != "") {
			t.Fatalf("record %s: stored=%v rejected=%q; want exactly one", id, stored[id], rejected[id])
		}
	}
	if !stored["7"] {
		t.Fatalf("the plain record was not stored")
	}
	if w, ok := s.w.(interface{ Rejected() int }); !ok || w.Rejected() != len(rejected) {
		t.Fatalf("writer reports %v rejections, table has %d", s.w.Rejected(), len(rejected))
	}
	// Stored values are exact.
	got := typed(t, d, s.table, s.n.Table(), "id")
	for _, r := range got {
		switch r["id"] {
		case "1":
			if r["txt"] != "nul \x00 byte" {
				t.Fatalf("NUL text stored as %q", r["txt"])
			}
		case "3":
			if r["ts"] != "9999-12-31T23:59:59.999999Z" {
				t.Fatalf("max timestamp stored as %q", r["ts"])
			}
		case "6":
			if len(r["txt"]) != 70000 {
				t.Fatalf("long text stored with %d bytes", len(r["txt"]))
			}
		}
	}
}

func testForeignTable(t *testing.T, d *target) {
	ctx := context.Background()
	table := d.TableName("theirs")
	if err := d.sql().Exec(ctx, fmt.Sprintf("CREATE TABLE %s (x INTEGER)", d.sql().Table(table))); err != nil {
		t.Fatal(err)
	}
	_, err := d.OpenStream(ctx, dest.StreamConfig{Pipeline: "p", Stream: "theirs", Table: table, Mode: dest.IncrementalDedup, RunID: "r"})
	if err == nil || !strings.Contains(err.Error(), table) || !strings.Contains(err.Error(), "did not create") {
		t.Fatalf("OpenStream over a foreign table: %v", err)
	}
	// A full refresh replaces it, as asked.
	s := open(t, d, "theirs", dest.FullRefreshOverwrite, opts{})
	s.write(`[{"y":1}]`, "")
	s.finish()
	expect(t, rows(t, d, table, "y"), []string{"1"})
}

func testSwitchToDedup(t *testing.T, d *target) {
	s := open(t, d, "sw", dest.IncrementalAppend, opts{pk: []string{"id"}})
	s.write(`[{"id":1,"v":"a"},{"id":1,"v":"b"}]`, "")
	s.finish()
	// Duplicate keys: dedup cannot enforce the key, and says why.
	s = open(t, d, "sw", dest.IncrementalDedup, opts{pk: []string{"id"}})
	err := s.w.Write(context.Background(), s.chunk(`[{"id":2,"v":"c"}]`))
	if err == nil || !strings.Contains(err.Error(), "full_refresh_overwrite") {
		t.Fatalf("dedup over duplicate keys: %v", err)
	}
	s.w.Abort(context.Background())
	// After a refresh, dedup works.
	s = open(t, d, "sw", dest.FullRefreshOverwrite, opts{pk: []string{"id"}})
	s.write(`[{"id":1,"v":"x"}]`, "")
	s.finish()
	s = open(t, d, "sw", dest.IncrementalDedup, opts{pk: []string{"id"}})
	s.write(`[{"id":1,"v":"y"},{"id":2,"v":"z"}]`, "")
	s.finish()
	expect(t, rows(t, d, s.table, "id", "v"), []string{"1|y", "2|z"})
}

func testRuns(t *testing.T, d *target) {
	ctx := context.Background()
	now := time.Now()
	rl := d.Destination.(dest.RunLog)
	if err := rl.RecordRun(ctx, dest.Run{ID: "r1", Pipeline: "p", StartedAt: now, FinishedAt: now, Status: dest.Succeeded, Summary: json.RawMessage(`{"a":1}`)}); err != nil {
		t.Fatal(err)
	}
	if err := rl.RecordRun(ctx, dest.Run{ID: "r1", Pipeline: "p", StartedAt: now, FinishedAt: now, Status: dest.Failed, Summary: json.RawMessage(`{}`)}); err != nil {
		t.Fatal(err)
	}
	_, data, err := d.Query(ctx, fmt.Sprintf("SELECT %s, %s FROM %s", d.sqlQuote("run_id"), d.sqlQuote("status"), d.sqlTable(dest.RunsTable)))
	if err != nil || len(data) != 1 || data[0][1] != "failed" {
		t.Fatalf("runs = %q, %v", data, err)
	}
	if n, err := d.reader(t).Count(ctx, "no_such_table"); err != nil || n != -1 {
		t.Fatalf("Count(missing) = %d, %v", n, err)
	}
}

func testFlatten(t *testing.T, d *target) {
	s := open(t, d, "flat", valueMode(d), opts{pk: []string{"id"}, nested: schema.Flatten})
	s.write(`[{"id":1,"addr":{"city":"Oslo","geo":{"lat":59.9,"deep":{"x":1}}},"tags":["a"]}]`, "")
	s.finish()
	expect(t, rows(t, d, s.table, "id", "addr__city", "addr__geo__lat", "tags"), []string{`1|Oslo|59.9|["a"]`})
	got := typed(t, d, s.table, s.n.Table(), "id")
	if got[0]["addr__geo__deep"] != `{"x":1}` {
		t.Fatalf("below max_depth objects stay JSON: %q", got[0]["addr__geo__deep"])
	}
}

// children returns "root|index|value" rows of a child table.
func children(t *testing.T, d *target, table string, cols ...string) []string {
	t.Helper()
	return rows(t, d, table, append([]string{schema.ColRootPrefix + "id", schema.ColListIndex}, cols...)...)
}

func testUnnestDedup(t *testing.T, d *target) {
	o := opts{pk: []string{"id"}, cursor: "v", nested: schema.Unnest}
	s := open(t, d, "ord", dest.IncrementalDedup, o)
	s.write(`[{"id":1,"v":1,"items":[{"sku":"a","opts":[{"k":"x"},{"k":"y"}]},{"sku":"b"}],"tags":["t1"]},{"id":2,"v":1,"items":[{"sku":"c"}]}]`, "")
	s.finish()
	items := s.table + "__items"
	expect(t, children(t, d, items, "sku"), []string{"1|0|a", "1|1|b", "2|0|c"})
	expect(t, children(t, d, items+"__opts", "k"), []string{"1|0|x", "1|1|y"})
	expect(t, children(t, d, s.table+"__tags", "value"), []string{"1|0|t1"})

	// Order 1 changes: one item, no tags. Its old children go, order 2's
	// stay. An older version of order 2 arriving later does not replace
	// its children either.
	s = open(t, d, "ord", dest.IncrementalDedup, o)
	s.write(`[{"id":1,"v":2,"items":[{"sku":"a2"}]}]`, "")
	s.commit()
	s.write(`[{"id":2,"v":0,"items":[{"sku":"stale"}]}]`, "")
	s.finish()
	expect(t, children(t, d, items, "sku"), []string{"1|0|a2", "2|0|c"})
	expect(t, children(t, d, items+"__opts", "k"), nil)
	expect(t, children(t, d, s.table+"__tags", "value"), nil)
	// Every child row points at an existing parent row.
	parents := map[string]bool{}
	for _, r := range rows(t, d, s.table, schema.ColRowID) {
		parents[r] = true
	}
	for _, r := range rows(t, d, items, schema.ColParentRowID) {
		if !parents[r] {
			t.Fatalf("child row of %s points at parent row %s, which does not exist", items, r)
		}
	}
}

func testUnnestOverwrite(t *testing.T, d *target) {
	o := opts{pk: []string{"id"}, nested: schema.Unnest}
	s := open(t, d, "snapn", dest.FullRefreshOverwrite, o)
	s.write(`[{"id":1,"items":[{"sku":"a"}],"tags":["x","y"]}]`, "")
	s.finish()
	s = open(t, d, "snapn", dest.FullRefreshOverwrite, o)
	s.write(`[{"id":2,"items":[{"sku":"b"},{"sku":"c"}]}]`, "")
	s.commit()
	// Readers see the old tables until the swap.
	expect(t, children(t, d, s.table+"__items", "sku"), []string{"1|0|a"})
	s.finish()
	expect(t, rows(t, d, s.table, "id"), []string{"2"})
	expect(t, children(t, d, s.table+"__items", "sku"), []string{"2|0|b", "2|1|c"})
	// No tags in the new data: the tags table is emptied, not left stale.
	expect(t, children(t, d, s.table+"__tags", "value"), nil)
}

// testOverwriteIndexes: every full refresh, the staging tables have the
// lookup indexes while they load, and after the swap each live table has
// each of them exactly once.
func testOverwriteIndexes(t *testing.T, d *target) {
	o := opts{pk: []string{"id"}, nested: schema.Unnest}
	root := d.TableName("snapix")
	want := map[string][]string{
		root:                   {"id", schema.ColRowID},
		root + "__items":       {schema.ColRootPrefix + "id", schema.ColParentRowID, schema.ColRowID},
		root + "__items__opts": {schema.ColRootPrefix + "id", schema.ColParentRowID},
	}
	check := func(when string, name func(string) string) {
		t.Helper()
		for table, cols := range want {
			got := indexes(t, d, name(table))
			for _, c := range cols {
				if got[c] == 0 {
					t.Errorf("%s: %s has no index on %s (indexes: %v)", when, name(table), c, got)
				}
			}
			for c, n := range got {
				if n > 1 {
					t.Errorf("%s: %s has %d indexes on %s", when, name(table), n, c)
				}
			}
		}
	}
	for run := 0; run < 3; run++ {
		s := open(t, d, "snapix", dest.FullRefreshOverwrite, o)
		s.write(fmt.Sprintf(`[{"id":1,"items":[{"sku":"a%d","opts":[{"k":"x"}]}]},{"id":2,"items":[{"sku":"b","opts":[{"k":"y"},{"k":"z"}]}]}]`, run), "")
		s.commit()
		check(fmt.Sprintf("run %d, loading", run), d.sql().StagingName)
		s.finish()
		check(fmt.Sprintf("run %d, swapped", run), func(table string) string { return table })
		expect(t, children(t, d, root+"__items", "sku"), []string{fmt.Sprintf("1|0|a%d", run), "2|0|b"})
		expect(t, children(t, d, root+"__items__opts", "k"), []string{"1|0|x", "2|0|y", "2|1|z"})
	}
}

// indexes counts a table's indexes by their comma-separated columns.
func indexes(t *testing.T, d *target, table string) map[string]int {
	t.Helper()
	q := d.sql().IndexQuery(table)
	_, data, err := d.Query(context.Background(), q)
	if err != nil {
		t.Fatalf("indexes of %s: %v", table, err)
	}
	if len(data) == 0 {
		t.Fatalf("%s has no indexes (or does not exist)", table)
	}
	got := map[string]int{}
	for _, r := range data {
		got[r[1]]++
	}
	return got
}

func testUnnestAppend(t *testing.T, d *target) {
	o := opts{pk: []string{"id"}, nested: schema.Unnest}
	for i := 0; i < 2; i++ {
		s := open(t, d, "evn", dest.IncrementalAppend, o)
		s.write(`[{"id":1,"list":[10,20]}]`, "")
		s.finish()
	}
	expect(t, children(t, d, d.TableName("evn")+"__list", "value"), []string{"1|0|10", "1|0|10", "1|1|20", "1|1|20"})
}

// testChangedOutsideFerry: a column someone dropped comes back; a column
// whose type someone changed is reported, naming table and column.
func testChangedOutside(t *testing.T, d *target) {
	ctx := context.Background()
	s := open(t, d, "mine", dest.IncrementalAppend, opts{})
	s.write(`[{"id":1,"note":"a","n":5}]`, "")
	s.finish()
	db := d.sql()
	if err := db.Exec(ctx, fmt.Sprintf("ALTER TABLE %s DROP COLUMN %s", db.Table(s.table), db.Quote("note"))); err != nil {
		t.Fatal(err)
	}
	s = open(t, d, "mine", dest.IncrementalAppend, opts{})
	s.write(`[{"id":2,"note":"b","n":6}]`, "")
	s.finish()
	expect(t, rows(t, d, s.table, "id", "note"), []string{"1|NULL", "2|b"})
	if !db.TypeChecks() {
		return
	}
	// Replace column n (an integer) with a float column behind Ferry's back.
	for _, stmt := range []string{
		fmt.Sprintf("ALTER TABLE %s DROP COLUMN %s", db.Table(s.table), db.Quote("n")),
		fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s %s", db.Table(s.table), db.Quote("n"), db.ColumnType(schema.Float)),
	} {
		if err := db.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	_, err := d.OpenStream(ctx, dest.StreamConfig{Pipeline: "p", Stream: "mine", Table: s.table, Mode: dest.IncrementalAppend, RunID: "r"})
	if err == nil || !strings.Contains(err.Error(), "changed outside Ferry") || !strings.Contains(err.Error(), "column n ") {
		t.Fatalf("OpenStream over a changed table: %v", err)
	}
}

// testMigrateMidTransaction changes the layout between two chunks of one
// transaction: the rows loaded before the change must land too.
func testMigrateMidTransaction(t *testing.T, d *target) {
	s := open(t, d, "mid", dest.IncrementalDedup, opts{pk: []string{"id"}})
	s.write(`[{"id":1,"a":"x"}]`, "")
	s.write(`[{"id":2,"a":"y","b":"z"},{"id":1,"a":"w"}]`, "")
	s.finish()
	expect(t, rows(t, d, s.table, "id", "a", "b"), []string{"1|w|NULL", "2|y|z"})
}

// Chunk builds a chunk of tb from rows of Go values in column order: nil,
// bool, int, int64, float64, string (decimal, text or JSON) or time.Time.
// A row whose first value is a record.Op has that operation (default
// Upsert). Each row's raw record is {"row":N}, N counting from 0, so a
// rejected row can be told apart.
func Chunk(tb *schema.Table, rows ...[]any) *record.Chunk {
	c := record.NewChunk(tb, len(rows))
	for _, row := range rows {
		op := record.Upsert
		if len(row) > 0 {
			if o, ok := row[0].(record.Op); ok {
				op, row = o, row[1:]
			}
		}
		for j, v := range row {
			vec, t := &c.Cols[j], tb.Columns[j].Type
			switch x := v.(type) {
			case nil:
				vec.AppendNull(t)
			case bool:
				b := int64(0)
				if x {
					b = 1
				}
				vec.AppendInt(b, nil)
			case int:
				vec.AppendInt(int64(x), nil)
			case int64:
				vec.AppendInt(x, nil)
			case float64:
				vec.AppendFloat(x, nil)
			case string:
				vec.AppendBytes([]byte(x))
			case time.Time:
				vec.AppendInt(x.UnixMicro(), nil)
			default:
				panic(fmt.Sprintf("desttest.Chunk: unsupported value %T", v))
			}
		}
		c.Ops = append(c.Ops, op)
		c.Raw = append(c.Raw, []byte(fmt.Sprintf(`{"row":%d}`, c.Len)))
		c.Len++
	}
	return c
}

func (d *target) sqlQuote(name string) string {
	if d.caps.SQL != nil {
		return d.sql().Quote(name)
	}
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

func (d *target) sqlTable(name string) string {
	if d.caps.SQL != nil {
		return d.sql().Table(name)
	}
	return d.sqlQuote(name)
}

// reservedColumns are the column names the destination keeps for itself
// (its ReservedColumns, as in dest.Limits), nil if none.
func (d *target) reservedColumns() []string {
	if l, ok := d.Destination.(interface{ ReservedColumns() []string }); ok {
		return l.ReservedColumns()
	}
	return nil
}

// testSystemColumnNames writes records whose keys are the column names
// the destination reserves (system columns such as PostgreSQL's xmin), as
// they are and upper-cased, as the primary key, as fields and in an
// unnested array. Every record lands with its exact values, in columns
// named otherwise; nothing is rejected; the next run keeps the names.
func testSystemColumnNames(t *testing.T, d *target) {
	reserved := d.reservedColumns()
	if len(reserved) == 0 {
		t.Skip("the destination reserves no column names")
	}
	pk := reserved[0]
	record := func(id int) (string, map[string]string, []string) {
		fields := map[string]string{pk: strconv.Itoa(id)}
		var child []string
		for _, r := range reserved {
			fields[strings.ToUpper(r)] = fmt.Sprintf("%s-upper-%d", r, id)
			if r != pk {
				fields[r] = fmt.Sprintf("%s-%d", r, id)
			}
			child = append(child, fmt.Sprintf(`"%s":"%s-child-%d"`, r, r, id))
		}
		var members []string
		for k, v := range fields {
			if k == pk {
				members = append(members, fmt.Sprintf(`"%s":%s`, k, v))
			} else {
				members = append(members, fmt.Sprintf(`"%s":"%s"`, k, v))
			}
		}
		members = append(members, `"items":[{`+strings.Join(child, ",")+`}]`)
		var want []string
		for _, r := range reserved {
			want = append(want, fmt.Sprintf("%d|0|%s-child-%d", id, r, id))
		}
		return "{" + strings.Join(members, ",") + "}", fields, want
	}
	// noReserved fails the test if table has a column with a reserved name,
	// in any case.
	noReserved := func(table string) {
		t.Helper()
		err := d.reader(t).ReadRows(context.Background(), table, nil, func(names []string, _ []any) error {
			for _, c := range names {
				for _, r := range reserved {
					if strings.EqualFold(c, r) {
						t.Errorf("table %s has a column named %s", table, c)
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("read %s: %v", table, err)
		}
	}
	o := opts{pk: []string{pk}, nested: schema.Unnest}
	names := map[string]string{} // key → column, from the first run
	var wantChild []string
	for run, ids := range [][]int{{1, 2}, {3}} {
		s := open(t, d, "sys", dest.IncrementalDedup, o)
		var recs []string
		for _, id := range ids {
			rec, _, child := record(id)
			recs, wantChild = append(recs, rec), append(wantChild, child...)
		}
		s.write("["+strings.Join(recs, ",")+"]", "")
		s.finish()
		if n := s.w.Rejected(); n != 0 {
			t.Fatalf("run %d: %d rows rejected", run+1, n)
		}
		items := s.table + "__items"
		noReserved(s.table)
		noReserved(items)
		// Every key has a column of its own, the same in every run, that
		// holds the record's exact value.
		_, fields, _ := record(1)
		var keys, cols []string
		for _, c := range s.n.Table().Columns {
			if c.Origin != schema.FromData || len(c.Path) != 1 {
				continue
			}
			key := c.Path[0]
			if old, ok := names[key]; ok && old != c.Name {
				t.Errorf("run %d: key %q is in column %s, was %s", run+1, key, c.Name, old)
			}
			names[key] = c.Name
			if _, ok := fields[key]; ok {
				keys, cols = append(keys, key), append(cols, c.Name)
			}
		}
		if len(keys) != len(fields) {
			t.Fatalf("run %d: columns for %q, want one for each of %v", run+1, keys, fields)
		}
		var wantRows []string
		for id := 1; id <= ids[len(ids)-1]; id++ {
			_, rec, _ := record(id)
			var vals []string
			for _, k := range keys {
				vals = append(vals, rec[k])
			}
			wantRows = append(wantRows, strings.Join(vals, "|"))
		}
		slices.Sort(wantRows)
		expect(t, rows(t, d, s.table, cols...), wantRows)
		var childCols []string
		for _, c := range s.n.Children()[0].Columns {
			if c.Origin == schema.FromData {
				childCols = append(childCols, c.Name)
			}
		}
		if len(childCols) != len(reserved) {
			t.Fatalf("child columns %q, want one for each of %q", childCols, reserved)
		}
		root := schema.ColRootPrefix + names[pk]
		var gotChild []string
		for _, c := range childCols {
			gotChild = append(gotChild, rows(t, d, items, root, schema.ColListIndex, c)...)
		}
		slices.Sort(gotChild)
		slices.Sort(wantChild)
		expect(t, gotChild, wantChild)
	}
	if d.caps.Rejects {
		if n := count(t, d, dest.RejectedTable); n != 0 {
			t.Fatalf("%d records rejected", n)
		}
	}
}

// WriteColumns writes two rows into a new append table of exactly columns
// columns, Ferry's own included, the others text (the type that leaves
// the fewest columns in every database) holding one-byte values but the
// first: a timestamp in the first row and text in the second, so that the
// table is created, then the column widened to text (which MySQL does
// through a temporary column). It returns the first error of writing and
// committing; when there is none, both rows must be in the table.
func WriteColumns(t *testing.T, dst dest.Destination, name string, columns int) error {
	t.Helper()
	ctx := context.Background()
	d := &target{Destination: dst}
	s := open(t, d, name, dest.IncrementalAppend, opts{})
	defer s.w.Abort(ctx)
	// The database is under test, not the normalizer's column budget
	// (which stops at the destination's limit): no budget.
	n, err := normalize.New(normalize.Options{Table: s.table, RunID: s.run, MaxColumns: -1})
	if err != nil {
		t.Fatal(err)
	}
	s.n = n
	data := columns - len(s.n.Table().Columns)
	record := func(first string) string {
		var b strings.Builder
		fmt.Fprintf(&b, `[{"c0":%q`, first)
		for i := 1; i < data; i++ {
			fmt.Fprintf(&b, `,"c%d":"v"`, i)
		}
		b.WriteString("}]")
		return b.String()
	}
	for i, first := range []string{"2024-05-01T12:30:00Z", "v"} {
		c := s.chunk(record(first))
		if got := len(c.Table.Columns); got != columns {
			t.Fatalf("table %s has %d columns, want %d", s.table, got, columns)
		}
		if want := []schema.Type{schema.Timestamp, schema.Text}[i]; c.Table.Column("c0").Type != want {
			t.Fatalf("column c0 of %s is %s, want %s", s.table, c.Table.Column("c0").Type, want)
		}
		if err := s.w.Write(ctx, c); err != nil {
			return err
		}
		if err := s.w.Commit(ctx); err != nil {
			return err
		}
	}
	if err := s.w.Finish(ctx, nil); err != nil {
		return err
	}
	if n := count(t, d, s.table); n != 2 || s.w.Rejected() != 0 {
		t.Fatalf("table %s of %d columns: %d rows, %d rejected; want both rows", s.table, columns, n, s.w.Rejected())
	}
	return nil
}
