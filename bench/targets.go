//go:build unix

package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"

	ferrymysql "github.com/ferry-dev/ferry/internal/dest/mysql"
	"github.com/ferry-dev/ferry/internal/dest/sqlite"
)

// Environment variables naming the databases to benchmark.
const (
	postgresURLEnv = "FERRY_BENCH_POSTGRES_URL"
	mysqlURLEnv    = "FERRY_BENCH_MYSQL_URL"
)

// Default database URLs: the local test databases of the README.
const (
	defaultPostgresURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	defaultMySQLURL    = "mysql://root@127.0.0.1:3306/test"
)

// destURLEnv is the variable the pipeline reads its destination URL from,
// so that a password never lands in a file.
const destURLEnv = "FERRY_BENCH_DEST_URL"

// table is the table the benchmark stream lands in.
const table = "accounts"

// tally is what a verification query finds in the destination table.
type tally struct {
	Rows, DistinctIDs, MinID, MaxID, SumQuantity int64
}

// check compares a tally with the first n records the API serves.
func (t tally) check(n int) error {
	want := tally{Rows: int64(n), DistinctIDs: int64(n), SumQuantity: sumQuantity(n)}
	if n > 0 {
		want.MinID, want.MaxID = 1, int64(n)
	}
	if t != want {
		return fmt.Errorf("destination holds rows=%d distinct ids=%d ids %d..%d sum(quantity)=%d; want rows=%d distinct ids=%d ids %d..%d sum(quantity)=%d",
			t.Rows, t.DistinctIDs, t.MinID, t.MaxID, t.SumQuantity, want.Rows, want.DistinctIDs, want.MinID, want.MaxID, want.SumQuantity)
	}
	return nil
}

// target is a fresh, empty place for one scenario's run: a new SQLite
// file, a new PostgreSQL schema or a new MySQL database.
type target interface {
	// destination returns the pipeline's destination section (YAML flow
	// mapping); a URL is read from destURLEnv.
	destination() string
	// url returns the value for destURLEnv ("" for SQLite).
	url() string
	// count tallies the destination table.
	count(ctx context.Context) (tally, error)
	// drop removes what the run created (a no-op for SQLite, whose file
	// goes with the run's directory).
	drop(ctx context.Context) error
	// version returns the database server's version.
	version(ctx context.Context) (string, error)
}

// newTarget prepares a fresh target for destination kind in dir.
func newTarget(ctx context.Context, kind, dir string) (target, error) {
	switch kind {
	case "sqlite":
		return &sqliteTarget{path: filepath.Join(dir, "bench.db")}, nil
	case "postgres":
		return newPostgresTarget(ctx, envOr(postgresURLEnv, defaultPostgresURL))
	case "mysql":
		return newMySQLTarget(ctx, envOr(mysqlURLEnv, defaultMySQLURL))
	}
	return nil, fmt.Errorf("unknown destination %q (want sqlite, postgres or mysql)", kind)
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// freshName returns a unique schema or database name.
func freshName() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "ferry_bench_" + hex.EncodeToString(b[:])
}

// sqliteTarget is a new database file.
type sqliteTarget struct{ path string }

func (t *sqliteTarget) destination() string {
	return fmt.Sprintf("{type: sqlite, path: %s}", filepath.Base(t.path))
}

func (t *sqliteTarget) url() string { return "" }

func (t *sqliteTarget) count(ctx context.Context) (tally, error) {
	if _, err := os.Stat(t.path); err != nil {
		return tally{}, err
	}
	db, err := sqlite.OpenDB(t.path)
	if err != nil {
		return tally{}, err
	}
	defer db.Close()
	return countSQL(ctx, db, `"`+table+`"`, "")
}

func (t *sqliteTarget) drop(context.Context) error { return nil }

func (t *sqliteTarget) version(ctx context.Context) (string, error) {
	db, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		return "", err
	}
	defer db.Close()
	var v string
	err = db.QueryRowContext(ctx, "SELECT sqlite_version()").Scan(&v)
	return "SQLite " + v + " (modernc.org/sqlite, pure Go)", err
}

// countSQL runs the tally query through database/sql; cast spells the
// integer cast of a sum (MySQL's SUM returns DECIMAL).
func countSQL(ctx context.Context, db *sql.DB, tbl, cast string) (tally, error) {
	sum := "COALESCE(SUM(quantity), 0)"
	if cast != "" {
		sum = "CAST(" + sum + " AS " + cast + ")"
	}
	var t tally
	err := db.QueryRowContext(ctx, "SELECT COUNT(*), COUNT(DISTINCT id), COALESCE(MIN(id), 0), COALESCE(MAX(id), 0), "+sum+" FROM "+tbl).
		Scan(&t.Rows, &t.DistinctIDs, &t.MinID, &t.MaxID, &t.SumQuantity)
	return t, err
}

