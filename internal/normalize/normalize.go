// Package normalize turns raw JSON records into typed, columnar rows: it
// infers each field's type, names its column, widens columns when the data
// changes, applies the stream's schema policy, and sends records it cannot
// turn into rows to the rejected list with the reason.
//
// Scanning goes straight from a record's bytes into typed column vectors,
// with no map or interface value per record; strings alias the response
// body unless they need unescaping.
package normalize

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/ferry-dev/ferry/internal/cursor"
	"github.com/ferry-dev/ferry/internal/jsonpath"
	"github.com/ferry-dev/ferry/internal/jsonscan"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/schema"
)

// Options configure a Normalizer for one table.
type Options struct {
	// Table is the destination table's name (already normalised).
	Table string
	// PrimaryKey lists the JSON keys (or parent field columns) that
	// identify a record.
	PrimaryKey []string
	// Cursor is the JSON key of the incremental cursor; a dotted path
	// reaches into nested objects.
	Cursor string
	// Hints fixes the types of some keys. A dotted key reaches into an
	// object (addr.city, with nested flatten or unnest) or into the
	// elements of an unnested array (items.sku, a child table's column).
	// A hinted column is created when its field first appears.
	Hints map[string]schema.Type
	// Policy is schema.Evolve (default), Freeze, DiscardRow or DiscardValue.
	Policy schema.Policy
	// MaxIdentLen is the destination's identifier limit in bytes.
	MaxIdentLen int
	// ReservedColumns are column names the destination keeps for itself
	// (PostgreSQL's xmin, ctid…): keys that would get one are renamed
	// with the clash suffix instead.
	ReservedColumns []string
	// ParentFields are the columns copied from the partition onto each row.
	ParentFields []string
	// RunID fills the run id metadata column.
	RunID string
	// Existing is the table as the destination has it, or nil.
	Existing *schema.Table
	// ChildExisting returns the layout the destination has for a child
	// table of unnested arrays, or nil.
	ChildExisting func(table string) *schema.Table
	// Nested and MaxDepth choose how objects and arrays are stored: "json"
	// (default) keeps them in a JSON column, "flatten" turns objects into
	// parent__child columns down to MaxDepth levels, "unnest" also turns
	// arrays into rows of child tables (table__key) down to MaxDepth
	// levels, linked to their parent row by _ferry_parent_row_id and to
	// the root row by its primary key.
	Nested   schema.Nesting
	MaxDepth int
	// MaxColumns is how many columns the table may have, Ferry's own
	// included: the destination's limit (dest.Limits: PostgreSQL 1600,
	// SQLite 2000, MySQL/MariaDB 383 for InnoDB's rows). A record that
	// would take the table past it is rejected whole, adding no column;
	// the columns earlier records added stay. Child tables of unnested
	// arrays get the same budget. 0 means DefaultMaxColumns; a negative
	// value means no budget, for a destination without a limit (JSON
	// Lines files).
	MaxColumns int

	level int // nesting level of an unnested child table
}

// DefaultMaxColumns is the column budget when Options.MaxColumns is 0,
// for a caller that does not know the destination's limit: below
// PostgreSQL's and SQLite's (MySQL's is lower and must be passed), and
// far more than a record meant as one row has. A wider record is almost
// always a map keyed by ids or dates, better kept in one JSON column (give
// its field a json type hint) than spread over thousands of columns, and
// a bound keeps one hostile record from costing thousands of columns in
// every row of the page.
const DefaultMaxColumns = 1000

// maxReason bounds the reasons given for rejected records and values, in
// bytes: each quotes at most a key and a value excerpt, and is cut here
// whatever it quotes.
const maxReason = 300

// SchemaError reports a change the policy forbids (freeze).
type SchemaError struct {
	Table   string
	Changes []schema.Change
	Key     string
	Value   string
}

func (e *SchemaError) Error() string {
	var parts []string
	for _, c := range e.Changes {
		parts = append(parts, c.String())
	}
	return fmt.Sprintf("table %s is frozen (schema policy freeze) but the data changed it: %s (field %q, value %s); set schema.policy to evolve to accept it, or discard_row/discard_value to reject such records",
		e.Table, strings.Join(parts, ", "), e.Key, e.Value)
}

// Result counts what happened to one page's records.
type Result struct {
	Rows     int // rows in the chunk
	Rejected int // records sent to the rejected list
	Filtered int // records dropped by the cursor filter
	// NoCursor counts the rows without a value in the cursor field (for a
	// stream that has one).
	NoCursor int
	// Changes are the columns added or widened by this page.
	Changes []schema.Change
}

