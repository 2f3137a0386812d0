package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/apitest"
	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/dest/dbtest"
	"github.com/ferry-dev/ferry/internal/dest/sqlite"
	"github.com/ferry-dev/ferry/internal/engine"
	"github.com/ferry-dev/ferry/internal/enginetest"
	"github.com/ferry-dev/ferry/internal/normalize"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/schema"
	"github.com/ferry-dev/ferry/internal/source"
)

// fakeSource is a source whose streams a test scripts: read is called for
// each Read.
type fakeSource struct {
	streams []source.Stream
	read    func(ctx context.Context, req source.ReadRequest) error
	closed  bool
}

func (f *fakeSource) Streams() []source.Stream { return f.streams }
func (f *fakeSource) Read(ctx context.Context, req source.ReadRequest) error {
	return f.read(ctx, req)
}
func (f *fakeSource) Close() error { f.closed = true; return nil }

// fakeConnector declares the streams of a fakeSource to the pipeline (the
// engine reads the fake source itself).
const fakeConnector = "name: fake\nbase_url: http://unused.invalid\nconfig: {token: {secret: true}}\nstreams:\n  items: {path: /items, primary_key: id, cursor: at}\n"

// typedChunk builds a chunk of typed rows named by the source's columns.
func typedChunk(cols []schema.Column, rows ...[]any) *record.Chunk {
	tb := &schema.Table{Name: "src", Columns: cols}
	c := record.NewChunk(tb, len(rows))
	for _, row := range rows {
		for j, v := range row {
			vec := &c.Cols[j]
			switch x := v.(type) {
			case nil:
				vec.AppendNull(cols[j].Type)
			case int:
				vec.AppendInt(int64(x), nil)
			case float64:
				vec.AppendFloat(x, nil)
			case string:
				vec.AppendBytes([]byte(x))
			case time.Time:
				vec.AppendInt(x.UnixMicro(), nil)
			}
		}
		c.Ops = append(c.Ops, record.Upsert)
		c.Len++
	}
	return c
}

// TestTypedRows: a source that has typed rows (a database) emits them as
// chunks: they land without a JSON round trip, columns are added and
// widened as for JSON, and the incremental cursor filters them.
func TestTypedRows(t *testing.T) {
	at := func(h int) time.Time { return time.Date(2024, 1, 1, h, 0, 0, 0, time.UTC) }
	var pages []*record.Page
	src := &fakeSource{streams: []source.Stream{{Name: "items", PrimaryKey: []string{"id"}, Cursor: "at"}}}
	src.read = func(ctx context.Context, req source.ReadRequest) error {
		part := &record.Partition{}
		start, err := req.Start(ctx, part)
		if err != nil {
			return err
		}
		_ = start
		for i, p := range pages {
			p.Partition, p.Stream, p.Last, p.Number = part, "items", i == len(pages)-1, i+1
			p.Position = json.RawMessage(fmt.Sprint(i + 1))
			if err := req.Emit(ctx, p); err != nil {
				return err
			}
		}
		return nil
	}
	e := newEnv(t, fakeConnector, pipelineSQLite)
	idAt := []schema.Column{{Name: "id", Type: schema.Int}, {Name: "at", Type: schema.Timestamp}, {Name: "n", Type: schema.Int}}
	pages = []*record.Page{
		{Chunk: typedChunk(idAt, []any{1, at(1), 10}, []any{2, at(2), 20})},
		// A new column, and n widens from int to float.
		{Chunk: typedChunk([]schema.Column{{Name: "id", Type: schema.Int}, {Name: "at", Type: schema.Timestamp}, {Name: "n", Type: schema.Float}, {Name: "label", Type: schema.Text}},
			[]any{3, at(3), 2.5, "three"})},
	}
	if _, err := e.runWith(engine.Options{Source: src}); err != nil {
		t.Fatal(err)
	}
	if got := e.query("SELECT id, at, typeof(n), n, label FROM items ORDER BY id"); strings.Join(got, ";") != "1|2024-01-01T01:00:00.000000Z|real|10|NULL;2|2024-01-01T02:00:00.000000Z|real|20|NULL;3|2024-01-01T03:00:00.000000Z|real|2.5|three" {
		t.Fatalf("rows = %q", got)
	}
	// The next run reads from the saved cursor: a row below it is dropped,
	// the row at it (already stored) too, a newer one lands.
	pages = []*record.Page{{Chunk: typedChunk(idAt, []any{1, at(1), 11}, []any{3, at(3), 30}, []any{4, at(4), 40})}}
	sum, err := e.runWith(engine.Options{Source: src})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Streams[0].Records != 1 || sum.Streams[0].Filtered != 2 {
		t.Fatalf("second run: %+v", sum.Streams[0])
	}
	if got := e.query("SELECT id, n FROM items ORDER BY id"); strings.Join(got, ";") != "1|10;2|20;3|2.5;4|40" {
		t.Fatalf("rows after the incremental run = %q", got)
	}
	if !src.closed {
		t.Fatal("the run did not close the source")
	}
}

