package httpdest

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ferry-dev/ferry/internal/change"
	mysqldest "github.com/ferry-dev/ferry/internal/dest/mysql"
	"github.com/ferry-dev/ferry/internal/httpx"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/schema"
	"github.com/ferry-dev/ferry/internal/template"
)

// ownMarker is the column of the synced table that tells Ferry's writes
// from others': every row Ferry writes (the pull pipeline's rows, and the
// rows two-way sync writes back) gets a new extraction time; a local
// change leaves it as it was.
const ownMarker = schema.ColExtractedAt

// twoWay is the write-back half of a two-way sync.
type twoWay struct {
	cfg           *TwoWay
	getMethod     string
	getPath       *template.Template
	pool          *pgxpool.Pool // PostgreSQL
	my            *sql.DB       // MySQL, MariaDB
	schema, table string
	types         map[string]string // column → SQL type, for casts
}

func (t *twoWay) close() {
	if t.pool != nil {
		t.pool.Close()
	}
	if t.my != nil {
		t.my.Close()
	}
}

func openTwoWay(ctx context.Context, cfg *TwoWay) (*twoWay, error) {
	t := &twoWay{cfg: cfg, getMethod: "GET", schema: "public", table: cfg.Table, types: map[string]string{}}
	if sch, tb, ok := strings.Cut(cfg.Table, "."); ok {
		t.schema, t.table = sch, tb
	}
	if cfg.Get.Method != "" {
		t.getMethod = cfg.Get.Method
	}
	var err error
	if t.getPath, err = template.ParseEnv(cfg.Get.Path, env); err != nil {
		return nil, fmt.Errorf("two_way.get.path: %w", err)
	}
	if strings.HasPrefix(cfg.TableURL, "mysql://") || strings.HasPrefix(cfg.TableURL, "mariadb://") {
		return t, t.openMySQL(ctx)
	}
	pc, err := pgxpool.ParseConfig(cfg.TableURL)
	if err != nil {
		return nil, errors.New("two_way.table_url is not a valid postgres:// url")
	}
	if t.pool, err = pgxpool.NewWithConfig(ctx, pc); err != nil {
		return nil, fmt.Errorf("two_way: connect to the table's database: %w", err)
	}
	var ident string
	err = t.pool.QueryRow(ctx, "SELECT c.relreplident::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2", t.schema, t.table).Scan(&ident)
	if err != nil {
		t.pool.Close()
		return nil, fmt.Errorf("two_way: table %s: %w", cfg.Table, err)
	}
	if ident != "f" {
		t.pool.Close()
		return nil, fmt.Errorf("two_way: table %s needs REPLICA IDENTITY FULL (ALTER TABLE %s REPLICA IDENTITY FULL): without before images Ferry cannot tell its own writes from others'", cfg.Table, cfg.Table)
	}
	rows, err := t.pool.Query(ctx, `SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped`, t.schema, t.table)
	if err != nil {
		t.pool.Close()
		return nil, err
	}
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			rows.Close()
			t.pool.Close()
			return nil, err
		}
		t.types[name] = typ
	}
	rows.Close()
	if _, ok := t.types[ownMarker]; !ok {
		t.pool.Close()
		return nil, fmt.Errorf("two_way: table %s has no %s column: it must be the table a Ferry pull pipeline writes", cfg.Table, ownMarker)
	}
	return t, nil
}

// twInfo is one captured change of the synced table.
type twInfo struct {
	ch change.Change
}

// fields is a row's API fields as canonical JSON.
type fields map[string]json.RawMessage

// canonical renders a JSON value so that equal values compare equal:
// numbers by value, timestamps in UTC, objects re-encoded.
func canonical(v json.RawMessage) string {
	if len(v) == 0 {
		return "null"
	}
	var x any
	d := json.NewDecoder(strings.NewReader(string(v)))
	d.UseNumber()
	if d.Decode(&x) != nil {
		return string(v)
	}
	switch y := x.(type) {
	case json.Number:
		if f, err := y.Float64(); err == nil {
			return strconv.FormatFloat(f, 'g', -1, 64)
		}
	case string:
		if t, err := time.Parse(time.RFC3339Nano, y); err == nil {
			return `"` + t.UTC().Format(time.RFC3339Nano) + `"`
		}
	}
	b, _ := json.Marshal(x)
	return string(b)
}

// same reports whether a and b agree on every field of want.
func same(a, b fields, want fields) bool {
	for f := range want {
		if canonical(a[f]) != canonical(b[f]) {
			return false
		}
	}
	return true
}

func decodeFields(s string) fields {
	if s == "" {
		return nil
	}
	var f fields
	_ = json.Unmarshal([]byte(s), &f)
	return f
}

func encodeFields(f fields) string {
	b, _ := json.Marshal(f)
	return string(b)
}