// Normalizer converts pages for one table. It is not safe for concurrent
// use.
type Normalizer struct {
	opts  Options
	table *schema.Table
	namer *schema.Namer
	byKey map[string]int // JSON key (nested keys joined by \x00) → column index
	cells []cell         // per column: this row's value
	gen   uint32         // row generation; cells with another gen are unset

	pk         []int // column index per primary key field, -1 while absent
	cursorIdx  int   // column of a top-level cursor, -1 otherwise
	cursorPath *jsonpath.Path
	parentIdx  []int
	metaAt     int // _ferry_extracted_at
	metaRun    int // _ferry_run_id
	runID      []byte
	// keyAt predicts, by position in the record, which top-level key comes
	// next and its column: records of one API list their keys in the same
	// order, so most lookups skip the map.
	keyAt []keyGuess
	pos   int // position of the current top-level member
	// hints are the fixed types of fields that have no column yet, by path
	// key.
	hints map[string]schema.Type
	// restricted is true when the table existed before this run and the
	// policy is not evolve: new columns and widenings then follow the
	// policy. A table's first run always evolves.
	restricted bool

	unnest                // child tables of unnested arrays
	chunk   *record.Chunk // chunk being built
	changes []schema.Change
	reject  string // reason the current record is rejected, "" if none
	rejCol  string
	drops   []drop // values dropped from the current record (discard_value)

	// Reading a record: the scanner is reused so that its buffers are.
	sc      jsonscan.Scanner
	rec     []byte         // the record being read
	recs    uint64         // counts the records read: the current one's number
	seen    []uint64       // per column: the last record whose top level had its key
	unknown jsonscan.Names // this record's top-level keys that had no column
	counted uint64         // the record whose new columns were counted (budget)
	// shared is true once the table may be held outside (by a chunk, at
	// its creation and again when Page returns it, or by a caller of Table
	// or Children): the next change then works on a copy, which only the
	// chunk being built holds. Within one page the table changes in place,
	// so adding many columns is linear.
	shared bool
}

type drop struct{ column, reason string }

// cell is one scanned value.
type cell struct {
	gen uint32
	t   schema.Type
	i   int64
	f   float64
	b   []byte
}

// New returns a Normalizer. Existing columns keep their names and types.
func New(opts Options) (*Normalizer, error) {
	if opts.Policy == "" {
		opts.Policy = schema.Evolve
	}
	if opts.MaxDepth <= 0 {
		opts.MaxDepth = 2
	}
	// Records nest no deeper than jsonscan allows; neither does the
	// flattening and unnesting of their fields.
	opts.MaxDepth = min(opts.MaxDepth, jsonscan.MaxDepth)
	if opts.MaxColumns == 0 {
		opts.MaxColumns = DefaultMaxColumns
	}
	n := &Normalizer{
		opts:      opts,
		namer:     schema.NewNamer(opts.MaxIdentLen).Reserving(opts.ReservedColumns...),
		byKey:     map[string]int{},
		cursorIdx: -1,
		runID:     []byte(opts.RunID),
		unnest:    unnest{level: opts.level},
	}
	if opts.Existing != nil {
		n.table = opts.Existing.Clone()
		n.restricted = opts.Policy != schema.Evolve
	} else {
		n.table = &schema.Table{Name: opts.Table}
	}
	t := n.table
	for i, c := range t.Columns {
		key := ""
		if c.Origin == schema.FromData {
			key = pathKey(c.Path)
			n.byKey[key] = i
		}
		n.namer.Reserve(key, c.Name)
	}
	n.cells = make([]cell, len(t.Columns))
	// Parent fields first, then metadata columns, each created if missing.
	for _, name := range opts.ParentFields {
		i := n.ensureColumn(schema.Column{Name: name, Origin: schema.FromParent})
		n.parentIdx = append(n.parentIdx, i)
		// A record field with the same name lands in the same column; the
		// parent's value, set after the record, wins.
		n.byKey[name] = i
	}
	n.metaAt = n.ensureColumn(schema.Column{Name: schema.ColExtractedAt, Type: schema.Timestamp, Origin: schema.FromMeta})
	n.metaRun = n.ensureColumn(schema.Column{Name: schema.ColRunID, Type: schema.Text, Origin: schema.FromMeta})
	n.rowIDIdx, n.listIdx = -1, -1
	if opts.Nested == schema.Unnest {
		n.initUnnest()
	}
	n.pk = make([]int, len(opts.PrimaryKey))
	for i, k := range opts.PrimaryKey {
		n.pk[i] = n.lookupPK(k)
	}
	// Hinted columns that exist take their fixed type; the others are
	// created with it when their field first appears.
	n.hints = map[string]schema.Type{}
	for key, typ := range opts.Hints {
		pk := pathKey(strings.Split(key, "."))
		if i, ok := n.byKey[pk]; ok {
			n.table.Columns[i].Hinted = true
			if n.table.Columns[i].Type != typ && n.table.Columns[i].Type != schema.Unknown {
				return nil, fmt.Errorf("column %s of table %s is %s but the connector fixes it as %s", n.table.Columns[i].Name, t.Name, n.table.Columns[i].Type, typ)
			}
			n.table.Columns[i].Type = typ
			continue
		}
		n.hints[pk] = typ
	}
	if opts.Cursor != "" {
		if strings.Contains(opts.Cursor, ".") {
			p, err := jsonpath.Compile(opts.Cursor)
			if err != nil {
				return nil, fmt.Errorf("cursor %q: %w", opts.Cursor, err)
			}
			n.cursorPath = p
		}
	}
	n.changes = nil
	n.syncTableKeys()
	return n, nil
}

// lookupPK finds the column of a primary key field: a parent field column
// by name, else a data key.
func (n *Normalizer) lookupPK(key string) int {
	for _, i := range n.parentIdx {
		if n.table.Columns[i].Name == key {
			return i
		}
	}
	if i, ok := n.byKey[key]; ok {
		return i
	}
	return -1
}

