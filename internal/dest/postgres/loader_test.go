package postgres

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/dest/desttest"
	"github.com/ferry-dev/ferry/internal/dest/sqldest"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/schema"
)

// layout builds a table layout from name:type pairs.
func layout(name string, pk []string, cursor string, cols ...string) *schema.Table {
	tb := &schema.Table{Name: name, Version: 1, PrimaryKey: pk, Cursor: cursor}
	for _, c := range cols {
		n, typ, _ := strings.Cut(c, ":")
		ty, err := schema.ParseType(typ)
		if err != nil {
			panic(err)
		}
		tb.Columns = append(tb.Columns, schema.Column{Name: n, Type: ty, Path: []string{n}})
	}
	return tb
}

// write writes chunks through a stream writer and finishes it.
func write(t *testing.T, d *sqldest.Destination, table string, mode dest.Mode, chunks ...*record.Chunk) dest.StreamWriter {
	t.Helper()
	ctx := context.Background()
	w, err := d.OpenStream(ctx, dest.StreamConfig{Pipeline: "p", Stream: table, Table: table, Mode: mode, RunID: "r"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range chunks {
		if err := w.Write(ctx, c); err != nil {
			t.Fatalf("Write: %v", err)
		}
	}
	if err := w.Finish(ctx, nil); err != nil {
		t.Fatalf("Finish: %v", err)
	}
	return w
}

// query returns the rows of a query as text, joined by |.
func query(t *testing.T, d *sqldest.Destination, sql string) []string {
	t.Helper()
	_, rows, err := d.Query(context.Background(), sql)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	var out []string
	for _, r := range rows {
		out = append(out, strings.Join(r, "|"))
	}
	return out
}

func expectRows(t *testing.T, got []string, want ...string) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("rows:\n got %q\nwant %q", got, want)
	}
}

func TestRefusedValues(t *testing.T) {
	t.Parallel()
	d := openTest(t, nil)
	tb := layout("refused", []string{"id"}, "", "id:int", "txt:text", "j:json", "n:decimal")
	big := "1" + strings.Repeat("0", 131072)
	w := write(t, d, "refused", dest.IncrementalDedup, desttest.Chunk(tb,
		[]any{1, "ok", `{"a":"b"}`, "1.5"},
		[]any{2, "nul \x00 here", nil, nil},
		[]any{3, "bad utf8 \xff", nil, nil},
		[]any{4, nil, `{"a":"\u0000"}`, nil},
		[]any{5, nil, `["\ud800"]`, nil},
		[]any{6, nil, `["\udc00\ud800"]`, nil},
		[]any{7, nil, `[1e200000]`, nil},
		[]any{8, nil, nil, big},
		[]any{9, nil, nil, "1e-16384"},
		[]any{10, nil, `{"emoji":"\ud83d\ude80","e":1.5e3,"s":"1e99999"}`, "-1e131071"},
		[]any{11, "last", nil, "not a number"},
	))
	if w.Rejected() != 9 {
		t.Errorf("Rejected() = %d, want 9", w.Rejected())
	}
	expectRows(t, query(t, d, `SELECT id, txt, j::text, length(n::text) FROM refused ORDER BY id`),
		`1|ok|{"a": "b"}|3`, `10|NULL|{"e": 1500, "s": "1e99999", "emoji": "🚀"}|131073`)
	got := query(t, d, `SELECT column_name, reason, record FROM _ferry_rejected ORDER BY length(record), record`)
	want := []string{
		"txt|column txt: text contains the character U+0000 (NUL), which PostgreSQL cannot store|{\"row\":1}",
		"txt|column txt: text is not valid UTF-8|{\"row\":2}",
		"j|column j: JSON string contains \\u0000, which PostgreSQL's jsonb cannot store|{\"row\":3}",
		"j|column j: JSON string contains an unpaired UTF-16 surrogate escape, which PostgreSQL's jsonb refuses|{\"row\":4}",
		"j|column j: JSON string contains an unpaired UTF-16 surrogate escape, which PostgreSQL's jsonb refuses|{\"row\":5}",
		"j|column j: JSON number has more than 131072 digits before the decimal point, the most PostgreSQL's numeric holds|{\"row\":6}",
		"n|column n: number has more than 131072 digits before the decimal point, the most PostgreSQL's numeric holds|{\"row\":7}",
		"n|column n: number has more than 16383 digits after the decimal point, the most PostgreSQL's numeric holds|{\"row\":8}",
		"n|column n: not a decimal number|{\"row\":10}",
	}
	expectRows(t, got, want...)
}

