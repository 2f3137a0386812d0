package serve_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/metastore"
	"github.com/ferry-dev/ferry/internal/serve"
)

func TestHealth(t *testing.T) {
	api := newGatedAPI(t, 1)
	s := startServer(t, serve.Config{Pipelines: []serve.Pipeline{loadPipeline(t, writePipeline(t, t.TempDir(), "shop", api, "full_refresh_append", ""))}})
	var out map[string]any
	if st := call(t, "GET", s.URL+"/healthz", "", nil, &out); st != 200 || out["status"] != "ok" {
		t.Fatalf("healthz = %d %v", st, out)
	}
	if st := call(t, "GET", s.URL+"/readyz", "", nil, &out); st != 200 || out["status"] != "ok" {
		t.Fatalf("readyz = %d %v", st, out)
	}
	if st := call(t, "GET", s.URL+"/nope", "", nil, &out); st != 404 {
		t.Fatalf("unknown path = %d", st)
	}
	if st := call(t, "GET", s.URL+"/v1/nope", "", nil, &out); st != 404 || !strings.Contains(out["error"].(string), "openapi") {
		t.Fatalf("unknown API path = %d %v", st, out)
	}
}

func TestReadyzReportsTheStore(t *testing.T) {
	api := newGatedAPI(t, 1)
	s := startServer(t, serve.Config{Pipelines: []serve.Pipeline{loadPipeline(t, writePipeline(t, t.TempDir(), "shop", api, "full_refresh_append", ""))}})
	s.Store.Close()
	var out struct {
		Status  string   `json:"status"`
		Reasons []string `json:"reasons"`
	}
	if st := call(t, "GET", s.URL+"/readyz", "", nil, &out); st != 503 || out.Status != "unready" || len(out.Reasons) == 0 || !strings.Contains(out.Reasons[0], "metadata store") {
		t.Fatalf("readyz with the store closed = %d %+v", st, out)
	}
}