// syncTableKeys records primary key and cursor column names on the table.
func (n *Normalizer) syncTableKeys() {
	var pk []string
	for _, i := range n.pk {
		if i >= 0 {
			pk = append(pk, n.table.Columns[i].Name)
		}
	}
	if len(pk) == len(n.pk) {
		n.table.PrimaryKey = pk
	}
	if n.opts.Cursor != "" && n.cursorPath == nil {
		if i, ok := n.byKey[n.opts.Cursor]; ok {
			n.cursorIdx = i
			n.table.Cursor = n.table.Columns[i].Name
		}
	}
}

// ensureColumn returns the index of a non-data column, adding it if needed.
func (n *Normalizer) ensureColumn(c schema.Column) int {
	if i := n.table.Index(c.Name); i >= 0 {
		return i
	}
	n.namer.Reserve("", c.Name)
	n.table.Columns = append(n.table.Columns, c)
	n.cells = append(n.cells, cell{})
	n.changes = append(n.changes, schema.Change{Kind: schema.Added, Column: c.Name, To: c.Type})
	return len(n.table.Columns) - 1
}

// Table returns the current layout.
func (n *Normalizer) Table() *schema.Table { return n.handOut() }

// handOut returns the table for a chunk or a caller to keep: from then on
// it must not change, and the next change works on a copy.
func (n *Normalizer) handOut() *schema.Table {
	n.shared = true
	return n.table
}

// own returns the table to change: a copy of it, the first time after it
// was handed out. The chunk being built (which has not been handed out
// yet) gets the copy; further changes to it are made in place.
func (n *Normalizer) own() *schema.Table {
	if n.shared {
		n.table = n.table.Clone()
		n.shared = false
		if c := n.chunk; c != nil {
			c.Table = n.table
		}
	}
	return n.table
}

func pathKey(path []string) string { return strings.Join(path, "\x00") }

// addColumn adds a data column to the table (a new version) and to the
// chunk being built.
func (n *Normalizer) addColumn(key string, path []string, t schema.Type, hinted bool) int {
	tbl := n.own()
	var name string
	if len(path) > 1 {
		name = n.namer.NameAs(key, joinNormalized(path))
	} else {
		name = n.namer.Name(key)
	}
	tbl.Columns = append(tbl.Columns, schema.Column{Name: name, Path: path, Type: t, Hinted: hinted})
	tbl.Version++
	idx := len(tbl.Columns) - 1
	n.byKey[key] = idx
	n.cells = append(n.cells, cell{})
	n.changes = append(n.changes, schema.Change{Kind: schema.Added, Column: name, To: t})
	if c := n.chunk; c != nil {
		v := record.Vector{}
		for r := 0; r < c.Len; r++ {
			v.AppendNull(t)
		}
		c.Cols = append(c.Cols, v)
	}
	// A primary key or cursor field may have just appeared.
	for j, k := range n.opts.PrimaryKey {
		if n.pk[j] < 0 && k == key {
			n.pk[j] = idx
		}
	}
	n.syncTableKeys()
	return idx
}

func joinNormalized(path []string) string {
	parts := make([]string, len(path))
	for i, p := range path {
		parts[i] = schema.Normalize(p)
	}
	return strings.Join(parts, "__")
}

// widen changes column i to type t in the table and in the chunk.
func (n *Normalizer) widen(i int, t schema.Type) {
	tbl := n.own()
	from := tbl.Columns[i].Type
	tbl.Columns[i].Type = t
	tbl.Version++
	if from == schema.Unknown {
		n.changes = append(n.changes, schema.Change{Kind: schema.Added, Column: tbl.Columns[i].Name, To: t})
	} else {
		n.changes = append(n.changes, schema.Change{Kind: schema.Widened, Column: tbl.Columns[i].Name, From: from, To: t})
	}
	if c := n.chunk; c != nil {
		convertVector(&c.Cols[i], from, t, c.Len)
	}
}

// convertVector rewrites the first rows of v from type from to type to.
func convertVector(v *record.Vector, from, to schema.Type, rows int) {
	if from == schema.Unknown {
		nv := record.Vector{}
		for r := 0; r < rows; r++ {
			nv.AppendNull(to)
		}
		*v = nv
		return
	}
	switch {
	case from == schema.Int && to == schema.Float:
		v.Floats = make([]float64, rows, max(rows, cap(v.Ints)))
		for r := 0; r < rows; r++ {
			v.Floats[r] = float64(v.Ints[r])
		}
		v.Ints = nil
	case record.Storage(to) == record.StoreBytes:
		for r := 0; r < rows; r++ {
			if v.Nulls[r] {
				continue
			}
			if v.Bytes[r] == nil {
				switch from {
				case schema.Int:
					v.Bytes[r] = strconv.AppendInt(nil, v.Ints[r], 10)
				case schema.Float:
					v.Bytes[r] = strconv.AppendFloat(nil, v.Floats[r], 'g', -1, 64)
				case schema.Timestamp:
					v.Bytes[r] = schema.FormatTimestamp(nil, v.Ints[r])
				case schema.Bool:
					v.Bytes[r] = boolText(v.Ints[r] != 0)
				}
			}
		}
		v.Ints, v.Floats = nil, nil
	}
}

var (
	textTrue  = []byte("true")
	textFalse = []byte("false")
)

func boolText(b bool) []byte {
	if b {
		return textTrue
	}
	return textFalse
}

