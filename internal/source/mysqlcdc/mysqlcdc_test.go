package mysqlcdc_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/ferry-dev/ferry/internal/change/changetest"
	_ "github.com/ferry-dev/ferry/internal/components/all"
	"github.com/ferry-dev/ferry/internal/dest/dbtest"
	mysqldest "github.com/ferry-dev/ferry/internal/dest/mysql"
	"github.com/ferry-dev/ferry/internal/engine"
	"github.com/ferry-dev/ferry/internal/spec"
	"github.com/ferry-dev/ferry/internal/testserver"
)

func TestMain(m *testing.M) { os.Exit(testserver.Main(m)) }

// db creates a database on the throwaway MariaDB and returns its URL and
// a connection to it.
func db(t *testing.T) (string, *sql.DB) {
	t.Helper()
	base := testserver.MariaDB(t)
	name := dbtest.Name()
	mc, err := mysqldest.ParseURL(base)
	if err != nil {
		t.Fatal(err)
	}
	mc.MultiStatements = false
	conn, _ := gomysql.NewConnector(mc)
	admin := sql.OpenDB(conn)
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Exec("DROP DATABASE " + name); admin.Close() })
	u := strings.Replace(base, "/test", "/"+name, 1)
	mc2, _ := mysqldest.ParseURL(u)
	mc2.MultiStatements = false
	conn2, _ := gomysql.NewConnector(mc2)
	d := sql.OpenDB(conn2)
	t.Cleanup(func() { d.Close() })
	return u, d
}

func exec(t *testing.T, d *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := d.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

type pipe struct {
	cancel context.CancelFunc
	done   chan error
}

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
	pp := &pipe{cancel: cancel, done: make(chan error, 1)}
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

// TestMariaDBToHTTP: a snapshot of the table at a consistent binlog
// position, then inserts, updates (with before images), deletes and a key
// change from the binlog arrive at an HTTP endpoint in commit order per
// key, typed; a column added mid-stream is picked up; a restart resumes
// from the saved GTID without re-sending what was delivered.
func TestMariaDBToHTTP(t *testing.T) {
	u, d := db(t)
	exec(t, d, "CREATE TABLE items (id BIGINT PRIMARY KEY, name VARCHAR(50) NOT NULL, qty INT UNSIGNED, price DECIMAL(10,2), at DATETIME(6), kind ENUM('a','b'), doc JSON, note TEXT)")
	for i := 1; i <= 30; i++ {
		exec(t, d, "INSERT INTO items VALUES (?, ?, ?, ?, '2024-01-01 10:00:00', 'b', '{\"x\": 1}', 'n')", i, fmt.Sprintf("item %d", i), i, float64(i)+0.5)
	}
	sink := changetest.New()
	defer sink.Close()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "connector.yaml"), []byte("name: shop\ntype: mysql_cdc\nconfig: {url: {secret: true}}\nurl: \"{{ config.url }}\"\nmax_wait: 5ms\nstreams:\n  items: {table: items, primary_key: id}\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "pipeline.yaml"), []byte("connector: connector.yaml\nconfig: {url: \"${SRC_URL}\"}\ndestination: {type: http, url: "+sink.URL+", batch: {size: 50}}\nstate: {type: sqlite, path: state.db}\nsync: {checkpoint_interval: 20ms}\n"), 0o644)
	t.Setenv("SRC_URL", u)
	p := start(t, dir)
	if !sink.WaitFor(30*time.Second, func() bool { return sink.Accepted() >= 30 }) {
		p.stop(t)
		t.Fatalf("snapshot: %d changes arrived, want 30", sink.Accepted())
	}
	exec(t, d, "INSERT INTO items (id, name, qty) VALUES (31, 'new', 4294967295)")
	exec(t, d, "UPDATE items SET qty = qty + 100 WHERE id <= 3")
	exec(t, d, "DELETE FROM items WHERE id = 4")
	tx, _ := d.Begin()
	tx.Exec("UPDATE items SET name = 'renamed' WHERE id = 31")
	tx.Exec("UPDATE items SET id = 131 WHERE id = 31")
	tx.Commit()
	exec(t, d, "ALTER TABLE items ADD COLUMN color VARCHAR(10)")
	exec(t, d, "UPDATE items SET color = 'red' WHERE id = 5")
	want := 30 + 1 + 3 + 1 + 1 + 2 + 1 // the key change is a delete and an update
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
	if got := byKey["1"][0].Data; got["price"] != 1.5 || got["at"] != "2024-01-01T10:00:00Z" || got["kind"] != "b" || fmt.Sprint(got["doc"]) != "map[x:1]" || got["note"] != "n" {
		t.Fatalf("snapshot row types: %v", got)
	}
	if got := byKey["4"]; len(got) != 2 || got[1].Op != "delete" {
		t.Fatalf("key 4: %+v", got)
	}
	if got := byKey["31"]; len(got) != 3 || got[0].Op != "insert" || got[0].Data["qty"] != float64(4294967295) || got[1].Data["name"] != "renamed" || got[2].Op != "delete" {
		t.Fatalf("key 31: %+v", got)
	}
	if got := byKey["131"]; len(got) != 1 || got[0].Op != "update" || got[0].Data["name"] != "renamed" {
		t.Fatalf("key 131: %+v", got)
	}
	if got := byKey["5"]; len(got) != 2 || got[1].Data["color"] != "red" {
		t.Fatalf("key 5 after the new column: %+v", got)
	}
	for k, items := range byKey {
		for i := 1; i < len(items); i++ {
			if items[i].Pos < items[i-1].Pos {
				t.Fatalf("key %s: positions out of order: %s after %s", k, items[i].Pos, items[i-1].Pos)
			}
		}
	}
	// Restart: a change made while Ferry was down arrives; nothing else.
	before := sink.Accepted()
	exec(t, d, "UPDATE items SET qty = 7 WHERE id = 8")
	p = start(t, dir)
	if !sink.WaitFor(30*time.Second, func() bool { return sink.Accepted() >= before+1 }) {
		p.stop(t)
		t.Fatal("the change made while Ferry was down did not arrive")
	}
	exec(t, d, "UPDATE items SET qty = 8 WHERE id = 8")
	sink.WaitFor(30*time.Second, func() bool { return sink.Accepted() >= before+2 })
	p.stop(t)
	if got := sink.Accepted() - before; got != 2 {
		t.Fatalf("after the restart %d changes arrived, want the 2 new ones", got)
	}
}
