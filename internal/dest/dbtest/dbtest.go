// Package dbtest gives tests a database of their own on the test servers:
// a fresh PostgreSQL schema, a fresh MySQL/MariaDB database, a fresh
// SQLite file, each removed when the test ends.
//
// The servers are found through FERRY_TEST_POSTGRES_URL and
// FERRY_TEST_MYSQL_URL (defaults: the local servers of the README). A test
// whose server is unreachable is skipped, except with CI=true, where it
// fails: in CI a missing service is a failure, never a silent skip.
//
// The package talks to the servers through their drivers (pgx,
// go-sql-driver/mysql), not through Ferry's destinations, so the
// destinations' own tests can use it.
package dbtest

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
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
)

// Environment variables naming the test servers, and their defaults.
const (
	PostgresEnv     = "FERRY_TEST_POSTGRES_URL"
	MySQLEnv        = "FERRY_TEST_MYSQL_URL"
	DefaultPostgres = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	DefaultMySQL    = "mysql://root@127.0.0.1:3306/test"
)

// unreachable skips the test, or fails it in CI.
func unreachable(t testing.TB, what, env string, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("the %s test server is unreachable (%s): %v", what, env, err)
	}
	t.Skipf("the %s test server is unreachable, skipping (set %s): %v", what, env, err)
}

// PostgresURL returns the PostgreSQL test server's URL, after checking the
// server answers.
func PostgresURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(PostgresEnv)
	if u == "" {
		u = DefaultPostgres
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, u)
	if err != nil {
		unreachable(t, "PostgreSQL", PostgresEnv, err)
	}
	c.Close(ctx)
	return u
}

// Name returns a fresh name for a schema, database or table: ferry_t_ and
// 12 hex digits.
func Name() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "ferry_t_" + hex.EncodeToString(b[:])
}

// Postgres returns the test server's URL and the name of a schema that
// does not exist yet and is dropped, with everything in it, when the test
// ends.
func Postgres(t testing.TB) (serverURL, schema string) {
	t.Helper()
	u := PostgresURL(t)
	name := Name()
	t.Cleanup(func() {
		if err := PostgresExec(u, `DROP SCHEMA IF EXISTS "`+name+`" CASCADE`); err != nil {
			t.Errorf("drop schema %s: %v", name, err)
		}
	})
	return u, name
}

// PostgresExec runs a statement on the PostgreSQL server at u.
func PostgresExec(u, stmt string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, u)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	_, err = c.Exec(ctx, stmt)
	return err
}

var (
	mysqlOnce  sync.Once
	mysqlAdmin *sql.DB
	mysqlErr   error
)

// MySQLURL returns the MySQL/MariaDB test server's URL, after checking the
// server answers.
func MySQLURL(t testing.TB) string {
	t.Helper()
	if _, err := mysqlDB(); err != nil {
		unreachable(t, "MySQL/MariaDB", MySQLEnv, err)
	}
	return mysqlBase()
}

func mysqlBase() string {
	if u := os.Getenv(MySQLEnv); u != "" {
		return u
	}
	return DefaultMySQL
}

// mysqlDB returns a pool on the MySQL test server, shared by the tests.
func mysqlDB() (*sql.DB, error) {
	mysqlOnce.Do(func() {
		c, err := MySQLConfig(mysqlBase())
		if err != nil {
			mysqlErr = err
			return
		}
		c.Timeout = 2 * time.Second
		conn, err := mysql.NewConnector(c)
		if err != nil {
			mysqlErr = err
			return
		}
		db := sql.OpenDB(conn)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := db.PingContext(ctx); err != nil {
			db.Close()
			mysqlErr = err
			return
		}
		mysqlAdmin = db
	})
	return mysqlAdmin, mysqlErr
}

// MySQLConfig reads a mysql:// URL (or the driver's DSN form) into the
// driver's configuration.
func MySQLConfig(raw string) (*mysql.Config, error) {
	if !strings.Contains(raw, "://") {
		return mysql.ParseDSN(raw)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("the MySQL test URL does not parse")
	}
	c := mysql.NewConfig()
	c.Net, c.Addr = "tcp", u.Host
	if u.Port() == "" {
		c.Addr = u.Hostname() + ":3306"
	}
	c.User = u.User.Username()
	c.Passwd, _ = u.User.Password()
	c.DBName = strings.TrimPrefix(u.Path, "/")
	return c, nil
}

// MySQL creates an empty database, dropped when the test ends, and returns
// the URL of it.
func MySQL(t testing.TB) string {
	t.Helper()
	base := MySQLURL(t)
	name := Name()
	if err := MySQLExec("CREATE DATABASE " + name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := MySQLExec("DROP DATABASE IF EXISTS " + name); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	return WithDatabase(t, base, name)
}

// MySQLExec runs a statement on the MySQL test server.
func MySQLExec(stmt string) error {
	db, err := mysqlDB()
	if err != nil {
		return err
	}
	_, err = db.Exec(stmt)
	return err
}

// WithDatabase returns a MySQL URL (or DSN) naming another database.
func WithDatabase(t testing.TB, raw, name string) string {
	t.Helper()
	if strings.Contains(raw, "://") {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		u.Path = "/" + name
		return u.String()
	}
	c, err := mysql.ParseDSN(raw)
	if err != nil {
		t.Fatal(err)
	}
	c.DBName = name
	return c.FormatDSN()
}

// SQLite returns the path of a database file that does not exist yet, in a
// directory removed when the test ends.
func SQLite(t testing.TB) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "test.db")
}

// MySQLInts runs a query returning one integer column on the MySQL test
// server.
func MySQLInts(query string, args ...any) ([]int64, error) {
	db, err := mysqlDB()
	if err != nil {
		return nil, err
	}
	rows, err := db.Query(query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
