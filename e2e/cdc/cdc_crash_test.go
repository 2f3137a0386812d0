// Package cdc holds the end-to-end tests of change data capture: the real
// command line, run as a subprocess of the test binary, against a
// throwaway PostgreSQL with logical replication, killed with SIGKILL at
// random points while the database changes.
package cdc_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferry-dev/ferry/internal/change/changetest"
	"github.com/ferry-dev/ferry/internal/cli"
	_ "github.com/ferry-dev/ferry/internal/components/all"
	"github.com/ferry-dev/ferry/internal/dest/dbtest"
	mysqldest "github.com/ferry-dev/ferry/internal/dest/mysql"
	"github.com/ferry-dev/ferry/internal/testserver"
)

// TestMain lets the test binary act as the ferry command, and stops the
// throwaway servers at the end.
func TestMain(m *testing.M) {
	if os.Getenv("FERRY_TEST_AS_CLI") == "1" {
		os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(testserver.Main(m))
}

// event is one committed change of a key.
type event struct {
	op string // insert, update, delete
	v  int
}

// history records the committed changes per key, in commit order.
type history struct {
	mu   sync.Mutex
	keys map[int][]event
	n    int
}

func (h *history) add(k int, e event) {
	h.mu.Lock()
	h.keys[k] = append(h.keys[k], e)
	h.n++
	h.mu.Unlock()
}

// writer changes the table until stop is closed: single-statement and
// multi-statement transactions of inserts, updates and deletes over keys,
// each value unique. It records a change once its transaction committed.
func writer(t *testing.T, ctx context.Context, src *srcDB, h *history, rng *rand.Rand, stop <-chan struct{}) {
	conn := src.db
	exists := map[int]bool{}
	h.mu.Lock()
	for k := range h.keys {
		exists[k] = true
	}
	h.mu.Unlock()
	v := 100000
	tick := time.NewTicker(2 * time.Millisecond) // a steady load, not synchronisation
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		n := 1
		if rng.IntN(4) == 0 {
			n = 2 + rng.IntN(6) // a transaction of several changes
		}
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			t.Error(err)
			return
		}
		type pending struct {
			k int
			e event
		}
		var ps []pending
		touched := map[int]bool{}
		for i := 0; i < n; i++ {
			k := 1 + rng.IntN(60)
			if touched[k] {
				continue
			}
			touched[k] = true
			v++
			var e event
			switch {
			case !exists[k]:
				e = event{"insert", v}
				_, err = tx.ExecContext(ctx, src.q("INSERT INTO items (id, v, pad) VALUES ($1, $2, repeat('p', 50))"), k, v)
			case rng.IntN(6) == 0:
				e = event{"delete", 0}
				_, err = tx.ExecContext(ctx, src.q("DELETE FROM items WHERE id = $1"), k)
			default:
				e = event{"update", v}
				_, err = tx.ExecContext(ctx, src.q("UPDATE items SET v = $1 WHERE id = $2"), v, k)
			}
			if err != nil {
				t.Error(err)
				tx.Rollback()
				return
			}
			ps = append(ps, pending{k, e})
		}
		if err := tx.Commit(); err != nil {
			t.Error(err)
			return
		}
		for _, p := range ps {
			exists[p.k] = p.e.op != "delete"
			h.add(p.k, p.e)
		}
	}
}

// TestCrashAnywhereCDC: ferry run captures a PostgreSQL (and a MariaDB)
// table's changes into an HTTP endpoint (and JetStream) while the table
// changes without pause; ferry is
// killed with SIGKILL at random moments (during the snapshot and during
// streaming, mid-transaction), at least 20 times, and restarted. At the
// end every committed change has arrived, in commit order per key, after
// the key's last snapshot value; the only duplicates are re-deliveries of
// a change with its idempotency key, and they are counted.
func TestCrashAnywhereCDC(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test skipped in -short mode")
	}
	for _, tc := range []struct {
		src, dest string
		kills     int
	}{{"postgres", "http", 20}, {"postgres", "nats", 10}, {"mariadb", "http", 10}} {
		t.Run(tc.src+"_to_"+tc.dest, func(t *testing.T) {
			kills := tc.kills
			if v, err := strconv.Atoi(os.Getenv("FERRY_CDC_KILLS")); err == nil && v > 0 {
				kills = v
			}
			crashLoop(t, tc.src, tc.dest, kills)
		})
	}
}

// srcDB is the database whose changes are captured.
type srcDB struct {
	kind string // postgres or mariadb
	url  string
	db   *sql.DB
}

