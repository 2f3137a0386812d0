package enginetest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/apitest"
	_ "github.com/ferry-dev/ferry/internal/components/all"
	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/engine"
	"github.com/ferry-dev/ferry/internal/enginetest"
	"github.com/ferry-dev/ferry/internal/spec"
)

func usersConnector(url string) string {
	return fmt.Sprintf(`name: harness
base_url: %s
streams:
  users:
    path: /users
    records: data
    primary_key: id
    cursor: updated_at
    incremental: {param: updated_since}
    paginate: {type: page_number, size: 10, size_param: per_page, stop_on_short_page: true}
`, url)
}

// TestSameAssertionsOnEveryDestination runs one pipeline, three times, on
// SQLite, PostgreSQL and MySQL: what a run reports (summary, events) and
// what it leaves (rows read back as canonical text, state) are the same
// on each.
func TestSameAssertionsOnEveryDestination(t *testing.T) {
	for _, kind := range enginetest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			users := apitest.Users(25)
			api := apitest.New(t, users, apitest.PageNumber, 10)
			p := enginetest.New(t, enginetest.Config{Connector: usersConnector(api.URL), Pipeline: "connector: connector.yaml\n", Dest: kind})
			if got := p.Target().Kind; got != kind {
				t.Fatalf("target kind = %s, want %s", got, kind)
			}
			if kind != enginetest.SQLite && !strings.HasPrefix(p.Name(), "ferry_t_") {
				t.Fatalf("a pipeline on a shared server is named %q, not a unique name", p.Name())
			}

			res := p.Run().Check(t)
			if s := res.Stream("users"); s.Records != 25 || s.Pages != 3 || s.Status != dest.Succeeded || !s.NewTable {
				t.Fatalf("first run: %+v", s)
			}
			if _, ok := res.Events[0].(engine.RunStarted); !ok {
				t.Fatalf("first event is %T, want RunStarted", res.Events[0])
			}
			if _, ok := res.Events[len(res.Events)-1].(engine.RunFinished); !ok {
				t.Fatalf("last event is %T, want RunFinished", res.Events[len(res.Events)-1])
			}
			pages := enginetest.EventsOf[engine.PageFetched](res.Events)
			if len(pages) != 3 || !pages[2].Last || pages[0].Records != 10 || pages[2].Records != 5 {
				t.Fatalf("pages = %+v", pages)
			}
			var committed int64
			for _, c := range enginetest.EventsOf[engine.Committed](res.Events) {
				committed += c.Rows
			}
			if committed != 25 {
				t.Fatalf("commits made %d rows durable, want 25", committed)
			}
			if n := p.Count("users"); n != 25 {
				t.Fatalf("count = %d", n)
			}
			if n := p.Count("no_such_table"); n != -1 {
				t.Fatalf("count of a missing table = %d, want -1", n)
			}
			row8 := "8|user8@example.com|7.5|true|2024-01-01T00:07:00Z|{\"plan\":\"pro\",\"seats\":0}"
			if got := p.Rows("users", "id", "email", "score", "active", "updated_at", "profile"); len(got) != 25 || !slices.Contains(got, row8) {
				t.Fatalf("rows = %q, want 25 with %q", got, row8)
			}
			if l := p.Layout("users"); l == nil || l.Column("updated_at") == nil || l.Cursor != "updated_at" {
				t.Fatalf("layout = %+v", l)
			}
			var st struct{ Cursor string }
			if err := json.Unmarshal(p.State("users", ""), &st); err != nil || st.Cursor != users[24]["updated_at"] {
				t.Fatalf("state = %s (%v)", p.State("users", ""), err)
			}
			if entries := p.States(""); len(entries) != 1 || entries[0].Stream != "users" || entries[0].RunID != res.Summary.RunID {
				t.Fatalf("states = %+v", entries)
			}

			// Incremental: nothing new, then one changed record.
			if s := p.Run().Check(t).Stream("users"); s.Records != 0 || s.NewTable {
				t.Fatalf("second run: %+v", s)
			}
			users[3]["email"], users[3]["updated_at"] = "changed@example.com", "2024-02-01T00:00:00Z"
			if s := p.Run().Check(t).Stream("users"); s.Records != 1 {
				t.Fatalf("third run: %+v", s)
			}
			if got := p.Rows("users", "id", "email"); len(got) != 25 || !slices.Contains(got, "4|changed@example.com") {
				t.Fatalf("rows after the change = %q", got)
			}
		})
	}
}

