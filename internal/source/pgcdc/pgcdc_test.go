package pgcdc_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-dev/ferry/internal/change/changetest"
	_ "github.com/ferry-dev/ferry/internal/components/all"
	"github.com/ferry-dev/ferry/internal/dest/dbtest"
	"github.com/ferry-dev/ferry/internal/dest/sqlite"
	"github.com/ferry-dev/ferry/internal/engine"
	"github.com/ferry-dev/ferry/internal/spec"
	"github.com/ferry-dev/ferry/internal/testserver"
)

func TestMain(m *testing.M) { os.Exit(testserver.Main(m)) }

// db is a fresh database on the throwaway server.
func db(t *testing.T) (url string, exec func(string, ...any)) {
	t.Helper()
	base := testserver.Postgres(t)
	name := dbtest.Name()
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	admin.Close(ctx)
	url = strings.Replace(base, "/postgres?", "/"+name+"?", 1)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close(ctx)
		a, err := pgx.Connect(ctx, base)
		if err != nil {
			return
		}
		defer a.Close(ctx)
		a.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1 AND NOT active", name)
		a.Exec(ctx, "DROP DATABASE "+name+" WITH (FORCE)")
	})
	return url, func(q string, args ...any) {
		t.Helper()
		if _, err := conn.Exec(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

const connector = `name: shop
type: postgres_cdc
config:
  url: {secret: true}
url: "{{ config.url }}"
max_wait: 5ms
streams:
  items: {table: public.items, primary_key: id}
`

type pipe struct {
	dir    string
	cancel context.CancelFunc
	done   chan error
}

func writePipeline(t *testing.T, url, dest string) string {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "connector.yaml"), []byte(connector), 0o644)
	os.WriteFile(filepath.Join(dir, "pipeline.yaml"), []byte("connector: connector.yaml\nconfig: {url: \"${SRC_URL}\"}\ndestination: "+dest+"\nsync: {checkpoint_interval: 20ms}\n"), 0o644)
	t.Setenv("SRC_URL", url)
	return dir
}

// start runs the pipeline in the background until stop.
func start(t *testing.T, dir string) *pipe {
	t.Helper()
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
	ctx, cancel := context.WithCancel(context.Background())
	pp := &pipe{dir: dir, cancel: cancel, done: make(chan error, 1)}
	go func() {
		_, err := run.Execute(ctx)
		run.Close()
		pp.done <- err
	}()
	return pp
}