func TestTimestamps(t *testing.T) {
	t.Parallel()
	d := openTest(t, nil)
	tb := layout("ts", nil, "", "id:int", "ts:timestamp")
	values := []string{
		"0001-01-01T00:00:00Z",
		"1969-12-31T23:59:59.999999Z",
		"1970-01-01T00:00:00Z",
		"1999-12-31T23:59:59.999999Z",
		"2000-01-01T00:00:00Z",
		"2000-01-01T00:00:00.000001Z",
		"2024-02-29T23:59:59.5+05:30",
		"9999-12-31T23:59:59.999999Z",
	}
	var rows [][]any
	for i, v := range values {
		ts, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, []any{i, ts})
	}
	write(t, d, "ts", dest.IncrementalAppend, desttest.Chunk(tb, rows...))
	got := query(t, d, `SELECT ts::text, (extract(epoch FROM ts) * 1000000)::bigint FROM ts ORDER BY id`)
	var want []string
	for i, v := range values {
		ts, _ := time.Parse(time.RFC3339Nano, v)
		want = append(want, fmt.Sprintf("%s|%d", strings.TrimSuffix(ts.UTC().Format("2006-01-02 15:04:05.999999"), ".")+"+00", rows[i][1].(time.Time).UnixMicro()))
	}
	expectRows(t, got, want...)
}

// TestServerErrorMidCopy makes the server refuse a row halfway through a
// streamed COPY: the error names the table and the row, the transaction
// is lost, and the destination keeps working.
func TestServerErrorMidCopy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := openTest(t, nil)
	tb := layout("checked", nil, "", "id:int", "v:int")
	write(t, d, "checked", dest.IncrementalAppend, desttest.Chunk(tb, []any{0, 1}))
	if err := d.DB().Exec(ctx, `ALTER TABLE checked ADD CONSTRAINT small CHECK (v < 100)`); err != nil {
		t.Fatal(err)
	}
	w, err := d.OpenStream(ctx, dest.StreamConfig{Pipeline: "p", Stream: "checked", Table: "checked", Mode: dest.IncrementalAppend, RunID: "r"})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		var rows [][]any
		for j := 0; j < 1000; j++ {
			v := 1
			if i == 3 && j == 500 {
				v = 1000
			}
			rows = append(rows, []any{i*1000 + j, v})
		}
		if err = w.Write(ctx, desttest.Chunk(tb, rows...)); err != nil {
			break
		}
	}
	if err == nil {
		err = w.Commit(ctx)
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23514" {
		t.Fatalf("error = %v, want a check violation", err)
	}
	for _, s := range []string{"checked", "small", "line 2501"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
	if err := w.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	write(t, d, "checked", dest.IncrementalAppend, desttest.Chunk(tb, []any{9, 9}))
	expectRows(t, query(t, d, `SELECT id, v FROM checked ORDER BY id`), "0|1", "9|9")
}

func TestWidenConversions(t *testing.T) {
	t.Parallel()
	d := openTest(t, nil)
	v1 := layout("wide", []string{"id"}, "", "id:int", "b:bool", "ts:timestamp", "f:float", "i:int", "j:json", "fd:float", "id2:int")
	ts1 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	ts2 := time.Date(2024, 1, 1, 12, 30, 0, 500000000, time.UTC)
	c1 := desttest.Chunk(v1,
		[]any{1, true, ts1, 0.1, 7, `{"a":[1,2]}`, 0.1, 1},
		[]any{2, false, ts2, 1e300, -7, `[]`, 2.5, 2},
		[]any{3, nil, nil, nil, nil, nil, nil, nil})
	v2 := layout("wide", []string{"id"}, "", "id:int", "b:text", "ts:text", "f:text", "i:float", "j:text", "fd:decimal", "id2:decimal")
	v2.Version = 2
	c2 := desttest.Chunk(v2, []any{4, "x", "y", "z", 1.5, "w", "1.25", "3"})
	write(t, d, "wide", dest.IncrementalDedup, c1, c2)
	expectRows(t, query(t, d, `SELECT id, b, ts, f, i, j, fd, id2 FROM wide ORDER BY id`),
		`1|true|2024-01-01T00:00:00Z|0.1|7|{"a": [1, 2]}|0.1|1`,
		`2|false|2024-01-01T12:30:00.5Z|1e+300|-7|[]|2.5|2`,
		`3|NULL|NULL|NULL|NULL|NULL|NULL|NULL`,
		`4|x|y|z|1.5|w|1.25|3`)
	expectRows(t, query(t, d, `SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = current_schema AND table_name = 'wide' ORDER BY ordinal_position`),
		"id|bigint", "b|text", "ts|text", "f|text", "i|double precision", "j|text", "fd|numeric", "id2|numeric")
}