// TestUnboundedAcks: an unbounded stream (a push source) is committed by
// rows and time and never finished; each page's Ack is called only once
// its rows are durable, and on cancellation what was written is committed.
func TestUnboundedAcks(t *testing.T) {
	e := newEnv(t, fakeConnector, pipelineSQLite+"sync: {checkpoint_rows: 2, checkpoint_interval: 1h}\n")
	type ack struct {
		id      int
		err     error
		durable bool
	}
	var mu sync.Mutex
	var acks []ack
	durable := func(id int) bool {
		db, err := sqlite.OpenReadOnly(filepath.Join(e.Dir(), "out.db"))
		if err != nil {
			return false
		}
		defer db.Close()
		var n int
		db.QueryRow("SELECT COUNT(*) FROM items WHERE id = ?", id).Scan(&n)
		return n == 1
	}
	allAcked := make(chan struct{})
	src := &fakeSource{streams: []source.Stream{{Name: "items", PrimaryKey: []string{"id"}, Unbounded: true}}}
	src.read = func(ctx context.Context, req source.ReadRequest) error {
		part := &record.Partition{}
		if _, err := req.Start(ctx, part); err != nil {
			return err
		}
		for id := 1; id <= 6; id++ {
			id := id
			p := &record.Page{Stream: "items", Partition: part, Number: id, Records: [][]byte{[]byte(fmt.Sprintf(`{"id":%d}`, id))},
				Position: json.RawMessage(fmt.Sprint(id)), Request: "push"}
			p.Ack = func(err error) {
				mu.Lock()
				defer mu.Unlock()
				acks = append(acks, ack{id: id, err: err, durable: durable(id)})
				if len(acks) == 6 {
					close(allAcked)
				}
			}
			if err := req.Emit(ctx, p); err != nil {
				return err
			}
		}
		<-ctx.Done() // an unbounded source reads until cancelled
		return ctx.Err()
	}
	run := e.Start(enginetest.Options{Engine: engine.Options{Source: src}})
	// Six pages with a commit every two rows: every page is acknowledged
	// before the run is cancelled.
	select {
	case <-allAcked:
	case <-time.After(20 * time.Second):
		t.Fatal("not every page was acknowledged")
	}
	run.Cancel()
	run.Wait()
	mu.Lock()
	defer mu.Unlock()
	for _, a := range acks {
		if a.err != nil || !a.durable {
			t.Fatalf("page %d acknowledged with %v, its row durable: %v", a.id, a.err, a.durable)
		}
	}
	if got := e.query("SELECT COUNT(*) FROM items"); got[0] != "6" {
		t.Fatalf("rows = %v", got)
	}
	st := e.query("SELECT state FROM _ferry_state WHERE stream = 'items' AND partition_key = ''")
	if len(st) != 1 || !strings.Contains(st[0], `"position":6`) {
		t.Fatalf("state = %v", st)
	}
}

