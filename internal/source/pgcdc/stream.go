package pgcdc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/schema"
)

// sendStatus tells the server what is delivered (the confirmed LSN).
func (r *reader) sendStatus(ctx context.Context, reply bool) error {
	lsn := r.acked.Load()
	if err := pglogrepl.SendStandbyStatusUpdate(ctx, r.repl, pglogrepl.StandbyStatusUpdate{WALWritePosition: pglogrepl.LSN(lsn), ReplyRequested: reply}); err != nil {
		return fmt.Errorf("send the confirmed position to the server: %w", err)
	}
	r.sentAck, r.sentAt = lsn, time.Now()
	return nil
}

// page is the page being filled.
type page struct {
	c       *record.Chunk
	cols    []column // the layout the chunk was built for
	firstAt time.Time
}

// stream reads changes from the slot until ctx ends.
func (r *reader) stream(ctx context.Context) error {
	st := r.st
	start, err := pglogrepl.ParseLSN(r.pos.LSN)
	if err != nil {
		return fmt.Errorf("saved position %q: %w", r.pos.LSN, err)
	}
	r.acked.Store(uint64(start))
	err = pglogrepl.StartReplication(ctx, r.repl, st.slot, start, pglogrepl.StartReplicationOptions{
		Mode: pglogrepl.LogicalReplication, PluginArgs: []string{"proto_version '1'", "publication_names '" + st.pub + "'"}})
	if err != nil {
		return fmt.Errorf("start replication from slot %s at %s: %w", st.slot, start, err)
	}
	r.streaming = true
	r.s.log.Info("streaming changes", "stream", st.name, "slot", st.slot, "from", start.String())

	var (
		rels      = map[uint32][]column{}
		relID     uint32
		inTx      bool
		skipTx    bool
		txFinal   pglogrepl.LSN
		txCommit  time.Time
		txIndex   int
		skipN     int
		lastEnd   = start // end of the last complete transaction seen
		cur       *page
		lastLag   time.Time
		serverEnd pglogrepl.LSN
	)
	// Resume inside a transaction delivered in part.
	resumeTx, resumeN := r.pos.Tx, r.pos.N

	flush := func(mid bool) error {
		if cur == nil || cur.c.Len == 0 {
			return nil
		}
		pos := position{Phase: "stream", LSN: lastEnd.String(), Slot: st.slot}
		if serverEnd > lastEnd {
			pos.ServerWALEnd, pos.LagBytes = serverEnd.String(), int64(serverEnd-lastEnd)
		}
		if mid {
			pos.Tx, pos.N = txFinal.String(), txIndex
		}
		c := cur.c
		cur = nil
		return r.emit(ctx, c, pos, uint64(lastEnd))
	}
	rowsFor := func(cols []column) *page {
		if cur != nil && sameColumns(cur.cols, cols) {
			return cur
		}
		return nil
	}

	for {
		// Wake up for the next status message, or to send a page that has
		// waited long enough.
		wait := time.Until(r.sentAt.Add(statusEvery))
		if cur != nil && cur.c.Len > 0 {
			wait = min(wait, time.Until(cur.firstAt.Add(r.s.maxWait)))
		}
		if r.acked.Load() > r.sentAck {
			wait = 0
		}
		if wait <= 0 {
			if cur != nil && cur.c.Len > 0 && time.Since(cur.firstAt) >= r.s.maxWait {
				if err := flush(inTx); err != nil {
					return err
				}
			}
			if r.acked.Load() > r.sentAck || time.Since(r.sentAt) >= statusEvery {
				if err := r.sendStatus(ctx, false); err != nil {
					return err
				}
			}
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, wait)
		msg, err := r.repl.ReceiveMessage(rctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if pgconn.Timeout(err) {
				continue
			}
			return fmt.Errorf("replication from slot %s: %w", st.slot, err)
		}
		var data []byte
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			data = m.Data
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("replication from slot %s: %w", st.slot, pgconn.ErrorResponseToPgError(m))
		default:
			continue
		}
		if len(data) == 0 {
			continue
		}
		switch data[0] {
		case pglogrepl.PrimaryKeepaliveMessageByteID:
			ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
			if err != nil {
				return err
			}
			serverEnd = ka.ServerWALEnd
			// Nothing of ours is pending: the WAL up to the server's end
			// holds no undelivered change of this table, and the slot may
			// release it (slot lag stays bounded on a quiet table).
			if !inTx && cur == nil && r.acked.Load() >= uint64(lastEnd) && ka.ServerWALEnd > lastEnd {
				lastEnd = ka.ServerWALEnd
				r.acked.Store(uint64(ka.ServerWALEnd))
			}
			if ka.ReplyRequested {
				if err := r.sendStatus(ctx, false); err != nil {
					return err
				}
			}
			if time.Since(lastLag) > 30*time.Second {
				lastLag = time.Now()
				r.s.log.Info("replication slot", "stream", st.name, "slot", st.slot, "confirmed", pglogrepl.LSN(r.acked.Load()).String(), "server_wal_end", serverEnd.String(), "lag_bytes", int64(serverEnd)-int64(r.acked.Load()))
			}
			continue
		case pglogrepl.XLogDataByteID:
		default:
			continue
		}
		xld, err := pglogrepl.ParseXLogData(data[1:])
		if err != nil {
			return err
		}
		if xld.ServerWALEnd > serverEnd {
			serverEnd = xld.ServerWALEnd
		}
		lm, err := pglogrepl.Parse(xld.WALData)
		if err != nil {
			return fmt.Errorf("decode a pgoutput message: %w", err)
		}
		switch m := lm.(type) {
		case *pglogrepl.RelationMessage:
			cols := make([]column, len(m.Columns))
			for i, c := range m.Columns {
				cols[i] = column{name: c.Name, oid: c.DataType}
				for _, old := range r.cols {
					if old.name == c.Name && old.oid == c.DataType {
						cols[i].typ = old.typ
					}
				}
			}
			rels[m.RelationID] = cols
			if m.Namespace == st.schema && m.RelationName == st.table {
				relID = m.RelationID
				if !sameColumns(r.cols, cols) {
					r.s.log.Info("the table's columns changed", "stream", st.name, "columns", columnNames(cols))
				}
				r.cols = cols
			}
		case *pglogrepl.BeginMessage:
			inTx, txFinal, txCommit, txIndex = true, m.FinalLSN, m.CommitTime, 0
			skipTx = m.FinalLSN < start
			skipN = 0
			if resumeTx != "" && resumeTx == m.FinalLSN.String() {
				skipN, skipTx = resumeN, false
				resumeTx = ""
			}
		case *pglogrepl.CommitMessage:
			inTx = false
			if m.TransactionEndLSN > lastEnd {
				lastEnd = m.TransactionEndLSN
			}
			if cur != nil && (cur.c.Len >= r.s.batch || time.Since(cur.firstAt) >= r.s.maxWait) {
				if err := flush(false); err != nil {
					return err
				}
			}
		case *pglogrepl.InsertMessage, *pglogrepl.UpdateMessage, *pglogrepl.DeleteMessage:
			txIndex++
			if skipTx || txIndex <= skipN {
				continue
			}
			var rel uint32
			switch m := m.(type) {
			case *pglogrepl.InsertMessage:
				rel = m.RelationID
			case *pglogrepl.UpdateMessage:
				rel = m.RelationID
			case *pglogrepl.DeleteMessage:
				rel = m.RelationID
			}
			if rel != relID {
				continue
			}
			cols := rels[rel]
			p := rowsFor(cols)
			if p == nil {
				if err := flush(true); err != nil { // the layout changed mid-page
					return err
				}
				cur = &page{c: record.NewChunk(layout(st.name, cols), 64), cols: cols, firstAt: time.Now()}
				p = cur
			}
			posText := fmt.Sprintf("%016X/%08d", uint64(txFinal), txIndex)
			if err := r.addChange(ctx, p, lm, posText, txCommit); err != nil {
				return err
			}
			if p.c.Len >= r.s.batch {
				if err := flush(true); err != nil {
					return err
				}
			}
		case *pglogrepl.TruncateMessage:
			txIndex++
			if skipTx || txIndex <= skipN {
				continue
			}
			for _, id := range m.RelationIDs {
				if id != relID {
					continue
				}
				if r.s.onTruncate == "skip" {
					r.s.log.Warn("the table was truncated; the destination keeps its rows (on_truncate: skip)", "stream", st.name, "at", txFinal.String())
					continue
				}
				// Deliver the changes before the truncate, and save a
				// position that does not count it: a rerun stops here again
				// instead of resuming past it.
				txIndex--
				if err := flush(true); err != nil {
					return err
				}
				return fmt.Errorf("table %s.%s was truncated (transaction committed at %s): Ferry cannot delete every row of the destination for you; empty it if that is what you want, then set on_truncate: skip to go past it (or ferry state reset --stream %s for a new snapshot)", st.schema, st.table, txFinal, st.name)
			}
		}
	}
}