// postgresTarget is a new schema, which ferry creates; it is dropped after.
type postgresTarget struct {
	base   string
	schema string
}

func newPostgresTarget(ctx context.Context, base string) (*postgresTarget, error) {
	t := &postgresTarget{base: base, schema: freshName()}
	// Connect once up front so that a missing database fails fast, before
	// ferry runs.
	c, err := pgx.Connect(ctx, base)
	if err != nil {
		return nil, fmt.Errorf("postgres (%s): %w", postgresURLEnv, err)
	}
	return t, c.Close(ctx)
}

func (t *postgresTarget) destination() string {
	return fmt.Sprintf("{type: postgres, url: \"${%s}\", schema: %s}", destURLEnv, t.schema)
}

func (t *postgresTarget) url() string { return t.base }

func (t *postgresTarget) with(ctx context.Context, fn func(*pgx.Conn) error) error {
	c, err := pgx.Connect(ctx, t.base)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	return fn(c)
}

func (t *postgresTarget) count(ctx context.Context) (tally, error) {
	var r tally
	err := t.with(ctx, func(c *pgx.Conn) error {
		q := fmt.Sprintf(`SELECT count(*), count(DISTINCT id), COALESCE(min(id), 0), COALESCE(max(id), 0), COALESCE(sum(quantity), 0)::bigint FROM %s.%s`,
			pgx.Identifier{t.schema}.Sanitize(), pgx.Identifier{table}.Sanitize())
		return c.QueryRow(ctx, q).Scan(&r.Rows, &r.DistinctIDs, &r.MinID, &r.MaxID, &r.SumQuantity)
	})
	return r, err
}

func (t *postgresTarget) drop(ctx context.Context) error {
	return t.with(ctx, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{t.schema}.Sanitize()+" CASCADE")
		return err
	})
}

func (t *postgresTarget) version(ctx context.Context) (string, error) {
	var v string
	err := t.with(ctx, func(c *pgx.Conn) error { return c.QueryRow(ctx, "SELECT version()").Scan(&v) })
	return v, err
}

// mysqlTarget is a new database, dropped after.
type mysqlTarget struct {
	cfg *mysql.Config // connects to the new database
	u   string        // the URL for ferry, naming the new database
}

func newMySQLTarget(ctx context.Context, base string) (*mysqlTarget, error) {
	cfg, err := ferrymysql.ParseURL(base)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", mysqlURLEnv, err)
	}
	u, err := url.Parse(base)
	if err != nil || !strings.Contains(base, "://") {
		return nil, fmt.Errorf("%s must be a mysql://user@host:port/db URL", mysqlURLEnv)
	}
	name := freshName()
	u.Path = "/" + name
	t := &mysqlTarget{cfg: cfg.Clone(), u: u.String()}
	admin := cfg.Clone()
	admin.DBName = ""
	db, err := openMySQL(admin)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "CREATE DATABASE `"+name+"`"); err != nil {
		return nil, fmt.Errorf("mysql: create database %s: %w", name, err)
	}
	t.cfg.DBName = name
	return t, nil
}

func openMySQL(cfg *mysql.Config) (*sql.DB, error) {
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(conn), nil
}

func (t *mysqlTarget) destination() string {
	return fmt.Sprintf("{type: mysql, url: \"${%s}\"}", destURLEnv)
}

func (t *mysqlTarget) url() string { return t.u }

func (t *mysqlTarget) count(ctx context.Context) (tally, error) {
	db, err := openMySQL(t.cfg)
	if err != nil {
		return tally{}, err
	}
	defer db.Close()
	return countSQL(ctx, db, "`"+table+"`", "SIGNED")
}

func (t *mysqlTarget) drop(ctx context.Context) error {
	admin := t.cfg.Clone()
	admin.DBName = ""
	db, err := openMySQL(admin)
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = db.ExecContext(ctx, "DROP DATABASE IF EXISTS `"+t.cfg.DBName+"`")
	return err
}

func (t *mysqlTarget) version(ctx context.Context) (string, error) {
	db, err := openMySQL(t.cfg)
	if err != nil {
		return "", err
	}
	defer db.Close()
	var v string
	err = db.QueryRowContext(ctx, "SELECT VERSION()").Scan(&v)
	return "MySQL/MariaDB " + v, err
}
