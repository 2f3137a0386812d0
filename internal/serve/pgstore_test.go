package serve_test

import (
	"context"
	"net/url"
	"testing"

	"github.com/ferry-dev/ferry/internal/dest/dbtest"
	"github.com/ferry-dev/ferry/internal/metastore"
	"github.com/ferry-dev/ferry/internal/serve"
)

// TestPostgresMetadataStore: a server recording into PostgreSQL; a second
// server sharing the store sees the first one's runs and tokens.
func TestPostgresMetadataStore(t *testing.T) {
	u, schema := dbtest.Postgres(t)
	if err := dbtest.PostgresExec(u, `CREATE SCHEMA "`+schema+`"`); err != nil {
		t.Fatal(err)
	}
	pu, _ := url.Parse(u)
	q := pu.Query()
	q.Set("search_path", schema)
	pu.RawQuery = q.Encode()
	ctx := context.Background()
	open := func() *metastore.Store {
		st, err := metastore.Open(ctx, pu.String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	api := newGatedAPI(t, 2)
	p := loadPipeline(t, writePipeline(t, t.TempDir(), "shop", api, "full_refresh_append", ""))
	first := open()
	tok, err := serve.CreateToken(ctx, first, serve.RoleOperator, "")
	if err != nil {
		t.Fatal(err)
	}
	a := startServer(t, serve.Config{Pipelines: []serve.Pipeline{p}, Store: first, Instance: "a:1"})
	var run metastore.Run
	if st := call(t, "POST", a.URL+"/v1/pipelines/shop/runs", tok, nil, &run); st != 202 {
		t.Fatalf("trigger = %d", st)
	}
	done := waitRunToken(t, a.URL, run.ID, tok)
	if done.Status != "succeeded" || done.Streams[0].Records != 20 || done.Instance != "a:1" {
		t.Fatalf("run = %+v", done)
	}
	b := startServer(t, serve.Config{Pipelines: []serve.Pipeline{p}, Store: open(), Instance: "b:1"})
	var got metastore.Run
	if st := call(t, "GET", b.URL+"/v1/runs/"+run.ID, tok, nil, &got); st != 200 || got.Status != "succeeded" || got.Instance != "a:1" {
		t.Fatalf("the other server's run, seen from b = %d %+v", st, got)
	}
	var logs struct{ Lines []metastore.LogLine }
	call(t, "GET", b.URL+"/v1/runs/"+run.ID+"/logs", tok, nil, &logs)
	if len(logs.Lines) == 0 {
		t.Fatal("no log lines in the shared store")
	}
}

func waitRunToken(t *testing.T, base, id, tok string) metastore.Run {
	t.Helper()
	var run metastore.Run
	eventually(t, "run "+id+" to end", 30*1e9, func() bool {
		run = metastore.Run{}
		call(t, "GET", base+"/v1/runs/"+id, tok, nil, &run)
		return run.Ended != nil
	})
	return run
}
