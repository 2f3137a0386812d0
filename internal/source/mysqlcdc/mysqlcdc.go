// Package mysqlcdc is the mysql_cdc source: change data capture from the
// MySQL or MariaDB binary log (ROW format, full row images), through
// go-mysql-org/go-mysql's replication client. Each stream is one table,
// read by its own replica connection; a first read takes a snapshot of the
// table consistent with a binlog position, then streams the table's
// inserts, updates (with before images) and deletes in commit order.
// Positions are GTID sets where the server has them (MariaDB always does;
// MySQL with gtid_mode=ON), binlog file and offset otherwise.
//
// Delivery: every page carries the position after it (the last
// transaction it completes, and how far into the next one it reaches);
// the engine saves it only after the page's changes are durable at the
// destination, and a restart reads the binlog from the saved position and
// skips what was delivered. The binlog has no server-side cursor: the
// saved state is the only position, so a binlog purged before Ferry read
// it is reported, never skipped.
package mysqlcdc

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"strings"
	"time"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/ferry-dev/ferry/internal/change"
	mysqldest "github.com/ferry-dev/ferry/internal/dest/mysql"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/schema"
	"github.com/ferry-dev/ferry/internal/source"
	"github.com/ferry-dev/ferry/internal/spec"
	"github.com/ferry-dev/ferry/internal/template"
)

func init() {
	source.Register("mysql_cdc", "Change data capture from the MySQL or MariaDB binlog (ROW format): a consistent snapshot, then every insert, update and delete, in commit order, positioned by GTID.", New)
}

// Defaults.
const (
	DefaultBatchSize = 5000
	DefaultMaxWait   = 10 * time.Millisecond
)

// Source captures changes of a server's tables.
type Source struct {
	url      string
	name     string
	serverID uint32
	batch    int
	maxWait  time.Duration
	snapshot bool
	log      *slog.Logger
	red      source.Redactor
	streams  []source.Stream
	byName   map[string]*stream
}

type stream struct {
	name      string
	db, table string
	pk        []string
	serverID  uint32
}

var (
	_ source.Source  = (*Source)(nil)
	_ source.Checker = (*Source)(nil)
)

