package postgres

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ferry-dev/ferry/internal/dest/sqldest"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/schema"
)

// ordinalColumn numbers the rows of a staging table in arrival order.
const ordinalColumn = schema.MetaPrefix + "ord"

// bufferBytes is how large an encoded buffer grows before it is handed to
// the COPY, so a huge chunk streams instead of piling up in memory.
const bufferBytes = 512 << 10

// maxHeldBytes bounds the rows an upsert holds back for the staging table
// while its COPY streams into the table itself.
const maxHeldBytes = 16 << 20

var hashSeed = maphash.MakeSeed()

// Where an upserted row goes.
const (
	toTable = iota // its key is new: straight into the table
	toStage        // its key exists or repeats: through the merge
)

// loader writes rows with binary COPY.
//
// Append (Target.Upsert false): rows are copied straight into the table.
// The COPY stays open across Load calls of one transaction, so PostgreSQL
// ingests one chunk while Ferry converts the next; it ends at Flush, or
// before any other statement on the transaction.
//
// Upsert: a row whose key is certainly new is copied straight into the
// table too, as in append. Ferry knows a key is new when the key is a
// single integer or timestamp column, greater than the largest key the
// table held when the transaction's first chunk came (one index lookup),
// and not written earlier in the transaction: the common case of records
// created since the last sync. Other rows are held back and, at Flush,
// copied into a temporary staging table (dropped at commit) with their
// arrival number and merged with one INSERT … SELECT … ON CONFLICT DO
// UPDATE: among staged rows of a key, the newest cursor wins and the last
// to arrive among equals (DISTINCT ON); against the stored row, the staged
// one wins unless the stored cursor is newer. When most rows of a chunk go
// through the merge, the loader streams every row into the staging table
// instead. Deletes first finish what came before them, so operations
// apply in order.
type loader struct {
	tx    *txn
	d     Dialect
	t     sqldest.Target
	table string // quoted, qualified target table
	cols  []string
	ready bool // column types checked, statements built

	direct rowEncoder // rows for the table
	staged rowEncoder // rows for the staging table, with their ordinal

	copyTable string // COPY statements
	copyStage string
	stream    *copyStream
	intoStage bool // stream copies into the staging table

	// Upsert only.
	stage      string // quoted name of the staging table
	stageDDL   string // creates it; "" once done
	truncate   bool   // the staging table holds merged rows
	mergeFast  string // merge when staged keys are distinct
	mergeDedup string // merge keeping one row per key
	deleteSQL  string
	rangeKey   int   // column of a single integer or timestamp key, -1 if none
	high       int64 // keys above high were not in the table at the start
	highKnown  bool
	allStaged  bool // every row goes to the staging table from now on

	// Keys sent straight into the table in this transaction: increasing
	// ones in order (records created in key order, the common case), and
	// the others.
	sent       []int64
	sentOut    map[int64]struct{}
	stagedKeys map[uint64]struct{} // keys (or their hashes) staged and not merged yet
	stagedDups bool                // staged keys may repeat
	hashable   bool                // key equality is byte equality: Go can track keys
	staging    int64               // rows in the staging table not merged
	held       []byte              // encoded rows for the staging table
	heldRows   int64
	ord        int64
	h          maphash.Hash

	route  []uint8  // per row of the current chunk: toTable or toStage
	hashes []uint64 // per row of the current chunk: its key, or a hash of it
}

// NewLoader returns a loader writing into t within tx.
func (d Dialect) NewLoader(tx sqldest.Tx, t sqldest.Target) (sqldest.Loader, error) {
	ptx, ok := tx.(*txn)
	if !ok {
		return nil, fmt.Errorf("postgres: unexpected transaction type %T", tx)
	}
	l := &loader{tx: ptx, d: d, t: t, table: d.Table(t.Table), rangeKey: -1}
	for _, c := range t.Layout.Columns {
		l.cols = append(l.cols, c.Name)
	}
	var keys []int
	for _, k := range t.Layout.PrimaryKey {
		if i := t.Layout.Index(k); i >= 0 {
			keys = append(keys, i)
		}
	}
	l.direct = rowEncoder{keys: keys, index: t.Upsert}
	l.staged = rowEncoder{keys: keys, index: true, ordinal: true}
	if t.Upsert {
		l.sentOut = map[int64]struct{}{}
		l.stagedKeys = map[uint64]struct{}{}
		l.h.SetSeed(hashSeed)
	}
	return l, nil
}