// TestStateElsewhere: with a state: section, state is kept in that store
// (not the destination), saved after each commit, and the next run is
// incremental from it.
func TestStateElsewhere(t *testing.T) {
	users := sampleUsers(30)
	api := newUsersAPI(t, users)
	e := newEnv(t, connector(api.URL, usersStream), pipelineSQLite+"state: {type: sqlite, path: state.db}\n")
	if _, err := e.run(); err != nil {
		t.Fatal(err)
	}
	if got := e.query("SELECT COUNT(*) FROM users"); got[0] != "30" {
		t.Fatalf("rows = %v", got)
	}
	if got := e.query("SELECT COUNT(*) FROM _ferry_state"); got[0] != "0" {
		t.Fatalf("the destination holds %s state rows; they belong in state.db", got[0])
	}
	st, err := sqlite.OpenReadOnly(filepath.Join(e.Dir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	var cursor string
	if err := st.QueryRow("SELECT state FROM _ferry_state WHERE stream = 'users'").Scan(&cursor); err != nil || !strings.Contains(cursor, users[len(users)-1]["updated_at"].(string)) {
		t.Fatalf("state in state.db = %q, %v", cursor, err)
	}
	st.Close()
	before := api.Requests()
	sum, err := e.run()
	if err != nil {
		t.Fatal(err)
	}
	if sum.Streams[0].Records != 0 || !slices.Contains(api.URLs()[before:], "/users?page=1&per_page=10&updated_since="+strings.ReplaceAll(users[len(users)-1]["updated_at"].(string), ":", "%3A")) {
		t.Fatalf("second run not incremental: %+v %v", sum.Streams[0], api.URLs()[before:])
	}
}

// TestSharedPostgresState: one PostgreSQL state store serves several
// processes: runs of different streams proceed at once, a second run of
// the same stream is refused while the first holds it.
func TestSharedPostgresState(t *testing.T) {
	u, schema := dbtest.Postgres(t)
	users := sampleUsers(20)
	api := newUsersAPI(t, users)
	pipeline := pipelineSQLite + fmt.Sprintf("state: {type: postgres, url: %q, schema: %s}\n", u, schema)
	a := newEnv(t, connector(api.URL, usersStream), pipeline)
	b := newEnv(t, connector(api.URL, usersStream), pipeline)
	// a holds the lock of users.
	p, r := a.Load()
	d, err := dest.Open(context.Background(), p.State.Type, r.State, dest.Options{Dir: p.Dir})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	release, err := d.(dest.StateKeeper).State().Lock(context.Background(), "test", "users", dest.Holder{RunID: "other-run", Since: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.run()
	var le *dest.LockedError
	if !errors.As(err, &le) || le.Holder.RunID != "other-run" {
		t.Fatalf("a run of a locked stream: %v", err)
	}
	release()
	if _, err := b.run(); err != nil {
		t.Fatal(err)
	}
	// b's state is visible to a: a's first run is incremental.
	sum, err := a.run()
	if err != nil {
		t.Fatal(err)
	}
	if sum.Streams[0].Records != 0 {
		t.Fatalf("a did not see b's state: %+v", sum.Streams[0])
	}
}

// TestEventsAndTypedErrors: a run publishes its events in order, and the
// error of Execute keeps each stream's error's type.
func TestEventsAndTypedErrors(t *testing.T) {
	users := sampleUsers(25)
	api := newUsersAPI(t, users)
	e := newEnv(t, connector(api.URL, usersStream+"  things: {path: /things, records: data, primary_key: id}\n"), pipelineSQLite+"schema: {policy: freeze}\n")
	var mu sync.Mutex
	var kinds []string
	commits := 0
	obs := engine.ObserverFunc(func(ev engine.Event) {
		mu.Lock()
		defer mu.Unlock()
		switch ev.(type) {
		case engine.RunStarted:
			kinds = append(kinds, "run-started")
		case engine.RunFinished:
			kinds = append(kinds, "run-finished")
		case engine.Committed:
			commits++
		}
	})
	// The first run creates the tables; the second finds a new field in a
	// frozen table: a *normalize.SchemaError, typed through Execute.
	if _, err := e.runWith(engine.Options{Observer: obs, Streams: []string{"users"}}); err != nil {
		t.Fatal(err)
	}
	if len(kinds) != 2 || kinds[0] != "run-started" || kinds[1] != "run-finished" || commits == 0 {
		t.Fatalf("events: %v, %d commits", kinds, commits)
	}
	for _, u := range users {
		u["new_field"] = 1
		u["updated_at"] = "2030-01-01T00:00:00Z"
	}
	_, err := e.runWith(engine.Options{Streams: []string{"users"}})
	var se *normalize.SchemaError
	var streamErr *engine.StreamError
	if !errors.As(err, &se) || !errors.As(err, &streamErr) || streamErr.Stream != "users" {
		t.Fatalf("Execute's error does not keep its type: %T %v", err, err)
	}
	// Cancelled runs are context.Canceled.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if res := e.RunWith(enginetest.Options{Context: ctx}); res.Stage != enginetest.StageExecute || !errors.Is(res.Err, context.Canceled) {
		t.Fatalf("a cancelled run's error: %v", res.Err)
	}
}

// usersStream is a users stream of apitest's page-number API.
const usersStream = "  users: {path: /users, records: data, primary_key: id, cursor: updated_at, incremental: {param: updated_since}, paginate: {type: page_number, size: 10, size_param: per_page}}\n"

func sampleUsers(n int) []map[string]any { return apitest.Users(n) }

// newUsersAPI serves users behind the env's bearer token.
func newUsersAPI(t *testing.T, users []map[string]any) *apitest.API {
	api := apitest.New(t, users, apitest.PageNumber, 10)
	api.Token = "s3cret-token"
	return api
}

// TestEveryEventPublished: an observer is told of every stage of a run —
// its start, the stream's start, every request and page, the commits, a
// layout change, the stream's end with its summary, and the run's end.
func TestEveryEventPublished(t *testing.T) {
	users := sampleUsers(25)
	api := newUsersAPI(t, users)
	e := newEnv(t, connector(api.URL, usersStream), pipelineSQLite)
	var mu sync.Mutex
	count := map[string]int{}
	records := 0
	var drift []engine.DriftFound
	var finished []engine.StreamFinished
	obs := engine.ObserverFunc(func(ev engine.Event) {
		mu.Lock()
		defer mu.Unlock()
		if ev.Run() == "" {
			t.Errorf("%T without a run id", ev)
		}
		switch ev := ev.(type) {
		case engine.RunStarted:
			count["run-started"]++
		case engine.StreamStarted:
			if ev.Stream != "users" || ev.Table != "users" || ev.Attempt != 1 {
				t.Errorf("stream started: %+v", ev)
			}
			count["stream-started"]++
		case engine.Requested:
			if ev.Stream != "users" || ev.Status != http.StatusOK {
				t.Errorf("requested: %+v", ev.Request)
			}
			count["requested"]++
		case engine.PageFetched:
			records += ev.Records
			count["page"]++
		case engine.Committed:
			count["committed"]++
		case engine.DriftFound:
			drift = append(drift, ev)
		case engine.StreamFinished:
			finished = append(finished, ev)
		case engine.RunFinished:
			if ev.Summary == nil || ev.Err != nil {
				t.Errorf("run finished: %+v", ev)
			}
			count["run-finished"]++
		}
	})
	if _, err := e.runWith(engine.Options{Observer: obs}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if count["run-started"] != 1 || count["stream-started"] != 1 || count["run-finished"] != 1 ||
		count["requested"] < 3 || count["page"] < 3 || count["committed"] < 1 || records != len(users) {
		t.Fatalf("events of the first run: %v, %d records on pages", count, records)
	}
	if len(finished) != 1 || finished[0].Err != nil || finished[0].Summary.Stream != "users" || finished[0].Summary.Records != int64(len(users)) {
		t.Fatalf("stream finished: %+v", finished)
	}
	if len(drift) != 0 { // creating a table is not drift
		t.Fatalf("drift of the first run: %+v", drift)
	}
	mu.Unlock()

	// A field that appears later is drift of the table, told once.
	for _, u := range users {
		u["new_field"] = 1
		u["updated_at"] = "2030-01-01T00:00:00Z"
	}
	if _, err := e.runWith(engine.Options{Observer: obs}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	found := false
	for _, d := range drift {
		for _, c := range d.Changes {
			found = found || (d.Table == "users" && c.Kind == schema.Added && c.Column == "new_field")
		}
	}
	if !found {
		t.Fatalf("no drift event for the added column: %+v", drift)
	}
}

// TestAckOnFailure: a page whose rows cannot be written is acknowledged
// with the error (a push source then answers its sender with a failure),
// exactly once, and its row is not in the table.
func TestAckOnFailure(t *testing.T) {
	e := newEnv(t, fakeConnector, pipelineSQLite+"schema: {policy: freeze}\n")
	var mu sync.Mutex
	var acks []error
	emit := func(body string) func(ctx context.Context, req source.ReadRequest) error {
		return func(ctx context.Context, req source.ReadRequest) error {
			part := &record.Partition{}
			if _, err := req.Start(ctx, part); err != nil {
				return err
			}
			p := &record.Page{Stream: "items", Partition: part, Number: 1, Records: [][]byte{[]byte(body)}, Last: true, Request: "push"}
			p.Ack = func(err error) {
				mu.Lock()
				defer mu.Unlock()
				acks = append(acks, err)
			}
			return req.Emit(ctx, p)
		}
	}
	src := &fakeSource{streams: []source.Stream{{Name: "items", PrimaryKey: []string{"id"}}}}
	src.read = emit(`{"id":1}`)
	if _, err := e.runWith(engine.Options{Source: src}); err != nil {
		t.Fatal(err)
	}
	src.read = emit(`{"id":2,"extra":"a field the frozen table does not have"}`)
	_, err := e.runWith(engine.Options{Source: src})
	var se *normalize.SchemaError
	if !errors.As(err, &se) {
		t.Fatalf("second run: %T %v", err, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(acks) != 2 || acks[0] != nil || acks[1] == nil || !errors.As(acks[1], &se) {
		t.Fatalf("acks = %v", acks)
	}
	if got := e.query("SELECT COUNT(*) FROM items"); got[0] != "1" {
		t.Fatalf("rows = %v", got)
	}
}
