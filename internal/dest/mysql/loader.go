package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/ferry-dev/ferry/internal/dest/sqldest"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/schema"
)

// DATETIME's range, in microseconds since the epoch.
var (
	minDatetime = time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()
	maxDatetime = time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC).UnixMicro()
)

// Statement sizes: a batch is sent once it reaches batchBytes; a single
// row may use the whole packet the server accepts, less room for the
// statement around it.
const (
	batchBytes     = 4 << 20
	packetHeadroom = 16 << 10
	defaultPacket  = 16 << 20
	// maxParams is the server's limit on placeholders in a statement.
	maxParams = 65535
	// batchRows is the most rows in one statement: more gain nothing.
	batchRows = 1000
	// maxStmts bounds the prepared statements a loader keeps.
	maxStmts = 8
)

// loader writes rows with multi-row INSERT statements prepared once per
// transaction and per batch size (up to 1000 rows). In upsert mode the
// INSERT ends with ON DUPLICATE KEY UPDATE, guarded by the cursor so that
// the newest version of a row wins, against the table and within a batch.
type loader struct {
	stx     *sqldest.StdTx
	tx      *sql.Tx
	d       Dialect
	t       sqldest.Target
	cols    []column
	head    []byte // INSERT INTO t (…) VALUES
	tail    []byte // ON DUPLICATE KEY UPDATE …, or nothing
	max     int    // largest statement the server takes
	perStmt int    // most rows in one statement
	stmts   map[int]*sql.Stmt
	batch   []int // rows of the chunk for the next statement
	del     []byte
	keyAt   []int // positions of the key columns

	// One statement runs in the background while the next one's arguments
	// are built: the server's work and Ferry's overlap. free holds the
	// argument buffers not in use (two: one running, one being built).
	free chan []any
	jobs chan job
	busy sync.WaitGroup
	mu   sync.Mutex
	err  error // the first failure of a background statement
}

// job is one statement for the background executor.
type job struct {
	ctx  context.Context
	stmt *sql.Stmt
	args []any
	what string // rows and table, for the error
}

// column is what rendering needs to know about a column.
type column struct {
	name string
	typ  schema.Type
	key  bool
}

// rowError is why a value cannot be stored.
type rowError struct {
	col    int
	reason string
}

// NewLoader returns a loader writing into t within tx.
func (d Dialect) NewLoader(tx sqldest.Tx, t sqldest.Target) (sqldest.Loader, error) {
	stx, ok := tx.(*sqldest.StdTx)
	if !ok {
		return nil, fmt.Errorf("mysql: unexpected transaction type %T", tx)
	}
	l := &loader{stx: stx, tx: stx.Tx, d: d, t: t, stmts: map[int]*sql.Stmt{}}
	names := make([]string, len(t.Layout.Columns))
	for i, c := range t.Layout.Columns {
		key := isKey(t.Layout, c.Name)
		l.cols = append(l.cols, column{name: c.Name, typ: c.Type, key: key})
		names[i] = d.Quote(c.Name)
		if key {
			l.keyAt = append(l.keyAt, i)
		}
	}
	l.head = fmt.Appendf(nil, "INSERT INTO %s (%s) VALUES ", d.Table(t.Table), strings.Join(names, ", "))
	if t.Upsert {
		l.tail = []byte(" ON DUPLICATE KEY UPDATE " + d.updateList(t.Layout))
	}
	l.max = d.MaxPacket
	if l.max <= 0 {
		l.max = defaultPacket
	}
	l.max -= packetHeadroom
	l.perStmt = max(1, min(batchRows, maxParams/max(1, len(l.cols))))
	return l, nil
}