// prepare checks the table's columns in the database and builds the
// statements.
func (l *loader) prepare(ctx context.Context) error {
	rows, err := l.tx.conn.Query(ctx, `SELECT a.attname, a.atttypid, format_type(a.atttypid, a.atttypmod)
		FROM pg_catalog.pg_attribute a WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped`, l.table)
	if err != nil {
		return fmt.Errorf("inspect table %s: %w", l.t.Table, err)
	}
	type colType struct {
		oid  uint32
		spec string
	}
	have := map[string]colType{}
	for rows.Next() {
		var name, spec string
		var oid uint32
		if err := rows.Scan(&name, &oid, &spec); err != nil {
			rows.Close()
			return fmt.Errorf("inspect table %s: %w", l.t.Table, err)
		}
		have[name] = colType{oid, spec}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("inspect table %s: %w", l.t.Table, err)
	}
	wires := make([]wire, len(l.cols))
	oids := make([]uint32, len(l.cols))
	var defs []string
	for i, c := range l.t.Layout.Columns {
		ct, ok := have[c.Name]
		if !ok {
			return fmt.Errorf("table %s has no column %s", l.t.Table, c.Name)
		}
		w, ok := wireFor(c.Type, ct.oid)
		if !ok {
			return fmt.Errorf("column %s of table %s has type %s in the database, which Ferry cannot write %s values to (Ferry creates it as %s)",
				c.Name, l.t.Table, ct.spec, c.Type, l.d.ColumnType(c.Type, false))
		}
		wires[i], oids[i] = w, ct.oid
		defs = append(defs, l.d.Quote(c.Name)+" "+ct.spec)
	}
	l.direct.wires, l.staged.wires = wires, wires
	cols := quoteAll(l.d, l.cols)
	l.copyTable = fmt.Sprintf("COPY %s (%s) FROM STDIN (FORMAT binary)", l.table, cols)
	if l.t.Upsert {
		l.tx.stages++
		l.stage = "pg_temp." + l.d.Quote(schema.MetaPrefix+"merge_"+strconv.Itoa(l.tx.stages))
		defs = append(defs, l.d.Quote(ordinalColumn)+" bigint")
		l.stageDDL = fmt.Sprintf("CREATE TEMPORARY TABLE %s (%s) ON COMMIT DROP", l.stage, strings.Join(defs, ", "))
		l.copyStage = fmt.Sprintf("COPY %s (%s, %s) FROM STDIN (FORMAT binary)", l.stage, cols, l.d.Quote(ordinalColumn))
		l.buildMerge()
		l.keyKinds(wires, oids)
	}
	l.ready = true
	return nil
}

func quoteAll(d Dialect, names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = d.Quote(n)
	}
	return strings.Join(q, ", ")
}