// Page converts the records of a page into a chunk for the current table.
// Records that cannot become rows are added to the chunk's Rejects. The
// error is non-nil only when the schema policy forbids a change (freeze);
// the stream must then fail.
//
// f, when not nil, decides which records are kept (the incremental cursor
// and the identities a sync already has); it sees every record that
// became a row, with its cursor value and the hash of its primary key.
func (n *Normalizer) Page(p *record.Page, f *cursor.Filter) (*record.Chunk, Result, error) {
	c := record.NewChunk(n.handOut(), len(p.Records))
	c.Source = p.Request
	n.chunk = c
	defer func() { n.chunk = nil }()
	n.changes = n.changes[:0]
	var res Result
	var parts string
	if p.Partition != nil {
		parts = p.Partition.Key
	}
	// Parent field values are the same for every row of the page.
	var parentCells []cell
	if p.Partition != nil {
		for _, fld := range p.Partition.Fields {
			pc, err := n.scalar(fld.Value)
			if err != nil {
				return nil, res, fmt.Errorf("parent field %s: %w", fld.Name, err)
			}
			parentCells = append(parentCells, pc)
		}
	}
	for ri, rec := range p.Records {
		op := record.Upsert
		if ri < len(p.Ops) {
			op = p.Ops[ri]
		}
		n.gen++
		if n.gen == 0 {
			n.gen = 1
			for i := range n.cells {
				n.cells[i].gen = 0
			}
		}
		n.reject, n.rejCol, n.drops = "", "", n.drops[:0]
		n.arrays = n.arrays[:0]
		if err := n.scan(rec); err != nil {
			var se *SchemaError
			if errors.As(err, &se) {
				return nil, res, err
			}
			n.reject = err.Error()
		}
		// Parent fields and metadata.
		for j, i := range n.parentIdx {
			if j < len(parentCells) && parentCells[j].t != schema.Unknown {
				if ct := n.table.Columns[i].Type; !ct.Contains(parentCells[j].t) {
					n.widen(i, schema.Widen(ct, parentCells[j].t))
				}
				n.set(i, parentCells[j])
			}
		}
		if n.reject == "" {
			for j, i := range n.pk {
				if i < 0 || n.cells[i].gen != n.gen {
					n.reject = fmt.Sprintf("missing primary key field %q", n.opts.PrimaryKey[j])
					break
				}
			}
		}
		if n.reject != "" {
			c.Rejects = append(c.Rejects, record.Reject{Stream: p.Stream, Partition: parts, Reason: n.reject, Record: rec, Column: n.rejCol})
			res.Rejected++
			continue
		}
		// Cursor and identity: the filter keeps or drops the record.
		cur, hasCur := n.cursorValue(rec)
		if n.opts.Cursor != "" && !hasCur {
			res.NoCursor++
		}
		if f != nil {
			key, hasKey := n.keyHash()
			if !f.Keep(cur, hasCur, key, hasKey, rec) {
				res.Filtered++
				continue
			}
		}
		for _, d := range n.drops {
			c.Rejects = append(c.Rejects, record.Reject{Stream: p.Stream, Partition: parts, Reason: d.reason, Record: rec, Column: d.column})
			res.Rejected++
		}
		n.set(n.metaAt, cell{t: schema.Timestamp, i: p.FetchedAt})
		n.set(n.metaRun, cell{t: schema.Text, b: n.runID})
		if n.rowIDIdx >= 0 {
			n.set(n.rowIDIdx, n.nextRowID(c))
		}
		n.appendRow(c, op)
		c.Raw = append(c.Raw, rec)
		if op == record.Delete {
			continue // a deleted row's children go with it
		}
		if err := n.flushArrays(p, n.rootValues()); err != nil {
			return nil, res, err
		}
	}
	n.collectChildren(c, &res)
	res.Rows = c.Len
	res.Changes = append(res.Changes, n.changes...)
	n.changes = n.changes[:0]
	return c, res, nil
}

func (n *Normalizer) set(i int, v cell) {
	v.gen = n.gen
	n.cells[i] = v
}

// appendRow appends the current cells as one row with operation op.
func (n *Normalizer) appendRow(c *record.Chunk, op record.Op) {
	cols := n.table.Columns
	for i := range cols {
		v := &c.Cols[i]
		cl := &n.cells[i]
		t := cols[i].Type
		if cl.gen != n.gen || cl.t == schema.Unknown {
			v.AppendNull(t)
			continue
		}
		switch t {
		case schema.Bool, schema.Int, schema.Timestamp:
			v.AppendInt(cl.i, cl.b)
		case schema.Float:
			if cl.t == schema.Int {
				v.AppendFloat(float64(cl.i), cl.b)
			} else {
				v.AppendFloat(cl.f, cl.b)
			}
		case schema.Decimal, schema.Text, schema.JSON:
			if cl.b == nil && cl.t == schema.Int {
				v.AppendBytes(c.Arena().Copy(strconv.AppendInt(nil, cl.i, 10)))
			} else {
				v.AppendBytes(cl.b)
			}
		default:
			v.AppendNull(t)
		}
	}
	c.Ops = append(c.Ops, op)
	c.Len++
}

// scan reads one record into the cells. A returned *SchemaError fails the
// stream; any other error rejects the record with that reason.
func (n *Normalizer) scan(rec []byte) error {
	n.pos = 0
	n.begin(rec)
	sc := &n.sc
	sc.Reset(rec)
	switch c := sc.Peek(); {
	case c == '{':
	case c == 0:
		return errors.New("record is empty")
	default:
		return fmt.Errorf("record is a JSON %s, not an object", kindName(c))
	}
	err := n.object(sc, nil, 1)
	if err == nil {
		err = invalid(sc.End())
	}
	if err != nil {
		return bounded(err)
	}
	return nil
}

