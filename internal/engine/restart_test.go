package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/dest/dbtest"

	"github.com/ferry-dev/ferry/internal/apitest"
	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/engine"
	"github.com/ferry-dev/ferry/internal/enginetest"
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
	p := enginetest.New(t, enginetest.Config{
		Connector: fmt.Sprintf(`name: kill
base_url: %s
streams:
  users: {path: /users, records: data, primary_key: id, cursor: updated_at, incremental: {param: updated_since}, paginate: {type: page_number, size: 50, size_param: per_page}}
`, api.URL),
		Pipeline: "connector: connector.yaml\nsync: {checkpoint_rows: 200}\n",
		Dest:     enginetest.Kind(kind),
	})
	target := p.Target()
	var kill func()
	switch kind {
	case "postgres":
		// The harness names the run's connections after the schema.
		kill = func() {
			stmt := fmt.Sprintf("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '%s' AND pid <> pg_backend_pid()", target.Schema)
			if err := dbtest.PostgresExec(target.URL, stmt); err != nil {
				t.Fatal(err)
			}
		}
	case "mysql":
		kill = func() {
			ids, err := dbtest.MySQLInts("SELECT id FROM information_schema.processlist WHERE db = ? AND id <> CONNECTION_ID()", target.Database)
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
	run := p.Start(enginetest.Options{Engine: engine.Options{RetryFor: time.Minute}})
	// Once rows have been committed, cut every connection of the run.
	run.WaitFor(func(e engine.Event) bool {
		c, ok := e.(engine.Committed)
		return ok && c.Total > 0
	}, 30*time.Second)
	select {
	case <-run.Done():
		t.Fatalf("the sync ended before the kill (%v): the test proves nothing", run.Wait().Err)
	default:
	}
	kill()
	slow.Store(false)
	res := run.Wait()
	if res.Err != nil {
		t.Fatalf("sync after the connections were cut: %v", res.Err)
	}
	// A transaction cut mid-way fails the stream, which starts over from
	// its last commit; a connection cut between transactions is replaced
	// by the driver without anyone noticing. Either way the data is exact.
	t.Logf("stream restarts after the kill: %d", res.Run.Progress()[0].Retries.Load())
	if got, want := p.Rows("users", "id"), idsOf(users); !slices.Equal(got, want) {
		t.Fatalf("%d rows, want %d", len(got), len(want))
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
	p := enginetest.New(t, enginetest.Config{Pipeline: fmt.Sprintf(`connector: {name: x, base_url: %q, streams: {users: {path: /users, records: data}}}
destination: {type: unavailable-for-tests}
`, api.URL)})
	res := p.RunWith(enginetest.Options{Engine: engine.Options{RetryFor: 2500 * time.Millisecond}})
	if res.Stage != enginetest.StageExecute {
		t.Fatalf("the run did not execute: %s: %v", res.Stage, res.Err)
	}
	err := res.Err
	// The time is what the machine took: the 1 s wait, and any delay a
	// loaded machine adds to it.
	stayed := regexp.MustCompile(`the destination stayed unavailable \(tried 1 more times over 1(\.\d)?s; the limit is 2\.5s\)`)
	if err == nil || !stayed.MatchString(err.Error()) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("error = %v", err)
	}
	var te *dest.TransientError
	if !errors.As(err, &te) {
		t.Fatalf("Execute's error does not keep the destination's *dest.TransientError: %T %v", err, err)
	}
	if took := res.Elapsed; took < time.Second || took > 5*time.Second {
		t.Fatalf("gave up after %s", took)
	}
	if n := res.Run.Progress()[0].Retries.Load(); n < 1 {
		t.Fatalf("retries = %d", n)
	}
}
