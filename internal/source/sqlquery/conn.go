package sqlquery

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	mysqldest "github.com/ferry-dev/ferry/internal/dest/mysql"
	"github.com/ferry-dev/ferry/internal/dest/sqlite"
)

// Dialect is the SQL flavour of a database Ferry reads.
type Dialect string

// The dialects.
const (
	Postgres Dialect = "postgres"
	MySQL    Dialect = "mysql"
	SQLite   Dialect = "sqlite"
)

// Quote quotes an identifier, schema.table as two.
func (d Dialect) Quote(name string) string {
	parts := strings.Split(name, ".")
	for i, p := range parts {
		if d == MySQL {
			parts[i] = "`" + strings.ReplaceAll(p, "`", "``") + "`"
		} else {
			parts[i] = `"` + strings.ReplaceAll(p, `"`, `""`) + `"`
		}
	}
	return strings.Join(parts, ".")
}

// Placeholder returns the n-th (from 1) parameter marker.
func (d Dialect) Placeholder(n int) string {
	if d == Postgres {
		return fmt.Sprintf("$%d", n)
	}
	return "?"
}

// DB is a read-only connection to a database.
type DB struct {
	*sql.DB
	Dialect Dialect
	// Target describes the database for messages, without credentials.
	Target string
}

// OpenReadOnly connects to the database raw names (postgres://…,
// mysql://… or mariadb://…, sqlite:PATH with PATH relative to dir) so
// that nothing can be written through the connection: PostgreSQL
// sessions default to read-only transactions, SQLite files are opened
// read-only with query_only, and every read runs in a read-only
// transaction (BeginRead), which PostgreSQL, MySQL and MariaDB enforce.
// Errors never contain the password.
func OpenReadOnly(ctx context.Context, raw, dir string) (*DB, error) {
	raw = strings.TrimSpace(raw)
	scheme, rest, _ := strings.Cut(raw, ":")
	switch strings.ToLower(scheme) {
	case "postgres", "postgresql":
		cc, err := pgx.ParseConfig(raw)
		if err != nil {
			return nil, errors.New("sql source: url is not a valid postgres://user:pass@host:port/db url")
		}
		if cc.RuntimeParams == nil {
			cc.RuntimeParams = map[string]string{}
		}
		cc.RuntimeParams["default_transaction_read_only"] = "on"
		cc.RuntimeParams["application_name"] = "ferry-sql-source"
		db := stdlib.OpenDB(*cc)
		target := fmt.Sprintf("PostgreSQL %s:%d database %q", cc.Host, cc.Port, cc.Database)
		return ping(ctx, &DB{DB: db, Dialect: Postgres, Target: target}, cc.Password)
	case "mysql", "mariadb":
		mc, err := mysqldest.ParseURL(raw)
		if err != nil {
			return nil, fmt.Errorf("sql source: %w", err)
		}
		mc.MultiStatements = false // one statement per query, always
		conn, err := mysql.NewConnector(mc)
		if err != nil {
			return nil, fmt.Errorf("sql source: %w", err)
		}
		target := fmt.Sprintf("MySQL %s database %q", mc.Addr, mc.DBName)
		return ping(ctx, &DB{DB: sql.OpenDB(conn), Dialect: MySQL, Target: target}, mc.Passwd)
	case "sqlite", "file":
		path := strings.TrimPrefix(rest, "//")
		if u, err := url.PathUnescape(path); err == nil {
			path = u
		}
		if path == "" {
			return nil, errors.New("sql source: url sqlite: names no file (sqlite:path/to/file.db)")
		}
		if !filepath.IsAbs(path) && dir != "" {
			path = filepath.Join(dir, path)
		}
		db, err := sqlite.OpenReadOnly(path)
		if err != nil {
			return nil, fmt.Errorf("sql source: %w", err)
		}
		return &DB{DB: db, Dialect: SQLite, Target: "SQLite " + path}, nil
	}
	return nil, fmt.Errorf("sql source: url scheme %q is not one Ferry reads (want postgres://, mysql://, mariadb:// or sqlite:PATH)", scheme)
}

func ping(ctx context.Context, db *DB, password string) (*DB, error) {
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		msg := err.Error()
		if password != "" {
			msg = strings.ReplaceAll(msg, password, "[redacted]")
		}
		return nil, fmt.Errorf("sql source: %s: %s", db.Target, msg)
	}
	return db, nil
}

// BeginRead starts a read-only transaction (SQLite: a deferred one on a
// read-only file).
func (db *DB) BeginRead(ctx context.Context) (*sql.Tx, error) {
	opts := &sql.TxOptions{ReadOnly: true}
	if db.Dialect == SQLite {
		opts = nil // the driver refuses the option; the file is read-only
	}
	return db.BeginTx(ctx, opts)
}
