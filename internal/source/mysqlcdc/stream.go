package mysqlcdc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/schema"
)

// page is the page being filled.
type page struct {
	c       *record.Chunk
	cols    []column
	firstAt time.Time
}

// ddl recognises statements that change or empty a table.
var ddl = regexp.MustCompile(`(?is)^\s*(ALTER\s+TABLE|RENAME\s+TABLE|TRUNCATE|DROP\s+TABLE|CREATE\s+TABLE)\b`)

// mentions reports whether a statement names the stream's table.
func (r *reader) mentions(q string) bool {
	q = strings.ToLower(strings.ReplaceAll(q, "`", ""))
	t := strings.ToLower(r.st.table)
	for _, f := range strings.FieldsFunc(q, func(c rune) bool { return c == ' ' || c == '\n' || c == '\t' || c == ',' || c == '(' || c == ';' }) {
		if f == t || f == strings.ToLower(r.st.db)+"."+t {
			return true
		}
	}
	return false
}

// stream reads the binlog from the saved position until ctx ends.
func (r *reader) stream(ctx context.Context) error {
	st := r.st
	host, portText, _ := net.SplitHostPort(r.mc.Addr)
	port, _ := strconv.Atoi(portText)
	flavor := mysql.MySQLFlavor
	if r.sv.mariadb {
		flavor = mysql.MariaDBFlavor
	}
	cfg := replication.BinlogSyncerConfig{
		ServerID: st.serverID, Flavor: flavor, Host: host, Port: uint16(port), User: r.mc.User, Password: r.mc.Passwd,
		ParseTime: true, TimestampStringLocation: time.UTC, HeartbeatPeriod: 2 * time.Second, ReadTimeout: 30 * time.Second,
		MaxReconnectAttempts: 3, Logger: slog.New(slog.DiscardHandler), TLSConfig: r.mc.TLS,
	}
	syncer := replication.NewBinlogSyncer(cfg)
	defer syncer.Close()
	var streamer *replication.BinlogStreamer
	var err error
	if r.sv.gtid && r.pos.GTID != "" {
		gset, perr := mysql.ParseGTIDSet(flavor, r.pos.GTID)
		if perr != nil {
			return fmt.Errorf("saved GTID set %q: %w", r.pos.GTID, perr)
		}
		streamer, err = syncer.StartSyncGTID(gset)
	} else {
		streamer, err = syncer.StartSync(mysql.Position{Name: r.pos.File, Pos: r.pos.Pos})
	}
	if err != nil {
		return fmt.Errorf("start reading the binlog at %+v: %w", r.pos, err)
	}
	r.s.log.Info("streaming changes", "stream", st.name, "server_id", st.serverID, "file", r.pos.File, "pos", r.pos.Pos, "gtid", r.pos.GTID)

	var (
		cur       *page
		file      = r.pos.File
		lastFile  = r.pos.File
		lastPos   = r.pos.Pos
		lastGTID  = r.pos.GTID
		inTx      bool
		txID      string
		txAt      time.Time
		txIndex   int
		skipN     int
		txPosText string
		resumeTx  = r.pos.Tx
		resumeN   = r.pos.N
	)
	flush := func(mid bool) error {
		if cur == nil || cur.c.Len == 0 {
			return nil
		}
		pos := position{Phase: "stream", GTID: lastGTID, File: lastFile, Pos: lastPos}
		if mid {
			pos.Tx, pos.N = txID, txIndex
		}
		c := cur.c
		cur = nil
		return r.emit(ctx, c, pos)
	}
	for {
		wait := time.Hour
		if cur != nil && cur.c.Len > 0 {
			wait = time.Until(cur.firstAt.Add(r.s.maxWait))
			if wait <= 0 {
				if err := flush(inTx); err != nil {
					return err
				}
				continue
			}
		}
		ectx, cancel := context.WithTimeout(ctx, wait)
		ev, err := streamer.GetEvent(ectx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, context.DeadlineExceeded) {
				continue
			}
			return fmt.Errorf("reading the binlog: %w (a purged binlog cannot be read again: ferry state reset --stream %s takes a new snapshot)", err, st.name)
		}
		h := ev.Header
		switch e := ev.Event.(type) {
		case *replication.RotateEvent:
			file = string(e.NextLogName)
		case *replication.MariadbGTIDEvent:
			inTx, txID, txIndex, txAt = true, e.GTID.String(), 0, time.Unix(int64(h.Timestamp), 0)
			txPosText = fmt.Sprintf("%s/%020d", file, h.LogPos)
		case *replication.GTIDEvent:
			next, _ := e.GTIDNext()
			id := ""
			if next != nil && e.GNO > 0 {
				id = next.String()
			}
			inTx, txID, txIndex, txAt = true, id, 0, time.Unix(int64(h.Timestamp), 0)
			if ct := e.OriginalCommitTime(); !ct.IsZero() {
				txAt = ct
			}
			txPosText = fmt.Sprintf("%s/%020d", file, h.LogPos)
		case *replication.QueryEvent:
			q := string(e.Query)
			if strings.EqualFold(strings.TrimSpace(q), "BEGIN") {
				if txID == "" {
					txID = fmt.Sprintf("%s:%d", file, h.LogPos)
					txPosText = fmt.Sprintf("%s/%020d", file, h.LogPos)
				}
				if !inTx {
					inTx, txIndex, txAt = true, 0, time.Unix(int64(h.Timestamp), 0)
				}
				break
			}
			// A statement outside a transaction (DDL) commits by itself.
			if ddl.MatchString(q) && r.mentions(q) {
				if err := flush(false); err != nil {
					return err
				}
				low := strings.ToLower(strings.TrimSpace(q))
				if strings.HasPrefix(low, "truncate") {
					return fmt.Errorf("table %s.%s was truncated (binlog %s:%d): Ferry cannot delete every row of the destination for you; empty it if that is what you want, then ferry state reset --stream %s for a new snapshot", st.db, st.table, file, h.LogPos, st.name)
				}
				if strings.HasPrefix(low, "drop") {
					return fmt.Errorf("table %s.%s was dropped (binlog %s:%d)", st.db, st.table, file, h.LogPos)
				}
				cols, err := tableColumns(ctx, r.db, st)
				if err != nil {
					return err
				}
				r.s.log.Info("the table's columns changed", "stream", st.name, "statement", q)
				r.cols = cols
			}
			lastFile, lastPos = file, h.LogPos
			if e.GSet != nil {
				lastGTID = e.GSet.String()
			}
			inTx, txID = false, ""
		case *replication.XIDEvent:
			lastFile, lastPos = file, h.LogPos
			if e.GSet != nil {
				lastGTID = e.GSet.String()
			}
			inTx, txID = false, ""
			if cur != nil && (cur.c.Len >= r.s.batch || time.Since(cur.firstAt) >= r.s.maxWait) {
				if err := flush(false); err != nil {
					return err
				}
			}
		case *replication.RowsEvent:
			if string(e.Table.Schema) != st.db || string(e.Table.Table) != st.table {
				continue
			}
			// The transaction delivered in part before a restart: skip what
			// was delivered.
			if txIndex == 0 {
				skipN = 0
				if resumeTx != "" && txID == resumeTx {
					skipN, resumeTx = resumeN, ""
				}
			}
			if int(e.ColumnCount) != len(r.cols) {
				// The binlog was written for another layout than the table
				// has now: read the columns again, and refuse to guess.
				cols, err := tableColumns(ctx, r.db, st)
				if err != nil {
					return err
				}
				if int(e.ColumnCount) != len(cols) {
					return fmt.Errorf("a change of %s.%s at binlog %s:%d has %d columns and the table has %d: Ferry cannot map them by position (set binlog_row_metadata = FULL so the binlog names the columns, or ferry state reset --stream %s)", st.db, st.table, file, h.LogPos, e.ColumnCount, len(cols), st.name)
				}
				r.cols = cols
			}
			cols := r.cols
			if names := e.Table.ColumnNameString(); len(names) == len(cols) {
				for i, n := range names {
					if n != "" && n != cols[i].name {
						cols, err = tableColumns(ctx, r.db, st)
						if err != nil {
							return err
						}
						r.cols = cols
						break
					}
				}
			}
			if cur != nil && !sameColumns(cur.cols, cols) {
				if err := flush(true); err != nil {
					return err
				}
			}
			if cur == nil {
				cur = &page{c: record.NewChunk(layout(st.name, cols), 64), cols: cols, firstAt: time.Now()}
			}
			typ := e.Type()
			step := 1
			if typ == replication.EnumRowsEventTypeUpdate {
				step = 2
			}
			for i := 0; i+step <= len(e.Rows); i += step {
				txIndex++
				if txIndex <= skipN {
					continue
				}
				pos := fmt.Sprintf("%s/%08d", txPosText, txIndex)
				switch typ {
				case replication.EnumRowsEventTypeInsert:
					err = r.appendRow(cur, record.Insert, e.Rows[i], nil, pos, txAt)
				case replication.EnumRowsEventTypeDelete:
					err = r.appendRow(cur, record.Delete, e.Rows[i], e.Rows[i], pos, txAt)
				case replication.EnumRowsEventTypeUpdate:
					before, after := e.Rows[i], e.Rows[i+1]
					if r.keyChanged(cur.cols, before, after) {
						if err = r.appendRow(cur, record.Delete, before, before, pos, txAt); err != nil {
							return err
						}
					}
					err = r.appendRow(cur, record.Update, after, before, pos, txAt)
				}
				if err != nil {
					return err
				}
				if cur.c.Len >= r.s.batch {
					if err := flush(true); err != nil {
						return err
					}
					cur = &page{c: record.NewChunk(layout(st.name, cols), 64), cols: cols, firstAt: time.Now()}
				}
			}
		}
	}
}

