package httpdest_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/ferry-dev/ferry/internal/dest/dbtest"
	"github.com/ferry-dev/ferry/internal/dest/httpdest"
	mysqldest "github.com/ferry-dev/ferry/internal/dest/mysql"
	"github.com/ferry-dev/ferry/internal/dest/sqlite"
	"github.com/ferry-dev/ferry/internal/engine"
	"github.com/ferry-dev/ferry/internal/spec"
	"github.com/ferry-dev/ferry/internal/testserver"
)

func TestMain(m *testing.M) { os.Exit(testserver.Main(m)) }

// crm is a fake API of items that both sides edit.
type crm struct {
	mu      sync.Mutex
	items   map[string]map[string]any
	patches []string // id: body, of every write Ferry made
	srv     *httptest.Server
}

func newCRM(t *testing.T) *crm {
	c := &crm{items: map[string]map[string]any{}}
	for i := 1; i <= 5; i++ {
		id := fmt.Sprint(i)
		c.items[id] = map[string]any{"id": i, "name": "item " + id, "status": "new", "updated_at": "2024-01-01T00:00:00Z"}
	}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		defer c.mu.Unlock()
		id := strings.TrimPrefix(r.URL.Path, "/items/")
		switch {
		case r.Method == "GET" && r.URL.Path == "/items":
			var list []map[string]any
			for i := 1; i <= len(c.items)+10; i++ {
				if it, ok := c.items[fmt.Sprint(i)]; ok {
					list = append(list, it)
				}
			}
			json.NewEncoder(w).Encode(list)
		case r.Method == "GET":
			it, ok := c.items[id]
			if !ok {
				http.NotFound(w, r)
				return
			}
			json.NewEncoder(w).Encode(it)
		case r.Method == "PATCH":
			var body map[string]any
			json.NewDecoder(r.Body).Decode(&body)
			b, _ := json.Marshal(body)
			c.patches = append(c.patches, id+": "+string(b))
			for k, v := range body {
				c.items[id][k] = v
			}
			json.NewEncoder(w).Encode(c.items[id])
		default:
			http.Error(w, "unexpected", http.StatusMethodNotAllowed)
		}
	}))
	t.Cleanup(c.srv.Close)
	return c
}

// edit changes an item at the API (a person using the CRM).
func (c *crm) edit(id string, f map[string]any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, v := range f {
		c.items[id][k] = v
	}
}

func (c *crm) get(id, field string) any {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.items[id][field]
}

func (c *crm) writes() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.patches...)
}

type twoWayEnv struct {
	crm      *crm
	url      string
	kind     string // postgres or mariadb
	conn     *sql.DB
	pullDir  string
	pushDir  string
	push     *pipe
	dlq      string
	pipeline string
}

type pipe struct {
	cancel context.CancelFunc
	done   chan error
}

