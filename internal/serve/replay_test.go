package serve_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/metastore"
	"github.com/ferry-dev/ferry/internal/serve"
)

// TestRejectedReplay: under schema policy discard_row, a record with a
// new field is rejected; a replay before the fix rejects it again (one
// reject left, the new one); after the fix (policy evolve) the replay
// adds the column, lands the record as a row and empties the rejected
// table. The stream's saved state does not move.
func TestRejectedReplay(t *testing.T) {
	api := newGatedAPI(t, 3)
	dir := t.TempDir()
	store, err := metastore.Open(context.Background(), "sqlite:"+filepath.Join(dir, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	path := writePipeline(t, dir, "shop", api, "full_refresh_append", "schema:\n  policy: discard_row\n")
	s := startServer(t, serve.Config{Pipelines: []serve.Pipeline{loadPipeline(t, path)}, Store: store})
	var run metastore.Run
	call(t, "POST", s.URL+"/v1/pipelines/shop/runs", "", nil, &run)
	if done := waitRun(t, s.URL, run.ID); done.Status != "succeeded" || done.Streams[0].Records != 30 {
		t.Fatalf("first run = %+v", done)
	}
	api.bad.Store(true)
	call(t, "POST", s.URL+"/v1/pipelines/shop/runs", "", nil, &run)
	if done := waitRun(t, s.URL, run.ID); done.Status != "partial" || done.Streams[0].Rejected != 1 || done.Streams[0].Records != 29 {
		t.Fatalf("run = %+v", done)
	}
	type rejectedList struct {
		Rejected []serve.RejectedView `json:"rejected"`
	}
	var rl rejectedList
	call(t, "GET", s.URL+"/v1/pipelines/shop/rejected?stream=items", "", nil, &rl)
	if len(rl.Rejected) != 1 {
		t.Fatalf("rejected = %+v", rl)
	}
	rej := rl.Rejected[0]
	var rec map[string]any
	if err := json.Unmarshal(rej.Record, &rec); err != nil || rec["color"] != "red" || rej.RunID != run.ID || rej.Stream != "items" || rej.Reason == "" {
		t.Fatalf("rejected record = %+v (%v)", rej, err)
	}
	var before map[string]any
	call(t, "GET", s.URL+"/v1/pipelines/shop/streams/items/state", "", nil, &before)

	// Before the fix: rejected again, with the replay's run.
	var res serve.ReplayResult
	if st := call(t, "POST", s.URL+"/v1/pipelines/shop/rejected/replay", "", map[string]any{"ids": []string{rej.ID}}, &res); st != 200 {
		t.Fatalf("replay = %d %+v", st, res)
	}
	if res.Replayed != 0 || res.RejectedAgain != 1 || res.Removed != 1 || res.RunID == "" {
		t.Fatalf("replay before the fix = %+v", res)
	}
	call(t, "GET", s.URL+"/v1/pipelines/shop/rejected", "", nil, &rl)
	if len(rl.Rejected) != 1 || rl.Rejected[0].RunID != res.RunID {
		t.Fatalf("rejected after a replay that failed again = %+v", rl)
	}
	var replayRun metastore.Run
	call(t, "GET", s.URL+"/v1/runs/"+res.RunID, "", nil, &replayRun)
	if replayRun.Trigger != serve.TriggerReplay {
		t.Fatalf("replay run = %+v", replayRun)
	}
	// Unknown ids are named.
	var e map[string]string
	if st := call(t, "POST", s.URL+"/v1/pipelines/shop/rejected/replay", "", map[string]any{"ids": []string{"nope"}}, &e); st != 404 || !strings.Contains(e["error"], "nope") {
		t.Fatalf("replay of an unknown id = %d %v", st, e)
	}
	s.stop(t)

	// The fix: the table may grow a column.
	raw, _ := os.ReadFile(path)
	fixed := strings.Replace(string(raw), "policy: discard_row", "policy: evolve", 1)
	if fixed == string(raw) {
		t.Fatal("the pipeline did not change")
	}
	if err := os.WriteFile(path, []byte(fixed), 0o644); err != nil {
		t.Fatal(err)
	}
	s2 := startServer(t, serve.Config{Pipelines: []serve.Pipeline{loadPipeline(t, path)}, Store: store})
	res = serve.ReplayResult{}
	if st := call(t, "POST", s2.URL+"/v1/pipelines/shop/rejected/replay", "", map[string]any{"stream": "items"}, &res); st != 200 {
		t.Fatalf("replay after the fix = %d %+v", st, res)
	}
	if res.Replayed != 1 || res.RejectedAgain != 0 || res.Removed != 1 || res.Status != "succeeded" {
		call(t, "GET", s2.URL+"/v1/pipelines/shop/rejected", "", nil, &rl)
		t.Fatalf("replay after the fix = %+v; rejected %+v", res, rl)
	}
	call(t, "GET", s2.URL+"/v1/pipelines/shop/rejected", "", nil, &rl)
	if len(rl.Rejected) != 0 {
		t.Fatalf("rejected after the fix = %+v", rl)
	}
	var pv serve.PipelineView
	call(t, "GET", s2.URL+"/v1/pipelines/shop", "", nil, &pv)
	if pv.Streams[0].RecordsTotal == nil || *pv.Streams[0].RecordsTotal != 60 {
		t.Fatalf("rows after the replay: %+v", pv.Streams[0])
	}
	// The new column is drift, recorded with the replay's run.
	var dr struct {
		Drift []metastore.DriftEvent `json:"drift"`
	}
	call(t, "GET", s2.URL+"/v1/drift?pipeline=shop", "", nil, &dr)
	if len(dr.Drift) != 1 || dr.Drift[0].RunID != res.RunID || !strings.Contains(dr.Drift[0].Change, "color") || dr.Drift[0].Table != "items" {
		t.Fatalf("drift = %+v", dr.Drift)
	}
	var after map[string]any
	call(t, "GET", s2.URL+"/v1/pipelines/shop/streams/items/state", "", nil, &after)
	b1, _ := json.Marshal(before)
	b2, _ := json.Marshal(after)
	if string(b1) != string(b2) {
		t.Fatalf("the replay moved the stream's state:\nbefore %s\nafter  %s", b1, b2)
	}
}

// TestStateViewAndReset shows a stream's state and clears it; a reset
// while the stream runs is refused.
func TestStateViewAndReset(t *testing.T) {
	api := newGatedAPI(t, 2)
	s := startServer(t, serve.Config{Pipelines: []serve.Pipeline{loadPipeline(t, writePipeline(t, t.TempDir(), "shop", api, "full_refresh_append", ""))}})
	var st struct {
		Stream     string                     `json:"stream"`
		State      json.RawMessage            `json:"state"`
		Partitions []serve.PartitionStateView `json:"partitions"`
	}
	if code := call(t, "GET", s.URL+"/v1/pipelines/shop/streams/items/state", "", nil, &st); code != 200 || st.Stream != "items" || string(st.State) != "null" {
		t.Fatalf("state before any run = %d %+v", code, st)
	}
	var run metastore.Run
	call(t, "POST", s.URL+"/v1/pipelines/shop/runs", "", nil, &run)
	waitRun(t, s.URL, run.ID)
	call(t, "GET", s.URL+"/v1/pipelines/shop/streams/items/state", "", nil, &st)
	if len(st.Partitions) != 1 || st.Partitions[0].RunID != run.ID || string(st.State) == "null" {
		t.Fatalf("state after a run = %+v", st)
	}
	api.Hold()
	call(t, "POST", s.URL+"/v1/pipelines/shop/runs", "", nil, &run)
	eventually(t, "the run to wait", 20*time.Second, func() bool { return api.waiting.Load() > 0 })
	var e map[string]string
	if code := call(t, "DELETE", s.URL+"/v1/pipelines/shop/streams/items/state", "", nil, &e); code != 409 || !strings.Contains(e["error"], run.ID) {
		t.Fatalf("reset while running = %d %v", code, e)
	}
	api.Open()
	waitRun(t, s.URL, run.ID)
	var out map[string]any
	if code := call(t, "DELETE", s.URL+"/v1/pipelines/shop/streams/items/state", "", nil, &out); code != 200 || out["cleared"] != float64(1) {
		t.Fatalf("reset = %d %v", code, out)
	}
	call(t, "GET", s.URL+"/v1/pipelines/shop/streams/items/state", "", nil, &st)
	if len(st.Partitions) != 0 {
		t.Fatalf("state after reset = %+v", st)
	}
	if code := call(t, "GET", s.URL+"/v1/pipelines/shop/streams/nope/state", "", nil, &e); code != 404 {
		t.Fatalf("state of an unknown stream = %d", code)
	}
}
