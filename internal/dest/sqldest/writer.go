package sqldest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/schema"
)

// writer implements dest.StreamWriter. A stream writes its root table and,
// with nested data unnested, child tables; all of them share one
// transaction.
type writer struct {
	x   *Destination
	cfg dest.StreamConfig

	staging bool // full refresh: every table loads a staging table
	upsert  bool // the root table replaces rows by primary key

	root   *table
	tables map[string]*table // by live name
	order  []*table          // root first, then child tables, parents before children
	known  map[string]*schema.Table

	tx       Tx
	pending  []record.Checkpoint
	touched  map[string][]any // root keys written in this transaction (streams with child tables)
	done     bool
	rejected int   // rows the database refused
	written  int64 // root rows written since the last commit
	durable  int64 // root rows committed

	uniqueStmts map[string]bool // statements from CreateUnique, for ddlError
}

// table is one table a stream writes.
type table struct {
	name       string        // live table
	target     string        // physical table written: live, or staging
	existing   *schema.Table // the live table's recorded layout, nil if none
	layout     *schema.Table // target's layout, nil until created
	physical   bool          // target exists in the database
	liveExists bool
	unique     bool // unique index on the primary key is in place
	indexed    bool // a child table's lookup indexes are in place
	child      bool
	loader     Loader
	dirty      bool // layout to record at commit
}

// Rejected returns how many rows the database refused so far (they are in
// the rejected table).
func (w *writer) Rejected() int { return w.rejected }

// Committed returns how many root rows are durable.
func (w *writer) Committed() int64 { return w.durable }

// OpenStream prepares to write a stream.
func (x *Destination) OpenStream(ctx context.Context, cfg dest.StreamConfig) (dest.StreamWriter, error) {
	if x.readOnly {
		return nil, dest.ErrReadOnly
	}
	w, err := x.openStream(ctx, cfg)
	if err != nil && x.d.Transient(err) {
		return nil, &dest.TransientError{Err: err}
	}
	return w, err
}

func (x *Destination) openStream(ctx context.Context, cfg dest.StreamConfig) (*writer, error) {
	w := &writer{x: x, cfg: cfg, tables: map[string]*table{}, known: map[string]*schema.Table{}}
	w.staging = cfg.Mode == dest.FullRefreshOverwrite
	w.upsert = cfg.Mode.Upserts()
	root, err := w.openTable(ctx, x.db, cfg.Table, false)
	if err != nil {
		return nil, err
	}
	w.root = root
	// The child tables of unnested arrays this stream wrote before: open
	// them now, so the normalizer keeps their names and types, and so that
	// replacing a row's children also covers tables this run does not see.
	// A resumed full refresh also reopens the child tables it staged
	// before the interruption, which may have no live table yet: the swap
	// must bring them in even if no more of their rows arrive.
	layouts, err := x.streamLayouts(ctx, cfg.Pipeline, cfg.Stream)
	if err != nil {
		return nil, err
	}
	for _, l := range layouts {
		name := l.Layout.Name
		staged := strings.HasPrefix(l.Table, stagingPrefix)
		switch {
		case l.Layout.Parent == "" || w.tables[name] != nil || strings.HasPrefix(name, stagingPrefix):
			continue
		case staged && !(w.staging && cfg.Resume):
			continue // an abandoned refresh's table, dropped when it is reopened
		}
		t, err := w.openTable(ctx, x.db, name, true)
		if err != nil {
			return nil, err
		}
		if start := t.start(w.staging); start != nil {
			w.known[t.name] = start
		}
	}
	return w, nil
}

