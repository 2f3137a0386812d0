package webui_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
)

// fakeAPI implements the control-plane contract (/work/notes/controlplane-api.md,
// the serve package's OpenAPI document) over memory, so the UI can be
// tested in a browser without the real server. A triggered run advances
// one step each time it is read (GET /v1/runs/{id}), so the test depends
// on the UI polling, not on time.
type fakeAPI struct {
	token string // the bearer token every /v1 request needs; "" for none

	mu       sync.Mutex
	now      func() time.Time
	runs     []*fakeRun // oldest first
	rejected []fakeRejected
	drift    []map[string]any
	replays  []replayRequest
	triggers [][]string // the streams of each POST …/runs
	nextID   int
}

type fakeRun struct {
	ID       string
	Pipeline string
	Trigger  string
	Status   string
	Started  time.Time
	Ended    *time.Time
	Steps    int // reads so far
	Streams  []*fakeRunStream
	Logs     []map[string]any
}

type fakeRunStream struct {
	Name     string
	Status   string
	Records  int
	Rejected int
	Requests int
	Parts    int
}

type fakeRejected struct {
	ID     string
	Stream string
	Table  string
	RunID  string
	At     time.Time
	Reason string
	Record json.RawMessage
}

type replayRequest struct {
	IDs    []string `json:"ids"`
	Stream string   `json:"stream"`
}

// The shop pipeline's streams, and the steps a run takes.
var fakeStreams = []string{"customers", "orders"}

const (
	fakeRunSteps      = 5
	fakeRecordsStep   = 40
	fakePartitions    = 4
	hostileReason     = `column "total": "<script>window.__pwned=1</script>" is not a decimal <img src=x onerror="window.__pwned=2">`
	hostileRecordJSON = `{"id":7,"total":"<script>window.__pwned=1</script>","note":"<img src=x onerror=\"window.__pwned=2\">"}`
)