// buildMerge builds the statements moving staged rows into the table.
func (l *loader) buildMerge() {
	d, lay := l.d, l.t.Layout
	cols := quoteAll(d, l.cols)
	// Text compares byte-wise (COLLATE "C"): it is faster and matches the
	// other destinations' idea of the newest cursor.
	expr := func(name string) string {
		if c := lay.Column(name); c != nil && c.Type == schema.Text {
			return d.Quote(name) + ` COLLATE "C"`
		}
		return d.Quote(name)
	}
	var keys, sortKeys []string
	for _, k := range lay.PrimaryKey {
		keys = append(keys, d.Quote(k))
		sortKeys = append(sortKeys, expr(k))
	}
	var set []string
	for _, c := range l.cols {
		if !slices.Contains(lay.PrimaryKey, c) {
			set = append(set, fmt.Sprintf("%s = EXCLUDED.%s", d.Quote(c), d.Quote(c)))
		}
	}
	const alias = schema.MetaPrefix + "target"
	conflict := fmt.Sprintf(" ON CONFLICT (%s) DO NOTHING", strings.Join(keys, ", "))
	if len(set) > 0 {
		conflict = fmt.Sprintf(" ON CONFLICT (%s) DO UPDATE SET %s", strings.Join(keys, ", "), strings.Join(set, ", "))
		if cur := lay.Cursor; cur != "" && lay.Column(cur) != nil {
			c := expr(cur)
			// A version without a cursor value ranks lowest; among equals
			// the later one wins (as DISTINCT ON picks within a batch).
			conflict += fmt.Sprintf(" WHERE %s.%s IS NULL OR EXCLUDED.%s >= %s.%s",
				alias, d.Quote(cur), c, alias, c)
		}
	}
	order := strings.Join(sortKeys, ", ")
	if cur := lay.Cursor; cur != "" && lay.Column(cur) != nil {
		order += ", " + expr(cur) + " DESC NULLS LAST"
	}
	order += ", " + d.Quote(ordinalColumn) + " DESC"
	insert := fmt.Sprintf("INSERT INTO %s AS %s (%s) ", l.table, alias, cols)
	l.mergeFast = insert + fmt.Sprintf("SELECT %s FROM %s", cols, l.stage) + conflict
	l.mergeDedup = insert + fmt.Sprintf("SELECT %s FROM (SELECT DISTINCT ON (%s) * FROM %s ORDER BY %s) AS s",
		cols, strings.Join(sortKeys, ", "), l.stage, order) + conflict
	var conds []string
	for i, k := range lay.PrimaryKey {
		conds = append(conds, fmt.Sprintf("%s = $%d", d.Quote(k), i+1))
	}
	l.deleteSQL = fmt.Sprintf("DELETE FROM %s WHERE %s", l.table, strings.Join(conds, " AND "))
}

// keyKinds tells whether Go can track keys (integers, booleans,
// timestamps and text, whose equality in PostgreSQL is equality of the
// values Ferry holds) and whether the key is one integer or timestamp,
// whose new values can be told by comparing with the largest stored one.
func (l *loader) keyKinds(wires []wire, oids []uint32) {
	keys := l.direct.keys
	l.hashable = len(keys) > 0
	for _, j := range keys {
		switch {
		case wires[j] == wireInt8, wires[j] == wireBool, wires[j] == wireTimestamp:
		case wires[j] == wireText && (oids[j] == oidText || oids[j] == oidVarchar):
		default:
			l.hashable = false // bpchar ignores trailing spaces, 1.0 = 1, …
		}
	}
	if l.hashable && len(keys) == 1 && (wires[keys[0]] == wireInt8 || wires[keys[0]] == wireTimestamp) {
		l.rangeKey = keys[0]
	}
}

// findHigh reads the largest key the table holds.
func (l *loader) findHigh(ctx context.Context) error {
	l.highKnown = true
	k := l.d.Quote(l.cols[l.rangeKey])
	var high *int64
	var err error
	if l.direct.wires[l.rangeKey] == wireTimestamp {
		var ts *int64
		err = l.tx.conn.QueryRow(ctx, fmt.Sprintf("SELECT (extract(epoch FROM max(%s)) * 1000000)::bigint FROM %s", k, l.table)).Scan(&ts)
		high = ts
	} else {
		err = l.tx.conn.QueryRow(ctx, fmt.Sprintf("SELECT max(%s) FROM %s", k, l.table)).Scan(&high)
	}
	if err != nil {
		return fmt.Errorf("find the largest key of table %s: %w", l.t.Table, err)
	}
	l.high = math.MinInt64
	if high != nil {
		l.high = *high
	}
	return nil
}