func sameColumns(a, b []column) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].name != b[i].name || a[i].oid != b[i].oid {
			return false
		}
	}
	return true
}

func columnNames(cols []column) string {
	n := make([]string, len(cols))
	for i, c := range cols {
		n[i] = c.name
	}
	return strings.Join(n, ", ")
}

// addChange appends a change's row(s) to the page: an insert, an update
// (a delete of the old key first when the key changed), or a delete.
func (r *reader) addChange(ctx context.Context, p *page, m pglogrepl.Message, pos string, at time.Time) error {
	switch m := m.(type) {
	case *pglogrepl.InsertMessage:
		return r.appendRow(ctx, p, record.Insert, m.Tuple, nil, pos, at)
	case *pglogrepl.UpdateMessage:
		var before *pglogrepl.TupleData
		if m.OldTuple != nil {
			if r.keyChanged(p.cols, m.OldTuple, m.NewTuple) {
				if err := r.appendRow(ctx, p, record.Delete, m.OldTuple, nil, pos, at); err != nil {
					return err
				}
			}
			before = m.OldTuple
			if m.OldTupleType != pglogrepl.UpdateMessageTupleTypeOld {
				before = nil // only the key: no before image
			}
		}
		return r.appendRow(ctx, p, record.Update, m.NewTuple, before, pos, at)
	case *pglogrepl.DeleteMessage:
		var before *pglogrepl.TupleData
		if m.OldTupleType == pglogrepl.DeleteMessageTupleTypeOld {
			before = m.OldTuple
		}
		return r.appendRow(ctx, p, record.Delete, m.OldTuple, before, pos, at)
	}
	return nil
}