func sameColumns(a, b []column) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].name != b[i].name || a[i].typ != b[i].typ {
			return false
		}
	}
	return true
}

func (r *reader) keyChanged(cols []column, before, after []any) bool {
	for i, c := range cols {
		for _, k := range r.st.pk {
			if c.name == k && i < len(before) && i < len(after) && fmt.Sprint(before[i]) != fmt.Sprint(after[i]) {
				return true
			}
		}
	}
	return false
}

// appendRow appends one row image with its position, commit time and
// before image.
func (r *reader) appendRow(p *page, op record.Op, vals, before []any, pos string, at time.Time) error {
	c := p.c
	for j, col := range p.cols {
		var v any
		if j < len(vals) {
			v = vals[j]
		}
		if err := appendValue(c, &c.Cols[j], col, v); err != nil {
			return fmt.Errorf("%s.%s column %s: %w", r.st.db, r.st.table, col.name, err)
		}
	}
	k := len(p.cols)
	c.Cols[k].AppendBytes([]byte(pos))
	c.Cols[k+1].AppendInt(at.UTC().UnixMicro(), nil)
	if before != nil {
		c.Cols[k+2].AppendBytes(beforeJSON(p.cols, before))
	} else {
		c.Cols[k+2].AppendNull(schema.JSON)
	}
	c.Ops = append(c.Ops, op)
	c.Len++
	return nil
}
