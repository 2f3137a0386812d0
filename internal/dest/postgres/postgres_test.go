package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/dest/desttest"
	"github.com/ferry-dev/ferry/internal/dest/sqldest"
)

// testURL is the server the tests use: FERRY_TEST_POSTGRES_URL, or the
// local one.
func testURL() string {
	if u := os.Getenv("FERRY_TEST_POSTGRES_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

// adminConn connects to the test server, skipping the test when there is
// none (failing it in CI, where there always is one).
func adminConn(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, testURL())
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL test server unreachable (FERRY_TEST_POSTGRES_URL): %v", err)
		}
		t.Skipf("PostgreSQL test server unreachable, skipping (set FERRY_TEST_POSTGRES_URL): %v", err)
	}
	return c
}

// freshSchema returns the name of a schema that does not exist yet and is
// dropped, with everything in it, when the test ends.
func freshSchema(t testing.TB) string {
	t.Helper()
	c := adminConn(t)
	c.Close(context.Background())
	var b [6]byte
	rand.Read(b[:])
	name := "ferry_t_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, testURL())
		if err != nil {
			t.Errorf("drop schema %s: %v", name, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP SCHEMA IF EXISTS "+Dialect{}.Quote(name)+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", name, err)
		}
	})
	return name
}

// openTest opens a destination on a fresh schema.
func openTest(t testing.TB, sp *Config) *sqldest.Destination {
	t.Helper()
	if sp == nil {
		sp = &Config{}
	}
	if sp.Schema == "" {
		sp.Schema = freshSchema(t)
	}
	d, err := Open(context.Background(), cfgWith(sp, testURL()), dest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d.(*sqldest.Destination)
}

func TestConformance(t *testing.T) {
	desttest.Run(t, func(t *testing.T) dest.Destination { return openTest(t, nil) }, desttest.SQLCaps(indexQuery))
}

// cfgWith returns a copy of cfg (nil: the zero one) with url set.
func cfgWith(cfg *Config, url string) *Config {
	c := Config{}
	if cfg != nil {
		c = *cfg
	}
	c.URL = url
	return &c
}

// indexQuery lists a table's indexes for the conformance suite.
func indexQuery(table string) string {
	return "SELECT i.relname, string_agg(a.attname, ',' ORDER BY k.n) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid " +
		"CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY k(attnum, n) JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum " +
		"WHERE x.indrelid = '" + strings.ReplaceAll(Dialect{}.Quote(table), "'", "''") + "'::regclass GROUP BY i.relname"
}