// openTable inspects one table and prepares its target. q runs any
// statement needed (the open transaction once writing has begun).
func (w *writer) openTable(ctx context.Context, q Queryer, name string, child bool) (*table, error) {
	x, cfg := w.x, w.cfg
	t := &table{name: name, target: name, child: child}
	cols, exists, err := x.d.Columns(ctx, q, name)
	if err != nil {
		return nil, fmt.Errorf("inspect table %s: %w", name, err)
	}
	recorded, err := x.loadLayout(ctx, q, name)
	if err != nil {
		return nil, err
	}
	t.liveExists = exists
	switch {
	case exists && recorded == nil && cfg.Mode != dest.FullRefreshOverwrite:
		return nil, &ForeignTableError{Table: name}
	case exists && recorded != nil:
		if err := checkTypes(x.d, name, recorded, cols); err != nil {
			return nil, err
		}
		t.existing = reconcile(x.d, recorded, cols)
	}
	w.tables[name] = t
	w.order = append(w.order, t)
	if !w.staging {
		if t.existing != nil {
			t.layout, t.physical = t.existing, true
			if uc, ok := x.d.(UniqueChecker); ok && w.upsert && !child && len(t.existing.PrimaryKey) > 0 {
				if t.unique, err = uc.HasUnique(ctx, q, name); err != nil {
					return nil, fmt.Errorf("inspect the indexes of table %s: %w", name, err)
				}
			}
		}
		return t, nil
	}
	t.target = x.stagingName(name)
	stageCols, stageExists, err := x.d.Columns(ctx, q, t.target)
	if err != nil {
		return nil, fmt.Errorf("inspect table %s: %w", t.target, err)
	}
	if cfg.Resume && stageExists {
		staged, err := x.loadLayout(ctx, q, t.target)
		if err != nil {
			return nil, err
		}
		if staged != nil {
			t.layout, t.physical = reconcile(x.d, staged, stageCols), true
			return t, nil
		}
	}
	if stageExists {
		if err := w.ddl(ctx, x.d.DropTable(t.target)); err != nil {
			return nil, fmt.Errorf("drop stale staging table %s: %w", t.target, err)
		}
	}
	if err := x.deleteLayout(ctx, w.queryer(), t.target); err != nil {
		return nil, err
	}
	return t, nil
}

