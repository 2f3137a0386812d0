// Package pgcdc is the postgres_cdc source: change data capture from
// PostgreSQL's logical replication (the pgoutput plugin, through
// jackc/pglogrepl). Each stream is one table with its own publication and
// replication slot; a first read takes a snapshot of the table consistent
// with the slot (an exported snapshot), then streams the table's inserts,
// updates (with before images under REPLICA IDENTITY FULL), deletes and
// schema changes, in commit order.
//
// Delivery: every page carries the position after it (the end LSN of the
// last transaction it completes, and how far into a transaction it ends),
// and the slot's confirmed LSN is advanced only from the page's Ack, that
// is once the engine has made the page's changes durable (delivered, for
// an API) and saved the state. After a crash PostgreSQL sends again what
// was not confirmed, and the source skips what the saved state says was
// delivered: every change is delivered at least once, in commit order.
package pgcdc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ferry-dev/ferry/internal/change"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/schema"
	"github.com/ferry-dev/ferry/internal/source"
	"github.com/ferry-dev/ferry/internal/spec"
	"github.com/ferry-dev/ferry/internal/template"
)

func init() {
	source.Register("postgres_cdc", "Change data capture from PostgreSQL logical replication (pgoutput): a consistent snapshot, then every insert, update and delete, in commit order.", New)
}

// Defaults.
const (
	DefaultBatchSize = 5000
	DefaultMaxWait   = 10 * time.Millisecond
	// statusEvery is how often the source tells the server its position
	// (well within wal_sender_timeout, 60s by default).
	statusEvery = 5 * time.Second
)

// Source captures changes of a database's tables.
type Source struct {
	url        string
	name       string
	batch      int
	maxWait    time.Duration
	snapshot   bool
	onTruncate string
	log        *slog.Logger
	red        source.Redactor
	streams    []source.Stream
	byName     map[string]*stream
}

type stream struct {
	name          string
	schema, table string
	pk            []string
	slot, pub     string
}

var (
	_ source.Source  = (*Source)(nil)
	_ source.Checker = (*Source)(nil)
)