func newFakeAPI(token string) *fakeAPI {
	f := &fakeAPI{token: token, now: func() time.Time { return time.Now().UTC() }}
	// An earlier run that succeeded, for the dashboard's last-run column.
	start := f.now().Add(-20 * time.Minute)
	end := start.Add(90 * time.Second)
	f.runs = append(f.runs, &fakeRun{ID: "r-1", Pipeline: "shop", Trigger: "schedule", Status: "succeeded",
		Started: start, Ended: &end, Steps: fakeRunSteps,
		Streams: []*fakeRunStream{{Name: "customers", Status: "succeeded", Records: 120, Requests: 2, Parts: 1},
			{Name: "orders", Status: "succeeded", Records: 300, Requests: 8, Parts: fakePartitions}}})
	f.nextID = 2
	return f
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f.token != "" && r.Header.Get("Authorization") != "Bearer "+f.token {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "missing or unknown API token"})
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/v1/"), "/")
	q := r.URL.Query()
	switch {
	case r.Method == "GET" && len(parts) == 1 && parts[0] == "pipelines":
		writeJSON(w, 200, map[string]any{"pipelines": []any{f.pipeline()}})
	case r.Method == "GET" && len(parts) == 2 && parts[0] == "pipelines":
		if parts[1] != "shop" {
			writeJSON(w, 404, map[string]any{"error": fmt.Sprintf("no pipeline %q", parts[1])})
			return
		}
		writeJSON(w, 200, f.pipeline())
	case r.Method == "POST" && len(parts) == 3 && parts[0] == "pipelines" && parts[2] == "runs":
		for _, run := range f.runs {
			if run.Status == "queued" || run.Status == "running" {
				writeJSON(w, 409, map[string]any{"error": fmt.Sprintf("run %s of shop is still running", run.ID)})
				return
			}
		}
		var req struct {
			Streams []string `json:"streams"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			writeJSON(w, 400, map[string]any{"error": "body: " + err.Error()})
			return
		}
		f.triggers = append(f.triggers, req.Streams)
		run := f.newRun("api", "queued")
		writeJSON(w, 202, f.runJSON(run))
	case r.Method == "GET" && len(parts) == 1 && parts[0] == "runs":
		var out []any
		for i := len(f.runs) - 1; i >= 0; i-- {
			run := f.runs[i]
			if (q.Get("pipeline") == "" || q.Get("pipeline") == run.Pipeline) && (q.Get("status") == "" || q.Get("status") == run.Status) {
				out = append(out, f.runJSON(run))
			}
		}
		writeJSON(w, 200, map[string]any{"runs": nonNil(out)})
	case r.Method == "GET" && len(parts) == 2 && parts[0] == "runs":
		run := f.run(parts[1])
		if run == nil {
			writeJSON(w, 404, map[string]any{"error": "no run " + parts[1]})
			return
		}
		f.advance(run)
		writeJSON(w, 200, f.runJSON(run))
	case r.Method == "GET" && len(parts) == 3 && parts[0] == "runs" && parts[2] == "logs":
		run := f.run(parts[1])
		if run == nil {
			writeJSON(w, 404, map[string]any{"error": "no run " + parts[1]})
			return
		}
		var after int
		fmt.Sscan(q.Get("after"), &after)
		var lines []any
		for _, l := range run.Logs {
			if l["seq"].(int) > after {
				lines = append(lines, l)
			}
		}
		writeJSON(w, 200, map[string]any{"lines": nonNil(lines)})
	case r.Method == "GET" && len(parts) == 3 && parts[0] == "pipelines" && parts[2] == "rejected":
		var out []any
		for _, rj := range f.rejected {
			if q.Get("stream") == "" || q.Get("stream") == rj.Stream {
				out = append(out, map[string]any{"id": rj.ID, "stream": rj.Stream, "table": rj.Table, "run_id": rj.RunID,
					"at": rj.At.Format(time.RFC3339), "reason": rj.Reason, "column": "total", "partition": nil, "record": rj.Record})
			}
		}
		writeJSON(w, 200, map[string]any{"rejected": nonNil(out)})
	case r.Method == "POST" && len(parts) == 4 && parts[0] == "pipelines" && parts[2] == "rejected" && parts[3] == "replay":
		var req replayRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			writeJSON(w, 400, map[string]any{"error": "body: " + err.Error()})
			return
		}
		f.replays = append(f.replays, req)
		keep := f.rejected[:0]
		n := 0
		for _, rj := range f.rejected {
			if contains(req.IDs, rj.ID) || (req.Stream != "" && req.Stream == rj.Stream) {
				n++
				continue
			}
			keep = append(keep, rj)
		}
		f.rejected = keep
		run := f.newRun("api", "succeeded")
		writeJSON(w, 200, map[string]any{"replayed": n, "rejected_again": 0, "filtered": 0, "removed": n, "status": "succeeded", "run_id": run.ID})
	case r.Method == "GET" && len(parts) == 1 && parts[0] == "drift":
		writeJSON(w, 200, map[string]any{"drift": nonNil(f.driftList())})
	case r.Method == "GET" && len(parts) == 1 && parts[0] == "webhooks":
		at := f.now().Add(-time.Minute).Format(time.RFC3339)
		writeJSON(w, 200, map[string]any{"endpoints": []any{map[string]any{
			"pipeline": "shop", "path": "/hooks/stripe", "verify": "stripe", "active": true, "received": 12, "rejected": 1, "applied": 11, "queue_depth": 0, "accepted": 11, "duplicates": 0, "refused": 1,
			"recent": []any{
				map[string]any{"id": "d-2", "event_id": "evt_2", "received_at": at, "verified": false, "status": 401,
					"reason": "signature does not match <b>any secret</b>", "stream": nil, "path": "/hooks/stripe", "result": "refused: signature does not match"},
				map[string]any{"id": "d-1", "event_id": "evt_1", "received_at": at, "verified": true, "status": 202,
					"reason": nil, "stream": "charges", "path": "/hooks/stripe", "result": "accepted"},
			}}}})
	case r.Method == "GET" && len(parts) == 1 && parts[0] == "throughput":
		var pts []any
		base := f.now().Truncate(time.Minute)
		for i := 10; i >= 0; i-- {
			pts = append(pts, map[string]any{"t": base.Add(-time.Duration(i) * time.Minute).Format(time.RFC3339), "records_per_s": float64(5 + (i*7)%11), "records": 60 * (5 + (i*7)%11)})
		}
		writeJSON(w, 200, map[string]any{"points": pts})
	case r.Method == "GET" && len(parts) == 5 && parts[0] == "pipelines" && parts[2] == "streams" && parts[4] == "state":
		writeJSON(w, 200, map[string]any{"stream": parts[3], "state": map[string]any{"cursor": "2024-06-01T00:00:00Z"}, "partitions": []any{}})
	default:
		writeJSON(w, 404, map[string]any{"error": "no such endpoint: " + r.Method + " " + r.URL.Path})
	}
}

func (f *fakeAPI) newRun(trigger, status string) *fakeRun {
	run := &fakeRun{ID: fmt.Sprintf("r-%d", f.nextID), Pipeline: "shop", Trigger: trigger, Status: status, Started: f.now()}
	f.nextID++
	for _, s := range fakeStreams {
		run.Streams = append(run.Streams, &fakeRunStream{Name: s, Status: "queued"})
	}
	if status == "succeeded" {
		end := f.now()
		run.Ended = &end
		run.Steps = fakeRunSteps
		for _, s := range run.Streams {
			s.Status = "succeeded"
		}
	}
	f.runs = append(f.runs, run)
	return run
}

// advance moves a run one step: queued → running → … → succeeded, with
// the orders stream rejecting one hostile record at the end.
func (f *fakeAPI) advance(run *fakeRun) {
	if run.Status != "queued" && run.Status != "running" {
		return
	}
	run.Steps++
	log := func(stream, msg string) {
		run.Logs = append(run.Logs, map[string]any{"seq": len(run.Logs) + 1, "time": f.now().Format(time.RFC3339), "level": "INFO", "msg": msg, "stream": stream})
	}
	if run.Status == "queued" {
		run.Status = "running"
		log("", "run started")
		for _, s := range run.Streams {
			s.Status = "running"
		}
		return
	}
	for _, s := range run.Streams {
		s.Records += fakeRecordsStep
		s.Requests++
		if s.Parts < fakePartitions {
			s.Parts++
		}
		log(s.Name, fmt.Sprintf("committed %d records", s.Records))
	}
	if run.Steps < fakeRunSteps {
		return
	}
	end := f.now()
	run.Ended = &end
	run.Status = "succeeded"
	for _, s := range run.Streams {
		s.Status = "succeeded"
	}
	orders := run.Streams[1]
	orders.Rejected = 1
	f.rejected = append(f.rejected, fakeRejected{ID: "rej-" + run.ID, Stream: "orders", Table: "orders", RunID: run.ID, At: end,
		Reason: hostileReason, Record: json.RawMessage(hostileRecordJSON)})
	f.drift = append(f.drift, map[string]any{"run_id": run.ID, "pipeline": "shop", "stream": "orders", "table": "orders",
		"change": "added column note (text)", "at": end.Format(time.RFC3339)})
	log("", "run succeeded")
}

func (f *fakeAPI) run(id string) *fakeRun {
	for _, r := range f.runs {
		if r.ID == id {
			return r
		}
	}
	return nil
}

func (f *fakeAPI) runJSON(run *fakeRun) map[string]any {
	var streams []any
	for _, s := range run.Streams {
		var drift []any
		if s.Name == "orders" && run.Status == "succeeded" && s.Rejected > 0 {
			drift = append(drift, map[string]any{"table": "orders", "change": "added column note (text)"})
		}
		streams = append(streams, map[string]any{"name": s.Name, "table": s.Name, "status": s.Status, "records": s.Records, "rejected": s.Rejected,
			"requests": s.Requests, "retries": 0, "partitions_done": s.Parts, "partitions_total": fakePartitions, "error": nil,
			"drift": nonNil(drift)})
	}
	return map[string]any{"id": run.ID, "pipeline": run.Pipeline, "trigger": run.Trigger, "status": run.Status,
		"started_at": run.Started.Format(time.RFC3339), "ended_at": timeOrNil(run.Ended), "error": nil, "streams": nonNil(streams),
		"instance": "fake:1"}
}

func (f *fakeAPI) brief(run *fakeRun) any {
	if run == nil {
		return nil
	}
	return map[string]any{"id": run.ID, "status": run.Status, "started_at": run.Started.Format(time.RFC3339), "ended_at": timeOrNil(run.Ended)}
}

func (f *fakeAPI) pipeline() map[string]any {
	var last *fakeRun
	if len(f.runs) > 0 {
		last = f.runs[len(f.runs)-1]
	}
	var streams []any
	for i, s := range fakeStreams {
		total := 0
		for _, r := range f.runs {
			total += r.Streams[i].Records
		}
		var runningID any
		if last != nil && (last.Status == "queued" || last.Status == "running") {
			runningID = last.ID
		}
		streams = append(streams, map[string]any{"name": s, "table": s, "mode": "incremental", "kind": "pull", "unbounded": false,
			"last_run": f.brief(last), "freshness_seconds": 65 + 60*i, "records_total": total, "running_run_id": runningID})
	}
	next := f.now().Add(4 * time.Minute).Format(time.RFC3339)
	return map[string]any{"name": "shop", "file": "shop.pipeline.yaml", "schedule": "*/5 * * * *", "jitter": nil, "next_run_at": next,
		"last_run": f.brief(last), "streams": streams}
}

func (f *fakeAPI) driftList() []any {
	var out []any
	for i := len(f.drift) - 1; i >= 0; i-- {
		out = append(out, f.drift[i])
	}
	return out
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func timeOrNil(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.Format(time.RFC3339)
}

func nonNil(v []any) []any {
	if v == nil {
		return []any{}
	}
	return v
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