// updateList returns the assignments of ON DUPLICATE KEY UPDATE. MySQL
// runs them left to right and later ones see the values earlier ones set,
// so every column is guarded by a condition on the old cursor, and the
// cursor column is assigned last. Without a cursor the last row wins.
func (d Dialect) updateList(t *schema.Table) string {
	cond := ""
	if cur := t.Column(t.Cursor); cur != nil && !isKey(t, cur.Name) {
		c := d.Quote(cur.Name)
		oldV, newV := c, "VALUES("+c+")"
		if cur.Type == schema.Decimal {
			// Decimals are text: compare them as numbers.
			oldV, newV = "CAST("+oldV+" AS DECIMAL(65,30))", "CAST("+newV+" AS DECIMAL(65,30))"
		}
		// A version without a cursor value ranks lowest; among equals the
		// later one wins.
		cond = fmt.Sprintf("%s IS NULL OR %s >= %s", c, newV, oldV)
	}
	var set []string
	assign := func(name string) {
		q := d.Quote(name)
		if cond == "" {
			set = append(set, fmt.Sprintf("%s = VALUES(%s)", q, q))
		} else {
			set = append(set, fmt.Sprintf("%s = IF(%s, VALUES(%s), %s)", q, cond, q, q))
		}
	}
	for _, c := range t.Columns {
		if !isKey(t, c.Name) && c.Name != t.Cursor {
			assign(c.Name)
		}
	}
	if cond != "" {
		assign(t.Cursor)
	}
	if len(set) == 0 {
		k := d.Quote(t.PrimaryKey[0])
		set = append(set, k+" = "+k)
	}
	return strings.Join(set, ", ")
}

// Load writes the chunk's rows in order. In upsert mode, a Delete row
// deletes by key between the rows around it. Rows holding a value MySQL
// cannot store are skipped and returned.
func (l *loader) Load(ctx context.Context, c *record.Chunk) ([]sqldest.RowError, error) {
	var bad []sqldest.RowError
	l.batch = l.batch[:0]
	size := 0
	flush := func() error {
		if len(l.batch) == 0 {
			return nil
		}
		err := l.insert(ctx, c)
		l.batch, size = l.batch[:0], 0
		return err
	}
	for r := 0; r < c.Len; r++ {
		if l.t.Upsert && c.Ops[r] == record.Delete {
			if err := flush(); err != nil {
				return bad, err
			}
			if err := l.wait(); err != nil {
				return bad, err
			}
			if err := l.delete(ctx, c, r); err != nil {
				return bad, err
			}
			continue
		}
		n, re := l.check(c, r)
		if re != nil {
			bad = append(bad, sqldest.RowError{Row: r, Column: l.cols[re.col].name, Reason: re.reason})
			continue
		}
		if len(l.batch) == l.perStmt || (len(l.batch) > 0 && size+n > min(batchBytes, l.max)) {
			if err := flush(); err != nil {
				return bad, err
			}
		}
		l.batch = append(l.batch, r)
		size += n
	}
	return bad, flush()
}

// insert sends the rows of l.batch with a statement prepared for that
// many rows: values travel in the binary protocol, which the server
// reads faster than literals, and long ones in packets of their own.
func (l *loader) insert(ctx context.Context, c *record.Chunk) error {
	first, last := l.batch[0]+1, l.batch[len(l.batch)-1]+1
	if _, ok := l.stmts[len(l.batch)]; !ok {
		// Preparing uses the connection: let the running statement end.
		if err := l.wait(); err != nil {
			return err
		}
	}
	s, err := l.stmt(ctx, len(l.batch))
	if err != nil {
		return fmt.Errorf("prepare insert of %d rows into %s: %w", len(l.batch), l.t.Table, err)
	}
	l.start()
	if err := l.failed(); err != nil {
		return err
	}
	args := <-l.free
	for _, r := range l.batch {
		for j := range l.cols {
			args = append(args, l.arg(c, r, j))
		}
	}
	l.busy.Add(1)
	l.stx.SetPending(l.wait)
	l.jobs <- job{ctx: ctx, stmt: s, args: args, what: fmt.Sprintf("rows %d–%d of %s into %s", first, last, c.Source, l.t.Table)}
	return nil
}