// SlotName returns a stream's replication slot: the one configured, or
// ferry_<connector>_<stream> (lower case, at most 63 bytes).
func SlotName(configured, connector, stream string) string {
	if configured != "" {
		return configured
	}
	s := "ferry_" + schema.Normalize(connector) + "_" + schema.Normalize(stream)
	s = strings.ToLower(strings.ReplaceAll(s, "__", "_"))
	if len(s) > 63 {
		s = s[:63]
	}
	return s
}

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
	s := &Source{url: u, name: opts.Name, batch: c.BatchSize, maxWait: DefaultMaxWait, snapshot: c.Snapshot != "never", onTruncate: c.OnTruncate,
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
	for _, name := range c.StreamOrder {
		sc := c.Streams[name]
		st := &stream{name: name, schema: "public", table: sc.Table, pk: append([]string(nil), sc.PrimaryKey...)}
		if sch, tb, ok := strings.Cut(sc.Table, "."); ok {
			st.schema, st.table = sch, tb
		}
		st.slot = SlotName(sc.Slot, opts.Name, name)
		st.pub = sc.Publication
		if st.pub == "" {
			st.pub = st.slot
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

// Slot returns the replication slot and publication of a stream.
func (s *Source) Slot(stream string) (slot, publication string, ok bool) {
	st, ok := s.byName[stream]
	if !ok {
		return "", "", false
	}
	return st.slot, st.pub, true
}

// URL returns the database URL (with its password: for connecting only).
func (s *Source) URL() string { return s.url }

// position is where a stream resumes, as kept in state.
type position struct {
	// Phase is "snapshot" while the initial snapshot is read, "stream"
	// after.
	Phase string `json:"phase"`
	// LSN is the end of the last transaction delivered in full (stream),
	// or the slot's consistent point (snapshot).
	LSN string `json:"lsn"`
	// Tx and N say that the first N changes of the transaction whose
	// commit is at Tx were delivered too.
	Tx string `json:"tx,omitempty"`
	N  int    `json:"n,omitempty"`
	// Slot is the slot the position belongs to.
	Slot string `json:"slot"`
	// ServerWALEnd and LagBytes say how far the server's WAL was ahead of
	// LSN when the page was read: the slot's lag, for people (ferry state
	// show). Never read back.
	ServerWALEnd string `json:"server_wal_end,omitempty"`
	LagBytes     int64  `json:"lag_bytes,omitempty"`
}

func (s *Source) connConfig(replication bool) (*pgconn.Config, error) {
	cc, err := pgconn.ParseConfig(s.url)
	if err != nil {
		return nil, errors.New("postgres_cdc: url is not a valid postgres://user:pass@host:port/db url")
	}
	if cc.RuntimeParams == nil {
		cc.RuntimeParams = map[string]string{}
	}
	cc.RuntimeParams["TimeZone"] = "UTC"
	cc.RuntimeParams["application_name"] = "ferry-cdc"
	if replication {
		cc.RuntimeParams["replication"] = "database"
	}
	return cc, nil
}

func (s *Source) connect(ctx context.Context) (*pgx.Conn, error) {
	cc, err := s.connConfig(false)
	if err != nil {
		return nil, err
	}
	pc, err := pgx.ParseConfig("")
	if err != nil {
		return nil, err
	}
	pc.Config = *cc
	conn, err := pgx.ConnectConfig(ctx, pc)
	if err != nil {
		return nil, s.redacted(fmt.Errorf("postgres_cdc: connect to %s:%d: %w", cc.Host, cc.Port, err))
	}
	return conn, nil
}

func (s *Source) redacted(err error) error {
	if err == nil {
		return nil
	}
	msg := s.red.String(err.Error())
	if cc, perr := pgconn.ParseConfig(s.url); perr == nil && cc.Password != "" {
		msg = strings.ReplaceAll(msg, cc.Password, "[redacted]")
	}
	return errors.New(msg)
}

// column is a table column as the source sees it.
type column struct {
	name string
	oid  uint32
	typ  string // format_type, for casts
}

// tableInfo reads a table's columns and replica identity.
func tableInfo(ctx context.Context, conn *pgx.Conn, st *stream) ([]column, byte, error) {
	var ident string
	err := conn.QueryRow(ctx, "SELECT c.relreplident::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')", st.schema, st.table).Scan(&ident)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, 0, fmt.Errorf("table %s.%s does not exist", st.schema, st.table)
	}
	if err != nil {
		return nil, 0, err
	}
	rows, err := conn.Query(ctx, `SELECT a.attname, a.atttypid, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
		JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`, st.schema, st.table)
	if err != nil {
		return nil, 0, err
	}
	var cols []column
	for rows.Next() {
		var c column
		if err := rows.Scan(&c.name, &c.oid, &c.typ); err != nil {
			return nil, 0, err
		}
		cols = append(cols, c)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, err
	}
	for _, k := range st.pk {
		found := false
		for _, c := range cols {
			found = found || c.name == k
		}
		if !found {
			return nil, 0, fmt.Errorf("table %s.%s has no column %s (primary_key)", st.schema, st.table, k)
		}
	}
	return cols, ident[0], nil
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func (st *stream) qualified() string { return quoteIdent(st.schema) + "." + quoteIdent(st.table) }

// ensurePublication creates the stream's publication, or checks that it
// publishes the table.
func ensurePublication(ctx context.Context, conn *pgx.Conn, st *stream) error {
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_publication WHERE pubname = $1", st.pub).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		if _, err := conn.Exec(ctx, "CREATE PUBLICATION "+quoteIdent(st.pub)+" FOR TABLE "+st.qualified()); err != nil {
			return fmt.Errorf("create publication %s for table %s.%s: %w (the user must own the table; or create the publication beforehand)", st.pub, st.schema, st.table, err)
		}
		return nil
	}
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3", st.pub, st.schema, st.table).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("publication %s exists but does not publish %s.%s: ALTER PUBLICATION %s ADD TABLE %s, or name another publication", st.pub, st.schema, st.table, st.pub, st.qualified())
	}
	return nil
}