// bounded cuts a rejection's reason to maxReason bytes.
func bounded(err error) error {
	var se *SchemaError
	if errors.As(err, &se) || len(err.Error()) <= maxReason {
		return err
	}
	return errors.New(reason(err.Error()))
}

// begin starts reading a record.
func (n *Normalizer) begin(rec []byte) {
	n.rec = rec
	n.recs++
	n.unknown.Reset()
}

// object scans the object at the scanner into cells; prefix is the key
// path of the object (nil for the record itself). The record's own keys
// are checked for duplicates here, by their columns; the objects inside
// were checked by the scanner.
func (n *Normalizer) object(sc *jsonscan.Scanner, prefix []string, depth int) error {
	if err := sc.BeginUnchecked(); err != nil {
		return invalid(err)
	}
	var keyBuf []byte
	for first := true; ; first = false {
		name, raw, ok, err := sc.Member(first)
		if err != nil {
			return invalid(err)
		}
		if !ok {
			return nil
		}
		key := unquoted(name, &keyBuf)
		if prefix != nil {
			idx, known := n.lookup(prefix, key)
			if err := n.member(prefix, key, raw, depth, idx, known); err != nil {
				return err
			}
			continue
		}
		idx, known := n.lookupTop(key)
		if known {
			if n.seenKey(idx) {
				return fmt.Errorf("duplicate key %s", jsonscan.QuoteName(name))
			}
		} else if n.unknown.Add(name) {
			return fmt.Errorf("duplicate key %s", jsonscan.QuoteName(name))
		}
		cols := len(n.cells)
		if err := n.member(prefix, key, raw, depth, idx, known); err != nil {
			return err
		}
		if !known && len(n.cells) > cols {
			// The key got a column: a repeat finds it there.
			if i, ok := n.byKey[string(key)]; ok {
				n.seenKey(i)
			}
		}
		n.pos++
	}
}

// seenKey notes that the current record has the key of column i at its
// top level, and reports whether it already had.
func (n *Normalizer) seenKey(i int) bool {
	for len(n.seen) <= i {
		n.seen = append(n.seen, 0)
	}
	if n.seen[i] == n.recs {
		return true
	}
	n.seen[i] = n.recs
	return false
}

// member stores the value of one object member; idx and known are the
// key's column, as lookup finds it.
func (n *Normalizer) member(prefix []string, key, raw []byte, depth, idx int, known bool) error {
	kind := raw[0]
	flatten := n.opts.Nested == schema.Flatten || n.opts.Nested == schema.Unnest
	if kind == '{' && flatten && depth <= n.opts.MaxDepth && !known {
		// Objects become columns of their own, unless a column already
		// holds this key whole. The object was validated with the record.
		sub := jsonscan.Scanner{AllowDuplicateNames: true}
		sub.Reset(raw)
		return n.object(&sub, append(append([]string(nil), prefix...), string(key)), depth+1)
	}
	if kind == '[' && n.opts.Nested == schema.Unnest && n.level+depth <= n.opts.MaxDepth && !known {
		// Arrays become rows of a child table, unless a column already
		// holds this key whole.
		return n.pendArray(append(append([]string(nil), prefix...), string(key)), raw)
	}
	return n.fieldAt(prefix, key, raw, idx, known)
}

// field stores one raw value under key: it infers the value's type, adds
// or widens the column as the policy allows, and sets the row's cell.
func (n *Normalizer) field(prefix []string, key []byte, raw []byte) error {
	idx, known := n.lookup(prefix, key)
	return n.fieldAt(prefix, key, raw, idx, known)
}

// fieldAt is field for a key whose column lookup found.
func (n *Normalizer) fieldAt(prefix []string, key, raw []byte, idx int, known bool) error {
	var err error
	var hint schema.Type
	var newPath []string // the field's path, when it has no column yet
	if known {
		col := &n.table.Columns[idx]
		if col.Hinted {
			hint = col.Type
		}
	} else {
		newPath = append(append([]string(nil), prefix...), string(key))
		hint = n.hints[pathKey(newPath)]
	}
	var v cell
	if hint != schema.Unknown {
		v, err = coerce(raw, hint)
		if err != nil {
			return dropped(n.refuse(idx, string(key), raw, err.Error()))
		}
	} else {
		ct := schema.Unknown
		if known {
			ct = n.table.Columns[idx].Type
		}
		v, err = n.value(raw, ct)
		if err != nil {
			return err
		}
	}
	if v.t == schema.Unknown { // null
		return nil
	}
	if !known {
		if n.restricted {
			return n.policyNewColumn(prefix, key, raw, v.t)
		}
		if err := n.budget(); err != nil {
			return err
		}
		idx = n.addColumn(pathKey(newPath), newPath, v.t, hint != schema.Unknown)
		delete(n.hints, pathKey(newPath))
	} else if ct := n.table.Columns[idx].Type; !ct.Contains(v.t) {
		if err := n.policyWiden(idx, ct, schema.Widen(ct, v.t), key, raw); err != nil {
			return dropped(err)
		}
	} else if ct == schema.Float && v.t == schema.Int && (v.i > 1<<53 || v.i < -(1<<53)) {
		// A float column cannot hold this integer exactly.
		if err := n.policyWiden(idx, ct, schema.Decimal, key, raw); err != nil {
			return dropped(err)
		}
	}
	if n.reject != "" {
		return nil
	}
	n.set(idx, v)
	return nil
}