// TestCancelWhen cancels a run when its first commit is published: the
// commit stays, the run reports the interruption, and the next run
// finishes the job.
func TestCancelWhen(t *testing.T) {
	users := apitest.Users(100)
	api := apitest.New(t, users, apitest.PageNumber, 10)
	p := enginetest.New(t, enginetest.Config{Connector: usersConnector(api.URL), Pipeline: "connector: connector.yaml\nsync: {checkpoint_rows: 10}\n"})
	res := p.RunWith(enginetest.Options{CancelWhen: func(e engine.Event) bool {
		_, ok := e.(engine.Committed)
		return ok
	}})
	if res.Err == nil || !errors.Is(res.Err, context.Canceled) || res.Stream("users").Status != dest.Cancelled {
		t.Fatalf("cancelled run: %v, %+v", res.Err, res.Stream("users"))
	}
	n := p.Count("users")
	if n < 10 || n >= 100 || n != res.Stream("users").Records {
		t.Fatalf("rows after the cancellation = %d (summary %d)", n, res.Stream("users").Records)
	}
	if s := p.Run().Check(t).Stream("users"); s.Records != 100-n {
		t.Fatalf("resumed run wrote %d rows, want %d", s.Records, 100-n)
	}
	if n := p.Count("users"); n != 100 {
		t.Fatalf("rows after resuming = %d", n)
	}
}

// TestStartAndWaitFor starts a run whose API holds its second page back,
// waits for the first page's event, sees the run still going, lets the
// API answer and waits for the end.
func TestStartAndWaitFor(t *testing.T) {
	api := apitest.New(t, apitest.Users(20), apitest.PageNumber, 10)
	release := make(chan struct{})
	inner := api.Config.Handler
	api.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("page") == "2" {
			<-release
		}
		inner.ServeHTTP(w, r)
	})
	p := enginetest.New(t, enginetest.Config{Connector: usersConnector(api.URL), Pipeline: "connector: connector.yaml\n"})
	run := p.Start(enginetest.Options{})
	e, ok := run.WaitFor(func(e engine.Event) bool {
		pf, ok := e.(engine.PageFetched)
		return ok && pf.Records == 10
	}, 30*time.Second)
	if !ok {
		t.Fatal("no page event within 30s")
	}
	if e.Run() == "" || run.Engine() == nil || e.Run() != run.Engine().ID {
		t.Fatalf("event of run %q, the run is %v", e.Run(), run.Engine())
	}
	select {
	case <-run.Done():
		t.Fatal("the run ended while the API held a page back")
	default:
	}
	close(release)
	res := run.Wait().Check(t)
	if s := res.Stream("users"); s.Records != 20 {
		t.Fatalf("summary: %+v", s)
	}
	// Waiting for an event that never comes ends with the run.
	if _, ok := run.WaitFor(func(e engine.Event) bool { _, ok := e.(engine.DriftFound); return ok }, time.Minute); ok {
		t.Fatal("WaitFor found a DriftFound event the run did not publish")
	}
}