// slotState reads a slot: whether it exists, its confirmed LSN, whether
// another connection uses it, and whether its WAL is lost.
func slotState(ctx context.Context, conn *pgx.Conn, slot string) (exists bool, confirmed string, active bool, lost bool, err error) {
	var c *string
	var status *string
	err = conn.QueryRow(ctx, "SELECT confirmed_flush_lsn::text, active, wal_status FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&c, &active, &status)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, "", false, false, nil
	}
	if err != nil {
		return false, "", false, false, err
	}
	if c != nil {
		confirmed = *c
	}
	return true, confirmed, active, status != nil && *status == "lost", nil
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
	r := &reader{s: s, st: st, req: req, part: part, pos: pos}
	err = r.run(ctx)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// reader is one Read of one stream.
type reader struct {
	s    *Source
	st   *stream
	req  source.ReadRequest
	part *record.Partition
	pos  position
	conn *pgx.Conn
	repl *pgconn.PgConn
	cols []column

	acked     atomic.Uint64 // highest LSN whose changes are delivered
	sentAck   uint64        // highest LSN told to the server
	sentAt    time.Time
	number    int
	streaming bool // the replication connection is in copy mode
}

func (r *reader) run(ctx context.Context) error {
	s, st := r.s, r.st
	var err error
	if r.conn, err = s.connect(ctx); err != nil {
		return err
	}
	defer r.conn.Close(context.Background())
	var ident byte
	if r.cols, ident, err = tableInfo(ctx, r.conn, st); err != nil {
		return err
	}
	if ident == 'n' {
		return fmt.Errorf("table %s.%s has REPLICA IDENTITY NOTHING: its updates and deletes cannot be captured; ALTER TABLE %s REPLICA IDENTITY DEFAULT (or FULL, for before images)", st.schema, st.table, st.qualified())
	}
	if err := ensurePublication(ctx, r.conn, st); err != nil {
		return err
	}
	cc, err := s.connConfig(true)
	if err != nil {
		return err
	}
	if r.repl, err = pgconn.ConnectConfig(ctx, cc); err != nil {
		return s.redacted(fmt.Errorf("postgres_cdc: replication connection to %s:%d: %w (the user needs the REPLICATION attribute, and pg_hba.conf a replication entry)", cc.Host, cc.Port, err))
	}
	defer r.repl.Close(context.Background())
	exists, _, active, lost, err := slotState(ctx, r.conn, st.slot)
	if err != nil {
		return err
	}
	if active {
		return fmt.Errorf("replication slot %s is in use by another connection (another run of this stream, or another program): a slot serves one reader", st.slot)
	}
	switch {
	case r.pos.Phase == "stream":
		if !exists || lost {
			return fmt.Errorf("replication slot %s is gone or its WAL was removed (max_slot_wal_keep_size), so the changes after %s cannot be read: run ferry state reset --stream %s to start over with a new snapshot", st.slot, r.pos.LSN, st.name)
		}
	default:
		// A first read, or a snapshot that was interrupted: the exported
		// snapshot is gone with its connection, so the slot is made anew
		// and the snapshot read again from the start.
		if exists {
			s.log.Warn("dropping the replication slot of an unfinished start, to take a new consistent snapshot", "stream", st.name, "slot", st.slot)
			if err := pglogrepl.DropReplicationSlot(ctx, r.repl, st.slot, pglogrepl.DropReplicationSlotOptions{Wait: true}); err != nil {
				return fmt.Errorf("drop replication slot %s: %w", st.slot, err)
			}
		}
		action := "NOEXPORT_SNAPSHOT"
		if s.snapshot {
			action = "EXPORT_SNAPSHOT"
		}
		res, err := pglogrepl.CreateReplicationSlot(ctx, r.repl, st.slot, "pgoutput", pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.LogicalReplication, SnapshotAction: action})
		if err != nil {
			return fmt.Errorf("create replication slot %s: %w (is wal_level logical? are max_replication_slots free?)", st.slot, err)
		}
		s.log.Info("created replication slot", "stream", st.name, "slot", st.slot, "consistent_point", res.ConsistentPoint)
		if s.snapshot {
			if err := r.readSnapshot(ctx, res.SnapshotName, res.ConsistentPoint); err != nil {
				return err
			}
		} else if err := r.emitPosition(ctx, position{Phase: "stream", LSN: res.ConsistentPoint, Slot: st.slot}); err != nil {
			return err
		}
		r.pos = position{Phase: "stream", LSN: res.ConsistentPoint, Slot: st.slot}
	}
	return r.stream(ctx)
}

// layout returns the chunk layout for the table's current columns.
func layout(name string, cols []column) *schema.Table {
	t := &schema.Table{Name: name}
	for _, c := range cols {
		t.Columns = append(t.Columns, schema.Column{Name: c.name, Path: []string{c.name}, Type: typeOf(c.oid)})
	}
	t.Columns = append(t.Columns,
		schema.Column{Name: change.ColPosition, Path: []string{change.ColPosition}, Type: schema.Text},
		schema.Column{Name: change.ColCommittedAt, Path: []string{change.ColCommittedAt}, Type: schema.Timestamp},
		schema.Column{Name: change.ColBefore, Path: []string{change.ColBefore}, Type: schema.JSON})
	return t
}