// Load writes the chunk's rows in order. Rows holding a value PostgreSQL
// would refuse are returned instead of sent.
func (l *loader) Load(ctx context.Context, c *record.Chunk) ([]sqldest.RowError, error) {
	if len(c.Cols) != len(l.cols) {
		return nil, fmt.Errorf("chunk has %d columns, table %s has %d", len(c.Cols), l.t.Table, len(l.cols))
	}
	if p := l.tx.pending; p != nil && p != l {
		if err := l.tx.settle(ctx); err != nil {
			return nil, err
		}
	}
	if !l.ready {
		if err := l.prepare(ctx); err != nil {
			return nil, err
		}
	}
	var bad []sqldest.RowError
	var err error
	for r := 0; r < c.Len; {
		end := r
		for end < c.Len && !(l.t.Upsert && c.Ops[end] == record.Delete) {
			end++
		}
		if end == r { // deletes
			for end < c.Len && c.Ops[end] == record.Delete {
				end++
			}
			if bad, err = l.delete(ctx, c, r, end, bad); err != nil {
				return nil, err
			}
		} else if bad, err = l.copyRows(ctx, c, r, end, bad); err != nil {
			return nil, err
		}
		r = end
	}
	return bad, nil
}

// copyRows writes rows from..to-1, none of them a delete.
func (l *loader) copyRows(ctx context.Context, c *record.Chunk, from, to int, bad []sqldest.RowError) ([]sqldest.RowError, error) {
	if cap(l.route) < c.Len {
		l.route = make([]uint8, c.Len)
	}
	l.route = l.route[:c.Len]
	if l.t.Upsert {
		if err := l.classify(ctx, c, from, to); err != nil {
			return bad, err
		}
	}
	if err := l.openStream(ctx); err != nil {
		return bad, err
	}
	buf, err := l.stream.buffer(ctx)
	if err != nil {
		return bad, l.streamFailed(ctx, err)
	}
	for r := from; r < to; r++ {
		stage := l.t.Upsert && l.route[r] == toStage
		var col int
		var why string
		switch {
		case !stage:
			start := len(buf)
			if buf, col, why = l.direct.appendRow(buf, c, r, 0); why != "" {
				buf = buf[:start]
			}
		case l.intoStage:
			start := len(buf)
			if buf, col, why = l.staged.appendRow(buf, c, r, l.ord); why != "" {
				buf = buf[:start]
			}
		default:
			start := len(l.held)
			if l.held, col, why = l.staged.appendRow(l.held, c, r, l.ord); why != "" {
				l.held = l.held[:start]
			} else {
				l.heldRows++
			}
		}
		if why != "" {
			name := l.cols[col]
			bad = append(bad, sqldest.RowError{Row: r, Column: name, Reason: "column " + name + ": " + why})
			continue
		}
		if stage {
			l.ord++
			l.staging++
			l.noteStaged(r - from)
		}
		if len(buf) >= bufferBytes {
			l.stream.send(buf)
			if buf, err = l.stream.buffer(ctx); err != nil {
				return bad, l.streamFailed(ctx, err)
			}
		}
	}
	l.stream.send(buf)
	l.tx.pending = l
	if len(l.held) > maxHeldBytes {
		return bad, l.finish(ctx)
	}
	return bad, nil
}

// classify routes rows from..to-1 of an upsert: a key certainly new
// straight into the table, others through the staging table.
func (l *loader) classify(ctx context.Context, c *record.Chunk, from, to int) error {
	l.hashes = l.hashes[:0]
	if l.rangeKey < 0 {
		for r := from; r < to; r++ {
			l.route[r] = toStage
			if l.hashable {
				l.hashes = append(l.hashes, l.keyHash(c, r))
			}
		}
		return l.stageAll(ctx)
	}
	keys := c.Cols[l.rangeKey].Ints
	for r := from; r < to; r++ {
		l.hashes = append(l.hashes, uint64(keys[r]))
	}
	if l.allStaged {
		for r := from; r < to; r++ {
			l.route[r] = toStage
		}
		return nil
	}
	if !l.highKnown {
		if err := l.findHigh(ctx); err != nil {
			return err
		}
	}
	staged := 0
	for r := from; r < to; r++ {
		if k := keys[r]; k <= l.high || l.wasSent(k) {
			l.route[r] = toStage
			staged++
		} else {
			l.route[r] = toTable
			l.markSent(k)
		}
	}
	if 2*staged > to-from {
		// Mostly updates: cheaper to stream every row into the staging
		// table from now on.
		for r := from; r < to; r++ {
			l.route[r] = toStage
		}
		return l.stageAll(ctx)
	}
	return nil
}