func (l *loader) failed() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// start launches the background executor once per loader.
func (l *loader) start() {
	if l.jobs != nil {
		return
	}
	l.free = make(chan []any, 2)
	l.free <- nil
	l.free <- nil
	l.jobs = make(chan job)
	go func() {
		for j := range l.jobs {
			if l.failed() == nil {
				if _, err := j.stmt.ExecContext(j.ctx, j.args...); err != nil {
					l.mu.Lock()
					l.err = fmt.Errorf("insert %s: %w", j.what, err)
					l.mu.Unlock()
				}
			}
			clear(j.args) // let the chunk go
			l.free <- j.args[:0]
			l.busy.Done()
		}
	}()
}

// Abandon stops the background executor after the statement it runs; the
// transaction is being rolled back.
func (l *loader) Abandon() {
	l.busy.Wait()
	if l.jobs != nil {
		close(l.jobs)
		l.jobs = nil
	}
	l.closeStmts()
}

// wait lets every statement sent finish and returns the first error.
func (l *loader) wait() error {
	l.busy.Wait()
	return l.failed()
}

// stmt returns the INSERT prepared for rows rows. Statements live until
// the transaction ends; a few sizes (the page size, a remainder) cover
// most loads, and the cache starts over if many sizes show up.
func (l *loader) stmt(ctx context.Context, rows int) (*sql.Stmt, error) {
	if s, ok := l.stmts[rows]; ok {
		return s, nil
	}
	if len(l.stmts) >= maxStmts {
		l.closeStmts()
	}
	var b strings.Builder
	b.Write(l.head)
	ph := "(" + strings.TrimSuffix(strings.Repeat("?,", len(l.cols)), ",") + ")"
	b.Grow(rows*(len(ph)+1) + len(l.tail))
	for i := range rows {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(ph)
	}
	b.Write(l.tail)
	s, err := l.tx.PrepareContext(ctx, b.String())
	if err != nil {
		return nil, err
	}
	l.stmts[rows] = s
	return s, nil
}

func (l *loader) closeStmts() {
	for k, s := range l.stmts {
		s.Close()
		delete(l.stmts, k)
	}
}

// check says whether MySQL can store row r, and how many bytes its
// values take.
func (l *loader) check(c *record.Chunk, r int) (int, *rowError) {
	n := 0
	for j := range l.cols {
		v := &c.Cols[j]
		if v.Nulls[r] {
			n++
			continue
		}
		col := &l.cols[j]
		switch col.typ {
		case schema.Bool, schema.Int:
			n += 8
		case schema.Float:
			if f := v.Floats[r]; math.IsNaN(f) || math.IsInf(f, 0) {
				return 0, &rowError{j, fmt.Sprintf("column %s: %v is not a number MySQL can store", col.name, f)}
			}
			n += 8
		case schema.Timestamp:
			if us := v.Ints[r]; us < minDatetime || us > maxDatetime {
				return 0, &rowError{j, fmt.Sprintf("column %s: timestamp %s is outside MySQL's DATETIME range (1000-01-01 to 9999-12-31 UTC)", col.name, schema.FormatTimestamp(nil, us))}
			}
			n += 26
		default:
			b := v.Bytes[r]
			if !utf8.Valid(b) {
				return 0, &rowError{j, fmt.Sprintf("column %s: value is not valid UTF-8", col.name)}
			}
			if col.key && len(b) > KeyChars {
				if k := utf8.RuneCount(b); k > KeyChars {
					return 0, &rowError{j, fmt.Sprintf("column %s: key value is %d characters, longer than the %d a MySQL key column holds", col.name, k, KeyChars)}
				}
			}
			if len(b) > l.max {
				return 0, &rowError{j, fmt.Sprintf("column %s: value is %d bytes, more than the server's max_allowed_packet (%d) allows", col.name, len(b), l.max+packetHeadroom)}
			}
			n += len(b) + 4
		}
	}
	return n, nil
}

// arg returns row r, column j as a driver argument. check has passed.
func (l *loader) arg(c *record.Chunk, r, j int) any {
	v := &c.Cols[j]
	if v.Nulls[r] {
		return nil
	}
	switch l.cols[j].typ {
	case schema.Bool, schema.Int:
		return v.Ints[r]
	case schema.Float:
		return v.Floats[r]
	case schema.Timestamp:
		return time.UnixMicro(v.Ints[r]).UTC()
	}
	if b := v.Bytes[r]; b != nil {
		return b
	}
	return "" // a nil []byte would be sent as NULL
}