// emit hands a page to the engine, telling the server now and then that
// the source is alive while the engine is busy (backpressure).
func (r *reader) emit(ctx context.Context, c *record.Chunk, pos position, lsn uint64) error {
	return r.emitPage(ctx, c, pos, lsn, nil)
}

// emitDurable emits a page and waits until its state is saved: the page
// that ends a snapshot (or records where a slot starts) must be on file
// before any change after it is delivered, or a crash in between would
// take a new snapshot and lose the changes delivered since.
func (r *reader) emitDurable(ctx context.Context, c *record.Chunk, pos position) error {
	saved := make(chan error, 1)
	if err := r.emitPage(ctx, c, pos, 0, func(err error) { saved <- err }); err != nil {
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

func (r *reader) emitPage(ctx context.Context, c *record.Chunk, pos position, lsn uint64, onSaved func(error)) error {
	r.number++
	raw, _ := json.Marshal(pos)
	pg := &record.Page{Stream: r.st.name, Partition: r.part, Chunk: c, Position: raw, Number: r.number,
		Request: fmt.Sprintf("postgres_cdc slot %s up to %s", r.st.slot, raw), FetchedAt: time.Now().UnixMicro()}
	if onSaved != nil {
		pg.Ack = onSaved
	}
	if lsn > 0 {
		pg.Ack = func(err error) {
			if err != nil {
				return
			}
			for {
				cur := r.acked.Load()
				if lsn <= cur || r.acked.CompareAndSwap(cur, lsn) {
					return
				}
			}
		}
	}
	done := make(chan error, 1)
	go func() { done <- r.req.Emit(ctx, pg) }()
	tick := time.NewTicker(statusEvery)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-tick.C:
			if r.repl != nil && r.streaming {
				if err := r.sendStatus(ctx, false); err != nil {
					<-done
					return err
				}
			}
		}
	}
}

// emitPosition emits an empty page that only records a position.
func (r *reader) emitPosition(ctx context.Context, pos position) error {
	return r.emitDurable(ctx, record.NewChunk(layout(r.st.name, r.cols), 0), pos)
}

// readSnapshot reads the table as of the slot's creation and emits it.
func (r *reader) readSnapshot(ctx context.Context, name, cp string) error {
	st := r.st
	tx, err := r.conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT '"+name+"'"); err != nil {
		return fmt.Errorf("import the slot's snapshot: %w", err)
	}
	sel := make([]string, len(r.cols))
	for i, c := range r.cols {
		sel[i] = quoteIdent(c.name) + "::text"
	}
	rows, err := tx.Query(ctx, "SELECT "+strings.Join(sel, ", ")+" FROM ONLY "+st.qualified())
	if err != nil {
		return fmt.Errorf("snapshot of %s.%s: %w", st.schema, st.table, err)
	}
	defer rows.Close()
	cpLSN, _ := pglogrepl.ParseLSN(cp)
	snapPos := fmt.Sprintf("%016X/%08d", uint64(cpLSN), 0)
	tb := layout(st.name, r.cols)
	pos := position{Phase: "snapshot", LSN: cp, Slot: st.slot}
	c := record.NewChunk(tb, r.s.batch)
	n := 0
	for rows.Next() {
		vals := rows.RawValues()
		for j, col := range r.cols {
			if vals[j] == nil {
				c.Cols[j].AppendNull(tb.Columns[j].Type)
				continue
			}
			if err := appendText(c, &c.Cols[j], col.oid, vals[j]); err != nil {
				return fmt.Errorf("snapshot of %s.%s: column %s: %w", st.schema, st.table, col.name, err)
			}
		}
		k := len(r.cols)
		c.Cols[k].AppendBytes([]byte(snapPos))
		c.Cols[k+1].AppendNull(schema.Timestamp)
		c.Cols[k+2].AppendNull(schema.JSON)
		c.Ops = append(c.Ops, record.Upsert)
		c.Len++
		n++
		if c.Len >= r.s.batch {
			if err := r.emit(ctx, c, pos, 0); err != nil {
				return err
			}
			c = record.NewChunk(tb, r.s.batch)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("snapshot of %s.%s: %w", st.schema, st.table, err)
	}
	rows.Close()
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	r.s.log.Info("snapshot read", "stream", st.name, "rows", n, "consistent_point", cp)
	// The last page ends the snapshot: from it on, the stream.
	return r.emitDurable(ctx, c, position{Phase: "stream", LSN: cp, Slot: st.slot})
}