// wasSent reports whether key k went straight into the table in this
// transaction.
func (l *loader) wasSent(k int64) bool {
	n := len(l.sent)
	if n == 0 || k > l.sent[n-1] {
		return false
	}
	if _, ok := slices.BinarySearch(l.sent, k); ok {
		return true
	}
	_, ok := l.sentOut[k]
	return ok
}

func (l *loader) markSent(k int64) {
	if n := len(l.sent); n == 0 || k > l.sent[n-1] {
		l.sent = append(l.sent, k)
		return
	}
	l.sentOut[k] = struct{}{}
}

// stageAll sends every row through the staging table from now on.
func (l *loader) stageAll(ctx context.Context) error {
	l.allStaged = true
	if l.stream != nil && !l.intoStage {
		return l.endStream(ctx)
	}
	return nil
}

// keyHash hashes row r's key.
func (l *loader) keyHash(c *record.Chunk, r int) uint64 {
	l.h.Reset()
	var b [8]byte
	for _, j := range l.direct.keys {
		v := &c.Cols[j]
		if l.direct.wires[j] == wireText {
			l.h.Write(v.Bytes[r])
			l.h.WriteByte(0xff) // not UTF-8: separates the values
			continue
		}
		binary.LittleEndian.PutUint64(b[:], uint64(v.Ints[r]))
		l.h.Write(b[:])
	}
	return l.h.Sum64()
}

// noteStaged records the key of the i-th row classified last and notices
// repeats among staged keys, which need the merge that keeps one row per
// key. A hash collision merely costs that merge when it was not needed.
func (l *loader) noteStaged(i int) {
	if l.stagedDups {
		return
	}
	if !l.hashable {
		l.stagedDups = true // equal values may differ in form (1.0 and 1)
		return
	}
	h := l.hashes[i]
	if _, ok := l.stagedKeys[h]; ok {
		l.stagedDups = true
		return
	}
	l.stagedKeys[h] = struct{}{}
}

// openStream starts the COPY the next rows go to, if it is not running.
func (l *loader) openStream(ctx context.Context) error {
	intoStage := l.t.Upsert && l.allStaged
	if l.stream != nil && l.intoStage == intoStage {
		return nil
	}
	if l.stream != nil {
		if err := l.endStream(ctx); err != nil {
			return err
		}
	}
	sql := l.copyTable
	if intoStage {
		if err := l.prepareStage(ctx); err != nil {
			return err
		}
		sql = l.copyStage
	}
	l.stream, l.intoStage = startCopy(ctx, l.tx.conn.PgConn(), sql), intoStage
	l.tx.pending = l // whatever happens next, the COPY must be ended or abandoned
	buf, err := l.stream.buffer(ctx)
	if err != nil {
		return l.streamFailed(ctx, err)
	}
	buf = append(buf, copyHeader...)
	if intoStage && len(l.held) > 0 {
		// Rows held back while streaming into the table go first.
		held := l.held
		for len(held) > 0 {
			n := min(len(held), bufferBytes)
			buf = append(buf, held[:n]...)
			held = held[n:]
			l.stream.send(buf)
			if buf, err = l.stream.buffer(ctx); err != nil {
				return l.streamFailed(ctx, err)
			}
		}
		l.held, l.heldRows = l.held[:0], 0
	}
	l.stream.send(buf)
	return nil
}

// prepareStage creates the staging table, or empties it of merged rows.
func (l *loader) prepareStage(ctx context.Context) error {
	var stmt string
	switch {
	case l.stageDDL != "":
		stmt, l.stageDDL = l.stageDDL, ""
	case l.truncate:
		stmt = "TRUNCATE " + l.stage
	default:
		return nil
	}
	if _, err := l.tx.conn.Exec(ctx, stmt); err != nil {
		return fmt.Errorf("prepare staging table for %s: %w", l.t.Table, err)
	}
	l.truncate = false
	return nil
}

// endStream ends the running COPY and waits for the server to confirm it.
func (l *loader) endStream(ctx context.Context) error {
	s := l.stream
	if s == nil {
		return nil
	}
	buf, err := s.buffer(ctx)
	if err != nil {
		return l.streamFailed(ctx, err)
	}
	s.send(append(buf, copyTrailer...))
	l.stream = nil
	if _, err := s.finish(ctx); err != nil {
		return l.copyError(err)
	}
	return nil
}