func (r *reader) keyChanged(cols []column, old, new *pglogrepl.TupleData) bool {
	for i, c := range cols {
		if i >= len(old.Columns) || i >= len(new.Columns) {
			return false
		}
		for _, k := range r.st.pk {
			if c.name == k && old.Columns[i].DataType != pglogrepl.TupleDataTypeToast && string(old.Columns[i].Data) != string(new.Columns[i].Data) {
				return true
			}
		}
	}
	return false
}

// appendRow appends one row: the tuple's values, the position, the commit
// time and the before image.
func (r *reader) appendRow(ctx context.Context, p *page, op record.Op, tup, before *pglogrepl.TupleData, pos string, at time.Time) error {
	c := p.c
	tb := c.Table
	var toast []int
	for j, col := range p.cols {
		var v *pglogrepl.TupleDataColumn
		if tup != nil && j < len(tup.Columns) {
			v = tup.Columns[j]
		}
		switch {
		case v == nil || v.DataType == pglogrepl.TupleDataTypeNull:
			c.Cols[j].AppendNull(tb.Columns[j].Type)
		case v.DataType == pglogrepl.TupleDataTypeToast:
			// An unchanged TOASTed value is not sent: take it from the before
			// image, or read it from the table below.
			if before != nil && j < len(before.Columns) && before.Columns[j].DataType == pglogrepl.TupleDataTypeText {
				if err := appendText(c, &c.Cols[j], col.oid, before.Columns[j].Data); err != nil {
					return fmt.Errorf("column %s: %w", col.name, err)
				}
			} else {
				c.Cols[j].AppendNull(tb.Columns[j].Type) // filled below
				toast = append(toast, j)
			}
		default:
			if err := appendText(c, &c.Cols[j], col.oid, v.Data); err != nil {
				return fmt.Errorf("column %s: %w", col.name, err)
			}
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
	if len(toast) > 0 && op != record.Delete {
		return r.fillToast(ctx, p, c.Len-1, toast, tup)
	}
	return nil
}

// fillToast reads unchanged TOASTed values of row i from the table (a
// value at least as new as the change: later changes follow anyway).
func (r *reader) fillToast(ctx context.Context, p *page, i int, cols []int, tup *pglogrepl.TupleData) error {
	var sel, where []string
	var args []any
	for _, j := range cols {
		sel = append(sel, quoteIdent(p.cols[j].name)+"::text")
	}
	for _, k := range r.st.pk {
		for j, col := range p.cols {
			if col.name == k {
				args = append(args, string(tup.Columns[j].Data))
				where = append(where, fmt.Sprintf("%s::text = $%d", quoteIdent(k), len(args)))
			}
		}
	}
	row := r.conn.QueryRow(ctx, "SELECT "+strings.Join(sel, ", ")+" FROM ONLY "+r.st.qualified()+" WHERE "+strings.Join(where, " AND "), args...)
	vals := make([]*string, len(cols))
	ptrs := make([]any, len(cols))
	for n := range vals {
		ptrs[n] = &vals[n]
	}
	if err := row.Scan(ptrs...); err != nil {
		if errors.Is(err, context.Canceled) {
			return err
		}
		// The row is gone since: a later delete follows in the stream.
		return nil
	}
	c := p.c
	for n, j := range cols {
		if vals[n] == nil {
			continue
		}
		v := &c.Cols[j]
		v.Truncate(i)
		if err := appendText(c, v, p.cols[j].oid, []byte(*vals[n])); err != nil {
			return err
		}
	}
	return nil
}

// beforeJSON renders a before image as a JSON object.
func beforeJSON(cols []column, t *pglogrepl.TupleData) []byte {
	m := make(map[string]json.RawMessage, len(cols))
	for j, col := range cols {
		if j >= len(t.Columns) {
			break
		}
		v := t.Columns[j]
		switch v.DataType {
		case pglogrepl.TupleDataTypeText:
			m[col.name] = jsonValue(col.oid, v.Data)
		case pglogrepl.TupleDataTypeNull:
			m[col.name] = json.RawMessage("null")
		}
	}
	b, _ := json.Marshal(m)
	return b
}