// delete removes the row with row r's key. A key MySQL could not store
// matches no row, so there is nothing to delete.
func (l *loader) delete(ctx context.Context, c *record.Chunk, r int) error {
	l.del = fmt.Appendf(l.del[:0], "DELETE FROM %s WHERE ", l.d.Table(l.t.Table))
	for i, j := range l.keyAt {
		if i > 0 {
			l.del = append(l.del, " AND "...)
		}
		l.del = append(l.del, l.d.Quote(l.cols[j].name)...)
		l.del = append(l.del, " = "...)
		var re *rowError
		if l.del, re = l.value(l.del, c, r, j); re != nil {
			return nil
		}
	}
	if _, err := l.tx.ExecContext(ctx, string(l.del)); err != nil {
		return fmt.Errorf("delete row %d of %s from %s: %w", r+1, c.Source, l.t.Table, err)
	}
	return nil
}

// value appends the SQL literal of row r, column j, or says why MySQL
// cannot hold it.
func (l *loader) value(dst []byte, c *record.Chunk, r, j int) ([]byte, *rowError) {
	v := &c.Cols[j]
	if v.Nulls[r] {
		return append(dst, "NULL"...), nil
	}
	col := &l.cols[j]
	switch col.typ {
	case schema.Bool:
		if v.Ints[r] != 0 {
			return append(dst, '1'), nil
		}
		return append(dst, '0'), nil
	case schema.Int:
		return strconv.AppendInt(dst, v.Ints[r], 10), nil
	case schema.Float:
		f := v.Floats[r]
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return dst, &rowError{j, fmt.Sprintf("column %s: %v is not a number MySQL can store", col.name, f)}
		}
		// Exponent form makes MySQL read a double, not an exact decimal.
		return strconv.AppendFloat(dst, f, 'e', -1, 64), nil
	case schema.Timestamp:
		us := v.Ints[r]
		if us < minDatetime || us > maxDatetime {
			return dst, &rowError{j, fmt.Sprintf("column %s: timestamp %s is outside MySQL's DATETIME range (1000-01-01 to 9999-12-31 UTC)", col.name, schema.FormatTimestamp(nil, us))}
		}
		return time.UnixMicro(us).UTC().AppendFormat(dst, "'2006-01-02 15:04:05.000000'"), nil
	}
	b := v.Bytes[r]
	if !utf8.Valid(b) {
		return dst, &rowError{j, fmt.Sprintf("column %s: value is not valid UTF-8", col.name)}
	}
	if col.key && len(b) > KeyChars {
		if n := utf8.RuneCount(b); n > KeyChars {
			return dst, &rowError{j, fmt.Sprintf("column %s: key value is %d characters, longer than the %d a MySQL key column holds", col.name, n, KeyChars)}
		}
	}
	return appendString(dst, b), nil
}

// Flush closes the prepared statements; Load has sent every row.
func (l *loader) Flush(context.Context) error {
	err := l.wait()
	if l.jobs != nil {
		close(l.jobs)
		l.jobs = nil
	}
	l.closeStmts()
	return err
}

// appendString appends b as a quoted string literal, escaped as the
// driver escapes with backslashes. utf8mb4 has no multi-byte character
// containing a quote or backslash byte, so byte-wise escaping is safe.
func appendString(dst, b []byte) []byte {
	dst = append(dst, '\'')
	start := 0
	for i, c := range b {
		var esc byte
		switch c {
		case 0:
			esc = '0'
		case '\n':
			esc = 'n'
		case '\r':
			esc = 'r'
		case '\x1a':
			esc = 'Z'
		case '\'':
			esc = '\''
		case '"':
			esc = '"'
		case '\\':
			esc = '\\'
		default:
			continue
		}
		dst = append(dst, b[start:i]...)
		dst = append(dst, '\\', esc)
		start = i + 1
	}
	dst = append(dst, b[start:]...)
	return append(dst, '\'')
}