// budget is called before the current record adds a column. The first
// time for a record, it counts the columns the whole record would add,
// and refuses the record if the table cannot hold them, before any is
// added.
func (n *Normalizer) budget() error {
	max, has := n.opts.MaxColumns, len(n.table.Columns)
	if max < 0 {
		return nil // no budget
	}
	if n.counted != n.recs {
		n.counted = n.recs
		fields, add := n.countColumns(n.rec)
		if has+add > max {
			return fmt.Errorf("record has %d fields; table %s can hold at most %d columns (has %d): the record would add %d",
				fields, excerpt([]byte(n.table.Name)), max, has, add)
		}
	}
	if has >= max { // the count is exact; this is a backstop
		return fmt.Errorf("table %s can hold at most %d columns (has %d): the record would add more", excerpt([]byte(n.table.Name)), max, has)
	}
	return nil
}

// countColumns returns how many fields rec (a record, or the element of an
// unnested array) has, and how many of them have no column yet: the
// columns that reading it would add. It follows member's rules for nested
// values and stops counting at the first syntax error.
func (n *Normalizer) countColumns(rec []byte) (fields, add int) {
	if len(rec) == 0 || rec[0] != '{' {
		// An element that is not an object: one value column.
		if _, ok := n.byKey["value"]; !ok && len(rec) > 0 && rec[0] != 'n' {
			return 1, 1
		}
		return 1, 0
	}
	sc := jsonscan.Scanner{AllowDuplicateNames: true}
	sc.Reset(rec)
	n.countObject(&sc, nil, 1, &fields, &add)
	return fields, add
}

func (n *Normalizer) countObject(sc *jsonscan.Scanner, prefix []string, depth int, fields, add *int) {
	if sc.BeginUnchecked() != nil {
		return
	}
	var keyBuf []byte
	flatten := n.opts.Nested == schema.Flatten || n.opts.Nested == schema.Unnest
	for first := true; ; first = false {
		name, raw, ok, err := sc.Member(first)
		if err != nil || !ok {
			return
		}
		key := unquoted(name, &keyBuf)
		var known bool
		if prefix == nil {
			_, known = n.byKey[string(key)]
		} else {
			_, known = n.byKey[pathKey(append(append([]string(nil), prefix...), string(key)))]
		}
		switch {
		case raw[0] == '{' && flatten && depth <= n.opts.MaxDepth && !known:
			sub := jsonscan.Scanner{AllowDuplicateNames: true}
			sub.Reset(raw)
			n.countObject(&sub, append(append([]string(nil), prefix...), string(key)), depth+1, fields, add)
		case raw[0] == '[' && n.opts.Nested == schema.Unnest && n.level+depth <= n.opts.MaxDepth && !known:
			// A child table's rows.
		default:
			*fields++
			if !known && raw[0] != 'n' {
				*add++
			}
		}
	}
}

type keyGuess struct {
	key string
	idx int
}

// lookup finds the column of key under prefix without allocating for
// top-level keys.
func (n *Normalizer) lookup(prefix []string, key []byte) (int, bool) {
	if len(prefix) == 0 {
		return n.lookupTop(key)
	}
	i, ok := n.byKey[pathKey(append(append([]string(nil), prefix...), string(key)))]
	return i, ok
}

// lookupTop finds the column of a top-level key, first trying the column
// the key at the same position had in the previous record.
func (n *Normalizer) lookupTop(key []byte) (int, bool) {
	if n.pos < len(n.keyAt) {
		if g := n.keyAt[n.pos]; g.key == string(key) {
			return g.idx, true
		}
	}
	i, ok := n.byKey[string(key)]
	if ok && n.pos <= len(n.keyAt) && n.pos < 256 {
		g := keyGuess{key: n.table.Columns[i].Key(), idx: i}
		if len(n.table.Columns[i].Path) != 1 {
			g.key = string(key) // a parent field column
		}
		if n.pos == len(n.keyAt) {
			n.keyAt = append(n.keyAt, g)
		} else {
			n.keyAt[n.pos] = g
		}
	}
	return i, ok
}

// policyNewColumn applies the schema policy to a field with no column.
func (n *Normalizer) policyNewColumn(prefix []string, key, raw []byte, t schema.Type) error {
	name := strings.Join(append(append([]string(nil), prefix...), string(key)), ".")
	short := excerpt([]byte(name))
	switch n.opts.Policy {
	case schema.Freeze:
		return &SchemaError{Table: n.table.Name, Changes: []schema.Change{{Kind: schema.Added, Column: excerpt([]byte(schema.Normalize(name))), To: t}}, Key: short, Value: excerpt(raw)}
	case schema.DiscardRow:
		n.reject = reason(fmt.Sprintf("new field %q (%s) is not in the table and schema policy is discard_row", short, t))
		n.rejCol = name
	case schema.DiscardValue:
		n.drops = append(n.drops, drop{column: name, reason: reason(fmt.Sprintf("value %s of new field %q dropped: schema policy is discard_value", excerpt(raw), short))})
	}
	return nil
}

