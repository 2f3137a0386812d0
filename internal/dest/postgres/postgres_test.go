package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/dest/desttest"
	"github.com/ferry-dev/ferry/internal/dest/sqldest"
	"github.com/ferry-dev/ferry/internal/spec"
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
func openTest(t testing.TB, sp *spec.Destination) *sqldest.Destination {
	t.Helper()
	if sp == nil {
		sp = &spec.Destination{}
	}
	sp.Type = "postgres"
	if sp.Schema == "" {
		sp.Schema = freshSchema(t)
	}
	d, err := Open(context.Background(), dest.Config{Spec: sp, URL: testURL()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d.(*sqldest.Destination)
}

func TestConformance(t *testing.T) {
	desttest.Run(t, func(t *testing.T) dest.Destination { return openTest(t, nil) })
}