func TestDedupMerge(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := openTest(t, nil)
	// Keys of several types; repeats within a chunk and across commits;
	// deletes in between.
	tb := layout("m", []string{"k", "n", "at"}, "v", "k:text", "n:decimal", "at:timestamp", "v:int", "s:text")
	at := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
	w, err := d.OpenStream(ctx, dest.StreamConfig{Pipeline: "p", Stream: "m", Table: "m", Mode: dest.IncrementalDedup, RunID: "r"})
	if err != nil {
		t.Fatal(err)
	}
	steps := []*record.Chunk{
		desttest.Chunk(tb, []any{"a", "1.0", at, 1, "a1"}, []any{"b", "2", at, 1, "b1"}, []any{"a", "1.0", at, 3, "a3"}, []any{"a", "1.0", at, 2, "a2"}),
		desttest.Chunk(tb, []any{"a", "1", at, 2, "a2 again"}, []any{"c", "3", at, 1, "c1"}),
		desttest.Chunk(tb, []any{record.Delete, "c", "3", at, nil, nil}, []any{"c", "3.00", at, 0, "c0"}, []any{"d", "4", at, nil, "d-null"}),
		desttest.Chunk(tb, []any{"b", "2", at, 0, "b0 older"}, []any{"b", "2", at.Add(time.Second), 9, "other key"}),
	}
	for i, c := range steps {
		if err := w.Write(ctx, c); err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			if err := w.Commit(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Finish(ctx, nil); err != nil {
		t.Fatal(err)
	}
	expectRows(t, query(t, d, `SELECT k, n, to_char(at, 'HH24:MI:SS'), v, s FROM m ORDER BY k, at`),
		"a|1.0|00:00:00|3|a3",
		"b|2|00:00:00|1|b1",
		"b|2|00:00:01|9|other key",
		"c|3.00|00:00:00|0|c0",
		"d|4|00:00:00|NULL|d-null")
}

func TestOverwriteKeepsIndexName(t *testing.T) {
	t.Parallel()
	d := openTest(t, nil)
	tb := layout("snap", []string{"id"}, "", "id:int", "x:text")
	for _, x := range []string{"one", "two"} {
		write(t, d, "snap", dest.FullRefreshOverwrite, desttest.Chunk(tb, []any{1, x}, []any{1, x + "!"}))
	}
	expectRows(t, query(t, d, `SELECT id, x FROM snap`), "1|two!")
	expectRows(t, query(t, d, `SELECT tablename, indexname FROM pg_indexes WHERE schemaname = current_schema AND tablename NOT LIKE '\_ferry\_%' ORDER BY 1`),
		"snap|_ferry_pk_snap")
}

func TestQueryIsReadOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := openTest(t, nil)
	cols, rows, err := d.Query(ctx, `SELECT 1 AS one, NULL::text AS nothing, '2024-01-01T00:00:00Z'::timestamptz AS at, 0.1::float8 AS f, '{"b":1,"a":2}'::jsonb AS j`)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cols, []string{"one", "nothing", "at", "f", "j"}) || !reflect.DeepEqual(rows, [][]string{{"1", "NULL", "2024-01-01 00:00:00+00", "0.1", `{"a": 2, "b": 1}`}}) {
		t.Fatalf("Query = %q %q", cols, rows)
	}
	if _, _, err := d.Query(ctx, `CREATE TABLE sneaky (x int)`); err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("DDL through Query: %v", err)
	}
	if _, _, err := d.Query(ctx, `SELECT 1; SELECT 2`); err == nil {
		t.Fatal("two statements through Query succeeded")
	}
}

