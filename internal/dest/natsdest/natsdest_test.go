package natsdest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferry-dev/ferry/internal/change"
	_ "github.com/ferry-dev/ferry/internal/components/all"
	"github.com/ferry-dev/ferry/internal/dest/dbtest"
	"github.com/ferry-dev/ferry/internal/engine"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/schema"
	"github.com/ferry-dev/ferry/internal/source"
	"github.com/ferry-dev/ferry/internal/spec"
)

// natsURL returns the JetStream test server's URL (FERRY_TEST_NATS_URL,
// default nats://127.0.0.1:4222), skipping the test when it is down, or
// failing it with CI=true.
func natsURL(t *testing.T) string {
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
	nc.Close()
	return u
}

type ev struct {
	id int
	op record.Op
	v  int
}

// changeSource replays scripted changes, resuming from the saved index;
// with replayFrom >= 0 it first re-sends from that index (what a source
// does after a crash between publishing and saving the state).
type changeSource struct {
	events []ev
	per    int
}

func (s *changeSource) Streams() []source.Stream {
	return []source.Stream{{Name: "items", PrimaryKey: []string{"id"}, Unbounded: true}}
}
func (s *changeSource) Close() error { return nil }
func (s *changeSource) Read(ctx context.Context, req source.ReadRequest) error {
	part := &record.Partition{}
	st, err := req.Start(ctx, part)
	if err != nil {
		return err
	}
	next := 0
	if len(st.Resume) > 0 {
		json.Unmarshal(st.Resume, &next)
	}
	cols := []schema.Column{{Name: "id", Type: schema.Int}, {Name: "v", Type: schema.Int}, {Name: change.ColPosition, Type: schema.Text}}
	for n := 1; next < len(s.events); n++ {
		c := record.NewChunk(&schema.Table{Name: "items", Columns: cols}, s.per)
		for ; next < len(s.events) && c.Len < s.per; next++ {
			e := s.events[next]
			c.Cols[0].AppendInt(int64(e.id), nil)
			c.Cols[1].AppendInt(int64(e.v), nil)
			c.Cols[2].AppendBytes([]byte(fmt.Sprintf("%016X/%08d", next, 1)))
			c.Ops = append(c.Ops, e.op)
			c.Len++
		}
		pos, _ := json.Marshal(next)
		if err := req.Emit(ctx, &record.Page{Stream: "items", Partition: part, Chunk: c, Position: pos, Number: n, Request: "script"}); err != nil {
			return err
		}
	}
	return nil
}

func run(t *testing.T, dir string, src source.Source) {
	t.Helper()
	p, err := spec.LoadPipeline(filepath.Join(dir, "pipeline.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := p.Resolve(engine.Env)
	if err != nil {
		t.Fatal(err)
	}
	rn, err := engine.New(context.Background(), engine.Options{Pipeline: p, Resolved: r, Source: src})
	if err != nil {
		t.Fatal(err)
	}
	defer rn.Close()
	if _, err := rn.Execute(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestPublish: every change becomes a message on its templated subject,
// in order per key, with its Nats-Msg-Id; changes published again (a
// source re-reading after a crash) are dropped by JetStream, so the
// stream holds each change once.
func TestPublish(t *testing.T) {
	u := natsURL(t)
	name := strings.ToUpper(dbtest.Name())
	prefix := strings.ToLower(name)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "connector.yaml"), []byte("name: fake\nbase_url: http://unused.invalid\nstreams:\n  items: {path: /items, primary_key: id}\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "pipeline.yaml"), []byte(fmt.Sprintf(`connector: connector.yaml
destination: {type: nats, url: %s, subject: "%s.{{ stream }}.{{ op }}", stream: {name: %s, subjects: ["%s.>"], create: true, duplicates: 1m}}
state: {type: sqlite, path: state.db}
sync: {checkpoint_rows: 50}
`, u, prefix, name, prefix)), 0o644)
	nc, err := nats.Connect(u)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	t.Cleanup(func() { js.DeleteStream(context.Background(), name) })

	var events []ev
	for i := 0; i < 1000; i++ {
		op := record.Update
		if i < 10 {
			op = record.Insert
		}
		if i%97 == 0 && i > 10 {
			op = record.Delete
		}
		events = append(events, ev{id: i%10 + 1, op: op, v: i})
	}
	run(t, dir, &changeSource{events: events, per: 33})
	// A second reader starting from scratch (state lost between publish and
	// save) publishes everything again: JetStream stores none of it twice.
	os.Remove(filepath.Join(dir, "state.db"))
	run(t, dir, &changeSource{events: events, per: 50})

	s, err := js.Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := s.Info(context.Background())
	if info.State.Msgs != 1000 {
		t.Fatalf("the stream holds %d messages, want 1000 (each change once)", info.State.Msgs)
	}
	cons, err := s.OrderedConsumer(context.Background(), jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	last := map[int]int{}
	for i := 0; i < 1000; i++ {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Op   string `json:"op"`
			Key  struct{ ID int }
			Data *struct{ V int }
			Pos  string `json:"position"`
		}
		if err := json.Unmarshal(m.Data(), &body); err != nil {
			t.Fatal(err)
		}
		if m.Subject() != prefix+".items."+body.Op || m.Headers().Get(jetstream.MsgIDHeader) == "" {
			t.Fatalf("message %d: subject %s, headers %v", i, m.Subject(), m.Headers())
		}
		var idx int
		fmt.Sscanf(body.Pos, "%X/", &idx)
		if idx <= last[body.Key.ID] && last[body.Key.ID] != 0 {
			t.Fatalf("key %d: change %d after %d", body.Key.ID, idx, last[body.Key.ID])
		}
		if events[idx].op.String() != body.Op {
			t.Fatalf("change %d: op %s, want %s", idx, body.Op, events[idx].op)
		}
		last[body.Key.ID] = idx
	}
}
