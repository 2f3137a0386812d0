package sqldest_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/component"
	_ "github.com/ferry-dev/ferry/internal/components/all"
	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/dest/dbtest"
	"github.com/ferry-dev/ferry/internal/dest/desttest"
	"github.com/ferry-dev/ferry/internal/dest/sqldest"
	"github.com/ferry-dev/ferry/internal/dest/sqlite"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/schema"
)

// lockHelperEnv, when set, makes the test binary a process that takes a
// stream lock and holds it until it is killed (see lockHelper).
const lockHelperEnv = "FERRY_SQLDEST_LOCK_HELPER"

func TestMain(m *testing.M) {
	if spec := os.Getenv(lockHelperEnv); spec != "" {
		os.Exit(lockHelper(spec))
	}
	os.Exit(m.Run())
}

// kinds are the SQL destinations built on sqldest.
var kinds = []string{"sqlite", "postgres", "mysql"}

// forEachKind runs fn on each SQL destination, in parallel.
func forEachKind(t *testing.T, fn func(t *testing.T, kind string)) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			fn(t, kind)
		})
	}
}

// fresh returns the configuration of a database of kind that is empty
// and removed when the test ends, as the values of its section of a
// pipeline file (yaml key → value).
func fresh(t *testing.T, kind string) map[string]string {
	t.Helper()
	switch kind {
	case "sqlite":
		return map[string]string{"path": dbtest.SQLite(t)}
	case "postgres":
		u, schema := dbtest.Postgres(t)
		return map[string]string{"url": u, "schema": schema}
	case "mysql":
		return map[string]string{"url": dbtest.MySQL(t)}
	}
	t.Fatalf("unknown kind %s", kind)
	return nil
}

// config fills the registered configuration type of kind from yaml key
// → value pairs.
func config(kind string, values map[string]string) (any, error) {
	info, err := component.Lookup(component.Destination, kind)
	if err != nil {
		return nil, err
	}
	cfg := info.Config()
	v := reflect.ValueOf(cfg).Elem()
	for key, val := range values {
		found := false
		for i := range v.NumField() {
			name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("yaml"), ",")
			if name == key && v.Field(i).Kind() == reflect.String {
				v.Field(i).SetString(val)
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("the %s destination's configuration has no string field %q", kind, key)
		}
	}
	return cfg, nil
}

// openDest opens a destination of kind through the registry, as a run
// does.
func openDest(kind string, values map[string]string, readOnly bool) (*sqldest.Destination, error) {
	cfg, err := config(kind, values)
	if err != nil {
		return nil, err
	}
	d, err := dest.Open(context.Background(), kind, cfg, dest.Options{ReadOnly: readOnly})
	if err != nil {
		return nil, err
	}
	x, ok := d.(*sqldest.Destination)
	if !ok {
		d.Close()
		return nil, fmt.Errorf("the %s destination is a %T, not a *sqldest.Destination", kind, d)
	}
	return x, nil
}

// mustOpen opens a destination and closes it when the test ends.
func mustOpen(t *testing.T, kind string, values map[string]string, readOnly bool) *sqldest.Destination {
	t.Helper()
	x, err := openDest(kind, values, readOnly)
	if err != nil {
		t.Fatalf("open %s (read-only %t): %v", kind, readOnly, err)
	}
	t.Cleanup(func() { x.Close() })
	return x
}

// behind runs a statement on a destination's database, behind Ferry's back.
func behind(t *testing.T, x *sqldest.Destination, stmt string, args ...any) {
	t.Helper()
	if err := x.DB().Exec(context.Background(), stmt, args...); err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
}

var metaTables = []string{dest.StateTable, dest.TablesTable, dest.RejectedTable, dest.RunsTable, dest.MetaTable, dest.LocksTable, dest.LeasesTable}

// existing lists which of Ferry's metadata tables exist.
func existing(t *testing.T, x *sqldest.Destination) []string {
	t.Helper()
	var out []string
	for _, name := range metaTables {
		_, ok, err := x.Dialect().Columns(context.Background(), x.DB(), name)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			out = append(out, name)
		}
	}
	return out
}