// streamFailed ends a COPY that failed and explains the failure.
func (l *loader) streamFailed(ctx context.Context, err error) error {
	s := l.stream
	l.stream = nil
	if l.tx.pending == l {
		l.tx.pending = nil
	}
	s.abort(ctx)
	return l.copyError(err)
}

func (l *loader) copyError(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Where != "" {
		return fmt.Errorf("copy rows into table %s (%s): %w", l.t.Table, pgErr.Where, err)
	}
	return fmt.Errorf("copy rows into table %s: %w", l.t.Table, err)
}

// finish ends the COPY and merges staged rows: everything loaded so far is
// then in the table.
func (l *loader) finish(ctx context.Context) error {
	if l.tx.pending == l {
		l.tx.pending = nil
	}
	if err := l.endStream(ctx); err != nil {
		return err
	}
	if !l.t.Upsert {
		return nil
	}
	if len(l.held) > 0 {
		if err := l.prepareStage(ctx); err != nil {
			return err
		}
		data := io.MultiReader(strings.NewReader(copyHeader), bytes.NewReader(l.held), strings.NewReader(copyTrailer))
		if _, err := l.tx.conn.PgConn().CopyFrom(ctx, data, l.copyStage); err != nil {
			return l.copyError(err)
		}
		l.held, l.heldRows = l.held[:0], 0
	}
	if l.staging == 0 {
		return nil
	}
	stmt := l.mergeFast
	if l.stagedDups {
		stmt = l.mergeDedup
	}
	if _, err := l.tx.conn.Exec(ctx, stmt); err != nil {
		return fmt.Errorf("merge staged rows into table %s: %w", l.t.Table, err)
	}
	l.staging = 0
	l.truncate = true
	l.stagedDups = false
	clear(l.stagedKeys)
	return nil
}

// delete removes the rows keyed by rows from..to-1 of c, after finishing
// what came before them.
func (l *loader) delete(ctx context.Context, c *record.Chunk, from, to int, bad []sqldest.RowError) ([]sqldest.RowError, error) {
	if err := l.finish(ctx); err != nil {
		return bad, err
	}
	var b pgx.Batch
	for r := from; r < to; r++ {
		args := make([]any, len(l.direct.keys))
		ok := true
		for i, j := range l.direct.keys {
			if why := l.checkKey(c, r, j); why != "" {
				bad = append(bad, sqldest.RowError{Row: r, Column: l.cols[j], Reason: "column " + l.cols[j] + ": " + why})
				ok = false
				break
			}
			args[i] = c.Value(r, j)
		}
		if ok {
			b.Queue(l.deleteSQL, args...)
		}
	}
	if b.Len() == 0 {
		return bad, nil
	}
	if err := l.tx.conn.SendBatch(ctx, &b).Close(); err != nil {
		return bad, fmt.Errorf("delete rows from table %s: %w", l.t.Table, err)
	}
	return bad, nil
}

// checkKey reports why a delete's key value cannot be sent.
func (l *loader) checkKey(c *record.Chunk, r, j int) string {
	v := &c.Cols[j]
	if v.Nulls[r] {
		return "the primary key value is null"
	}
	switch l.direct.wires[j] {
	case wireText:
		return checkText(v.Bytes[r])
	case wireJSONB, wireJSON:
		return checkJSONB(v.Bytes[r])
	case wireNumeric:
		d, err := parseDecimal(v.Bytes[r])
		if err == nil {
			err = d.check()
		}
		if err != nil {
			return err.Error()
		}
	}
	return ""
}

// Flush finishes the COPY and merges staged rows.
func (l *loader) Flush(ctx context.Context) error {
	if l.tx.pending != l {
		return nil
	}
	return l.tx.settle(ctx)
}

// abandon stops the COPY without finishing it (the transaction is rolled
// back).
func (l *loader) abandon(ctx context.Context) {
	if s := l.stream; s != nil {
		l.stream = nil
		s.abort(ctx)
	}
}
