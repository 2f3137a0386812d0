package sqldest

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/schema"
)

// layout builds a table layout from "name:type" columns.
func layout(name string, version int, pk []string, cols ...string) *schema.Table {
	t := &schema.Table{Name: name, PrimaryKey: pk, Version: version}
	for _, c := range cols {
		n, typ, _ := strings.Cut(c, ":")
		var ty schema.Type
		if err := ty.UnmarshalText([]byte(typ)); err != nil {
			panic(err)
		}
		t.Columns = append(t.Columns, schema.Column{Name: n, Path: []string{n}, Type: ty})
	}
	return t
}

// child turns a layout into the layout of a child table of parent.
func child(t *schema.Table, parent string, rootKey ...string) *schema.Table {
	t.Parent, t.RootKey = parent, rootKey
	return t
}

// newTestWriter returns a writer over a fake database, with an open
// transaction as Write has when it migrates.
func newTestWriter(t *testing.T, d Dialect) (*writer, *fakeDB) {
	t.Helper()
	db := &fakeDB{}
	w := &writer{
		x:      &Destination{db: db, d: d, meta: true},
		cfg:    dest.StreamConfig{Pipeline: "p", Stream: "s", Table: "t", Mode: dest.IncrementalDedup, RunID: "run-1"},
		tables: map[string]*table{},
	}
	if err := w.begin(context.Background()); err != nil {
		t.Fatal(err)
	}
	return w, db
}

// add registers a table with the writer, as openTable does.
func (w *writer) add(t *table) *table {
	if t.target == "" {
		t.target = t.name
	}
	w.tables[t.name] = t
	w.order = append(w.order, t)
	return t
}

