package sqlquery_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/ferry-dev/ferry/internal/components/all"
	"github.com/ferry-dev/ferry/internal/dest/dbtest"
	"github.com/ferry-dev/ferry/internal/dest/sqlite"
	"github.com/ferry-dev/ferry/internal/engine"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/redact"
	"github.com/ferry-dev/ferry/internal/source"
	"github.com/ferry-dev/ferry/internal/source/sqlquery"
	"github.com/ferry-dev/ferry/internal/spec"
)

// srcDB is a database the sql source reads, on one of the three engines.
type srcDB struct {
	url, table string
	exec       func(t *testing.T, stmt string)
	dialect    sqlquery.Dialect
}

func sqliteSrc(t *testing.T) srcDB {
	path := filepath.Join(t.TempDir(), "src.db")
	db, err := sqlite.OpenDB(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return srcDB{url: "sqlite:" + path, table: "items", dialect: sqlquery.SQLite, exec: func(t *testing.T, stmt string) {
		t.Helper()
		if _, err := db.Exec(stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}}
}

func postgresSrc(t *testing.T) srcDB {
	u, schema := dbtest.Postgres(t)
	if err := dbtest.PostgresExec(u, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	return srcDB{url: u, table: schema + ".items", dialect: sqlquery.Postgres, exec: func(t *testing.T, stmt string) {
		t.Helper()
		if err := dbtest.PostgresExec(u, strings.ReplaceAll(stmt, "items", schema+".items")); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}}
}

func mysqlSrc(t *testing.T) srcDB {
	u := dbtest.MySQL(t)
	c, err := dbtest.MySQLConfig(u)
	if err != nil {
		t.Fatal(err)
	}
	c.ParseTime = true
	db, err := sql.Open("mysql", c.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return srcDB{url: u, table: "items", dialect: sqlquery.MySQL, exec: func(t *testing.T, stmt string) {
		t.Helper()
		if _, err := db.Exec(stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}}
}

var engines = []struct {
	name string
	open func(t *testing.T) srcDB
}{{"sqlite", sqliteSrc}, {"postgres", postgresSrc}, {"mysql", mysqlSrc}}

// createItems creates the items table in each engine's spelling.
func createItems(t *testing.T, s srcDB) {
	ts := map[sqlquery.Dialect]string{sqlquery.SQLite: "DATETIME", sqlquery.Postgres: "timestamptz", sqlquery.MySQL: "DATETIME(6)"}[s.dialect]
	num := map[sqlquery.Dialect]string{sqlquery.SQLite: "TEXT", sqlquery.Postgres: "numeric(12,2)", sqlquery.MySQL: "DECIMAL(12,2)"}[s.dialect]
	s.exec(t, fmt.Sprintf("CREATE TABLE items (id BIGINT PRIMARY KEY, name VARCHAR(100), price %s, updated_at %s)", num, ts))
}

func insertItems(t *testing.T, s srcDB, from, to int, at string) {
	var vals []string
	for i := from; i <= to; i++ {
		vals = append(vals, fmt.Sprintf("(%d, 'item %d', %d.50, '%s')", i, i, i, at))
	}
	s.exec(t, "INSERT INTO items (id, name, price, updated_at) VALUES "+strings.Join(vals, ", "))
}

type env struct {
	dir string
	db  string
}

func newEnv(t *testing.T, s srcDB, streams string) *env {
	dir := t.TempDir()
	conn := fmt.Sprintf("name: legacy\ntype: sql\nconfig:\n  url: {secret: true}\nurl: \"{{ config.url }}\"\nbatch_size: 7\nstreams:\n%s", streams)
	conn = strings.ReplaceAll(conn, "TABLE", s.table)
	pipe := "connector: connector.yaml\nconfig:\n  url: ${SRC_URL}\ndestination: {type: sqlite, path: out.db}\n"
	for name, body := range map[string]string{"connector.yaml": conn, "pipeline.yaml": pipe} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("SRC_URL", s.url)
	return &env{dir: dir, db: filepath.Join(dir, "out.db")}
}

func (e *env) runErr(t *testing.T) error {
	t.Helper()
	p, err := spec.LoadPipeline(filepath.Join(e.dir, "pipeline.yaml"))
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
	_, err = run.Execute(context.Background())
	return err
}

func (e *env) run(t *testing.T) *engine.Summary {
	t.Helper()
	p, err := spec.LoadPipeline(filepath.Join(e.dir, "pipeline.yaml"))
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
	sum, err := run.Execute(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

func (e *env) query(t *testing.T, q string) []string {
	t.Helper()
	db, err := sqlite.OpenReadOnly(e.db)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

// TestIncremental: a table is read in batches ordered by cursor and key;
// the next run reads only the rows changed since (at or after the saved
// cursor, minus those already synced), on each of the three databases,
// and every query is in the run's summary.
func TestIncremental(t *testing.T) {
	for _, eng := range engines {
		t.Run(eng.name, func(t *testing.T) {
			s := eng.open(t)
			createItems(t, s)
			insertItems(t, s, 1, 20, "2024-01-01 10:00:00")
			insertItems(t, s, 21, 30, "2024-01-02 10:00:00")
			e := newEnv(t, s, "  items: {table: TABLE, primary_key: id, cursor: updated_at}\n")
			sum := e.run(t)
			st := sum.Streams[0]
			if st.Records != 30 || st.Status != "succeeded" {
				t.Fatalf("first run: %+v", st)
			}
			if len(st.Queries) == 0 || !strings.Contains(st.Queries[0].Query, "SELECT * FROM") {
				t.Fatalf("queries in the summary: %+v", st.Queries)
			}
			var total int64
			for _, q := range st.Queries {
				total += q.Count
			}
			if total < 30/7 {
				t.Fatalf("the summary counts %d queries for 30 rows in batches of 7", total)
			}
			price := "21.50"
			if eng.name == "sqlite" {
				price = "21.5" // a TEXT column: SQLite stored the number's text
			}
			if got := e.query(t, "SELECT name || '|' || price || '|' || updated_at FROM items WHERE id = 21"); len(got) != 1 || got[0] != "item 21|"+price+"|2024-01-02T10:00:00.000000Z" {
				t.Fatalf("row 21 = %q", got)
			}
			// Two rows change, one appears; the others are not read again.
			s.exec(t, "UPDATE items SET name = 'renamed', updated_at = '2024-01-03 00:00:00' WHERE id IN (3, 25)")
			insertItems(t, s, 31, 31, "2024-01-03 00:00:00")
			sum = e.run(t)
			if st := sum.Streams[0]; st.Records != 3 {
				t.Fatalf("second run wrote %d rows, want the 3 changed: %+v", st.Records, st)
			}
			if got := e.query(t, "SELECT count(*) FROM items WHERE name = 'renamed'"); got[0] != "2" {
				t.Fatalf("renamed rows = %v", got)
			}
			if got := e.query(t, "SELECT count(*) FROM items"); got[0] != "31" {
				t.Fatalf("rows = %v", got)
			}
			// A third run finds nothing new.
			if st := e.run(t).Streams[0]; st.Records != 0 {
				t.Fatalf("third run wrote %d rows", st.Records)
			}
		})
	}
}

// TestQueryAndNullCursor: a query is a stream like a table; rows whose
// cursor is NULL are read by a full read too (first, by key), and an
// incremental read that cannot see them fails, saying so.
func TestQueryAndNullCursor(t *testing.T) {
	s := sqliteSrc(t)
	createItems(t, s)
	insertItems(t, s, 1, 10, "2024-01-01 10:00:00")
	s.exec(t, "INSERT INTO items (id, name) VALUES (100, 'no cursor'), (101, 'no cursor either')")
	e := newEnv(t, s, "  cheap:\n    query: \"SELECT id, name, updated_at, price * 2 AS double_price FROM items WHERE id <> 5;\"\n    primary_key: id\n    cursor: updated_at\n")
	pipe := filepath.Join(e.dir, "pipeline.yaml")
	b, _ := os.ReadFile(pipe)
	os.WriteFile(pipe, append(b, "mode: full_refresh_overwrite\n"...), 0o644)
	if st := e.run(t).Streams[0]; st.Records != 11 {
		t.Fatalf("rows = %d, want 11: %+v", st.Records, st)
	}
	if got := e.query(t, "SELECT count(*) FROM cheap WHERE updated_at IS NULL"); got[0] != "2" {
		t.Fatalf("rows without cursor = %v", got)
	}
	if got := e.query(t, "SELECT double_price FROM cheap WHERE id = 3"); got[0] != "7" {
		t.Fatalf("computed column = %v", got)
	}
	// Incremental: the first read meets the rows without cursor and fails.
	os.WriteFile(pipe, b, 0o644)
	os.Remove(e.db)
	if err := e.runErr(t); err == nil || !strings.Contains(err.Error(), `"updated_at"`) {
		t.Fatalf("incremental first run: err = %v", err)
	}
	// Once every row has a cursor, it syncs; a later row without one fails
	// the stream instead of being left behind.
	s.exec(t, "UPDATE items SET updated_at = '2024-01-01 11:00:00' WHERE updated_at IS NULL")
	if err := e.runErr(t); err != nil {
		t.Fatal(err)
	}
	s.exec(t, "INSERT INTO items (id, name) VALUES (102, 'late')")
	if err := e.runErr(t); err == nil || !strings.Contains(err.Error(), "1 rows of") || !strings.Contains(err.Error(), "have no updated_at") {
		t.Fatalf("incremental run with a NULL cursor: err = %v", err)
	}
}

// TestReadOnly: nothing can be written through the source's connections,
// on any of the three databases.
func TestReadOnly(t *testing.T) {
	for _, eng := range engines {
		t.Run(eng.name, func(t *testing.T) {
			s := eng.open(t)
			createItems(t, s)
			db, err := sqlquery.OpenReadOnly(context.Background(), s.url, "")
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			tx, err := db.BeginRead(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			_, err = tx.Exec("INSERT INTO " + s.table + " (id, name) VALUES (1, 'x')")
			if err == nil {
				t.Fatal("an INSERT succeeded through the read-only connection")
			}
			t.Logf("refused: %v", err)
			if eng.name == "postgres" {
				// Even outside Ferry's transactions the session is read-only.
				if _, err := db.Exec("CREATE TABLE " + s.table + "_x (id int)"); err == nil {
					t.Fatal("a CREATE TABLE succeeded on the read-only session")
				}
			}
		})
	}
}

// TestWritingQueryRefused: a query that would write (here: advance a
// sequence) fails the stream with the database's reason.
func TestWritingQueryRefused(t *testing.T) {
	s := postgresSrc(t)
	createItems(t, s)
	insertItems(t, s, 1, 3, "2024-01-01 10:00:00")
	seq := strings.TrimSuffix(s.table, ".items") + ".s"
	s.exec(t, "CREATE SEQUENCE "+seq)
	e := newEnv(t, s, "  gone:\n    query: \"SELECT id, nextval('"+seq+"') AS n FROM TABLE\"\n    primary_key: id\n")
	err := e.runErr(t)
	if err == nil || !strings.Contains(err.Error(), "read-only transaction") {
		t.Fatalf("err = %v, want the read-only refusal", err)
	}
}

// TestValidate: a stream must name one table or one query, and a key.
func TestValidate(t *testing.T) {
	for _, tc := range []struct{ streams, want string }{
		{"  a: {primary_key: id}\n", "give table: (a table or view) or query: (a SELECT)"},
		{"  a: {table: t, query: \"SELECT 1\", primary_key: id}\n", "give table: or query:, not both"},
		{"  a: {table: t}\n", "primary_key"},
	} {
		conn := "name: x\ntype: sql\nurl: sqlite:x.db\nstreams:\n" + tc.streams
		_, err := spec.ParseConnector("c.yaml", []byte(conn))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.streams, err, tc.want)
		}
	}
}

// TestResume: a pass resumed from a page's position reads exactly the
// rows after that page, in order.
func TestResume(t *testing.T) {
	s := sqliteSrc(t)
	createItems(t, s)
	insertItems(t, s, 1, 20, "2024-01-01 10:00:00")
	insertItems(t, s, 21, 30, "2024-01-01 09:00:00") // earlier cursor, later key
	conn, err := spec.ParseConnector(filepath.Join(t.TempDir(), "c.yaml"), []byte("name: x\ntype: sql\nurl: "+s.url+"\nbatch_size: 4\nstreams:\n  items: {table: items, primary_key: id, cursor: updated_at}\n"))
	if err != nil {
		t.Fatal(err)
	}
	src, err := source.New("sql", conn.Body, source.Options{Redactor: redact.New()})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	read := func(resume json.RawMessage) (ids []int64, positions []json.RawMessage) {
		err := src.Read(context.Background(), source.ReadRequest{
			Stream: "items",
			Start: func(context.Context, *record.Partition) (source.Start, error) {
				return source.Start{Resume: resume}, nil
			},
			Emit: func(_ context.Context, p *record.Page) error {
				for i := 0; i < p.Chunk.Len; i++ {
					ids = append(ids, p.Chunk.Cols[0].Ints[i])
				}
				positions = append(positions, p.Position)
				return nil
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		return ids, positions
	}
	all, positions := read(nil)
	if len(all) != 30 || all[0] != 21 || all[10] != 1 {
		t.Fatalf("full read order = %v", all)
	}
	// Resume after the fourth page (the rows without cursor, none, then
	// three of four rows).
	rest, _ := read(positions[3])
	if want := all[12:]; fmt.Sprint(rest) != fmt.Sprint(want) {
		t.Fatalf("resumed read = %v, want %v (after position %s)", rest, want, positions[3])
	}
}