// policyWiden widens column idx from ct to nt if the policy allows.
func (n *Normalizer) policyWiden(idx int, ct, nt schema.Type, key, raw []byte) error {
	col := n.table.Columns[idx]
	if n.restricted {
		if n.opts.Policy == schema.Freeze {
			return &SchemaError{Table: n.table.Name, Changes: []schema.Change{{Kind: schema.Widened, Column: col.Name, From: ct, To: nt}}, Key: excerpt(key), Value: excerpt(raw)}
		}
		return n.refuse(idx, string(key), raw, fmt.Sprintf("the value needs type %s but column %s is %s (schema policy %s)", nt, excerpt([]byte(col.Name)), ct, n.opts.Policy))
	}
	n.widen(idx, nt)
	return nil
}

// errDropped tells member that the value was refused and must not be set.
var errDropped = errors.New("value dropped")

// dropped turns errDropped into nil; other errors pass.
func dropped(err error) error {
	if err == errDropped {
		return nil
	}
	return err
}

// refuse rejects the record (or, under discard_value, just the value) and
// returns errDropped.
func (n *Normalizer) refuse(idx int, key string, raw []byte, why string) error {
	col := key
	if idx >= 0 {
		col = n.table.Columns[idx].Name
	}
	if n.opts.Policy == schema.DiscardValue {
		n.drops = append(n.drops, drop{column: col, reason: reason(fmt.Sprintf("column %s: value %s dropped: %s", excerpt([]byte(col)), excerpt(raw), why))})
		return errDropped
	}
	n.reject = reason(fmt.Sprintf("column %s: value %s: %s", excerpt([]byte(col)), excerpt(raw), why))
	n.rejCol = col
	return errDropped
}

// value classifies a raw JSON value for a column of type ct.
func (n *Normalizer) value(raw []byte, ct schema.Type) (cell, error) {
	switch raw[0] {
	case 'n':
		return cell{}, nil
	case 't':
		return cell{t: schema.Bool, i: 1, b: textTrue}, nil
	case 'f':
		return cell{t: schema.Bool, i: 0, b: textFalse}, nil
	case '"':
		s, err := n.unescape(raw)
		if err != nil {
			return cell{}, err
		}
		if ct != schema.Text && ct != schema.Decimal {
			if us, ok := schema.ParseTimestamp(s); ok {
				return cell{t: schema.Timestamp, i: us, b: s}, nil
			}
		}
		return cell{t: schema.Text, b: s}, nil
	case '{', '[':
		return cell{t: schema.JSON, b: raw}, nil
	}
	return number(raw)
}

// scalar classifies a raw JSON value outside a record (parent fields).
func (n *Normalizer) scalar(raw []byte) (cell, error) {
	if len(raw) == 0 {
		return cell{}, nil
	}
	if raw[0] == '"' {
		s, err := jsontext.AppendUnquote(nil, raw)
		if err != nil {
			return cell{}, err
		}
		if us, ok := schema.ParseTimestamp(s); ok {
			return cell{t: schema.Timestamp, i: us, b: s}, nil
		}
		return cell{t: schema.Text, b: s}, nil
	}
	return n.value(raw, schema.Unknown)
}

func number(raw []byte) (cell, error) {
	switch schema.ClassifyNumber(raw) {
	case schema.Int:
		v, _ := schema.ParseInt(raw)
		return cell{t: schema.Int, i: v, b: raw}, nil
	case schema.Float:
		f, err := strconv.ParseFloat(string(raw), 64)
		if err != nil || math.IsInf(f, 0) {
			return cell{t: schema.Decimal, b: raw}, nil
		}
		return cell{t: schema.Float, f: f, b: raw}, nil
	case schema.Decimal:
		return cell{t: schema.Decimal, b: raw}, nil
	}
	return cell{}, fmt.Errorf("invalid JSON value %s", excerpt(raw))
}

// coerce converts a raw value to a hinted type.
func coerce(raw []byte, t schema.Type) (cell, error) {
	if raw[0] == 'n' {
		return cell{}, nil
	}
	var s []byte
	if raw[0] == '"' {
		var err error
		if s, err = jsontext.AppendUnquote(nil, raw); err != nil {
			return cell{}, err
		}
	}
	switch t {
	case schema.Text:
		if s != nil {
			return cell{t: schema.Text, b: s}, nil
		}
		return cell{t: schema.Text, b: raw}, nil
	case schema.JSON:
		return cell{t: schema.JSON, b: raw}, nil
	case schema.Bool:
		switch {
		case raw[0] == 't' || string(s) == "true":
			return cell{t: schema.Bool, i: 1, b: textTrue}, nil
		case raw[0] == 'f' || string(s) == "false":
			return cell{t: schema.Bool, i: 0, b: textFalse}, nil
		}
		return cell{}, errors.New("not a boolean")
	case schema.Timestamp:
		if us, ok := schema.ParseTimestamp(s); ok {
			return cell{t: schema.Timestamp, i: us, b: s}, nil
		}
		return cell{}, errors.New("not an RFC 3339 timestamp with at most microsecond precision")
	}
	num := raw
	if s != nil {
		num = bytes.TrimSpace(s)
	}
	c, err := number(num)
	if err != nil {
		return cell{}, fmt.Errorf("not a number")
	}
	switch t {
	case schema.Int:
		if c.t != schema.Int {
			return cell{}, errors.New("not an integer that fits in 64 bits")
		}
	case schema.Float:
		if c.t != schema.Float {
			f, err := strconv.ParseFloat(string(num), 64)
			if err != nil {
				return cell{}, errors.New("out of float range")
			}
			c = cell{t: schema.Float, f: f, b: num}
		}
		c.t = schema.Float
		if c.f == 0 && c.i != 0 {
			c.f = float64(c.i)
		}
	case schema.Decimal:
		c = cell{t: schema.Decimal, b: num}
	}
	return c, nil
}