// TestMigratePlans checks the statements migrate plans for a table,
// inside the open transaction of a database with transactional DDL.
func TestMigratePlans(t *testing.T) {
	v1 := layout("t", 1, []string{"id"}, "id:int", "a:int")
	tests := []struct {
		name string
		// table is the table as the writer knows it before the migration;
		// parent, when set, is registered first.
		table  *table
		parent *table
		next   *schema.Table
		upsert bool
		want   []string
		// unique and indexed are the table's flags after the migration.
		unique, indexed bool
	}{
		{
			name:  "new table, append",
			table: &table{name: "t"},
			next:  layout("t", 1, nil, "id:int", "name:text"),
			want:  []string{`tx1: CREATE TABLE "t" ("id" INT, "name" TEXT)`},
		},
		{
			name:   "new table, upsert: key columns bounded and NOT NULL, then the unique index",
			table:  &table{name: "t"},
			next:   layout("t", 1, []string{"id", "k"}, "id:int", "k:text", "v:float"),
			upsert: true,
			want: []string{
				`tx1: CREATE TABLE "t" ("id" INT(KEY) NOT NULL, "k" TEXT(KEY) NOT NULL, "v" FLOAT)`,
				`tx1: CREATE UNIQUE INDEX ON "t" ("id", "k")`,
			},
			unique: true,
		},
		{
			name:   "added columns, unique index in place",
			table:  &table{name: "t", layout: v1, physical: true, unique: true},
			next:   layout("t", 2, []string{"id"}, "id:int", "a:int", "b:text", "c:json"),
			upsert: true,
			want: []string{
				`tx1: ALTER TABLE "t" ADD "b" TEXT`,
				`tx1: ALTER TABLE "t" ADD "c" JSON`,
			},
			unique: true,
		},
		{
			name:   "widened column: the unique index is made again (a rebuilt table may have lost it)",
			table:  &table{name: "t", layout: v1, physical: true, unique: true},
			next:   layout("t", 2, []string{"id"}, "id:int", "a:float"),
			upsert: true,
			want: []string{
				`tx1: ALTER TABLE "t" WIDEN "a" int TO float`,
				`tx1: CREATE UNIQUE INDEX ON "t" ("id")`,
			},
			unique: true,
		},
		{
			name:   "added and widened: new columns before widenings",
			table:  &table{name: "t", layout: v1, physical: true, unique: true},
			next:   layout("t", 2, []string{"id"}, "id:int", "a:text", "b:bool"),
			upsert: true,
			want: []string{
				`tx1: ALTER TABLE "t" ADD "b" BOOL`,
				`tx1: ALTER TABLE "t" WIDEN "a" int TO text`,
				`tx1: CREATE UNIQUE INDEX ON "t" ("id")`,
			},
			unique: true,
		},
		{
			name:  "widened column, append: no unique index",
			table: &table{name: "t", layout: v1, physical: true},
			next:  layout("t", 2, []string{"id"}, "id:int", "a:decimal"),
			want:  []string{`tx1: ALTER TABLE "t" WIDEN "a" int TO decimal`},
		},
		{
			name:   "same layout, unique index missing (the mode switched to dedup)",
			table:  &table{name: "t", layout: v1, physical: true},
			next:   v1,
			upsert: true,
			want:   []string{`tx1: CREATE UNIQUE INDEX ON "t" ("id")`},
			unique: true,
		},
		{
			name:   "nothing to do",
			table:  &table{name: "t", layout: v1, physical: true, unique: true},
			next:   v1,
			upsert: true,
			unique: true,
		},
		{
			name:   "new child table: lookup indexes on the root key, the parent row id, and the parent's row id",
			parent: &table{name: "t", layout: layout("t", 1, []string{"id"}, "id:int", "_ferry_row_id:text"), physical: true, unique: true},
			table:  &table{name: "t__items", child: true},
			next:   child(layout("t__items", 1, nil, "_ferry_root_id:int", "_ferry_parent_row_id:text", "sku:text"), "t", "_ferry_root_id"),
			want: []string{
				`tx1: CREATE TABLE "t__items" ("_ferry_root_id" INT, "_ferry_parent_row_id" TEXT, "sku" TEXT)`,
				`tx1: CREATE INDEX IF NOT EXISTS "_ferry_ix_t__items__ferry_root_id" ON "t__items" ("_ferry_root_id")`,
				`tx1: CREATE INDEX IF NOT EXISTS "_ferry_ix_t__items__ferry_parent_row_id" ON "t__items" ("_ferry_parent_row_id")`,
				`tx1: CREATE INDEX IF NOT EXISTS "_ferry_ix_t__ferry_row_id" ON "t" ("_ferry_row_id")`,
			},
			indexed: true,
		},
		{
			name:    "new child table of a parent not created yet, without a root key",
			parent:  &table{name: "t"},
			table:   &table{name: "t__items", child: true},
			next:    child(layout("t__items", 1, nil, "_ferry_parent_row_id:text", "sku:text"), "t"),
			want:    []string{`tx1: CREATE TABLE "t__items" ("_ferry_parent_row_id" TEXT, "sku" TEXT)`, `tx1: CREATE INDEX IF NOT EXISTS "_ferry_ix_t__items__ferry_parent_row_id" ON "t__items" ("_ferry_parent_row_id")`},
			indexed: true,
		},
		{
			name:    "indexed child table gets a column: no index again",
			table:   &table{name: "t__items", child: true, indexed: true, physical: true, layout: child(layout("t__items", 1, nil, "_ferry_parent_row_id:text"), "t")},
			next:    child(layout("t__items", 2, nil, "_ferry_parent_row_id:text", "qty:int"), "t"),
			want:    []string{`tx1: ALTER TABLE "t__items" ADD "qty" INT`},
			indexed: true,
		},
		{
			name:   "staging table of a full refresh: created under the staging name",
			table:  &table{name: "t", target: "_ferry_stage_t"},
			next:   layout("t", 1, []string{"id"}, "id:int"),
			upsert: true,
			want: []string{
				`tx1: CREATE TABLE "_ferry_stage_t" ("id" INT(KEY) NOT NULL)`,
				`tx1: CREATE UNIQUE INDEX ON "_ferry_stage_t" ("id")`,
			},
			unique: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, db := newTestWriter(t, fakeDialect{transactional: true})
			if tt.parent != nil {
				w.add(tt.parent)
			}
			tb := w.add(tt.table)
			if err := w.migrate(context.Background(), tb, tt.next, tt.upsert); err != nil {
				t.Fatal(err)
			}
			got := db.log()[1:] // after tx1: BEGIN
			if !slices.Equal(got, tt.want) {
				t.Fatalf("statements:\n got %q\nwant %q", got, tt.want)
			}
			if tb.layout != tt.next || !tb.physical || !tb.dirty || tb.loader != nil {
				t.Fatalf("after the migration: layout %v (want the new one), physical %t, dirty %t", tb.layout, tb.physical, tb.dirty)
			}
			if tb.unique != tt.unique || tb.indexed != tt.indexed {
				t.Fatalf("unique %t, indexed %t; want %t, %t", tb.unique, tb.indexed, tt.unique, tt.indexed)
			}
			if w.tx == nil || db.txs != 1 {
				t.Fatalf("the migration ended the transaction (open %v, %d begun)", w.tx != nil, db.txs)
			}
		})
	}
}