// isOwn reports whether a change is Ferry's own write (its extraction time
// changed), which must never be echoed back.
func isOwn(ch change.Change) (bool, error) {
	after, ok := ch.SourceValue(ownMarker)
	if !ok {
		return false, fmt.Errorf("the change has no %s column: two_way needs the table a Ferry pull pipeline writes", ownMarker)
	}
	switch ch.Op {
	case record.Delete:
		return false, nil
	case record.Insert, record.Upsert:
		return string(after) != "null", nil
	}
	if ch.Before == nil {
		return false, errors.New("an update without a before image: two_way needs REPLICA IDENTITY FULL on the table")
	}
	var before map[string]json.RawMessage
	if err := json.Unmarshal(ch.Before, &before); err != nil {
		return false, err
	}
	return canonical(before[ownMarker]) != canonical(after), nil
}

// getRemote reads the API's version of a row (nil when it has none).
func (l *lane) getRemote(ch *change.Change) (fields, error) {
	w, d := l.w, l.w.d
	p, err := d.twoWay.getPath.RenderEach(w.env(ch, ""), url.PathEscape)
	if err != nil {
		return nil, fmt.Errorf("two_way.get.path: %w", err)
	}
	resp, err := d.client.Do(w.ctx, &httpx.Request{Method: d.twoWay.getMethod, URL: d.base + p, Label: w.sc.Stream + " get"}, nil)
	if err != nil {
		var se *httpx.StatusError
		if errors.As(err, &se) && (se.Status == 404 || se.Status == 410) {
			return nil, nil
		}
		return nil, err
	}
	var f fields
	if err := json.Unmarshal(resp.Body, &f); err != nil {
		return nil, fmt.Errorf("two_way.get: the response is not a JSON object: %w", err)
	}
	return f, nil
}

// send sends a write-back request with body f.
func (l *lane) sendTwoWay(ch change.Change, op record.Op, f fields) error {
	w, d := l.w, l.w.d
	ch.Op = op
	out, err := w.build(ch, nil)
	if err != nil {
		return err
	}
	body := []byte(nil)
	if op != record.Delete {
		body, _ = json.Marshal(f)
	}
	req := &httpx.Request{Method: out.method, URL: out.url, Header: out.header, Body: body, Label: w.sc.Stream}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if d.idemp != "" {
		req.Header.Set(d.idemp, idFor(w.sc.Stream, string(ch.KeyJSON), op, body))
	}
	if _, err := d.client.Do(w.ctx, req, nil); err != nil {
		var se *httpx.StatusError
		if errors.As(err, &se) && d.ok[se.Status] {
			return nil
		}
		return err
	}
	return nil
}

func idFor(stream, key string, op record.Op, body []byte) string {
	ch := change.Change{Op: op, KeyJSON: []byte(key), RowJSON: body}
	return change.ID(stream, ch)
}

// writeLocal writes a resolved row back into the table, marked as Ferry's
// own so that it is not echoed.
func (t *twoWay) writeLocal(ctx context.Context, key map[string]any, f fields, local fields) error {
	if t.my != nil {
		return t.writeLocalMySQL(ctx, key, f, local)
	}
	var sets []string
	var args []any
	for _, name := range slices.Sorted(maps.Keys(f)) {
		if canonical(f[name]) == canonical(local[name]) {
			continue
		}
		typ, ok := t.types[name]
		if !ok {
			continue
		}
		args = append(args, sqlValue(f[name]))
		sets = append(sets, fmt.Sprintf("%s = $%d::%s", pgx.Identifier{name}.Sanitize(), len(args), typ))
	}
	if len(sets) == 0 {
		return nil
	}
	sets = append(sets, pgx.Identifier{ownMarker}.Sanitize()+" = now()")
	var where []string
	for _, k := range slices.Sorted(maps.Keys(key)) {
		args = append(args, template.Format(key[k]))
		where = append(where, fmt.Sprintf("%s::text = $%d", pgx.Identifier{k}.Sanitize(), len(args)))
	}
	q := fmt.Sprintf("UPDATE %s SET %s WHERE %s", pgx.Identifier{t.schema, t.table}.Sanitize(), strings.Join(sets, ", "), strings.Join(where, " AND "))
	_, err := t.pool.Exec(ctx, q, args...)
	return err
}