// TestStages: a pipeline that does not load, or does not resolve, fails
// before any request, and the result says where.
func TestStages(t *testing.T) {
	api := apitest.New(t, apitest.Users(3), apitest.PageNumber, 10)
	conn := strings.Replace(usersConnector(api.URL), "streams:", "config:\n  token: {secret: true}\nstreams:", 1)
	p := enginetest.New(t, enginetest.Config{Connector: conn, Pipeline: "connector: connector.yaml\nconfig: {token: \"${TOKEN}\"}\n"})
	res := p.Run()
	var ps spec.Problems
	if res.Stage != enginetest.StageResolve || !errors.As(res.Err, &ps) || res.Summary != nil || !strings.Contains(res.Err.Error(), "TOKEN") {
		t.Fatalf("unresolved: stage %s, %v", res.Stage, res.Err)
	}
	if n := api.Requests(); n != 0 {
		t.Fatalf("an unresolved pipeline made %d requests", n)
	}
	p.SetEnv("TOKEN", "t0k3n")
	if res := p.Run(); res.Err != nil {
		t.Fatalf("with the variable set: %s: %v", res.Stage, res.Err)
	}
	ran := api.Requests()
	if ran == 0 {
		t.Fatal("the run that executed made no request")
	}
	p.Write("pipeline.yaml", "connector: connector.yaml\nmode: no_such_mode\ndestination: {type: sqlite, path: out.db}\n")
	if res := p.Run(); res.Stage != enginetest.StageLoad || !errors.As(res.Err, &ps) {
		t.Fatalf("a broken pipeline: stage %s, %v", res.Stage, res.Err)
	}
	if n := api.Requests(); n != ran {
		t.Fatalf("%d requests, want the %d of the one run that executed", n, ran)
	}
}

// TestOwnDestination: a pipeline with its own destination: section is
// run and read as it is.
func TestOwnDestination(t *testing.T) {
	api := apitest.New(t, apitest.Users(3), apitest.PageNumber, 10)
	p := enginetest.New(t, enginetest.Config{
		Connector: usersConnector(api.URL),
		Pipeline:  "connector: connector.yaml\ndestination: {type: sqlite, path: \"data/${DB}\"}\nmode: full_refresh_append\n",
		Env:       map[string]string{"DB": "mine.db"},
	})
	if p.Target() != (enginetest.Target{}) {
		t.Fatalf("target = %+v, want none", p.Target())
	}
	p.Run().Check(t)
	p.Run().Check(t)
	if got := p.Rows("users", "id"); !slices.Equal(got, []string{"1", "1", "2", "2", "3", "3"}) {
		t.Fatalf("rows = %q", got)
	}
	if got := p.Query("SELECT COUNT(*) FROM users"); !slices.Equal(got, []string{"6"}) {
		t.Fatalf("count = %q", got)
	}
	if _, err := os.Stat(filepath.Join(p.Dir(), "data", "mine.db")); err != nil {
		t.Fatalf("the pipeline's own database file: %v", err)
	}
}

// TestBeforeWrite counts each stream's writes through a wrapped
// destination, which the run uses with all its capabilities (its state
// is committed with the rows).
func TestBeforeWrite(t *testing.T) {
	api := apitest.New(t, apitest.Users(35), apitest.PageNumber, 10)
	p := enginetest.New(t, enginetest.Config{Connector: usersConnector(api.URL), Pipeline: "connector: connector.yaml\n"})
	var writes atomic.Int64
	var last atomic.Int64
	res := p.RunWith(enginetest.Options{Wrap: func(d dest.Destination, _ *enginetest.Running) dest.Destination {
		return enginetest.BeforeWrite(d, func(stream string, n int) {
			if stream == "users" {
				writes.Add(1)
				last.Store(int64(n))
			}
		})
	}}).Check(t)
	if writes.Load() != 4 || last.Load() != 4 || res.Stream("users").Records != 35 {
		t.Fatalf("writes = %d, last n = %d, summary %+v", writes.Load(), last.Load(), res.Stream("users"))
	}
	if p.State("users", "") == nil {
		t.Fatal("no state through the wrapped destination")
	}
}

func TestRender(t *testing.T) {
	at := time.Date(2024, 5, 1, 12, 30, 0, 123000, time.FixedZone("x", 3600))
	for _, tc := range []struct {
		v    any
		want string
	}{
		{nil, "NULL"},
		{true, "true"},
		{false, "false"},
		{int64(-42), "-42"},
		{1.5, "1.5"},
		{1e300, "1e+300"},
		{math.Inf(1), "+Inf"},
		{at, "2024-05-01T11:30:00.000123Z"},
		{"text", "text"},
		{`{"a":1}`, `{"a":1}`},
		{[]byte("bytes"), "[98 121 116 101 115]"},
	} {
		if got := enginetest.Render(tc.v); got != tc.want {
			t.Errorf("Render(%#v) = %q, want %q", tc.v, got, tc.want)
		}
	}
}