func TestMigrateRefusesANarrowing(t *testing.T) {
	w, db := newTestWriter(t, fakeDialect{transactional: true})
	tb := w.add(&table{name: "t", layout: layout("t", 1, nil, "id:int", "a:json"), physical: true})
	err := w.migrate(context.Background(), tb, layout("t", 2, nil, "id:int", "a:int"), false)
	if err == nil || err.Error() != "table t: column a cannot change from json to int" {
		t.Fatalf("error = %v", err)
	}
	if got := db.log(); len(got) != 1 {
		t.Fatalf("statements after a refused change: %q", got)
	}
	if tb.layout.Version != 1 {
		t.Fatalf("the refused layout was taken: %+v", tb.layout)
	}
}

// TestMigrateWithoutTransactionalDDL: a database that cannot roll DDL
// back commits what came before with its checkpoints, records the new
// layout, changes the table outside any transaction and begins a new one,
// in that order, so a crash between any two steps is recoverable.
func TestMigrateWithoutTransactionalDDL(t *testing.T) {
	w, db := newTestWriter(t, fakeDialect{transactional: false})
	w.pending = []record.Checkpoint{checkpoint("s", "", `{"pass":1}`)}
	tb := w.add(&table{name: "t", layout: layout("t", 1, []string{"id"}, "id:int"), physical: true, unique: true})
	next := layout("t", 2, []string{"id"}, "id:int", "b:text")
	if err := w.migrate(context.Background(), tb, next, true); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"tx1: BEGIN",
		`tx1: UPSERT "_ferry_state" ("pipeline", "stream", "partition_hash", "partition_key", "state", "run_id", "updated_at") KEY ("pipeline", "stream", "partition_hash")`,
		"tx1: COMMIT",
		`db: UPSERT "_ferry_tables" ("table_name", "pipeline", "stream", "layout", "updated_at") KEY ("table_name")`,
		`db: ALTER TABLE "t" ADD "b" TEXT`,
		"tx2: BEGIN",
	}
	if got := db.log(); !slices.Equal(got, want) {
		t.Fatalf("statements:\n got %q\nwant %q", got, want)
	}
	if st := db.calls[1].args[4]; st != `{"pass":1}` {
		t.Fatalf("the checkpoint committed before the change is %v", st)
	}
	var recorded schema.Table
	if err := json.Unmarshal([]byte(db.calls[3].args[3].(string)), &recorded); err != nil || recorded.Version != 2 || recorded.Column("b") == nil {
		t.Fatalf("the layout recorded before the change: %v (%v)", db.calls[3].args[3], err)
	}
	if len(w.pending) != 0 || w.tx == nil {
		t.Fatalf("after the change: %d checkpoints pending, transaction open %t", len(w.pending), w.tx != nil)
	}

	// Nothing to change: no commit, no new transaction.
	before := len(db.calls)
	if err := w.migrate(context.Background(), tb, next, true); err != nil {
		t.Fatal(err)
	}
	if got := db.log()[before:]; len(got) != 0 {
		t.Fatalf("statements for an unchanged table: %q", got)
	}
}