// New builds the source; it connects on the first read.
func New(c *Config, opts source.Options) (source.Source, error) {
	tpl, err := template.Parse(c.URL)
	if err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	u, _, err := tpl.Render(template.Env{"config": opts.Config, "stream": ""})
	if err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	mc, err := mysqldest.ParseURL(u)
	if err != nil {
		return nil, fmt.Errorf("mysql_cdc: %w", err)
	}
	s := &Source{url: u, name: opts.Name, serverID: c.ServerID, batch: c.BatchSize, maxWait: DefaultMaxWait, snapshot: c.Snapshot != "never",
		log: opts.Logger, red: opts.Redactor, byName: map[string]*stream{}}
	if s.batch == 0 {
		s.batch = DefaultBatchSize
	}
	if c.MaxWait != "" {
		if s.maxWait, err = spec.ParseDuration(c.MaxWait); err != nil {
			return nil, fmt.Errorf("max_wait: %w", err)
		}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	for i, name := range c.StreamOrder {
		sc := c.Streams[name]
		st := &stream{name: name, db: mc.DBName, table: sc.Table, pk: append([]string(nil), sc.PrimaryKey...)}
		if db, tb, ok := strings.Cut(sc.Table, "."); ok {
			st.db, st.table = db, tb
		}
		st.serverID = s.serverID + uint32(i)
		if s.serverID == 0 {
			h := fnv.New32a()
			h.Write([]byte(opts.Name + "/" + name))
			st.serverID = 1_000_000 + h.Sum32()%1_000_000_000
		}
		s.byName[name] = st
		s.streams = append(s.streams, source.Stream{Name: name, PrimaryKey: st.pk, Cursor: change.ColPosition, Unbounded: true,
			Hints: map[string]schema.Type{change.ColPosition: schema.Text, change.ColCommittedAt: schema.Timestamp, change.ColBefore: schema.JSON}})
	}
	return s, nil
}

// Streams lists the streams.
func (s *Source) Streams() []source.Stream { return s.streams }

// Close releases nothing: connections live for a Read.
func (s *Source) Close() error { return nil }

func (s *Source) redacted(err error) error {
	if err == nil {
		return nil
	}
	msg := s.red.String(err.Error())
	if mc, perr := mysqldest.ParseURL(s.url); perr == nil && mc.Passwd != "" {
		msg = strings.ReplaceAll(msg, mc.Passwd, "[redacted]")
	}
	return errors.New(msg)
}

func (s *Source) open() (*sql.DB, *gomysql.Config, error) {
	mc, err := mysqldest.ParseURL(s.url)
	if err != nil {
		return nil, nil, err
	}
	mc.MultiStatements = false
	conn, err := gomysql.NewConnector(mc)
	if err != nil {
		return nil, nil, err
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(4)
	return db, mc, nil
}

// server describes the server for capture.
type server struct {
	mariadb bool
	gtid    bool // positions by GTID
}

func probe(ctx context.Context, db *sql.DB) (server, error) {
	var sv server
	var version, format, image string
	if err := db.QueryRowContext(ctx, "SELECT VERSION(), @@binlog_format, @@binlog_row_image").Scan(&version, &format, &image); err != nil {
		return sv, fmt.Errorf("read the server's binlog settings: %w (is the binary log enabled: log_bin?)", err)
	}
	sv.mariadb = strings.Contains(strings.ToLower(version), "mariadb")
	if !strings.EqualFold(format, "ROW") {
		return sv, fmt.Errorf("binlog_format is %s: change data capture needs ROW (SET GLOBAL binlog_format = 'ROW', and in the server's configuration)", format)
	}
	if !strings.EqualFold(image, "FULL") {
		return sv, fmt.Errorf("binlog_row_image is %s: Ferry needs FULL row images, or it would write the columns a change did not carry as NULL", image)
	}
	var logBin int
	if err := db.QueryRowContext(ctx, "SELECT @@log_bin").Scan(&logBin); err != nil || logBin != 1 {
		return sv, errors.New("the binary log is off (log_bin): start the server with --log-bin")
	}
	if sv.mariadb {
		sv.gtid = true
	} else {
		var mode string
		if err := db.QueryRowContext(ctx, "SELECT @@gtid_mode").Scan(&mode); err == nil && strings.EqualFold(mode, "ON") {
			sv.gtid = true
		}
	}
	return sv, nil
}

// column is a table column as the source sees it.
type column struct {
	name, dataType, columnType string
	unsigned                   bool
	values                     []string // enum and set members
	typ                        schema.Type
}

func typeOf(c column) schema.Type {
	switch c.dataType {
	case "tinyint", "smallint", "mediumint", "int", "integer", "year", "bit":
		return schema.Int
	case "bigint":
		if c.unsigned {
			return schema.Decimal
		}
		return schema.Int
	case "decimal", "numeric":
		return schema.Decimal
	case "float", "double", "real":
		return schema.Float
	case "date", "datetime", "timestamp":
		return schema.Timestamp
	case "json":
		return schema.JSON
	}
	return schema.Text
}

func binaryType(dataType string) bool {
	switch dataType {
	case "binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob", "geometry", "point", "linestring", "polygon":
		return true
	}
	return false
}

// members parses enum('a','b') or set('a','b').
func members(columnType string) []string {
	open, close := strings.IndexByte(columnType, '('), strings.LastIndexByte(columnType, ')')
	if open < 0 || close < open {
		return nil
	}
	var out []string
	body := columnType[open+1 : close]
	for len(body) > 0 {
		if body[0] != '\'' {
			break
		}
		var b strings.Builder
		i := 1
		for ; i < len(body); i++ {
			if body[i] == '\'' {
				if i+1 < len(body) && body[i+1] == '\'' {
					b.WriteByte('\'')
					i++
					continue
				}
				break
			}
			b.WriteByte(body[i])
		}
		out = append(out, b.String())
		body = strings.TrimPrefix(body[min(i+1, len(body)):], ",")
	}
	return out
}

func tableColumns(ctx context.Context, db *sql.DB, st *stream) ([]column, error) {
	rows, err := db.QueryContext(ctx, "SELECT column_name, data_type, column_type FROM information_schema.columns WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position", st.db, st.table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var cols []column
	for rows.Next() {
		var c column
		if err := rows.Scan(&c.name, &c.dataType, &c.columnType); err != nil {
			return nil, err
		}
		c.dataType = strings.ToLower(c.dataType)
		c.unsigned = strings.Contains(strings.ToLower(c.columnType), "unsigned")
		if c.dataType == "enum" || c.dataType == "set" {
			c.values = members(c.columnType)
		}
		c.typ = typeOf(c)
		cols = append(cols, c)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(cols) == 0 {
		return nil, fmt.Errorf("table %s.%s does not exist", st.db, st.table)
	}
	// MariaDB's JSON is LONGTEXT with a json_valid check: JSON all the same.
	if checks, err := db.QueryContext(ctx, "SELECT check_clause FROM information_schema.check_constraints WHERE constraint_schema = ? AND table_name = ?", st.db, st.table); err == nil {
		for checks.Next() {
			var clause string
			if checks.Scan(&clause) != nil {
				continue
			}
			for i := range cols {
				if strings.Contains(strings.ToLower(clause), "json_valid(`"+strings.ToLower(cols[i].name)+"`)") && strings.HasSuffix(cols[i].dataType, "text") {
					cols[i].dataType, cols[i].typ = "json", schema.JSON
				}
			}
		}
		checks.Close()
	}
	for _, k := range st.pk {
		found := false
		for _, c := range cols {
			found = found || c.name == k
		}
		if !found {
			return nil, fmt.Errorf("table %s.%s has no column %s (primary_key)", st.db, st.table, k)
		}
	}
	return cols, nil
}

// layout returns the chunk layout for the table's columns.
func layout(name string, cols []column) *schema.Table {
	t := &schema.Table{Name: name}
	for _, c := range cols {
		t.Columns = append(t.Columns, schema.Column{Name: c.name, Path: []string{c.name}, Type: c.typ})
	}
	t.Columns = append(t.Columns,
		schema.Column{Name: change.ColPosition, Path: []string{change.ColPosition}, Type: schema.Text},
		schema.Column{Name: change.ColCommittedAt, Path: []string{change.ColCommittedAt}, Type: schema.Timestamp},
		schema.Column{Name: change.ColBefore, Path: []string{change.ColBefore}, Type: schema.JSON})
	return t
}

// position is where a stream resumes, as kept in state.
type position struct {
	// Phase is "snapshot" while the initial snapshot is read, "stream"
	// after.
	Phase string `json:"phase"`
	// GTID is the set of transactions delivered in full (servers with
	// GTIDs); File and Pos the binlog position after the last one.
	GTID string `json:"gtid,omitempty"`
	File string `json:"file"`
	Pos  uint32 `json:"pos"`
	// Tx and N say that the first N changes of transaction Tx (its GTID,
	// or file:offset of its start) were delivered too.
	Tx string `json:"tx,omitempty"`
	N  int    `json:"n,omitempty"`
}

// Read captures one table's changes until ctx ends.
func (s *Source) Read(ctx context.Context, req source.ReadRequest) error {
	st, ok := s.byName[req.Stream]
	if !ok {
		return fmt.Errorf("unknown stream %q", req.Stream)
	}
	part := &record.Partition{}
	start, err := req.Start(ctx, part)
	if err != nil {
		return err
	}
	var pos position
	if len(start.Resume) > 0 {
		if err := json.Unmarshal(start.Resume, &pos); err != nil {
			return fmt.Errorf("saved position %s is unreadable: %w", start.Resume, err)
		}
	}
	db, mc, err := s.open()
	if err != nil {
		return err
	}
	defer db.Close()
	r := &reader{s: s, st: st, req: req, part: part, pos: pos, db: db, mc: mc}
	err = r.run(ctx)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return s.redacted(err)
}

// reader is one Read of one stream.
type reader struct {
	s      *Source
	st     *stream
	req    source.ReadRequest
	part   *record.Partition
	pos    position
	db     *sql.DB
	mc     *gomysql.Config
	sv     server
	cols   []column
	number int
}

func (r *reader) run(ctx context.Context) error {
	var err error
	if r.sv, err = probe(ctx, r.db); err != nil {
		return err
	}
	if r.cols, err = tableColumns(ctx, r.db, r.st); err != nil {
		return err
	}
	if r.pos.Phase != "stream" {
		// A first read, or a snapshot that was interrupted: read it again
		// from the start, at a new consistent position.
		if r.s.snapshot {
			if err := r.readSnapshot(ctx); err != nil {
				return err
			}
		} else {
			p, err := r.currentPosition(ctx, r.db)
			if err != nil {
				return err
			}
			if err := r.emitDurable(ctx, record.NewChunk(layout(r.st.name, r.cols), 0), p); err != nil {
				return err
			}
			r.pos = p
		}
	}
	return r.stream(ctx)
}

// currentPosition reads the server's binlog position (and GTID set).
func (r *reader) currentPosition(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) (position, error) {
	p := position{Phase: "stream"}
	var doDB, ignoreDB, gtid sql.NullString
	cols := []any{&p.File, &p.Pos, &doDB, &ignoreDB}
	if !r.sv.mariadb {
		cols = append(cols, &gtid)
	}
	err := q.QueryRowContext(ctx, "SHOW MASTER STATUS").Scan(cols...)
	if err != nil && !r.sv.mariadb {
		// MySQL 8.4 renamed it.
		err = q.QueryRowContext(ctx, "SHOW BINARY LOG STATUS").Scan(cols...)
	}
	if err != nil {
		return p, fmt.Errorf("SHOW MASTER STATUS: %w (the user needs REPLICATION CLIENT; is log_bin on?)", err)
	}
	if r.sv.mariadb {
		if err := q.QueryRowContext(ctx, "SELECT BINLOG_GTID_POS(?, ?)", p.File, p.Pos).Scan(&gtid); err != nil {
			return p, err
		}
	}
	if r.sv.gtid {
		p.GTID = strings.ReplaceAll(gtid.String, "\n", "")
	}
	return p, nil
}

// emit hands a page to the engine.
func (r *reader) emit(ctx context.Context, c *record.Chunk, pos position) error {
	return r.emitPage(ctx, c, pos, nil)
}

func (r *reader) emitPage(ctx context.Context, c *record.Chunk, pos position, onSaved func(error)) error {
	r.number++
	raw, _ := json.Marshal(pos)
	return r.req.Emit(ctx, &record.Page{Stream: r.st.name, Partition: r.part, Chunk: c, Position: raw, Number: r.number,
		Request: fmt.Sprintf("mysql_cdc %s.%s up to %s", r.st.db, r.st.table, raw), FetchedAt: time.Now().UnixMicro(), Ack: onSaved})
}

// emitDurable emits a page and waits until its state is saved: the page
// that ends a snapshot (or records where streaming starts) must be on
// file before any change after it is delivered, or a crash in between
// would take a new snapshot and lose the changes delivered since.
func (r *reader) emitDurable(ctx context.Context, c *record.Chunk, pos position) error {
	saved := make(chan error, 1)
	if err := r.emitPage(ctx, c, pos, func(err error) { saved <- err }); err != nil {
		return err
	}
	select {
	case err := <-saved:
		if err != nil {
			return fmt.Errorf("the end of the snapshot was not saved: %w", err)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func quote(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

// readSnapshot reads the table in a transaction consistent with a binlog
// position, and emits it. MariaDB reports the position of its consistent
// snapshot; on MySQL the table is locked for the moment it takes to start
// the transaction and read the position.
func (r *reader) readSnapshot(ctx context.Context) error {
	st := r.st
	conn, err := r.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	var p position
	if r.sv.mariadb {
		if _, err := conn.ExecContext(ctx, "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"); err != nil {
			return err
		}
		var name, file, pos string
		if err := conn.QueryRowContext(ctx, "SHOW STATUS LIKE 'binlog_snapshot_file'").Scan(&name, &file); err != nil {
			return err
		}
		if err := conn.QueryRowContext(ctx, "SHOW STATUS LIKE 'binlog_snapshot_position'").Scan(&name, &pos); err != nil {
			return err
		}
		n, _ := strconv.ParseUint(pos, 10, 32)
		p = position{Phase: "stream", File: file, Pos: uint32(n)}
		var gtid sql.NullString
		if err := conn.QueryRowContext(ctx, "SELECT BINLOG_GTID_POS(?, ?)", file, n).Scan(&gtid); err != nil {
			return err
		}
		p.GTID = gtid.String
	} else {
		lock, err := r.db.Conn(ctx)
		if err != nil {
			return err
		}
		defer lock.Close()
		if _, err := lock.ExecContext(ctx, "FLUSH TABLES "+quote(st.db)+"."+quote(st.table)+" WITH READ LOCK"); err != nil {
			return fmt.Errorf("lock %s.%s for the snapshot's position: %w (the user needs RELOAD and LOCK TABLES)", st.db, st.table, err)
		}
		if _, err := conn.ExecContext(ctx, "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"); err != nil {
			lock.ExecContext(ctx, "UNLOCK TABLES")
			return err
		}
		p, err = r.currentPosition(ctx, lock)
		lock.ExecContext(ctx, "UNLOCK TABLES")
		if err != nil {
			return err
		}
	}
	defer conn.ExecContext(context.Background(), "ROLLBACK")
	rows, err := conn.QueryContext(ctx, "SELECT * FROM "+quote(st.db)+"."+quote(st.table))
	if err != nil {
		return fmt.Errorf("snapshot of %s.%s: %w", st.db, st.table, err)
	}
	defer rows.Close()
	tb := layout(st.name, r.cols)
	snapPos := []byte(fmt.Sprintf("%s/%020d/%08d", p.File, p.Pos, 0))
	snapshot := position{Phase: "snapshot", File: p.File, Pos: p.Pos, GTID: p.GTID}
	vals := make([]any, len(r.cols))
	ptrs := make([]any, len(vals))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	c := record.NewChunk(tb, r.s.batch)
	n := 0
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		for j, col := range r.cols {
			if err := appendValue(c, &c.Cols[j], col, vals[j]); err != nil {
				return fmt.Errorf("snapshot of %s.%s: column %s: %w", st.db, st.table, col.name, err)
			}
		}
		k := len(r.cols)
		c.Cols[k].AppendBytes(snapPos)
		c.Cols[k+1].AppendNull(schema.Timestamp)
		c.Cols[k+2].AppendNull(schema.JSON)
		c.Ops = append(c.Ops, record.Upsert)
		c.Len++
		n++
		if c.Len >= r.s.batch {
			if err := r.emit(ctx, c, snapshot); err != nil {
				return err
			}
			c = record.NewChunk(tb, r.s.batch)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("snapshot of %s.%s: %w", st.db, st.table, err)
	}
	r.s.log.Info("snapshot read", "stream", st.name, "rows", n, "binlog", p.File, "pos", p.Pos, "gtid", p.GTID)
	r.pos = p
	return r.emitDurable(ctx, c, p)
}

// Check connects and checks what capture needs.
func (s *Source) Check(ctx context.Context, name string) (string, error) {
	st, ok := s.byName[name]
	if !ok {
		return "", fmt.Errorf("unknown stream %q", name)
	}
	db, _, err := s.open()
	if err != nil {
		return "", err
	}
	defer db.Close()
	sv, err := probe(ctx, db)
	if err != nil {
		return "", s.redacted(err)
	}
	cols, err := tableColumns(ctx, db, st)
	if err != nil {
		return "", s.redacted(err)
	}
	r := &reader{s: s, st: st, sv: sv}
	p, err := r.currentPosition(ctx, db)
	if err != nil {
		return "", s.redacted(err)
	}
	kind, by := "MySQL", "binlog file and offset (gtid_mode is off)"
	if sv.mariadb {
		kind = "MariaDB"
	}
	if sv.gtid {
		by = "GTID"
	}
	return fmt.Sprintf("%s %s.%s: %d columns; binlog ROW, full images; positions by %s; the server is at %s:%d", kind, st.db, st.table, len(cols), by, p.File, p.Pos), nil
}