// version reads the recorded metadata version ("" when none).
func version(t *testing.T, x *sqldest.Destination) string {
	t.Helper()
	d := x.Dialect()
	rows, err := x.DB().Query(context.Background(), fmt.Sprintf("SELECT %s FROM %s WHERE %s = %s", d.Quote("value"), d.Table(dest.MetaTable), d.Quote("key"), d.Placeholder(1)), "schema_version")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	v := ""
	if rows.Next() {
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestMetadataVersions: a fresh database gets the current version's
// tables; a database of version 0 (the four tables from before versions
// were recorded) is migrated and keeps its state; one written by a newer
// Ferry is refused; and a read-only open creates and migrates nothing.
func TestMetadataVersions(t *testing.T) {
	forEachKind(t, func(t *testing.T, kind string) {
		ctx := context.Background()
		cfg := fresh(t, kind)
		if kind == "sqlite" {
			// An empty database file, so the read-only open finds one.
			db, err := sqlite.OpenDB(cfg["path"])
			if err != nil {
				t.Fatal(err)
			}
			db.Close()
		}

		ro := mustOpen(t, kind, cfg, true)
		if got := existing(t, ro); len(got) != 0 {
			t.Fatalf("a read-only open of an empty database created %v", got)
		}
		if st, err := ro.State().List(ctx, "p", ""); err != nil || st != nil {
			t.Fatalf("state of an empty database: %v, %v", st, err)
		}
		if raw, err := ro.State().Load(ctx, "p", "s", ""); err != nil || raw != nil {
			t.Fatalf("state of an empty database: %s, %v", raw, err)
		}
		if l, err := ro.Layout(ctx, "t"); err != nil || l != nil {
			t.Fatalf("layout in an empty database: %v, %v", l, err)
		}
		ro.Close()

		w := mustOpen(t, kind, cfg, false)
		if got := existing(t, w); !slices.Equal(got, metaTables) {
			t.Fatalf("a fresh database has %v, want %v", got, metaTables)
		}
		if v := version(t, w); v != fmt.Sprint(sqldest.MetaVersion) || sqldest.MetaVersion != 2 {
			t.Fatalf("version = %q (this build writes %d)", v, sqldest.MetaVersion)
		}
		// Back to version 0: the four tables of old, with some state.
		if err := w.State().Save(ctx, "p", "run-0", []record.Checkpoint{{Stream: "s", State: json.RawMessage(`{"cursor":"c0"}`)}}); err != nil {
			t.Fatal(err)
		}
		behind(t, w, "DROP TABLE "+w.Dialect().Table(dest.MetaTable))
		behind(t, w, "DROP TABLE "+w.Dialect().Table(dest.LocksTable))
		behind(t, w, "DROP TABLE "+w.Dialect().Table(dest.LeasesTable))
		w.Close()

		ro = mustOpen(t, kind, cfg, true)
		if got := existing(t, ro); len(got) != 4 {
			t.Fatalf("a read-only open migrated a version-0 database: %v", got)
		}
		if raw, err := ro.State().Load(ctx, "p", "s", ""); err != nil || string(raw) != `{"cursor":"c0"}` {
			t.Fatalf("read-only state of a version-0 database: %s, %v", raw, err)
		}
		ro.Close()

		w = mustOpen(t, kind, cfg, false)
		if got := existing(t, w); !slices.Equal(got, metaTables) {
			t.Fatalf("after migrating version 0: %v, want %v", got, metaTables)
		}
		if v := version(t, w); v != "2" {
			t.Fatalf("version after migrating = %q", v)
		}
		if raw, err := w.State().Load(ctx, "p", "s", ""); err != nil || string(raw) != `{"cursor":"c0"}` {
			t.Fatalf("state after migrating: %s, %v", raw, err)
		}
		// A crash between two statements of a migration: the version is
		// recorded, a table is missing; the next open creates it.
		behind(t, w, "DROP TABLE "+w.Dialect().Table(dest.LocksTable))
		w.Close()
		w = mustOpen(t, kind, cfg, false)
		if got := existing(t, w); !slices.Equal(got, metaTables) {
			t.Fatalf("after reopening a database missing its locks table: %v, want %v", got, metaTables)
		}
		// A newer Ferry's tables.
		d := w.Dialect()
		behind(t, w, fmt.Sprintf("UPDATE %s SET %s = '3' WHERE %s = 'schema_version'", d.Table(dest.MetaTable), d.Quote("value"), d.Quote("key")))
		w.Close()
		for _, readOnly := range []bool{false, true} {
			_, err := openDest(kind, cfg, readOnly)
			var ne *sqldest.NewerMetadataError
			if !errors.As(err, &ne) || ne.Found != 3 || ne.Known != 2 || !strings.Contains(err.Error(), "upgrade Ferry") {
				t.Fatalf("open (read-only %t) of a newer version: %v", readOnly, err)
			}
		}
	})
}

// TestReadOnlyWritesNothing: every write of a read-only destination fails
// with dest.ErrReadOnly.
func TestReadOnlyWritesNothing(t *testing.T) {
	ctx := context.Background()
	cfg := fresh(t, "sqlite")
	mustOpen(t, "sqlite", cfg, false).Close()
	ro := mustOpen(t, "sqlite", cfg, true)
	_, err := ro.OpenStream(ctx, dest.StreamConfig{Pipeline: "p", Stream: "s", Table: "s", Mode: dest.FullRefreshAppend, RunID: "r"})
	errs := map[string]error{
		"OpenStream": err,
		"Save":       ro.State().Save(ctx, "p", "r", []record.Checkpoint{{Stream: "s", State: json.RawMessage(`{}`)}}),
		"RecordRun":  ro.RecordRun(ctx, dest.Run{ID: "r", Pipeline: "p"}),
	}
	_, errs["Reset"] = ro.State().Reset(ctx, "p", "")
	_, errs["Lock"] = ro.State().Lock(ctx, "p", "s", dest.Holder{RunID: "r"})
	for op, err := range errs {
		if !errors.Is(err, dest.ErrReadOnly) {
			t.Errorf("%s on a read-only destination: %v", op, err)
		}
	}
}

// readback is a table of every logical type.
var readback = &schema.Table{Name: "readback", Version: 1, Columns: []schema.Column{
	{Name: "id", Path: []string{"id"}, Type: schema.Int},
	{Name: "b", Path: []string{"b"}, Type: schema.Bool},
	{Name: "i", Path: []string{"i"}, Type: schema.Int},
	{Name: "f", Path: []string{"f"}, Type: schema.Float},
	{Name: "d", Path: []string{"d"}, Type: schema.Decimal},
	{Name: "ts", Path: []string{"ts"}, Type: schema.Timestamp},
	{Name: "s", Path: []string{"s"}, Type: schema.Text},
	{Name: "j", Path: []string{"j"}, Type: schema.JSON},
	{Name: "n", Path: []string{"n"}, Type: schema.Text},
}}

// TestReadRows: rows written through a destination read back as the Go
// values of their recorded types, whatever each driver scans (SQLite's
// integers and text, PostgreSQL's typed values, MySQL's bytes).
func TestReadRows(t *testing.T) {
	ts1 := time.Date(2024, 2, 29, 23, 59, 59, 123456000, time.UTC)
	ts2 := time.Date(1969, 7, 20, 20, 17, 40, 0, time.UTC)
	forEachKind(t, func(t *testing.T, kind string) {
		ctx := context.Background()
		x := mustOpen(t, kind, fresh(t, kind), false)
		w, err := x.OpenStream(ctx, dest.StreamConfig{Pipeline: "p", Stream: "readback", Table: "readback", Mode: dest.FullRefreshAppend, RunID: "r"})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Write(ctx, desttest.Chunk(readback,
			[]any{2, false, int64(9223372036854775807), -0.25, "-0.000000001", ts2, "", `[]`, nil},
			[]any{1, true, int64(-9223372036854775808), 1.5, "12.50", ts1, "héllo 'q' \"dq\" 🚀", `{"a":[1,"x",null],"b":{"c":true}}`, nil},
			[]any{3, nil, nil, nil, nil, nil, nil, nil, nil},
		)); err != nil {
			t.Fatal(err)
		}
		if err := w.Finish(ctx, nil); err != nil {
			t.Fatal(err)
		}
		want := [][]any{
			{int64(1), true, int64(-9223372036854775808), 1.5, "12.50", ts1, "héllo 'q' \"dq\" 🚀", `{"a":[1,"x",null],"b":{"c":true}}`, nil},
			{int64(2), false, int64(9223372036854775807), -0.25, "-0.000000001", ts2, "", `[]`, nil},
			{int64(3), nil, nil, nil, nil, nil, nil, nil, nil},
		}
		var names []string
		for _, c := range readback.Columns {
			names = append(names, c.Name)
		}
		cols, got := readAll(t, x, "readback", []string{"id"})
		if !slices.Equal(cols, names) {
			t.Fatalf("columns = %v, want the layout's %v", cols, names)
		}
		if len(got) != len(want) {
			t.Fatalf("%d rows, want %d", len(got), len(want))
		}
		for r := range want {
			for c := range want[r] {
				g, w := got[r][c], want[r][c]
				if c == 7 && g != nil {
					// JSON: the same document (PostgreSQL's jsonb orders keys).
					var gv, wv any
					if json.Unmarshal([]byte(g.(string)), &gv) != nil || json.Unmarshal([]byte(w.(string)), &wv) != nil || !reflect.DeepEqual(gv, wv) {
						t.Errorf("row %d column %s = %#v, want %#v", r+1, cols[c], g, w)
					}
					continue
				}
				if !reflect.DeepEqual(g, w) {
					t.Errorf("row %d column %s = %#v (%T), want %#v (%T)", r+1, cols[c], g, g, w, w)
				}
			}
		}
		if n, err := x.Count(ctx, "readback"); err != nil || n != 3 {
			t.Fatalf("count = %d, %v", n, err)
		}

		// A column dropped behind Ferry's back is left out.
		behind(t, x, fmt.Sprintf("ALTER TABLE %s DROP COLUMN %s", x.Dialect().Table("readback"), x.Dialect().Quote("n")))
		if cols, _ := readAll(t, x, "readback", nil); !slices.Equal(cols, names[:len(names)-1]) {
			t.Fatalf("columns after a drop = %v", cols)
		}

		// A table Ferry did not write is read with the driver's values, its
		// columns in name order.
		behind(t, x, fmt.Sprintf("CREATE TABLE %s (%s INTEGER, %s VARCHAR(10))", x.Dialect().Table("foreign_t"), x.Dialect().Quote("z"), x.Dialect().Quote("a")))
		behind(t, x, fmt.Sprintf("INSERT INTO %s VALUES (7, 'x')", x.Dialect().Table("foreign_t")))
		if l, err := x.Layout(ctx, "foreign_t"); err != nil || l != nil {
			t.Fatalf("layout of a foreign table: %v, %v", l, err)
		}
		cols, got = readAll(t, x, "foreign_t", nil)
		if !slices.Equal(cols, []string{"a", "z"}) || len(got) != 1 || fmt.Sprint(got[0][0]) != "x" || fmt.Sprint(got[0][1]) != "7" {
			t.Fatalf("foreign table: %v %v", cols, got)
		}

		// A missing table is an error; Count says -1.
		err = x.ReadRows(ctx, "no_such_table", nil, func([]string, []any) error { return nil })
		if err == nil || !strings.Contains(err.Error(), "table no_such_table does not exist") {
			t.Fatalf("reading a missing table: %v", err)
		}
		if n, err := x.Count(ctx, "no_such_table"); err != nil || n != -1 {
			t.Fatalf("count of a missing table = %d, %v", n, err)
		}
		// An error from fn ends the read with that error.
		stop := errors.New("enough")
		calls := 0
		if err := x.ReadRows(ctx, "readback", []string{"id"}, func([]string, []any) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
			t.Fatalf("fn's error: %v after %d calls", err, calls)
		}
	})
}

func readAll(t *testing.T, x *sqldest.Destination, table string, orderBy []string) ([]string, [][]any) {
	t.Helper()
	var cols []string
	var rows [][]any
	err := x.ReadRows(context.Background(), table, orderBy, func(c []string, row []any) error {
		cols = c
		rows = append(rows, slices.Clone(row))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return cols, rows
}

// TestCheckpointsLastWins: of the checkpoints a commit carries for one
// partition, the last is the state stored, in the rows' transaction; a
// checkpoint without a stream is the writer's stream's.
func TestCheckpointsLastWins(t *testing.T) {
	forEachKind(t, func(t *testing.T, kind string) {
		ctx := context.Background()
		x := mustOpen(t, kind, fresh(t, kind), false)
		tb := &schema.Table{Name: "events", Version: 1, Columns: []schema.Column{{Name: "id", Path: []string{"id"}, Type: schema.Int}}}
		w, err := x.OpenStream(ctx, dest.StreamConfig{Pipeline: "p", Stream: "events", Table: "events", Mode: dest.IncrementalAppend, RunID: "run-1"})
		if err != nil {
			t.Fatal(err)
		}
		c1 := desttest.Chunk(tb, []any{1})
		c1.Checkpoints = []record.Checkpoint{
			{Partition: `{"id":1}`, State: json.RawMessage(`{"v":"a"}`)},
			{Stream: "events", Partition: "", State: json.RawMessage(`{"v":1}`)},
		}
		c2 := desttest.Chunk(tb, []any{2})
		c2.Checkpoints = []record.Checkpoint{
			{Stream: "events", Partition: `{"id":1}`, State: json.RawMessage(`{"v":"b"}`)},
			{Partition: `{"id":2}`, State: json.RawMessage(`{"v":"x"}`)},
			{Stream: "events", Partition: "", State: json.RawMessage(`{"v":2}`)},
		}
		for _, c := range []*record.Chunk{c1, c2} {
			if err := w.Write(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		// Nothing is stored before the commit.
		if raw, err := x.State().Load(ctx, "p", "events", ""); err != nil || raw != nil {
			t.Fatalf("state before the commit: %s, %v", raw, err)
		}
		if err := w.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		entries, err := x.State().List(ctx, "p", "events")
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range entries {
			got = append(got, e.Partition+"="+string(e.State)+"@"+e.RunID)
		}
		want := []string{`={"v":2}@run-1`, `{"id":1}={"v":"b"}@run-1`, `{"id":2}={"v":"x"}@run-1`}
		if !slices.Equal(got, want) {
			t.Fatalf("states:\n got %q\nwant %q", got, want)
		}
		if n, err := x.Count(ctx, "events"); err != nil || n != 2 {
			t.Fatalf("rows = %d, %v", n, err)
		}
		// Save, outside any stream's transaction, keeps the last of each
		// partition too.
		if err := x.State().Save(ctx, "p", "run-2", []record.Checkpoint{
			{Stream: "events", Partition: `{"id":2}`, State: json.RawMessage(`{"v":"y"}`)},
			{Stream: "events", Partition: `{"id":2}`, State: json.RawMessage(`{"v":"z"}`)},
		}); err != nil {
			t.Fatal(err)
		}
		if raw, err := x.State().Load(ctx, "p", "events", `{"id":2}`); err != nil || string(raw) != `{"v":"z"}` {
			t.Fatalf("state after Save: %s, %v", raw, err)
		}
		w.Abort(ctx)
	})
}

// TestStreamLocks: a stream's lock is held by one run at a time, in this
// process or another; whoever finds it taken learns who holds it; a
// released lock, and the lock of a process that was killed, can be taken
// again.
func TestStreamLocks(t *testing.T) {
	forEachKind(t, func(t *testing.T, kind string) {
		ctx := context.Background()
		cfg := fresh(t, kind)
		a := mustOpen(t, kind, cfg, false)
		b := mustOpen(t, kind, cfg, false)
		// Locks are server-wide on PostgreSQL and MySQL: a pipeline name of
		// its own keeps parallel tests apart.
		pipeline := dbtest.Name()
		first := dest.Holder{RunID: "run-a", Host: "host-a", PID: 101, Since: time.Date(2026, 11, 22, 0, 45, 0, 0, time.UTC)}
		release, err := a.State().Lock(ctx, pipeline, "users", first)
		if err != nil {
			t.Fatal(err)
		}
		for name, x := range map[string]*sqldest.Destination{"the same destination": a, "another destination": b} {
			_, err := x.State().Lock(ctx, pipeline, "users", dest.Holder{RunID: "run-b", Since: time.Now()})
			checkLocked(t, name, err, pipeline, "users", first)
		}
		// Other streams, and the same stream of another pipeline, are free.
		for _, key := range [][2]string{{pipeline, "orders"}, {pipeline + "-2", "users"}} {
			rel, err := b.State().Lock(ctx, key[0], key[1], dest.Holder{RunID: "run-b"})
			if err != nil {
				t.Fatalf("lock %s/%s while %s/users is held: %v", key[0], key[1], pipeline, err)
			}
			rel()
		}
		release()
		second := dest.Holder{RunID: "run-b", Host: "host-b", PID: 202, Since: time.Date(2026, 11, 22, 1, 0, 0, 0, time.UTC)}
		release, err = b.State().Lock(ctx, pipeline, "users", second)
		if err != nil {
			t.Fatalf("lock after the release: %v", err)
		}
		_, err = a.State().Lock(ctx, pipeline, "users", first)
		checkLocked(t, "after a new holder took it", err, pipeline, "users", second)
		release()

		// A process holding the lock is killed: the lock is free again.
		pid, kill := lockInSubprocess(t, kind, cfg, pipeline, "events")
		_, err = a.State().Lock(ctx, pipeline, "events", dest.Holder{RunID: "run-a"})
		var le *dest.LockedError
		if !errors.As(err, &le) || le.Holder.RunID != "killed-run" || le.Holder.PID != pid {
			t.Fatalf("lock held by process %d: %v (%+v)", pid, err, le)
		}
		kill()
		deadline := time.Now().Add(30 * time.Second)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			rel, err := a.State().Lock(ctx, pipeline, "events", dest.Holder{RunID: "run-a"})
			if err == nil {
				rel()
				break
			}
			if !errors.As(err, &le) {
				t.Fatalf("lock after the holder was killed: %v", err)
			}
			if time.Now().After(deadline) {
				t.Fatalf("the lock of a killed process is still held after 30s: %v", err)
			}
			<-tick.C
		}
	})
}

// TestStreamLocksAreScopedToTheStore: a stream lock keeps two runs from
// writing the same state at once. Two destinations on one server that
// keep their state apart (two PostgreSQL schemas of one database, two
// MySQL databases) hold different states, so the same pipeline and
// stream names must not lock each other out.
func TestStreamLocksAreScopedToTheStore(t *testing.T) {
	for _, kind := range []string{"postgres", "mysql"} {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			a := mustOpen(t, kind, fresh(t, kind), false)
			b := mustOpen(t, kind, fresh(t, kind), false)
			pipeline := dbtest.Name()
			release, err := a.State().Lock(ctx, pipeline, "users", dest.Holder{RunID: "run-a"})
			if err != nil {
				t.Fatal(err)
			}
			defer release()
			rel, err := b.State().Lock(ctx, pipeline, "users", dest.Holder{RunID: "run-b"})
			if err != nil {
				t.Fatalf("lock of the same stream in another store: %v", err)
			}
			rel()
		})
	}
}

func checkLocked(t *testing.T, what string, err error, pipeline, stream string, holder dest.Holder) {
	t.Helper()
	var le *dest.LockedError
	if !errors.As(err, &le) {
		t.Fatalf("%s: lock of a held stream: %v, want a *dest.LockedError", what, err)
	}
	h := le.Holder
	if le.Pipeline != pipeline || le.Stream != stream || h.RunID != holder.RunID || h.Host != holder.Host || h.PID != holder.PID || !h.Since.Equal(holder.Since) {
		t.Fatalf("%s: %+v, want pipeline %s, stream %s, holder %+v", what, le, pipeline, stream, holder)
	}
	msg := fmt.Sprintf("stream %s of pipeline %s is being synced by run %s (pid %d on %s) since %s", stream, pipeline, holder.RunID, holder.PID, holder.Host, holder.Since.UTC().Format(time.RFC3339))
	if !strings.Contains(err.Error(), msg) {
		t.Fatalf("%s: message %q does not say %q", what, err, msg)
	}
}

// helperSpec tells the helper process what to lock.
type helperSpec struct {
	Kind     string            `json:"kind"`
	Config   map[string]string `json:"config"`
	Pipeline string            `json:"pipeline"`
	Stream   string            `json:"stream"`
}

// lockInSubprocess starts a process that takes a stream's lock, waits
// until it holds it, and returns its pid and a function that kills it
// with SIGKILL (no chance to release anything) and waits for it to end.
func lockInSubprocess(t *testing.T, kind string, cfg map[string]string, pipeline, stream string) (int, func()) {
	t.Helper()
	spec, _ := json.Marshal(helperSpec{Kind: kind, Config: cfg, Pipeline: pipeline, Stream: stream})
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), lockHelperEnv+"="+string(spec))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	kill := func() {
		if killed {
			return
		}
		killed = true
		cmd.Process.Kill() // SIGKILL
		cmd.Wait()
		stdin.Close()
	}
	t.Cleanup(kill)
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- s
	}()
	select {
	case s := <-line:
		if s != "locked\n" {
			t.Fatalf("the helper process said %q, not that it holds the lock", s)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the helper process did not take the lock within 60s")
	}
	return cmd.Process.Pid, kill
}

// lockHelper is the helper process: it takes the lock spec names, says
// "locked" and holds it until it is killed (or its stdin closes).
func lockHelper(raw string) int {
	var s helperSpec
	if err := json.Unmarshal([]byte(raw), &s); err != nil {
		fmt.Fprintln(os.Stderr, "lock helper:", err)
		return 2
	}
	x, err := openDest(s.Kind, s.Config, false)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lock helper:", err)
		return 2
	}
	host, _ := os.Hostname()
	if _, err := x.State().Lock(context.Background(), s.Pipeline, s.Stream, dest.Holder{RunID: "killed-run", Host: host, PID: os.Getpid(), Since: time.Now()}); err != nil {
		fmt.Fprintln(os.Stderr, "lock helper:", err)
		return 2
	}
	fmt.Println("locked")
	io.Copy(io.Discard, os.Stdin)
	return 0
}