func runPipeline(t *testing.T, dir string, ctx context.Context) error {
	p, err := spec.LoadPipeline(filepath.Join(dir, "pipeline.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := p.Resolve(engine.Env)
	if err != nil {
		t.Fatal(err)
	}
	run, err := engine.New(context.Background(), engine.Options{Pipeline: p, Resolved: r})
	if err != nil {
		t.Fatal(err)
	}
	defer run.Close()
	_, err = run.Execute(ctx)
	return err
}

// newTwoWay sets up the two pipelines of a two-way sync on PostgreSQL:
// pull (API → table) and push (the table's changes → API, with policy).
func newTwoWay(t *testing.T, policy string) *twoWayEnv { return newTwoWayOn(t, "postgres", policy) }

// newTwoWayOn does it on PostgreSQL or MariaDB.
func newTwoWayOn(t *testing.T, kind, policy string) *twoWayEnv {
	ctx := context.Background()
	name := dbtest.Name()
	e := &twoWayEnv{crm: newCRM(t), kind: kind, pipeline: "crm_push"}
	var pullDest, cdcType, cdcTable string
	if kind == "postgres" {
		base := testserver.Postgres(t)
		admin, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
			t.Fatal(err)
		}
		admin.Close(ctx)
		e.url = strings.Replace(base, "/postgres?", "/"+name+"?", 1)
		t.Cleanup(func() {
			a, err := pgx.Connect(ctx, base)
			if err != nil {
				return
			}
			defer a.Close(ctx)
			a.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1 AND NOT active", name)
			a.Exec(ctx, "DROP DATABASE "+name+" WITH (FORCE)")
		})
		pullDest, cdcType, cdcTable = `{type: postgres, url: "${TABLE_DB_URL}", schema: public}`, "postgres_cdc", "public.items"
		cc, _ := pgx.ParseConfig(e.url)
		e.conn = stdlib.OpenDB(*cc)
	} else {
		base := testserver.MariaDB(t)
		admin, err := openMySQL(base)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { admin.Exec("DROP DATABASE " + name); admin.Close() })
		e.url = strings.Replace(base, "/test", "/"+name, 1)
		pullDest, cdcType, cdcTable = `{type: mysql, url: "${TABLE_DB_URL}"}`, "mysql_cdc", "items"
		if e.conn, err = openMySQL(e.url); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { e.conn.Close() })
	t.Setenv("TABLE_DB_URL", e.url)
	e.pullDir, e.pushDir = t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(e.pullDir, "connector.yaml"), []byte("name: crm_pull\nbase_url: "+e.crm.srv.URL+"\nstreams:\n  items: {path: /items, primary_key: id, cursor: updated_at}\n"), 0o644)
	os.WriteFile(filepath.Join(e.pullDir, "pipeline.yaml"), []byte("connector: connector.yaml\ndestination: "+pullDest+"\nstreams:\n  items: {mode: incremental_dedup}\n"), 0o644)
	e.dlq = filepath.Join(e.pushDir, "crm.db")
	os.WriteFile(filepath.Join(e.pushDir, "connector.yaml"), []byte("name: crm_push\ntype: "+cdcType+"\nconfig: {url: {secret: true}}\nurl: \"{{ config.url }}\"\nmax_wait: 2ms\nstreams:\n  items: {table: "+cdcTable+", primary_key: id}\n"), 0o644)
	os.WriteFile(filepath.Join(e.pushDir, "pipeline.yaml"), []byte(`connector: connector.yaml
config: {url: "${TABLE_DB_URL}"}
destination:
  type: http
  url: `+e.crm.srv.URL+`
  concurrency: 1
  update: {method: PATCH, path: "/items/{{ key.id }}"}
  dead_letter: "sqlite:crm.db"
  two_way:
    table_url: "${TABLE_DB_URL}"
    table: `+cdcTable+`
    get: {path: "/items/{{ key.id }}"}
    `+policy+`
state: {type: sqlite, path: state.db}
sync: {checkpoint_interval: 20ms}
`), 0o644)
	if err := runPipeline(t, e.pullDir, ctx); err != nil {
		t.Fatal(err)
	}
	if kind == "postgres" {
		e.exec(t, "ALTER TABLE items REPLICA IDENTITY FULL")
	}
	pctx, cancel := context.WithCancel(ctx)
	e.push = &pipe{cancel: cancel, done: make(chan error, 1)}
	go func() { e.push.done <- runPipeline(t, e.pushDir, pctx) }()
	t.Cleanup(func() {
		cancel()
		<-e.push.done
	})
	// The snapshot gives the push side what both sides agree on.
	e.waitFor(t, "the snapshot's rows as agreed versions", func() bool { return e.bases(t) == 5 })
	return e
}

func openMySQL(u string) (*sql.DB, error) {
	mc, err := mysqldest.ParseURL(u)
	if err != nil {
		return nil, err
	}
	mc.MultiStatements = false
	conn, err := gomysql.NewConnector(mc)
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(conn), nil
}

// q spells a statement with $n placeholders for the database.
func (e *twoWayEnv) q(stmt string) string {
	if e.kind == "postgres" {
		return stmt
	}
	for i := 9; i >= 1; i-- {
		stmt = strings.ReplaceAll(stmt, fmt.Sprintf("$%d", i), "?")
	}
	return stmt
}