func TestReconcile(t *testing.T) {
	recorded := layout("t", 3, []string{"id"}, "id:int", "a:float", "b:text", "c:int")
	tests := []struct {
		name    string
		d       Dialect
		cols    map[string]string
		want    []string // name:type of the result
		version int
	}{
		{"everything in place", typedDialect{}, map[string]string{"id": "INT", "a": "FLOAT", "b": "TEXT", "c": "INT"}, []string{"id:int", "a:float", "b:text", "c:int"}, 3},
		{"a dropped column is forgotten", typedDialect{}, map[string]string{"id": "INT", "a": "FLOAT", "c": "INT"}, []string{"id:int", "a:float", "c:int"}, 4},
		{"a column narrower than recorded gets its database type back", typedDialect{}, map[string]string{"id": "INT", "a": "INT", "b": "TEXT", "c": "INT"}, []string{"id:int", "a:int", "b:text", "c:int"}, 4},
		{"a column wider than recorded keeps the recorded type", typedDialect{}, map[string]string{"id": "INT", "a": "FLOAT", "b": "TEXT", "c": "TEXT"}, []string{"id:int", "a:float", "b:text", "c:int"}, 3},
		{"a database type the dialect cannot read keeps the recorded type", typedDialect{}, map[string]string{"id": "INT", "a": "double precision", "b": "TEXT", "c": "INT"}, []string{"id:int", "a:float", "b:text", "c:int"}, 3},
		{"without a Typer only dropped columns count", fakeDialect{}, map[string]string{"id": "INT", "a": "INT", "c": "INT"}, []string{"id:int", "a:float", "c:int"}, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig := recorded.Clone()
			got := reconcile(tt.d, recorded, tt.cols)
			var cols []string
			for _, c := range got.Columns {
				cols = append(cols, c.Name+":"+c.Type.String())
			}
			if !slices.Equal(cols, tt.want) || got.Version != tt.version {
				t.Fatalf("reconciled = %v v%d, want %v v%d", cols, got.Version, tt.want, tt.version)
			}
			if len(recorded.Columns) != len(orig.Columns) || recorded.Columns[1].Type != orig.Columns[1].Type || recorded.Version != 3 {
				t.Fatalf("reconcile changed the recorded layout: %+v", recorded)
			}
		})
	}
}

func TestCheckTypes(t *testing.T) {
	recorded := layout("t", 1, nil, "id:int", "a:float", "nulls:unknown", "gone:text")
	tests := []struct {
		name string
		d    Dialect
		cols map[string]string
		want string // "" for no error
	}{
		{"types hold", typedDialect{}, map[string]string{"id": "INT", "a": "FLOAT", "nulls": "TEXT"}, ""},
		{"a column of unknown type is not checked, a missing one neither", typedDialect{}, map[string]string{"id": "INT", "a": "FLOAT", "nulls": "BLOB"}, ""},
		{"changed outside Ferry", typedDialect{}, map[string]string{"id": "TEXT", "a": "INT", "gone": "TEXT"},
			"table t was changed outside Ferry: column id is TEXT in the database but holds int values; column a is INT in the database but holds float values; change it back, or drop it (or run a full_refresh_overwrite) so Ferry recreates it"},
		{"a dialect without a TypeChecker checks nothing", fakeDialect{}, map[string]string{"id": "TEXT", "a": "INT"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkTypes(tt.d, "t", recorded, tt.cols)
			if got := errText(err); got != tt.want {
				t.Fatalf("checkTypes:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