// unescape returns the content of a JSON string token, aliasing raw when
// it has no escapes and copying into the chunk's arena otherwise.
func (n *Normalizer) unescape(raw []byte) ([]byte, error) {
	inner := raw[1 : len(raw)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return inner, nil
	}
	out, err := jsontext.AppendUnquote(n.chunk.Arena().Alloc(len(inner))[:0], raw)
	if err != nil {
		return nil, fmt.Errorf("invalid string %s: %v", excerpt(raw), err)
	}
	return out, nil
}

// cursorValue returns the record's cursor value. It aliases the record
// or the chunk's arena.
func (n *Normalizer) cursorValue(rec []byte) (cursor.Value, bool) {
	var c cell
	if n.cursorPath != nil {
		raw, ok, err := jsonpath.Lookup(rec, n.cursorPath)
		if err != nil || !ok {
			return cursor.Value{}, false
		}
		if c, err = n.scalar(raw); err != nil || c.t == schema.Unknown {
			return cursor.Value{}, false
		}
	} else {
		if n.cursorIdx < 0 {
			return cursor.Value{}, false
		}
		c = n.cells[n.cursorIdx]
		if c.gen != n.gen || c.t == schema.Unknown {
			return cursor.Value{}, false
		}
	}
	v := cursor.Value{Type: c.t, Int: c.i, Float: c.f, Raw: c.b}
	switch c.t {
	case schema.Bool:
		v.Type = schema.Text
	case schema.Int:
		if v.Raw == nil {
			v.Raw = strconv.AppendInt(nil, c.i, 10)
		}
	}
	return v, true
}

// keyHash returns a hash of the current row's primary key values, the
// record's identity; false when the stream has no key.
func (n *Normalizer) keyHash() (uint64, bool) {
	if len(n.pk) == 0 {
		return 0, false
	}
	h := uint64(14695981039346656037)
	mixByte := func(b byte) {
		h ^= uint64(b)
		h *= 1099511628211
	}
	for _, i := range n.pk {
		if i < 0 {
			return 0, false
		}
		c := n.cells[i]
		mixByte(byte(c.t))
		switch c.t {
		case schema.Int, schema.Bool, schema.Timestamp:
			for k := 0; k < 8; k++ {
				mixByte(byte(c.i >> (8 * k)))
			}
		default:
			for _, b := range c.b {
				mixByte(b)
			}
		}
		mixByte(0xff)
	}
	return h, true
}

// unquoted returns the unescaped content of a JSON string token, using buf
// only when the token has escapes.
func unquoted(raw []byte, buf *[]byte) []byte {
	inner := raw[1 : len(raw)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return inner
	}
	out, err := jsontext.AppendUnquote((*buf)[:0], raw)
	if err != nil {
		return inner
	}
	*buf = out
	return out
}

func kindName(k byte) string {
	switch k {
	case '[':
		return "array"
	case '"':
		return "string"
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return "number"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "value"
}

func invalid(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, jsonscan.ErrDuplicateName) {
		return err // well-formed, but which value is meant cannot be told
	}
	return fmt.Errorf("record is not valid JSON: %s", strings.TrimPrefix(err.Error(), "jsontext: "))
}

// excerpt renders a value or key for messages: at most 60 bytes.
func excerpt(raw []byte) string { return string(jsonscan.Excerpt(raw, 60)) }

// reason bounds a reason to maxReason bytes.
func reason(s string) string {
	if len(s) <= maxReason {
		return s
	}
	return string(jsonscan.Excerpt([]byte(s), maxReason-len("…")))
}

// UnusedHints lists the keys of Options.Hints that match no column of
// the table or of its child tables (as the destination has them, or as
// this run's data made them): a hint for a field no record has is
// almost always a typo.
func (n *Normalizer) UnusedHints() []string {
	var out []string
	for key := range n.opts.Hints {
		if !n.hintUsed(strings.Split(key, ".")) {
			out = append(out, key)
		}
	}
	slices.Sort(out)
	return out
}

// hintUsed reports whether a column (here or in a child table) answers
// the hint path.
func (n *Normalizer) hintUsed(p []string) bool {
	if _, ok := n.byKey[pathKey(p)]; ok {
		return true
	}
	for i := 1; i < len(p); i++ {
		arr := pathKey(p[:i])
		if c, ok := n.children[arr]; ok && c.hintUsed(p[i:]) {
			return true
		}
		if n.opts.ChildExisting != nil {
			name := schema.Truncate(n.table.Name+"__"+joinNormalized(p[:i]), n.table.Name+"\x00"+arr, n.opts.MaxIdentLen)
			if t := n.opts.ChildExisting(name); t != nil {
				for _, col := range t.Columns {
					if pathKey(col.Path) == pathKey(p[i:]) {
						return true
					}
				}
			}
		}
	}
	return false
}