// openMySQL connects to a MySQL or MariaDB table: the binlog's row images
// must be full (the before image tells Ferry's writes from others').
func (t *twoWay) openMySQL(ctx context.Context) error {
	mc, err := mysqldest.ParseURL(t.cfg.TableURL)
	if err != nil {
		return fmt.Errorf("two_way.table_url: %w", err)
	}
	mc.MultiStatements = false
	if !strings.Contains(t.cfg.Table, ".") {
		t.schema = mc.DBName
	}
	conn, err := gomysql.NewConnector(mc)
	if err != nil {
		return err
	}
	t.my = sql.OpenDB(conn)
	var image string
	if err := t.my.QueryRowContext(ctx, "SELECT @@binlog_row_image").Scan(&image); err != nil {
		t.my.Close()
		return fmt.Errorf("two_way: the table's server: %w", err)
	}
	if !strings.EqualFold(image, "FULL") {
		t.my.Close()
		return fmt.Errorf("two_way: binlog_row_image is %s: two-way sync needs FULL before images to tell Ferry's own writes from others'", image)
	}
	rows, err := t.my.QueryContext(ctx, "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = ? AND table_name = ?", t.schema, t.table)
	if err != nil {
		t.my.Close()
		return err
	}
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			rows.Close()
			t.my.Close()
			return err
		}
		t.types[name] = strings.ToLower(typ)
	}
	rows.Close()
	if _, ok := t.types[ownMarker]; !ok {
		t.my.Close()
		return fmt.Errorf("two_way: table %s.%s has no %s column: it must be the table a Ferry pull pipeline writes", t.schema, t.table, ownMarker)
	}
	return nil
}

// writeLocalMySQL is writeLocal on MySQL and MariaDB.
func (t *twoWay) writeLocalMySQL(ctx context.Context, key map[string]any, f fields, local fields) error {
	q := func(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }
	var sets []string
	var args []any
	for _, name := range slices.Sorted(maps.Keys(f)) {
		if canonical(f[name]) == canonical(local[name]) {
			continue
		}
		typ, ok := t.types[name]
		if !ok {
			continue
		}
		v := sqlValue(f[name])
		if s, isText := v.(string); isText && (typ == "datetime" || typ == "timestamp") {
			if tm, err := time.Parse(time.RFC3339Nano, s); err == nil {
				v = tm.UTC().Format("2006-01-02 15:04:05.999999")
			}
		}
		args = append(args, v)
		sets = append(sets, q(name)+" = ?")
	}
	if len(sets) == 0 {
		return nil
	}
	sets = append(sets, q(ownMarker)+" = UTC_TIMESTAMP(6)")
	var where []string
	for _, k := range slices.Sorted(maps.Keys(key)) {
		args = append(args, template.Format(key[k]))
		where = append(where, q(k)+" = ?")
	}
	_, err := t.my.ExecContext(ctx, fmt.Sprintf("UPDATE %s.%s SET %s WHERE %s", q(t.schema), q(t.table), strings.Join(sets, ", "), strings.Join(where, " AND ")), args...)
	return err
}

// sqlValue turns a JSON value into a text parameter (nil for null).
func sqlValue(v json.RawMessage) any {
	if len(v) == 0 || string(v) == "null" {
		return nil
	}
	var s string
	if v[0] == '"' && json.Unmarshal(v, &s) == nil {
		return s
	}
	return string(v)
}

// resolve decides a conflict: the row that results, and the fields
// parked (nothing is written when any is).
func (t *twoWay) resolve(base, local, remote fields) (result fields, both []string, parked bool, how string) {
	result = fields{}
	for f := range local {
		l, r, b := canonical(local[f]), canonical(remote[f]), canonical(base[f])
		if l != b && r != b && l != r {
			both = append(both, f)
		}
	}
	slices.Sort(both)
	switch t.cfg.Policy {
	case "park":
		return nil, both, true, "parked"
	case "last_writer_wins":
		lt, _ := time.Parse(time.RFC3339Nano, strings.Trim(string(local[t.cfg.Timestamp]), `"`))
		rt, _ := time.Parse(time.RFC3339Nano, strings.Trim(string(remote[t.cfg.Timestamp]), `"`))
		if lt.After(rt) {
			maps.Copy(result, local)
			return result, both, false, "local wins (later " + t.cfg.Timestamp + ")"
		}
		for f := range local {
			result[f] = remote[f]
		}
		return result, both, false, "remote wins (later or equal " + t.cfg.Timestamp + ")"
	case "source_of_truth":
		for f := range local {
			side := t.cfg.Fields[f]
			if side == "" {
				side = t.cfg.Fields["*"]
			}
			if side == "local" {
				result[f] = local[f]
			} else {
				result[f] = remote[f]
			}
		}
		return result, both, false, "by source of truth per field"
	}
	// merge: each field from the side that changed it.
	onBoth := t.cfg.OnBoth
	if onBoth == "" {
		onBoth = "park"
	}
	for f := range local {
		l, r, b := canonical(local[f]), canonical(remote[f]), canonical(base[f])
		switch {
		case l == b:
			result[f] = remote[f]
		case r == b || l == r:
			result[f] = local[f]
		case onBoth == "local":
			result[f] = local[f]
		case onBoth == "remote":
			result[f] = remote[f]
		default:
			return nil, both, true, "parked: " + strings.Join(both, ", ") + " changed on both sides"
		}
	}
	return result, both, false, "merged field by field"
}