// q spells a statement written with $n placeholders for the database.
func (s *srcDB) q(stmt string) string {
	if s.kind == "postgres" {
		return stmt
	}
	for i := 9; i >= 1; i-- {
		stmt = strings.ReplaceAll(stmt, fmt.Sprintf("$%d", i), "?")
	}
	return stmt
}

func (s *srcDB) exec(t *testing.T, stmt string, args ...any) {
	t.Helper()
	if _, err := s.db.Exec(s.q(stmt), args...); err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
}

// newSrc makes a fresh database on a throwaway server with the table.
func newSrc(t *testing.T, kind string) *srcDB {
	s := &srcDB{kind: kind}
	name := dbtest.Name()
	if kind == "postgres" {
		s.url = freshDB(t)
		cc, err := pgx.ParseConfig(s.url)
		if err != nil {
			t.Fatal(err)
		}
		s.db = stdlib.OpenDB(*cc)
		t.Cleanup(func() { s.db.Close() })
		s.exec(t, "CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL, pad text)")
		s.exec(t, "ALTER TABLE items REPLICA IDENTITY FULL")
		return s
	}
	base := testserver.MariaDB(t)
	mc, err := mysqldest.ParseURL(base)
	if err != nil {
		t.Fatal(err)
	}
	mc.MultiStatements = false
	conn, _ := gomysql.NewConnector(mc)
	admin := sql.OpenDB(conn)
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Exec("DROP DATABASE " + name); admin.Close() })
	s.url = strings.Replace(base, "/test", "/"+name, 1)
	mc2, _ := mysqldest.ParseURL(s.url)
	mc2.MultiStatements = false
	conn2, _ := gomysql.NewConnector(mc2)
	s.db = sql.OpenDB(conn2)
	t.Cleanup(func() { s.db.Close() })
	s.exec(t, "CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL, pad text)")
	return s
}

// target is where the changes go: an HTTP endpoint or a JetStream stream.
type target struct {
	sink   *changetest.Sink
	js     jetstream.JetStream
	stream string
	dest   string // the pipeline's destination section
}

func newTarget(t *testing.T, kind string) *target {
	sink := changetest.New()
	t.Cleanup(sink.Close)
	tg := &target{sink: sink, dest: fmt.Sprintf("{type: http, url: %s, concurrency: 4, batch: {size: 10, wait: 2ms}}", sink.URL)}
	if kind == "nats" {
		u := os.Getenv("FERRY_TEST_NATS_URL")
		if u == "" {
			u = nats.DefaultURL
		}
		nc, err := nats.Connect(u, nats.Timeout(2*time.Second))
		if err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("NATS is unreachable at %s: %v", u, err)
			}
			t.Skipf("NATS is unreachable at %s: %v", u, err)
		}
		t.Cleanup(nc.Close)
		tg.js, _ = jetstream.New(nc)
		tg.stream = strings.ToUpper(dbtest.Name())
		subj := strings.ToLower(tg.stream)
		t.Cleanup(func() { tg.js.DeleteStream(context.Background(), tg.stream) })
		tg.dest = fmt.Sprintf("{type: nats, url: %s, subject: \"%s.{{ stream }}\", stream: {name: %s, subjects: [\"%s.>\"], create: true, duplicates: 10m}}", u, subj, tg.stream, subj)
	}
	return tg
}