func (p *pipe) stop(t *testing.T) {
	t.Helper()
	p.cancel()
	select {
	case err := <-p.done:
		if err != nil && !strings.Contains(err.Error(), "context canceled") {
			t.Fatalf("the run failed: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the run did not stop")
	}
}

// TestToHTTP: a snapshot of the table, then inserts, updates (with before
// images) and deletes arrive at an HTTP endpoint in commit order per key;
// a column added mid-stream shows up in the next changes; a restart goes
// on from the confirmed position without re-sending what was delivered.
func TestToHTTP(t *testing.T) {
	url, exec := db(t)
	exec("CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL, qty int, price numeric(10,2), at timestamptz, doc jsonb)")
	exec("ALTER TABLE items REPLICA IDENTITY FULL")
	exec("INSERT INTO items SELECT i, 'item ' || i, i, i + 0.5, '2024-01-01T00:00:00Z', '{\"a\": 1}' FROM generate_series(1, 40) i")
	sink := changetest.New()
	defer sink.Close()
	dir := writePipeline(t, url, "{type: http, url: "+sink.URL+", batch: {size: 50, path: /changes}}\nstate: {type: sqlite, path: state.db}")
	p := start(t, dir)
	if !sink.WaitFor(30*time.Second, func() bool { return sink.Accepted() >= 40 }) {
		p.stop(t)
		t.Fatalf("snapshot: %d changes arrived, want 40", sink.Accepted())
	}
	exec("INSERT INTO items (id, name, qty) VALUES (41, 'new', 1)")
	exec("UPDATE items SET qty = qty + 100 WHERE id <= 5")
	exec("DELETE FROM items WHERE id = 6")
	exec("BEGIN; UPDATE items SET name = 'renamed' WHERE id = 41; UPDATE items SET qty = 0 WHERE id = 41; COMMIT")
	exec("ALTER TABLE items ADD COLUMN color text")
	exec("UPDATE items SET color = 'red' WHERE id = 7")
	want := 40 + 1 + 5 + 1 + 2 + 1
	if !sink.WaitFor(30*time.Second, func() bool { return sink.Accepted() >= int64(want) }) {
		p.stop(t)
		t.Fatalf("%d changes arrived, want %d", sink.Accepted(), want)
	}
	p.stop(t)
	type item struct {
		Op     string          `json:"op"`
		Key    map[string]any  `json:"key"`
		Data   map[string]any  `json:"data"`
		Before json.RawMessage `json:"before"`
		Pos    string          `json:"position"`
	}
	byKey := map[string][]item{}
	for _, rc := range sink.Changes() {
		var it item
		if err := json.Unmarshal(rc.Body, &it); err != nil {
			t.Fatal(err)
		}
		k := fmt.Sprint(it.Key["id"])
		byKey[k] = append(byKey[k], it)
	}
	if got := byKey["1"]; len(got) != 2 || got[0].Op != "upsert" || got[1].Op != "update" || got[1].Data["qty"] != float64(101) || !strings.Contains(string(got[1].Before), `"qty":1`) {
		t.Fatalf("key 1: %+v", got)
	}
	if got := byKey["1"][0].Data; got["price"] != 1.5 || got["at"] != "2024-01-01T00:00:00Z" || fmt.Sprint(got["doc"]) != "map[a:1]" {
		t.Fatalf("snapshot row types: %v", got)
	}
	if got := byKey["6"]; len(got) != 2 || got[1].Op != "delete" || !strings.Contains(string(got[1].Before), `"name":"item 6"`) {
		t.Fatalf("key 6: %+v", got)
	}
	if got := byKey["41"]; len(got) != 3 || got[0].Op != "insert" || got[1].Data["name"] != "renamed" || got[2].Data["qty"] != float64(0) || got[1].Pos >= got[2].Pos {
		t.Fatalf("key 41: %+v", got)
	}
	if got := byKey["7"]; len(got) != 2 || got[1].Data["color"] != "red" {
		t.Fatalf("key 7 after the new column: %+v", got)
	}
	// Restart: nothing delivered is sent again; a new change is.
	before := sink.Accepted()
	exec("UPDATE items SET qty = -1 WHERE id = 8")
	p = start(t, dir)
	if !sink.WaitFor(30*time.Second, func() bool { return sink.Accepted() >= before+1 }) {
		p.stop(t)
		t.Fatal("the change made while Ferry was down did not arrive")
	}
	exec("UPDATE items SET qty = -2 WHERE id = 8")
	sink.WaitFor(30*time.Second, func() bool { return sink.Accepted() >= before+2 })
	p.stop(t)
	if got := sink.Accepted() - before; got != 2 {
		t.Fatalf("after the restart %d changes arrived, want the 2 new ones", got)
	}
}

// TestToSQLite: a table mirrored into SQLite by change data capture:
// snapshot, then updates and deletes applied by key.
func TestToSQLite(t *testing.T) {
	url, exec := db(t)
	exec("CREATE TABLE items (id bigint PRIMARY KEY, name text, big text)")
	exec("INSERT INTO items SELECT i, 'item ' || i, repeat('x', 10000) FROM generate_series(1, 30) i")
	dir := writePipeline(t, url, "{type: sqlite, path: mirror.db}")
	p := start(t, dir)
	query := func(q string) string {
		db, err := sqlite.OpenReadOnly(filepath.Join(dir, "mirror.db"))
		if err != nil {
			return ""
		}
		defer db.Close()
		var s string
		db.QueryRow(q).Scan(&s)
		return s
	}
	waitFor := func(q, want string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for query(q) != want {
			if time.Now().After(deadline) {
				p.stop(t)
				t.Fatalf("%s = %q, want %q", q, query(q), want)
			}
			time.Sleep(20 * time.Millisecond) // polling a file another process writes
		}
	}
	waitFor("SELECT count(*) FROM items", "30")
	// The big column is TOASTed: an update of another column does not send
	// it, and the mirror keeps it.
	exec("UPDATE items SET name = 'changed' WHERE id = 3")
	exec("DELETE FROM items WHERE id > 20")
	waitFor("SELECT count(*) FROM items", "20")
	waitFor("SELECT name || ':' || length(big) FROM items WHERE id = 3", "changed:10000")
	p.stop(t)
}