// process handles one captured change of the synced table.
func (l *lane) processTwoWay(info *twInfo) error {
	w, d := l.w, l.w.d
	ctx := w.ctx
	ch := info.ch
	key := string(ch.KeyJSON)
	local := fields(ch.DataJSON())
	own, err := isOwn(ch)
	if err != nil {
		return err
	}
	if own {
		// Ferry's own write (the pull pipeline's, or a write-back): both
		// sides agree on it now. Never sent back.
		w.twoWayEchoes.Add(1)
		return d.letters.setBase(ctx, w.sc.Pipeline, w.sc.Stream, key, encodeFields(local))
	}
	baseText, err := d.letters.base(ctx, w.sc.Pipeline, w.sc.Stream, key)
	if err != nil {
		return err
	}
	base := decodeFields(baseText)
	if ch.Op == record.Delete {
		if base == nil {
			return nil // never synced: nothing to delete at the API
		}
		local = base // a delete's row holds only its key
	}
	remote, err := l.getRemote(&ch)
	if err != nil {
		return err
	}
	keyFields, _ := ch.Fields()
	addConflict := func(both []string, how string, result fields) error {
		bl, _ := json.Marshal(both)
		res := ""
		if result != nil {
			res = encodeFields(result)
		}
		loc := encodeFields(local)
		if ch.Op == record.Delete {
			loc = "null"
		}
		return d.letters.addConflict(ctx, Conflict{Pipeline: w.sc.Pipeline, Stream: w.sc.Stream, Key: key, Policy: d.twoWay.cfg.Policy, Fields: string(bl),
			Base: baseText, Local: loc, Remote: encodeFields(remote), Resolution: how, Result: res, CreatedAt: time.Now().UTC().Format(time.RFC3339Nano)})
	}
	switch {
	case ch.Op == record.Delete && remote == nil:
		return d.letters.setBase(ctx, w.sc.Pipeline, w.sc.Stream, key, "")
	case ch.Op == record.Delete && !same(remote, base, base):
		w.twoWayConflicts.Add(1)
		return addConflict(nil, "parked: deleted locally, changed at the API", nil)
	case ch.Op == record.Delete:
		w.twoWaySent.Add(1)
		if err := l.sendTwoWay(ch, record.Delete, nil); err != nil {
			return err
		}
		return d.letters.setBase(ctx, w.sc.Pipeline, w.sc.Stream, key, "")
	case remote == nil && base == nil:
		w.twoWaySent.Add(1)
		if err := l.sendTwoWay(ch, record.Insert, local); err != nil {
			return err
		}
		return d.letters.setBase(ctx, w.sc.Pipeline, w.sc.Stream, key, encodeFields(local))
	case remote == nil:
		w.twoWayConflicts.Add(1)
		return addConflict(nil, "parked: changed locally, deleted at the API", nil)
	case base == nil || same(remote, base, local):
		// The API did not change the row since the sides last agreed.
		if !same(local, remote, local) {
			w.twoWaySent.Add(1)
			if err := l.sendTwoWay(ch, record.Update, local); err != nil {
				return err
			}
		}
		return d.letters.setBase(ctx, w.sc.Pipeline, w.sc.Stream, key, encodeFields(local))
	case same(local, remote, local):
		return d.letters.setBase(ctx, w.sc.Pipeline, w.sc.Stream, key, encodeFields(local))
	}
	// Both sides changed the row: a conflict, resolved by the policy and
	// recorded with both versions.
	w.twoWayConflicts.Add(1)
	result, both, parked, how := d.twoWay.resolve(base, local, remote)
	if err := addConflict(both, how, result); err != nil {
		return err
	}
	if parked {
		d.log.Warn("two-way sync: a conflict is parked for a person", "stream", w.sc.Stream, "key", key, "table", ConflictsTable)
		return nil
	}
	if !same(result, remote, result) {
		w.twoWaySent.Add(1)
		if err := l.sendTwoWay(ch, record.Update, result); err != nil {
			return err
		}
	}
	if err := d.twoWay.writeLocal(ctx, keyFields, result, local); err != nil {
		return fmt.Errorf("write the resolved row back into %s: %w", d.twoWay.cfg.Table, err)
	}
	return d.letters.setBase(ctx, w.sc.Pipeline, w.sc.Stream, key, encodeFields(result))
}

// Conflicts returns the destination's recorded conflicts (two-way sync).
func (d *Destination) Conflicts(ctx context.Context, pipeline string) ([]Conflict, error) {
	if d.letters == nil {
		return nil, errors.New("the destination was opened without its database")
	}
	return d.letters.Conflicts(ctx, pipeline)
}