func (e *twoWayEnv) exec(t *testing.T, q string, args ...any) {
	t.Helper()
	if _, err := e.conn.Exec(e.q(q), args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func (e *twoWayEnv) local(t *testing.T, id int, col string) string {
	var v sql.NullString
	e.conn.QueryRow(e.q("SELECT "+col+" FROM items WHERE id = $1"), id).Scan(&v)
	return v.String
}

func (e *twoWayEnv) bases(t *testing.T) int {
	db, err := openSQLite(e.dlq)
	if err != nil {
		return 0
	}
	defer db.Close()
	var n int
	db.QueryRow("SELECT count(*) FROM _ferry_sync_base").Scan(&n)
	return n
}

func (e *twoWayEnv) conflicts(t *testing.T) []httpdest.Conflict {
	l, err := httpdest.OpenLetters(context.Background(), "sqlite:"+e.dlq, "", true)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cs, err := l.Conflicts(context.Background(), e.pipeline)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// waitFor polls what another process (the push pipeline, the API) makes
// true, with a deadline.
func (e *twoWayEnv) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s (writes to the API: %v)", what, e.crm.writes())
		}
		time.Sleep(10 * time.Millisecond) // polling state another pipeline writes
	}
}

// barrier makes a local change to item 5 and waits until it reached the
// API: with one lane, every change before it was processed.
func (e *twoWayEnv) barrier(t *testing.T, n int) {
	t.Helper()
	v := fmt.Sprintf("barrier %d", n)
	e.exec(t, "UPDATE items SET name = $1 WHERE id = 5", v)
	e.waitFor(t, "the barrier change at the API", func() bool { return e.crm.get("5", "name") == v })
}

// TestTwoWayMerge: local changes are written back; the pull pipeline's
// writes (and Ferry's own write-backs) are never echoed; concurrent edits
// of different fields merge, written to both sides; edits of the same
// field are parked for a person; every conflict is recorded with both
// versions; the number of writes to the API is exactly the changes made.
func TestTwoWayMerge(t *testing.T) {
	e := newTwoWay(t, "policy: merge")
	// A local edit reaches the API, once.
	e.exec(t, "UPDATE items SET name = 'local one' WHERE id = 1")
	e.waitFor(t, "the local edit at the API", func() bool { return e.crm.get("1", "name") == "local one" })
	// The pull writes what the API has back into the table: no echo.
	e.crm.edit("2", map[string]any{"status": "remote", "updated_at": "2024-02-01T00:00:00Z"})
	if err := runPipeline(t, e.pullDir, context.Background()); err != nil {
		t.Fatal(err)
	}
	if e.local(t, 2, "status") != "remote" {
		t.Fatal("the pull did not bring the API's edit")
	}
	e.barrier(t, 1)
	if got := e.crm.writes(); len(got) != 2 {
		t.Fatalf("writes to the API: %v (want the local edit and the barrier: no echo of the pull)", got)
	}
	// Concurrent edits of different fields of item 3: merged.
	e.crm.edit("3", map[string]any{"status": "remote three", "updated_at": "2024-03-01T00:00:00Z"})
	e.exec(t, "UPDATE items SET name = 'local three' WHERE id = 3")
	e.waitFor(t, "the merged row at the API", func() bool { return e.crm.get("3", "name") == "local three" })
	if e.crm.get("3", "status") != "remote three" {
		t.Fatalf("the API lost its own edit: %v", e.crm.get("3", "status"))
	}
	e.waitFor(t, "the merged row in the table", func() bool { return e.local(t, 3, "status") == "remote three" })
	if e.local(t, 3, "name") != "local three" {
		t.Fatal("the table lost its edit")
	}
	// The write-back into the table is Ferry's own: not echoed.
	e.barrier(t, 2)
	if got := e.crm.writes(); len(got) != 4 {
		t.Fatalf("writes to the API: %v (want 4: no echo of the write-back)", got)
	}
	// Both sides edit the same field: parked, nothing written.
	e.crm.edit("4", map[string]any{"name": "remote four"})
	e.exec(t, "UPDATE items SET name = 'local four' WHERE id = 4")
	e.waitFor(t, "the parked conflict", func() bool { return len(e.conflicts(t)) == 2 })
	e.barrier(t, 3)
	if e.crm.get("4", "name") != "remote four" || e.local(t, 4, "name") != "local four" {
		t.Fatal("a parked conflict changed a side")
	}
	cs := e.conflicts(t)
	if cs[0].Key != `{"id":3}` || !strings.Contains(cs[0].Local, "local three") || !strings.Contains(cs[0].Remote, "remote three") || !strings.Contains(cs[0].Base, "item 3") || cs[0].Resolution != "merged field by field" {
		t.Fatalf("first conflict: %+v", cs[0])
	}
	if cs[1].Key != `{"id":4}` || cs[1].Result != "" || !strings.HasPrefix(cs[1].Resolution, "parked") || cs[1].Fields != `["name"]` {
		t.Fatalf("second conflict: %+v", cs[1])
	}
	if got := e.crm.writes(); len(got) != 5 {
		t.Fatalf("writes to the API: %v (want 5)", got)
	}
}