// bodies returns every change received, in arrival order.
func (tg *target) bodies(t *testing.T) []json.RawMessage {
	if tg.js == nil {
		var out []json.RawMessage
		for _, rc := range tg.sink.Changes() {
			out = append(out, rc.Body)
		}
		return out
	}
	ctx := context.Background()
	s, err := tg.js.Stream(ctx, tg.stream)
	if err != nil {
		return nil
	}
	info, err := s.Info(ctx)
	if err != nil || info.State.Msgs == 0 {
		return nil
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(int(info.State.Msgs), jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var out []json.RawMessage
	for m := range batch.Messages() {
		out = append(out, m.Data())
	}
	return out
}

// waitFor polls the target until cond holds or timeout passes.
func (tg *target) waitFor(timeout time.Duration, cond func() bool) bool {
	if tg.js == nil {
		return tg.sink.WaitFor(timeout, cond)
	}
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(100 * time.Millisecond) // polling a server another process writes to
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
	return true
}

func crashLoop(t *testing.T, srcKind, kind string, kills int) {
	seed := time.Now().UnixNano()
	if v, err := strconv.ParseInt(os.Getenv("FERRY_CRASH_SEED"), 10, 64); err == nil {
		seed = v
	}
	t.Logf("seed %d (set FERRY_CRASH_SEED to replay)", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 1))
	src := newSrc(t, srcKind)
	url := src.url
	ctx := context.Background()
	h := &history{keys: map[int][]event{}}
	for k := 1; k <= 40; k++ {
		src.exec(t, "INSERT INTO items VALUES ($1, $2, 'initial')", k, k)
		h.add(k, event{"insert", k})
	}
	tg := newTarget(t, kind)
	dir := t.TempDir()
	srcType := map[string]string{"postgres": "postgres_cdc", "mariadb": "mysql_cdc"}[srcKind]
	os.WriteFile(filepath.Join(dir, "connector.yaml"), []byte(`name: crashcdc
type: `+srcType+`
config: {url: {secret: true}}
url: "{{ config.url }}"
batch_size: 7
max_wait: 5ms
streams:
  items: {table: items, primary_key: id}
`), 0o644)
	os.WriteFile(filepath.Join(dir, "pipeline.yaml"), []byte(fmt.Sprintf(`connector: connector.yaml
config: {url: "${SRC_URL}"}
destination: %s
state: {type: sqlite, path: state.db}
sync: {checkpoint_rows: 30, checkpoint_interval: 20ms}
`, tg.dest)), 0o644)
	self, _ := os.Executable()
	env := append(os.Environ(), "FERRY_TEST_AS_CLI=1", "SRC_URL="+url)
	ferry := func(args ...string) *exec.Cmd {
		cmd := exec.Command(self, args...)
		cmd.Env = env
		return cmd
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		writer(t, ctx, src, h, rand.New(rand.NewPCG(uint64(seed), 2)), stop)
	}()
	landed := 0
	for i := 0; landed < kills; i++ {
		var out bytes.Buffer
		cmd := ferry("run", "--quiet", filepath.Join(dir, "pipeline.yaml"))
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		at := time.Duration(50+rng.IntN(900)) * time.Millisecond
		select {
		case err := <-done:
			close(stop)
			wg.Wait()
			t.Fatalf("ferry run ended before its kill (%v):\n%s", err, out.String())
		case <-time.After(at):
			cmd.Process.Kill() // SIGKILL
			<-done
			landed++
		}
		if i > 3*kills {
			break
		}
	}
	close(stop)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	// A last run delivers the rest; then it is interrupted gracefully.
	var out bytes.Buffer
	cmd := ferry("run", "--quiet", filepath.Join(dir, "pipeline.yaml"))
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	total := h.n
	h.mu.Unlock()
	ok := tg.waitFor(90*time.Second, func() bool { return complete(h, tg.bodies(t)) })
	cmd.Process.Signal(syscall.SIGTERM)
	err := cmd.Wait()
	if !ok {
		t.Fatalf("not every committed change arrived (%d committed, %d received):\n%s", total, len(tg.bodies(t)), out.String())
	}
	if ee, isExit := err.(*exec.ExitError); !isExit || ee.ExitCode() != 130 {
		t.Fatalf("the interrupted run exited with %v, want 130:\n%s", err, out.String())
	}
	bodies := tg.bodies(t)
	dups := check(t, h, bodies)
	t.Logf("%s → %s: %d kills, %d committed changes, %d received (%d re-deliveries)", srcKind, kind, landed, total, len(bodies), dups)
	if kind == "nats" && dups > 0 {
		t.Errorf("JetStream stored %d changes twice: Nats-Msg-Id de-duplication did not hold", dups)
	}

	if srcKind != "postgres" {
		return // replication slots are PostgreSQL's
	}
	// The slot is visible, then dropped on request.
	var so bytes.Buffer
	st := ferry("cdc", "status", filepath.Join(dir, "pipeline.yaml"))
	st.Stdout, st.Stderr = &so, &so
	if err := st.Run(); err != nil || !strings.Contains(so.String(), "ferry_crashcdc_items") || !strings.Contains(so.String(), "false") {
		t.Fatalf("cdc status: %v\n%s", err, so.String())
	}
	// ferry state show says where the stream is, slot included.
	so.Reset()
	ss := ferry("state", "show", filepath.Join(dir, "pipeline.yaml"))
	ss.Stdout, ss.Stderr = &so, &so
	if err := ss.Run(); err != nil || !strings.Contains(so.String(), `"phase":"stream"`) || !strings.Contains(so.String(), `"slot":"ferry_crashcdc_items"`) {
		t.Fatalf("state show: %v\n%s", err, so.String())
	}
	so.Reset()
	dr := ferry("cdc", "drop-slot", "--stream", "items", "--yes", filepath.Join(dir, "pipeline.yaml"))
	dr.Stdout, dr.Stderr = &so, &so
	if err := dr.Run(); err != nil || !strings.Contains(so.String(), "dropped slot ferry_crashcdc_items") {
		t.Fatalf("cdc drop-slot: %v\n%s", err, so.String())
	}
	var n int
	src.db.QueryRow("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'ferry_crashcdc_items'").Scan(&n)
	if n != 0 {
		t.Fatal("the slot is still there")
	}
}

type item struct {
	Op   string           `json:"op"`
	Key  struct{ ID int } `json:"key"`
	IK   string           `json:"idempotency_key"`
	Pos  string           `json:"position"`
	Data *struct {
		V int `json:"v"`
	} `json:"data"`
}

// received returns each key's changes, first deliveries only, and the
// number of re-deliveries.
func received(bodies []json.RawMessage) (map[int][]item, int) {
	out := map[int][]item{}
	seen := map[string]bool{}
	dups := 0
	for _, b := range bodies {
		var it item
		if json.Unmarshal(b, &it) != nil {
			continue
		}
		if seen[it.IK] {
			dups++
			continue
		}
		seen[it.IK] = true
		out[it.Key.ID] = append(out[it.Key.ID], it)
	}
	return out, dups
}

// complete reports whether every key's last committed change arrived.
func complete(h *history, bodies []json.RawMessage) bool {
	got, _ := received(bodies)
	h.mu.Lock()
	defer h.mu.Unlock()
	for k, es := range h.keys {
		items := got[k]
		if len(items) == 0 {
			return false
		}
		last, it := es[len(es)-1], items[len(items)-1]
		if it.Op != last.op || (last.op != "delete" && (it.Data == nil || it.Data.V != last.v)) {
			return false
		}
	}
	return true
}

// check verifies each key: snapshot values (each a state the key had),
// then exactly the committed changes after the last snapshot value, in
// order. It returns the number of re-deliveries.
func check(t *testing.T, h *history, bodies []json.RawMessage) int {
	t.Helper()
	got, dups := received(bodies)
	h.mu.Lock()
	defer h.mu.Unlock()
	for k, es := range h.keys {
		items := got[k]
		var snaps, changes []item
		for _, it := range items {
			if it.Op == "upsert" {
				if len(changes) > 0 {
					t.Errorf("key %d: a snapshot row after changes: %+v", k, items)
				}
				snaps = append(snaps, it)
			} else {
				changes = append(changes, it)
			}
		}
		// The changes must be the last len(changes) committed ones.
		if len(changes) > len(es) {
			t.Errorf("key %d: %d changes arrived, %d were committed", k, len(changes), len(es))
			continue
		}
		j := len(es) - len(changes)
		for i, it := range changes {
			e := es[j+i]
			if it.Op != e.op || (e.op != "delete" && (it.Data == nil || it.Data.V != e.v)) {
				t.Errorf("key %d: change %d is %s %+v, want %+v (committed: %+v)", k, i, it.Op, it.Data, e, es)
				break
			}
		}
		// What came before the first change arrived as the snapshot value.
		if j > 0 {
			prev := es[j-1]
			if prev.op == "delete" {
				continue // the key did not exist at the snapshot
			}
			if len(snaps) == 0 || snaps[len(snaps)-1].Data == nil || snaps[len(snaps)-1].Data.V != prev.v {
				t.Errorf("key %d: the changes before %+v were lost (snapshot rows %+v, committed %+v)", k, es[j], snaps, es)
			}
		} else if len(snaps) > 0 {
			t.Errorf("key %d: a snapshot row and every change: %+v", k, items)
		}
	}
	return dups
}

func mustExec(t *testing.T, conn *pgx.Conn, q string, args ...any) {
	t.Helper()
	t.Helper()
	if _, err := conn.Exec(context.Background(), q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// freshDB creates a database on the throwaway server, dropped at the end.
func freshDB(t *testing.T) string {
	base := testserver.Postgres(t)
	name := dbtest.Name()
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	mustExec(t, admin, "CREATE DATABASE "+name)
	t.Cleanup(func() {
		a, err := pgx.Connect(ctx, base)
		if err != nil {
			return
		}
		defer a.Close(ctx)
		a.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1 AND NOT active", name)
		a.Exec(ctx, "DROP DATABASE "+name+" WITH (FORCE)")
	})
	return strings.Replace(base, "/postgres?", "/"+name+"?", 1)
}