// TestLockOfAnEndedHolder: a lock whose recorded holder is a process of
// this host that has ended is waited for (the server lets it go once it
// notices the session gone, or has rolled back its transaction), not
// reported as taken; a lock whose holder is alive is reported at once.
func TestLockOfAnEndedHolder(t *testing.T) {
	// The hook is the package's: the kinds run in parallel and each finds
	// its own release by pipeline.
	var mu sync.Mutex
	releases := map[string]func(){}
	waited := map[string]int{}
	t.Cleanup(sqldest.WaitForEndedHolders(50*time.Millisecond, func(pipeline, _ string) {
		mu.Lock()
		defer mu.Unlock()
		waited[pipeline]++
		releases[pipeline]() // the server noticed the ended session
	}))
	forEachKind(t, func(t *testing.T, kind string) {
		ctx := context.Background()
		cfg := fresh(t, kind)
		a := mustOpen(t, kind, cfg, false)
		b := mustOpen(t, kind, cfg, false)
		pipeline := dbtest.Name()
		host, _ := os.Hostname()
		gone := exec.Command("true")
		if err := gone.Run(); err != nil {
			t.Fatal(err)
		}
		release, err := b.State().Lock(ctx, pipeline, "users", dest.Holder{RunID: "ended-run", Host: host, PID: gone.Process.Pid, Since: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		releases[pipeline] = release
		mu.Unlock()
		times := func() int {
			mu.Lock()
			defer mu.Unlock()
			return waited[pipeline]
		}
		rel, err := a.State().Lock(ctx, pipeline, "users", dest.Holder{RunID: "run-a", Host: host, PID: os.Getpid(), Since: time.Now()})
		if err != nil || times() != 1 {
			t.Fatalf("lock of an ended holder: %v (waited %d times)", err, times())
		}
		// Now held by this live process: another run is told at once.
		_, err = b.State().Lock(ctx, pipeline, "users", dest.Holder{RunID: "run-b"})
		var le *dest.LockedError
		if !errors.As(err, &le) || le.Holder.RunID != "run-a" || times() != 1 {
			t.Fatalf("lock of a live holder: %v (waited %d times)", err, times())
		}
		rel()
	})
}
