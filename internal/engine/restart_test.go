package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/dest/dbtest"
	"github.com/ferry-dev/ferry/internal/redact"

	"github.com/ferry-dev/ferry/internal/apitest"
	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/engine"
	"github.com/ferry-dev/ferry/internal/spec"
)

// TestDatabaseConnectionsKilled cuts every connection Ferry has to the
// database in the middle of a sync, as a server restart does: the stream
// starts over from its last commit, and the table ends up exact.
func TestDatabaseConnectionsKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL and MariaDB")
	}
	for _, kind := range []string{"postgres", "mysql"} {
		t.Run(kind, func(t *testing.T) { killDuringSync(t, kind) })
	}
}

func killDuringSync(t *testing.T, kind string) {
	users := apitest.Users(2000)
	api := apitest.New(t, users, apitest.PageNumber, 50)
	var slow atomic.Bool
	slow.Store(true)
	inner := api.Config.Handler
	api.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if slow.Load() {
			time.Sleep(15 * time.Millisecond) // a slow API, so the kill lands mid-sync
		}
		inner.ServeHTTP(w, r)
	})
	var destYAML string
	var kill func()
	switch kind {
	case "postgres":
		base, schema := dbtest.Postgres(t)
		u, _ := url.Parse(base)
		q := u.Query()
		q.Set("application_name", schema)
		u.RawQuery = q.Encode()
		destYAML = fmt.Sprintf("{type: postgres, url: %q, schema: %s}", u.String(), schema)
		kill = func() {
			stmt := fmt.Sprintf("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '%s' AND pid <> pg_backend_pid()", schema)
			if err := dbtest.PostgresExec(base, stmt); err != nil {
				t.Fatal(err)
			}
		}
	case "mysql":
		u := dbtest.MySQL(t)
		destYAML = fmt.Sprintf("{type: mysql, url: %q}", u)
		pu, _ := url.Parse(u)
		name := strings.TrimPrefix(pu.Path, "/")
		kill = func() {
			ids, err := dbtest.MySQLInts("SELECT id FROM information_schema.processlist WHERE db = ? AND id <> CONNECTION_ID()", name)
			if err != nil {
				t.Fatal(err)
			}
			if len(ids) == 0 {
				t.Fatalf("no connection of the sync to kill")
			}
			for _, id := range ids {
				dbtest.MySQLExec(fmt.Sprintf("KILL CONNECTION %d", id))
			}
		}
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "connector.yaml"), []byte(fmt.Sprintf(`name: kill
base_url: %s
streams:
  users: {path: /users, records: data, primary_key: id, cursor: updated_at, incremental: {param: updated_since}, paginate: {type: page_number, size: 50, size_param: per_page}}
`, api.URL)), 0o644)
	os.WriteFile(filepath.Join(dir, "pipeline.yaml"), []byte("connector: connector.yaml\ndestination: "+destYAML+"\nsync: {checkpoint_rows: 200}\n"), 0o644)
	p, err := spec.LoadPipeline(filepath.Join(dir, "pipeline.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := p.Resolve(os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	run, err := engine.New(context.Background(), engine.Options{Pipeline: p, Resolved: r, Redactor: redact.New(), RetryFor: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer run.Close()
	done := make(chan error, 1)
	go func() {
		_, err := run.Execute(context.Background())
		done <- err
	}()
	// Once rows have been committed, cut every connection of the run.
	deadline := time.Now().Add(30 * time.Second)
	for run.Progress()[0].Committed.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("the sync ended before the kill (%v): the test proves nothing", err)
	default:
	}
	kill()
	slow.Store(false)
	if err := <-done; err != nil {
		t.Fatalf("sync after the connections were cut: %v", err)
	}
	// A transaction cut mid-way fails the stream, which starts over from
	// its last commit; a connection cut between transactions is replaced
	// by the driver without anyone noticing. Either way the data is exact.
	t.Logf("stream restarts after the kill: %d", run.Progress()[0].Retries.Load())
	admin, err := dest.Open(context.Background(), p.Destination.Type, r.Destination, dest.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	var ids []string
	if err := admin.(dest.Reader).ReadRows(context.Background(), "users", nil, func(cols []string, row []any) error {
		ids = append(ids, fmt.Sprint(row[slices.Index(cols, "id")]))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(ids)
	if want := idsOf(users); !slices.Equal(ids, want) {
		t.Fatalf("%d rows, want %d", len(ids), len(want))
	}
}

// unavailable is a destination whose database never answers.
type unavailable struct{ dest.Destination }

func (unavailable) MaxIdentLen() int                          { return 63 }
func (unavailable) TableName(n string) string                 { return n }
func (unavailable) State() dest.StateStore                    { return unavailableState{} }
func (unavailable) RecordRun(context.Context, dest.Run) error { return nil }
func (unavailable) Close() error                              { return nil }
func (unavailable) OpenStream(context.Context, dest.StreamConfig) (dest.StreamWriter, error) {
	return nil, &dest.TransientError{Err: errors.New("connection refused")}
}

type unavailableState struct{ dest.StateStore }

func (unavailableState) Load(context.Context, string, string, string) (json.RawMessage, error) {
	return nil, nil
}

func (unavailableState) Lock(context.Context, string, string, dest.Holder) (func(), error) {
	return func() {}, nil
}

// unavailableConfig is the test destination's (empty) configuration.
type unavailableConfig struct{}

func init() {
	dest.Register("unavailable-for-tests", "A destination whose database never answers.", func(context.Context, *unavailableConfig, dest.Options) (dest.Destination, error) {
		return unavailable{}, nil
	})
}

// TestDatabaseStaysDown: retries are bounded, and the error says so.
func TestDatabaseStaysDown(t *testing.T) {
	api := apitest.New(t, apitest.Users(3), apitest.None, 0)
	p, err := spec.ParsePipeline(filepath.Join(t.TempDir(), "p.yaml"), []byte(fmt.Sprintf(`connector: {name: x, base_url: %q, streams: {users: {path: /users, records: data}}}
destination: {type: unavailable-for-tests}
`, api.URL)))
	if err != nil {
		t.Fatal(err)
	}
	r, err := p.Resolve(os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	run, err := engine.New(context.Background(), engine.Options{Pipeline: p, Resolved: r, RetryFor: 2500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = run.Execute(context.Background())
	if err == nil || !strings.Contains(err.Error(), "the database stayed unavailable (tried 1 more times over 1s; the limit is 2.5s)") || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("error = %v", err)
	}
	if took := time.Since(start); took < time.Second || took > 5*time.Second {
		t.Fatalf("gave up after %s", took)
	}
	if n := run.Progress()[0].Retries.Load(); n < 1 {
		t.Fatalf("retries = %d", n)
	}
}