// checkTypes reports columns whose database type no longer holds the
// type Ferry recorded (the table was changed outside Ferry).
func checkTypes(d Dialect, table string, recorded *schema.Table, cols map[string]string) error {
	tc, ok := d.(TypeChecker)
	if !ok {
		return nil
	}
	var bad []string
	for _, c := range recorded.Columns {
		if db, ok := cols[c.Name]; ok && c.Type != schema.Unknown && !tc.Holds(db, c.Type) {
			bad = append(bad, fmt.Sprintf("column %s is %s in the database but holds %s values", c.Name, db, c.Type))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("table %s was changed outside Ferry: %s; change it back, or drop it (or run a full_refresh_overwrite) so Ferry recreates it", table, strings.Join(bad, "; "))
	}
	return nil
}

// start returns the layout the normalizer starts from for a table.
func (t *table) start(staging bool) *schema.Table {
	if staging && t.layout != nil {
		return t.layout
	}
	return t.existing
}

// reconcile drops from a recorded layout the columns the database lacks
// (someone dropped them, or a change was not applied): they are added
// again when data needs them. Without transactional DDL the layout is
// recorded before the change runs, so a crash can also leave a column
// narrower than recorded: it gets its database type back, and the next
// migration widens it again.
func reconcile(d Dialect, t *schema.Table, cols map[string]string) *schema.Table {
	out := t.Clone()
	out.Columns = out.Columns[:0]
	changed := false
	for _, c := range t.Columns {
		dbType, ok := cols[c.Name]
		if !ok {
			changed = true
			continue
		}
		if ty, ok := d.(Typer); ok {
			if phys, ok := ty.LogicalType(dbType); ok && !phys.Contains(c.Type) {
				c.Type, changed = phys, true
			}
		}
		out.Columns = append(out.Columns, c)
	}
	if changed {
		out.Version++
	}
	return out
}

// Existing returns the layout the normalizer starts from.
func (w *writer) Existing() *schema.Table { return w.root.start(w.staging) }

// ExistingChild returns the layout a child table of unnested arrays
// starts from, or nil. It is safe to call while Write runs.
func (w *writer) ExistingChild(name string) *schema.Table { return w.known[name] }

func (w *writer) begin(ctx context.Context) error {
	if w.tx != nil {
		return nil
	}
	tx, err := w.x.db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	w.tx = tx
	for _, t := range w.order {
		t.loader = nil
	}
	return nil
}

// queryer returns the open transaction, or the pool.
func (w *writer) queryer() Queryer {
	if w.tx != nil {
		return w.tx
	}
	return w.x.db
}

// ddl runs schema changes: inside the open transaction when the database
// can roll them back; otherwise after committing what came before (with
// its checkpoints), outside any transaction, and a new transaction begins.
func (w *writer) ddl(ctx context.Context, stmts ...string) error {
	if len(stmts) == 0 {
		return nil
	}
	if w.tx != nil && w.x.d.TransactionalDDL() {
		for _, s := range stmts {
			if err := w.tx.Exec(ctx, s); err != nil {
				return w.ddlError(s, err)
			}
		}
		return nil
	}
	open := w.tx != nil
	if open {
		if err := w.commit(ctx); err != nil {
			return err
		}
	}
	for _, s := range stmts {
		if err := w.x.db.Exec(ctx, s); err != nil {
			return w.ddlError(s, err)
		}
	}
	if open {
		return w.begin(ctx)
	}
	return nil
}

// classify marks connection failures as transient for the engine.
func (w *writer) classify(err error) error {
	if err != nil && w.x.d.Transient(err) {
		return &dest.TransientError{Err: err}
	}
	return err
}

// Write adds a chunk (and the chunks of its child tables) to the open
// transaction.
func (w *writer) Write(ctx context.Context, c *record.Chunk) error {
	return w.classify(w.write(ctx, c))
}

func (w *writer) write(ctx context.Context, c *record.Chunk) error {
	if w.done {
		return errors.New("write after finish")
	}
	if err := w.begin(ctx); err != nil {
		return err
	}
	before := w.rejected
	if err := w.writeTable(ctx, w.root, c); err != nil {
		return err
	}
	w.written += int64(c.Len - (w.rejected - before))
	for _, ch := range c.Children {
		t := w.tables[ch.Table.Name]
		if t == nil {
			var err error
			if t, err = w.openTable(ctx, w.queryer(), ch.Table.Name, true); err != nil {
				return err
			}
		}
		if err := w.writeTable(ctx, t, ch); err != nil {
			return err
		}
	}
	w.touch(c)
	w.pending = append(w.pending, c.Checkpoints...)
	// A single-writer database: when another stream waits for the write
	// lock, commit here, at a page boundary, and let it in.
	if cd, ok := w.x.db.(interface{ Contended() bool }); ok && cd.Contended() {
		return w.commit(ctx)
	}
	return nil
}

// writeTable writes one table's chunk: migrate, load, rejects.
func (w *writer) writeTable(ctx context.Context, t *table, c *record.Chunk) error {
	upsert := w.upsert && !t.child && len(c.Table.PrimaryKey) > 0
	if t.layout == nil || !sameLayout(t.layout, c.Table) || (upsert && !t.unique) || (t.child && !t.indexed) {
		if err := w.migrate(ctx, t, c.Table, upsert); err != nil {
			return err
		}
	}
	if t.loader == nil {
		l, err := w.x.d.NewLoader(w.tx, Target{Table: t.target, Layout: t.layout, Upsert: upsert})
		if err != nil {
			return err
		}
		t.loader = l
	}
	if c.Len > 0 {
		bad, err := t.loader.Load(ctx, c)
		if err != nil {
			return fmt.Errorf("write %d rows to %s: %w", c.Len, t.name, err)
		}
		for _, b := range bad {
			r := record.Reject{Stream: w.cfg.Stream, Reason: b.Reason, Column: b.Column}
			if b.Row < c.Len {
				r.Record = c.RowJSON(b.Row)
			}
			if err := w.reject(ctx, t.name, r); err != nil {
				return err
			}
		}
		w.rejected += len(bad)
	}
	for _, r := range c.Rejects {
		if err := w.reject(ctx, t.name, r); err != nil {
			return err
		}
	}
	return nil
}

func sameLayout(a, b *schema.Table) bool {
	if len(a.Columns) != len(b.Columns) || len(a.PrimaryKey) != len(b.PrimaryKey) {
		return false
	}
	for i := range a.Columns {
		if a.Columns[i].Name != b.Columns[i].Name || a.Columns[i].Type != b.Columns[i].Type {
			return false
		}
	}
	for i := range a.PrimaryKey {
		if a.PrimaryKey[i] != b.PrimaryKey[i] {
			return false
		}
	}
	return true
}

// migrate brings a table's target to layout next.
func (w *writer) migrate(ctx context.Context, t *table, next *schema.Table, upsert bool) error {
	d := w.x.d
	// A loader may hold rows not written yet: they belong to the old
	// layout, so they go in before the table changes.
	if t.loader != nil {
		if err := t.loader.Flush(ctx); err != nil {
			return fmt.Errorf("write to %s: %w", t.name, err)
		}
		t.loader = nil
	}
	var stmts []string
	if !t.physical {
		stmts = append(stmts, createTable(d, t.target, next))
	} else {
		// New columns first: a widening may rebuild the table with all of
		// next's columns.
		var widen []string
		for _, ch := range schema.Diff(t.layout, next) {
			switch ch.Kind {
			case schema.Added:
				stmts = append(stmts, d.AddColumn(t.target, *next.Column(ch.Column)))
			case schema.Widened:
				if !schema.Compatible(ch.From, ch.To) {
					return fmt.Errorf("table %s: column %s cannot change from %s to %s", t.name, ch.Column, ch.From, ch.To)
				}
				widen = append(widen, d.Widen(t.target, next, ch.Column, ch.From)...)
				t.unique, t.indexed = false, false // a rebuilt table may have lost its indexes
			}
		}
		stmts = append(stmts, widen...)
	}
	needUnique := upsert && (!t.unique || !t.physical)
	if needUnique {
		stmts = append(stmts, w.createUnique(t.target, next.PrimaryKey))
	}
	if t.child && (!t.indexed || !t.physical) {
		// Replacing a row's children looks them up by root key and parent
		// row id, and the parents by row id.
		if len(next.RootKey) > 0 {
			stmts = append(stmts, createIndex(d, t.target, next.RootKey))
		}
		stmts = append(stmts, createIndex(d, t.target, []string{schema.ColParentRowID}))
		if p := w.tables[next.Parent]; p != nil && p.physical {
			stmts = append(stmts, createIndex(d, p.target, []string{schema.ColRowID}))
		}
	}
	if len(stmts) > 0 && !d.TransactionalDDL() {
		// Commit what came before (with its checkpoints), record the new
		// layout first so a crash between the changes is recoverable, then
		// change the table outside any transaction.
		if err := w.commit(ctx); err != nil {
			return err
		}
		if err := w.x.saveLayout(ctx, w.x.db, t.target, t.name, w.cfg.Pipeline, w.cfg.Stream, next); err != nil {
			return err
		}
		if err := w.ddl(ctx, stmts...); err != nil {
			return err
		}
		if err := w.begin(ctx); err != nil {
			return err
		}
	} else if err := w.ddl(ctx, stmts...); err != nil {
		return w.changedMeanwhile(ctx, t, next, err)
	}
	if needUnique {
		t.unique = true
	}
	if t.child {
		t.indexed = true
	}
	t.layout = next
	t.physical = true
	t.dirty = true
	t.loader = nil
	return nil
}

// changedMeanwhile tells a failed change of a table that another run made
// meanwhile (a worker running another slice of the stream created the
// table, or added the column) from other failures: the first is a
// *dest.TransientError, so the engine starts the stream again from its
// last commit and finds the table as it now is.
func (w *writer) changedMeanwhile(ctx context.Context, t *table, next *schema.Table, err error) error {
	cols, exists, cerr := w.x.d.Columns(context.WithoutCancel(ctx), w.x.db, t.target)
	if cerr != nil || !exists {
		return err
	}
	if t.physical {
		added := false
		for _, ch := range schema.Diff(t.layout, next) {
			if _, ok := cols[ch.Column]; ok && ch.Kind == schema.Added {
				added = true
			}
		}
		if !added {
			return err
		}
	}
	return &dest.TransientError{Now: true, Err: fmt.Errorf("table %s was changed meanwhile by another run of the stream (another slice): %w", t.name, err)}
}

// createUnique returns the dialect's statement enforcing a primary key
// and remembers it, so that ddlError can explain its failure.
func (w *writer) createUnique(table string, key []string) string {
	s := w.x.d.CreateUnique(table, key)
	if w.uniqueStmts == nil {
		w.uniqueStmts = map[string]bool{}
	}
	w.uniqueStmts[s] = true
	return s
}

func (w *writer) ddlError(stmt string, err error) error {
	if w.uniqueStmts[stmt] {
		var pk []string
		if w.root.layout != nil {
			pk = w.root.layout.PrimaryKey
		}
		return fmt.Errorf("table %s: cannot enforce the primary key (%s): %w; if the table holds duplicate keys from an append mode, run it once with mode full_refresh_overwrite",
			w.cfg.Table, strings.Join(pk, ", "), err)
	}
	return fmt.Errorf("change table %s: %w (statement: %s)", w.cfg.Table, err, stmt)
}

// createTable builds CREATE TABLE for a layout.
func createTable(d Dialect, table string, t *schema.Table) string {
	return fmt.Sprintf("CREATE TABLE %s (%s)", d.Table(table), strings.Join(ColumnDefs(d, t), ", "))
}

// ColumnDefs returns the column definitions of a layout for CREATE TABLE:
// quoted name and type, key columns NOT NULL.
func ColumnDefs(d Dialect, t *schema.Table) []string {
	var cols []string
	for _, c := range t.Columns {
		key := slices.Contains(t.PrimaryKey, c.Name)
		def := d.Quote(c.Name) + " " + d.ColumnType(c.Type, key)
		if key {
			def += " NOT NULL"
		}
		cols = append(cols, def)
	}
	return cols
}

// touch notes the root keys of a chunk's rows when the stream has child
// tables, so the commit can replace those rows' children.
func (w *writer) touch(c *record.Chunk) {
	if !w.upsert || len(w.order) < 2 && len(c.Children) == 0 {
		return
	}
	pk := c.Table.PrimaryKey
	if len(pk) == 0 || c.Table.Index(schema.ColRowID) < 0 {
		return
	}
	if w.touched == nil {
		w.touched = map[string][]any{}
	}
	idx := make([]int, len(pk))
	for i, k := range pk {
		idx[i] = c.Table.Index(k)
	}
	var key strings.Builder
	for r := 0; r < c.Len; r++ {
		key.Reset()
		vals := make([]any, len(idx))
		for i, j := range idx {
			v := c.Value(r, j)
			if t, ok := v.(time.Time); ok {
				v = w.x.d.Time(t)
			}
			vals[i] = v
			fmt.Fprintf(&key, "%v\x00", v)
		}
		w.touched[key.String()] = vals
	}
}

// replaceChildren deletes, for the root rows written in this transaction,
// the child rows whose parent row is no longer there: the children of an
// older version of the row, and those of a version that lost to a newer
// one.
func (w *writer) replaceChildren(ctx context.Context) error {
	if len(w.touched) == 0 {
		return nil
	}
	keys := make([][]any, 0, len(w.touched))
	for _, v := range w.touched {
		keys = append(keys, v)
	}
	d := w.x.d
	for _, t := range w.order[1:] {
		if !t.physical || t.layout == nil || len(t.layout.RootKey) == 0 {
			continue
		}
		parent := w.tables[t.layout.Parent]
		if parent == nil || !parent.physical {
			continue
		}
		per := max(1, 500/len(t.layout.RootKey))
		for start := 0; start < len(keys); start += per {
			batch := keys[start:min(start+per, len(keys))]
			var args []any
			for _, k := range batch {
				args = append(args, k...)
			}
			stmt := fmt.Sprintf("DELETE FROM %s WHERE %s AND NOT EXISTS (SELECT 1 FROM %s p WHERE p.%s = %s.%s)",
				d.Table(t.target), inList(d, t.layout.RootKey, len(batch)), d.Table(parent.target),
				d.Quote(schema.ColRowID), d.Table(t.target), d.Quote(schema.ColParentRowID))
			if err := w.tx.Exec(ctx, stmt, args...); err != nil {
				return fmt.Errorf("replace the children of updated rows in %s: %w", t.name, err)
			}
		}
	}
	return nil
}

// reject stores a rejected record in the open transaction.
func (w *writer) reject(ctx context.Context, tableName string, r record.Reject) error {
	d := w.x.d
	stmt := fmt.Sprintf("INSERT INTO %s (%s) VALUES (%s)", d.Table(dest.RejectedTable),
		quoteList(d, []string{"run_id", "pipeline", "stream", "table_name", "partition_key", "reason", "column_name", "record", "rejected_at"}),
		placeholders(d, 9))
	payload := sanitize(string(r.Record))
	if err := w.tx.Exec(ctx, stmt, w.cfg.RunID, w.cfg.Pipeline, w.cfg.Stream, tableName, r.Partition, sanitize(r.Reason), r.Column, payload, d.Time(time.Now())); err != nil {
		return fmt.Errorf("store rejected record of %s: %w", w.cfg.Stream, err)
	}
	return nil
}

// sanitize makes text storable in any database: invalid UTF-8 and NUL
// bytes become U+FFFD.
func sanitize(s string) string {
	if utf8.ValidString(s) && !strings.ContainsRune(s, 0) {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

func placeholders(d Dialect, n int) string {
	p := make([]string, n)
	for i := range p {
		p[i] = d.Placeholder(i + 1)
	}
	return strings.Join(p, ", ")
}

// Commit commits rows and checkpoints.
func (w *writer) Commit(ctx context.Context) error { return w.classify(w.commit(ctx)) }

func (w *writer) commit(ctx context.Context) error {
	dirty := false
	for _, t := range w.order {
		dirty = dirty || t.dirty
	}
	if w.tx == nil && len(w.pending) == 0 && !dirty {
		return nil
	}
	if err := w.begin(ctx); err != nil {
		return err
	}
	for _, t := range w.order {
		if t.loader != nil {
			if err := t.loader.Flush(ctx); err != nil {
				return fmt.Errorf("write to %s: %w", t.name, err)
			}
		}
	}
	if err := w.replaceChildren(ctx); err != nil {
		return err
	}
	for _, t := range w.order {
		if t.dirty {
			if err := w.x.saveLayout(ctx, w.tx, t.target, t.name, w.cfg.Pipeline, w.cfg.Stream, t.layout); err != nil {
				return err
			}
		}
	}
	if w.cfg.Fence != nil {
		if err := w.x.checkFence(ctx, w.tx, *w.cfg.Fence); err != nil {
			return err
		}
	}
	if err := w.saveCheckpoints(ctx); err != nil {
		return err
	}
	tx := w.tx
	w.tx = nil
	for _, t := range w.order {
		t.loader = nil
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit %s: %w", w.cfg.Table, err)
	}
	w.pending = w.pending[:0]
	w.touched = nil
	w.durable += w.written
	w.written = 0
	for _, t := range w.order {
		t.dirty = false
	}
	return nil
}

// saveCheckpoints writes the last checkpoint of each partition in the
// open transaction.
func (w *writer) saveCheckpoints(ctx context.Context) error {
	return saveStates(ctx, w.tx, w.x.d, w.cfg.Pipeline, w.cfg.RunID, w.cfg.Stream, w.pending)
}

// Finish ends a pass: final checkpoints, the staging swap, commit.
func (w *writer) Finish(ctx context.Context, final []record.Checkpoint) error {
	return w.classify(w.finish(ctx, final))
}

func (w *writer) finish(ctx context.Context, final []record.Checkpoint) error {
	if w.done {
		return nil
	}
	w.pending = append(w.pending, final...)
	if w.staging {
		if err := w.swap(ctx); err != nil {
			return err
		}
	}
	if err := w.commit(ctx); err != nil {
		return err
	}
	w.done = true
	return nil
}

// swap replaces each live table with its staging table in the open
// transaction (or, without transactional DDL, right after committing).
// A child table this pass did not stage is emptied: the new data has no
// such elements.
func (w *writer) swap(ctx context.Context) error {
	if w.root.layout == nil {
		return nil // nothing was staged: the stream had no pages
	}
	d := w.x.d
	if err := w.begin(ctx); err != nil {
		return err
	}
	// The staged tables' indexes carry staging names; once every table is
	// in place they move to the live names, so a table never holds the
	// same index twice and the next staging table can reuse the names.
	var swaps []TableSwap
	var after []string
	var moved []*table // parents whose row id index has moved
	for _, t := range w.order {
		switch {
		case t.physical:
			swaps = append(swaps, TableSwap{Live: t.name, Staging: t.target, LiveExists: t.liveExists})
			if !t.child && w.upsert && len(t.layout.PrimaryKey) > 0 {
				after = append(after, w.createUnique(t.name, t.layout.PrimaryKey))
			}
			if t.child {
				if len(t.layout.RootKey) > 0 {
					after = append(after, moveIndex(d, t.name, t.target, t.layout.RootKey)...)
				}
				after = append(after, moveIndex(d, t.name, t.target, []string{schema.ColParentRowID})...)
				if p := w.tables[t.layout.Parent]; p != nil && p.physical && !slices.Contains(moved, p) {
					moved = append(moved, p)
					after = append(after, moveIndex(d, p.name, p.target, []string{schema.ColRowID})...)
				}
			}
		case t.liveExists:
			swaps = append(swaps, TableSwap{Live: t.name, Staging: t.target, LiveExists: true, Empty: true})
		}
	}
	stmts := append(swapAll(d, swaps), after...)
	if err := w.ddl(ctx, stmts...); err != nil {
		return fmt.Errorf("swap the refreshed tables of %s in: %w", w.cfg.Stream, err)
	}
	if err := w.begin(ctx); err != nil {
		return err
	}
	for _, t := range w.order {
		if !t.physical {
			continue
		}
		if err := w.x.saveLayout(ctx, w.tx, t.name, t.name, w.cfg.Pipeline, w.cfg.Stream, t.layout); err != nil {
			return err
		}
		if err := w.x.deleteLayout(ctx, w.tx, t.target); err != nil {
			return err
		}
		t.dirty = false
		t.target = t.name
		t.liveExists = true
		t.loader = nil
	}
	return nil
}

// Abort rolls back.
func (w *writer) Abort(ctx context.Context) error {
	w.done = true
	w.pending = nil
	if w.tx == nil {
		return nil
	}
	tx := w.tx
	w.tx = nil
	w.written = 0
	for _, t := range w.order {
		if a, ok := t.loader.(Abandoner); ok {
			a.Abandon()
		}
		t.loader = nil
	}
	return tx.Rollback(ctx)
}