// TestUpsertRoutes exercises the upsert loader's routes: new integer keys
// straight into the table, known or repeated keys held back for the
// merge, a switch to staging everything when most rows are updates,
// deletes in between, and refused rows on either route.
func TestUpsertRoutes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := openTest(t, nil)
	tb := layout("routes", []string{"id"}, "v", "id:int", "v:int", "s:text")
	var first [][]any
	for i := 1; i <= 10; i++ {
		first = append(first, []any{i, 1, "old"})
	}
	write(t, d, "routes", dest.IncrementalDedup, desttest.Chunk(tb, first...))

	w, err := d.OpenStream(ctx, dest.StreamConfig{Pipeline: "p", Stream: "routes", Table: "routes", Mode: dest.IncrementalDedup, RunID: "r"})
	if err != nil {
		t.Fatal(err)
	}
	steps := []*record.Chunk{
		// Mostly new: 11, 12, 13 go straight in; 5 and the repeat of 11
		// are held for the merge.
		desttest.Chunk(tb, []any{11, 5, "new"}, []any{5, 2, "updated"}, []any{12, 1, "new"}, []any{11, 3, "older"}, []any{13, 1, "new"}, []any{14, 1, "bad \x00"}),
		// A delete finishes what came before.
		desttest.Chunk(tb, []any{30, 1, "new"}, []any{record.Delete, 30, nil, nil}, []any{30, 2, "again"}, []any{record.Delete, 6, nil, nil}),
		// 2 is held for the merge.
		desttest.Chunk(tb, []any{40, 5, "new"}, []any{41, 1, "held"}, []any{2, 2, "updated"}),
		// Mostly updates: from here every row goes through the staging
		// table, the held row first.
		desttest.Chunk(tb, []any{3, 2, "updated"}, []any{41, 2, "newer"}, []any{40, 3, "older"}, []any{4, 0, "older"}, []any{50, 1, "new"}, []any{7, 1, "bad \x00"}),
	}
	for _, c := range steps {
		if err := w.Write(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Finish(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if w.Rejected() != 2 {
		t.Errorf("Rejected() = %d, want 2", w.Rejected())
	}
	expectRows(t, query(t, d, `SELECT id, v, s FROM routes ORDER BY id`),
		"1|1|old", "2|2|updated", "3|2|updated", "4|1|old", "5|2|updated", "7|1|old", "8|1|old", "9|1|old", "10|1|old",
		"11|5|new", "12|1|new", "13|1|new", "30|2|again", "40|5|new", "41|2|newer", "50|1|new")

	// A timestamp key, and a text key (always merged).
	at := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	ts := layout("tskey", []string{"at"}, "", "at:timestamp", "s:text")
	write(t, d, "tskey", dest.IncrementalDedup, desttest.Chunk(ts, []any{at, "a"}, []any{at.Add(time.Microsecond), "b"}))
	write(t, d, "tskey", dest.IncrementalDedup, desttest.Chunk(ts, []any{at.Add(time.Microsecond), "b2"}, []any{at.Add(2 * time.Microsecond), "c"}, []any{at, "a2"}))
	expectRows(t, query(t, d, `SELECT s FROM tskey ORDER BY at`), "a2", "b2", "c")
	tx := layout("txtkey", []string{"k"}, "", "k:text", "s:text")
	write(t, d, "txtkey", dest.IncrementalDedup, desttest.Chunk(tx, []any{"a", "1"}, []any{"b", "1"}, []any{"a", "2"}))
	write(t, d, "txtkey", dest.IncrementalDedup, desttest.Chunk(tx, []any{"b", "2"}, []any{"c", "1"}))
	expectRows(t, query(t, d, `SELECT k, s FROM txtkey ORDER BY k`), "a|2", "b|2", "c|1")
}

// TestLoaderRoutes checks, inside the loader, which route rows take.
func TestLoaderRoutes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := openTest(t, nil)
	tb := layout("inside", []string{"id"}, "", "id:int", "s:text")
	write(t, d, "inside", dest.IncrementalDedup, desttest.Chunk(tb, []any{1, "a"}, []any{2, "a"}))
	tx, err := d.DB().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	sl, err := d.Dialect().NewLoader(tx, sqldest.Target{Table: "inside", Layout: tb, Upsert: true})
	if err != nil {
		t.Fatal(err)
	}
	l := sl.(*loader)
	load := func(rows ...[]any) {
		t.Helper()
		if bad, err := l.Load(ctx, desttest.Chunk(tb, rows...)); err != nil || len(bad) > 0 {
			t.Fatalf("Load: %v %v", bad, err)
		}
	}
	load([]any{3, "b"}, []any{1, "b"}, []any{4, "b"})
	if l.high != 2 || l.allStaged || l.intoStage || l.heldRows != 1 || l.staging != 1 {
		t.Fatalf("after a mostly new chunk: high %d allStaged %v intoStage %v held %d staging %d", l.high, l.allStaged, l.intoStage, l.heldRows, l.staging)
	}
	// New keys out of order, one repeated.
	load([]any{20, "d"}, []any{15, "d"}, []any{25, "d"}, []any{15, "e"}, []any{22, "d"})
	if fmt.Sprint(l.sent) != "[3 4 20 25]" || len(l.sentOut) != 2 || l.heldRows != 2 || l.allStaged {
		t.Fatalf("after new keys out of order: sent %v, out of order %v, held %d, allStaged %v", l.sent, l.sentOut, l.heldRows, l.allStaged)
	}
	load([]any{2, "c"}, []any{3, "c"}, []any{5, "c"})
	if !l.allStaged || !l.intoStage || l.heldRows != 0 || l.staging != 5 {
		t.Fatalf("after a mostly updated chunk: allStaged %v intoStage %v held %d staging %d", l.allStaged, l.intoStage, l.heldRows, l.staging)
	}
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	expectRows(t, query(t, d, `SELECT id, s FROM inside ORDER BY id`), "1|b", "2|c", "3|c", "4|b", "5|c", "15|e", "20|d", "22|d", "25|d")
}

// TestCloseRollsBack closes a destination while a stream's transaction is
// open: its rows never appear.
func TestCloseRollsBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sp := &Config{Schema: freshSchema(t)}
	d := openTest(t, sp)
	tb := layout("unfinished", nil, "", "id:int")
	w, err := d.OpenStream(ctx, dest.StreamConfig{Pipeline: "p", Stream: "unfinished", Table: "unfinished", Mode: dest.IncrementalAppend, RunID: "r"})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(ctx, desttest.Chunk(tb, []any{1}, []any{2})); err != nil {
		t.Fatal(err)
	}
	d.Close()
	// Were the transaction still open, creating the table again would wait
	// for it.
	d2 := openTest(t, &Config{Schema: sp.Schema})
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	w, err = d2.OpenStream(ctx, dest.StreamConfig{Pipeline: "p", Stream: "unfinished", Table: "unfinished", Mode: dest.IncrementalAppend, RunID: "r2"})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(ctx, desttest.Chunk(tb, []any{3})); err != nil {
		t.Fatal(err)
	}
	if err := w.Finish(ctx, nil); err != nil {
		t.Fatal(err)
	}
	expectRows(t, query(t, d2, "SELECT id FROM unfinished"), "3")
}