// TestTwoWayMariaDB: the same on MariaDB, through the binlog: a local edit
// is written back once, the pull is not echoed, concurrent edits of
// different fields merge on both sides.
func TestTwoWayMariaDB(t *testing.T) {
	e := newTwoWayOn(t, "mariadb", "policy: merge")
	e.exec(t, "UPDATE items SET name = 'local one' WHERE id = 1")
	e.waitFor(t, "the local edit at the API", func() bool { return e.crm.get("1", "name") == "local one" })
	e.crm.edit("2", map[string]any{"status": "remote", "updated_at": "2024-02-01T00:00:00Z"})
	if err := runPipeline(t, e.pullDir, context.Background()); err != nil {
		t.Fatal(err)
	}
	if e.local(t, 2, "status") != "remote" {
		t.Fatal("the pull did not bring the API's edit")
	}
	e.barrier(t, 1)
	if got := e.crm.writes(); len(got) != 2 {
		t.Fatalf("writes to the API: %v (want the local edit and the barrier: no echo of the pull)", got)
	}
	e.crm.edit("3", map[string]any{"status": "remote three", "updated_at": "2024-03-01T00:00:00Z"})
	e.exec(t, "UPDATE items SET name = 'local three' WHERE id = 3")
	e.waitFor(t, "the merged row at the API", func() bool { return e.crm.get("3", "name") == "local three" })
	e.waitFor(t, "the merged row in the table", func() bool { return e.local(t, 3, "status") == "remote three" })
	e.barrier(t, 2)
	if got := e.crm.writes(); len(got) != 4 || e.crm.get("3", "status") != "remote three" {
		t.Fatalf("writes to the API: %v (want 4: no echo of the write-back)", got)
	}
	if cs := e.conflicts(t); len(cs) != 1 || cs[0].Resolution != "merged field by field" {
		t.Fatalf("conflicts: %+v", cs)
	}
}

// TestTwoWayPolicies: last writer wins by a timestamp, and source of
// truth per field.
func TestTwoWayPolicies(t *testing.T) {
	t.Run("last_writer_wins", func(t *testing.T) {
		e := newTwoWay(t, "policy: last_writer_wins\n    timestamp: updated_at")
		// The API's edit is older than the local one: local wins.
		e.crm.edit("1", map[string]any{"name": "remote", "updated_at": "2024-05-01T00:00:00Z"})
		e.exec(t, "UPDATE items SET name = 'local', updated_at = '2024-06-01T00:00:00Z' WHERE id = 1")
		e.waitFor(t, "the later local edit at the API", func() bool { return e.crm.get("1", "name") == "local" })
		// The API's edit is newer: it wins, and is written into the table.
		e.crm.edit("2", map[string]any{"name": "remote", "updated_at": "2024-09-01T00:00:00Z"})
		e.exec(t, "UPDATE items SET name = 'local', updated_at = '2024-06-01T00:00:00Z' WHERE id = 2")
		e.waitFor(t, "the later remote edit in the table", func() bool { return e.local(t, 2, "name") == "remote" })
		e.barrier(t, 1)
		if got := len(e.conflicts(t)); got != 2 {
			t.Fatalf("%d conflicts recorded, want 2", got)
		}
		if e.crm.get("2", "name") != "remote" {
			t.Fatal("the older local edit overwrote the API")
		}
	})
	t.Run("source_of_truth", func(t *testing.T) {
		e := newTwoWay(t, "policy: source_of_truth\n    fields: {name: local, \"*\": remote}")
		e.crm.edit("1", map[string]any{"name": "remote", "status": "remote", "updated_at": "2024-05-01T00:00:00Z"})
		e.exec(t, "UPDATE items SET name = 'local', status = 'local' WHERE id = 1")
		e.waitFor(t, "the name from the table at the API", func() bool { return e.crm.get("1", "name") == "local" })
		e.waitFor(t, "the status from the API in the table", func() bool { return e.local(t, 1, "status") == "remote" })
		if e.crm.get("1", "status") != "remote" {
			t.Fatal("the API's status was overwritten")
		}
	})
}

func openSQLite(path string) (*sql.DB, error) { return sqlite.OpenReadOnly(path) }