func TestTriggerRun(t *testing.T) {
	api := newGatedAPI(t, 3)
	s := startServer(t, serve.Config{Pipelines: []serve.Pipeline{loadPipeline(t, writePipeline(t, t.TempDir(), "shop", api, "full_refresh_append", ""))}})
	var run metastore.Run
	if st := call(t, "POST", s.URL+"/v1/pipelines/shop/runs", "", map[string]any{}, &run); st != http.StatusAccepted {
		t.Fatalf("trigger = %d", st)
	}
	if run.ID == "" || run.Trigger != "api" || (run.Status != "queued" && run.Status != "running") || len(run.Streams) != 1 {
		t.Fatalf("triggered run = %+v", run)
	}
	done := waitRun(t, s.URL, run.ID)
	if done.Status != "succeeded" || done.Streams[0].Records != 30 || done.Streams[0].Status != "succeeded" || done.Error != nil {
		t.Fatalf("run = %+v", done)
	}
	// The history has it, newest first, and the pipeline shows it.
	var list struct{ Runs []metastore.Run }
	call(t, "GET", s.URL+"/v1/runs?pipeline=shop", "", nil, &list)
	if len(list.Runs) != 1 || list.Runs[0].ID != run.ID {
		t.Fatalf("runs = %+v", list.Runs)
	}
	var pv serve.PipelineView
	call(t, "GET", s.URL+"/v1/pipelines/shop", "", nil, &pv)
	st := pv.Streams[0]
	if pv.LastRun == nil || pv.LastRun.ID != run.ID || st.LastRun == nil || st.RecordsTotal == nil || *st.RecordsTotal != 30 || st.Freshness == nil || st.Kind != "pull" {
		t.Fatalf("pipeline = %+v, stream %+v", pv, st)
	}
	// Its log lines carry the stream.
	var logs struct{ Lines []metastore.LogLine }
	call(t, "GET", s.URL+"/v1/runs/"+run.ID+"/logs", "", nil, &logs)
	if len(logs.Lines) == 0 {
		t.Fatal("the run has no log lines")
	}
	last := logs.Lines[len(logs.Lines)-1]
	if !strings.Contains(last.Msg, "run ended") {
		t.Fatalf("last log line = %+v", last)
	}
	var after struct{ Lines []metastore.LogLine }
	call(t, "GET", s.URL+"/v1/runs/"+run.ID+"/logs?after="+itoa(last.Seq), "", nil, &after)
	if len(after.Lines) != 0 {
		t.Fatalf("lines after the last = %+v", after.Lines)
	}
	// Throughput shows the 30 records in the current window.
	var tp struct {
		Points []serve.ThroughputPoint `json:"points"`
	}
	call(t, "GET", s.URL+"/v1/throughput?pipeline=shop&minutes=5", "", nil, &tp)
	var sum int64
	for _, p := range tp.Points {
		sum += p.Records
	}
	if len(tp.Points) != 5 || sum != 30 {
		t.Fatalf("throughput = %+v", tp.Points)
	}
	// Unknown pipeline and stream.
	var e map[string]string
	if st := call(t, "POST", s.URL+"/v1/pipelines/nope/runs", "", nil, &e); st != 404 || !strings.Contains(e["error"], "shop") {
		t.Fatalf("unknown pipeline = %d %v", st, e)
	}
	if st := call(t, "POST", s.URL+"/v1/pipelines/shop/runs", "", map[string]any{"streams": []string{"zzz"}}, &e); st != 404 {
		t.Fatalf("unknown stream = %d %v", st, e)
	}
	if st := call(t, "POST", s.URL+"/v1/pipelines/shop/runs", "", map[string]any{"bogus": 1}, &e); st != 400 {
		t.Fatalf("bad body = %d %v", st, e)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestBusyAndCancel(t *testing.T) {
	api := newGatedAPI(t, 5)
	s := startServer(t, serve.Config{Pipelines: []serve.Pipeline{loadPipeline(t, writePipeline(t, t.TempDir(), "shop", api, "full_refresh_append", ""))}})
	api.Hold()
	var run metastore.Run
	call(t, "POST", s.URL+"/v1/pipelines/shop/runs", "", nil, &run)
	eventually(t, "the run to wait for page 2", 20*time.Second, func() bool { return api.waiting.Load() > 0 })
	// A second run of the same stream is refused while the first runs.
	var e map[string]string
	if st := call(t, "POST", s.URL+"/v1/pipelines/shop/runs", "", nil, &e); st != http.StatusConflict || !strings.Contains(e["error"], run.ID) {
		t.Fatalf("second trigger = %d %v", st, e)
	}
	// While running, the counters are live: the first page is committed.
	eventually(t, "the first page to be committed", 20*time.Second, func() bool {
		var live metastore.Run
		call(t, "GET", s.URL+"/v1/runs/"+run.ID, "", nil, &live)
		return live.Status == "running" && live.Streams[0].Records == 10
	})
	var cancelled metastore.Run
	if st := call(t, "POST", s.URL+"/v1/runs/"+run.ID+"/cancel", "", nil, &cancelled); st != http.StatusAccepted || cancelled.ID != run.ID {
		t.Fatalf("cancel = %d %+v", st, cancelled)
	}
	done := waitRun(t, s.URL, run.ID)
	if done.Status != "cancelled" || done.Streams[0].Records != 10 || done.Streams[0].Status != "cancelled" {
		t.Fatalf("cancelled run = %+v", done)
	}
	// Cancelling again: it has ended.
	if st := call(t, "POST", s.URL+"/v1/runs/"+run.ID+"/cancel", "", nil, &e); st != http.StatusConflict {
		t.Fatalf("cancel of an ended run = %d %v", st, e)
	}
	if st := call(t, "POST", s.URL+"/v1/runs/nope/cancel", "", nil, &e); st != http.StatusNotFound {
		t.Fatalf("cancel of an unknown run = %d %v", st, e)
	}
	// The stream is free again.
	api.Open()
	var again metastore.Run
	if st := call(t, "POST", s.URL+"/v1/pipelines/shop/runs", "", nil, &again); st != http.StatusAccepted {
		t.Fatalf("trigger after cancel = %d", st)
	}
	if r := waitRun(t, s.URL, again.ID); r.Status != "succeeded" {
		t.Fatalf("run after cancel = %+v", r)
	}
}
