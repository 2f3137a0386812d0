package testserver_test

import (
	"context"
	"database/sql"
	"os"
	"testing"

	mysqldest "github.com/ferry-dev/ferry/internal/dest/mysql"
	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"

	"github.com/ferry-dev/ferry/internal/testserver"
)

func TestMain(m *testing.M) { os.Exit(testserver.Main(m)) }

// TestServers: the throwaway servers are configured for change data
// capture.
func TestServers(t *testing.T) {
	ctx := context.Background()
	c, err := pgx.Connect(ctx, testserver.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	var level string
	c.QueryRow(ctx, "SHOW wal_level").Scan(&level)
	c.Close(ctx)
	if level != "logical" {
		t.Fatalf("wal_level = %q", level)
	}
	mc, err := mysqldest.ParseURL(testserver.MariaDB(t))
	if err != nil {
		t.Fatal(err)
	}
	conn, _ := mysql.NewConnector(mc)
	db := sql.OpenDB(conn)
	defer db.Close()
	var name, format string
	if err := db.QueryRow("SHOW VARIABLES LIKE 'binlog_format'").Scan(&name, &format); err != nil || format != "ROW" {
		t.Fatalf("binlog_format = %q, %v", format, err)
	}
}