// Check connects and checks what capture needs: wal_level logical, the
// table, its replica identity, the user's right to replicate, and the slot.
func (s *Source) Check(ctx context.Context, name string) (string, error) {
	st, ok := s.byName[name]
	if !ok {
		return "", fmt.Errorf("unknown stream %q", name)
	}
	conn, err := s.connect(ctx)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.Background())
	var level string
	var repl bool
	if err := conn.QueryRow(ctx, "SELECT current_setting('wal_level'), rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&level, &repl); err != nil {
		return "", err
	}
	if level != "logical" {
		return "", fmt.Errorf("wal_level is %s: logical replication needs wal_level = logical (postgresql.conf, then a restart)", level)
	}
	if !repl {
		return "", errors.New("the user may not replicate: ALTER ROLE … REPLICATION")
	}
	cols, ident, err := tableInfo(ctx, conn, st)
	if err != nil {
		return "", err
	}
	identity := map[byte]string{'d': "default (the primary key: before images only of the key)", 'f': "full (before images)", 'i': "an index", 'n': "nothing (updates and deletes cannot be captured)"}[ident]
	exists, confirmed, _, lost, err := slotState(ctx, conn, st.slot)
	if err != nil {
		return "", err
	}
	slot := "slot " + st.slot + " not created yet"
	if exists {
		slot = "slot " + st.slot + " confirmed at " + confirmed
		if lost {
			slot += " (its WAL is lost: reset the stream)"
		}
	}
	return fmt.Sprintf("%s.%s: %d columns, replica identity %s; %s", st.schema, st.table, len(cols), identity, slot), nil
}

// SlotStatus describes a stream's replication slot for people.
type SlotStatus struct {
	Slot, Publication string
	Exists, Active    bool
	// Confirmed is the slot's confirmed LSN, Current the server's WAL end;
	// LagBytes the WAL the slot holds back (Current - Confirmed).
	Confirmed, Current string
	LagBytes           int64
	// WALStatus is reserved, extended, unreserved or lost.
	WALStatus string
}

// SlotStatus reads a stream's slot.
func (s *Source) SlotStatus(ctx context.Context, stream string) (SlotStatus, error) {
	st, ok := s.byName[stream]
	if !ok {
		return SlotStatus{}, fmt.Errorf("unknown stream %q", stream)
	}
	out := SlotStatus{Slot: st.slot, Publication: st.pub}
	conn, err := s.connect(ctx)
	if err != nil {
		return out, err
	}
	defer conn.Close(context.Background())
	var confirmed, walStatus *string
	var lag *int64
	err = conn.QueryRow(ctx, `SELECT confirmed_flush_lsn::text, active, wal_status, pg_current_wal_lsn()::text,
		pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint FROM pg_replication_slots WHERE slot_name = $1`, st.slot).
		Scan(&confirmed, &out.Active, &walStatus, &out.Current, &lag)
	if errors.Is(err, pgx.ErrNoRows) {
		return out, nil
	}
	if err != nil {
		return out, err
	}
	out.Exists = true
	if confirmed != nil {
		out.Confirmed = *confirmed
	}
	if walStatus != nil {
		out.WALStatus = *walStatus
	}
	if lag != nil {
		out.LagBytes = *lag
	}
	return out, nil
}

// DropSlot drops a stream's replication slot (PostgreSQL then releases
// the WAL it held) and its publication.
func (s *Source) DropSlot(ctx context.Context, stream string) error {
	st, ok := s.byName[stream]
	if !ok {
		return fmt.Errorf("unknown stream %q", stream)
	}
	conn, err := s.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	exists, _, active, _, err := slotState(ctx, conn, st.slot)
	if err != nil {
		return err
	}
	if active {
		return fmt.Errorf("replication slot %s is in use: stop the run reading it first", st.slot)
	}
	if exists {
		if _, err := conn.Exec(ctx, "SELECT pg_drop_replication_slot($1)", st.slot); err != nil {
			return fmt.Errorf("drop replication slot %s: %w", st.slot, err)
		}
	}
	if _, err := conn.Exec(ctx, "DROP PUBLICATION IF EXISTS "+quoteIdent(st.pub)); err != nil {
		return fmt.Errorf("drop publication %s: %w", st.pub, err)
	}
	return nil
}