// TestJSONDepth stores JSON nested as deep as Ferry's reader allows and
// refuses deeper JSON before PostgreSQL's parser runs out of stack.
func TestJSONDepth(t *testing.T) {
	t.Parallel()
	d := openTest(t, nil)
	tb := layout("deep", nil, "", "id:int", "j:json")
	nest := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	w := write(t, d, "deep", dest.IncrementalAppend, desttest.Chunk(tb, []any{1, nest(maxJSONDepth)}, []any{2, nest(maxJSONDepth + 1)}))
	if w.Rejected() != 1 {
		t.Errorf("Rejected() = %d, want 1", w.Rejected())
	}
	expectRows(t, query(t, d, "SELECT id FROM deep"), "1")
}

// TestColumns looks at tables in the target schema only, and counts a
// table without columns as existing.
func TestColumns(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := openTest(t, nil)
	other := freshSchema(t)
	for _, s := range []string{
		`CREATE TABLE empty ()`,
		`CREATE TABLE "Mixed ""Case""" (a bigint, b text, c numeric(10,2), d timestamp(3) with time zone)`,
		`CREATE SCHEMA ` + other,
		`CREATE TABLE ` + other + `.elsewhere (x int)`,
	} {
		if err := d.DB().Exec(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	dl := d.Dialect()
	for _, tc := range []struct {
		table  string
		exists bool
		cols   string
	}{
		{"empty", true, "map[]"},
		{`Mixed "Case"`, true, "map[a:bigint b:text c:numeric(10,2) d:timestamp(3) with time zone]"},
		{"elsewhere", false, "map[]"},
		{"missing", false, "map[]"},
	} {
		cols, ok, err := dl.Columns(ctx, d.DB(), tc.table)
		if err != nil || ok != tc.exists || fmt.Sprint(cols) != tc.cols {
			t.Errorf("Columns(%q) = %v, %v, %v; want %s, %v", tc.table, cols, ok, err, tc.cols, tc.exists)
		}
	}
	cols, _, _ := dl.Columns(ctx, d.DB(), `Mixed "Case"`)
	tc := dl.(sqldest.TypeChecker)
	for col, typ := range map[string]schema.Type{"a": schema.Int, "b": schema.Text, "c": schema.Decimal, "d": schema.Timestamp} {
		if !tc.Holds(cols[col], typ) || tc.Holds(cols[col], schema.Bool) {
			t.Errorf("Holds(%q) wrong for %s", cols[col], typ)
		}
	}
	if _, err := d.OpenStream(ctx, dest.StreamConfig{Pipeline: "p", Stream: "empty", Table: "empty", Mode: dest.IncrementalAppend, RunID: "r"}); err == nil || !strings.Contains(err.Error(), "did not create") {
		t.Fatalf("OpenStream over a foreign table without columns: %v", err)
	}
}

// TestChangedColumnType reports a column whose type was changed outside
// Ferry, instead of failing in the middle of a COPY.
func TestChangedColumnType(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := openTest(t, nil)
	tb := layout("changed", nil, "", "id:int", "s:text")
	write(t, d, "changed", dest.IncrementalAppend, desttest.Chunk(tb, []any{1, "a"}))
	if err := d.DB().Exec(ctx, `ALTER TABLE changed ALTER COLUMN id TYPE integer, ALTER COLUMN s TYPE varchar(10)`); err != nil {
		t.Fatal(err)
	}
	_, err := d.OpenStream(ctx, dest.StreamConfig{Pipeline: "p", Stream: "changed", Table: "changed", Mode: dest.IncrementalAppend, RunID: "r"})
	if err == nil || !strings.Contains(err.Error(), "column id is integer") || strings.Contains(err.Error(), "column s") {
		t.Fatalf("OpenStream over a changed table: %v", err)
	}
}

// TestMigrateMidTransaction changes the layout between two chunks of one
// transaction: rows the loader still held (a streaming COPY, rows waiting
// for the merge) land before the table changes.
func TestMigrateMidTransaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := openTest(t, nil)
	for _, mode := range []dest.Mode{dest.IncrementalAppend, dest.IncrementalDedup, dest.FullRefreshOverwrite} {
		name := "mid_" + string(mode)
		v1 := layout(name, []string{"id"}, "", "id:int", "a:int")
		write(t, d, name, mode, desttest.Chunk(v1, []any{1, 1}))
		v2 := layout(name, []string{"id"}, "", "id:int", "a:float", "b:text")
		v2.Version = 2
		w, err := d.OpenStream(ctx, dest.StreamConfig{Pipeline: "p", Stream: name, Table: name, Mode: mode, RunID: "r"})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []*record.Chunk{
			desttest.Chunk(v1, []any{2, 2}, []any{1, 10}),
			desttest.Chunk(v2, []any{3, 3.5, "x"}, []any{2, 20.5, "y"}),
		} {
			if err := w.Write(ctx, c); err != nil {
				t.Fatalf("%s: %v", mode, err)
			}
		}
		if err := w.Finish(ctx, nil); err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		want := []string{"1|10|NULL", "2|20.5|y", "3|3.5|x"}
		if mode == dest.IncrementalAppend {
			want = []string{"1|1|NULL", "1|10|NULL", "2|2|NULL", "2|20.5|y", "3|3.5|x"}
		}
		expectRows(t, query(t, d, fmt.Sprintf(`SELECT id, a, b FROM %q ORDER BY id, a`, name)), want...)
	}
}
