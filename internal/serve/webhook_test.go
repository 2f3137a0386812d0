package serve_test

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/metastore"
	"github.com/ferry-dev/ferry/internal/serve"
	"github.com/ferry-dev/ferry/internal/source/webhook/webhooktest"
	"github.com/ferry-dev/ferry/internal/spec"
)

const ghSecret = "gh-signing-secret"

// webhookPipeline writes a GitHub webhook connector and its pipeline.
func webhookPipeline(t *testing.T, dir string) serve.Pipeline {
	t.Helper()
	conn := "name: gh\ntype: webhook\nconfig:\n  secret: {secret: true}\npath: /hooks/gh\nqueue: {dir: queue}\n" +
		"verify: {preset: github, secrets: [\"{{ config.secret }}\"]}\nstreams:\n  issues: {events: [issues], record: issue}\n"
	pipe := "name: gh\nconnector: gh.connector.yaml\nconfig: {secret: \"${GH_SECRET}\"}\ndestination: {type: sqlite, path: gh.db}\nsync: {checkpoint_interval: 20ms}\n"
	if err := os.WriteFile(filepath.Join(dir, "gh.connector.yaml"), []byte(conn), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "gh.pipeline.yaml")
	if err := os.WriteFile(path, []byte(pipe), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := spec.LoadPipeline(path)
	if err != nil {
		t.Fatal(err)
	}
	r, err := p.Resolve(func(k string) (string, bool) { return ghSecret, k == "GH_SECRET" })
	if err != nil {
		t.Fatal(err)
	}
	return serve.Pipeline{Spec: p, Resolved: r, File: path}
}

func post(t *testing.T, url string, h http.Header, body []byte) int {
	t.Helper()
	req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
	req.Header = h
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestWebhookPipeline: a webhook pipeline runs continuously under serve;
// its path is mounted on the server, deliveries land in the table, and
// /v1/webhooks and /metrics show what came in.
func TestWebhookPipeline(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, serve.Config{Pipelines: []serve.Pipeline{webhookPipeline(t, dir)}})
	var runs struct{ Runs []metastore.Run }
	eventually(t, "the continuous run", 20*time.Second, func() bool {
		call(t, "GET", s.URL+"/v1/runs?pipeline=gh", "", nil, &runs)
		return len(runs.Runs) == 1 && runs.Runs[0].Status == "running"
	})
	if runs.Runs[0].Trigger != serve.TriggerWebhook {
		t.Fatalf("continuous run = %+v", runs.Runs[0])
	}
	url := s.URL + "/hooks/gh"
	// The route is mounted once the run's source is up.
	body := []byte(`{"action":"opened","issue":{"id":7,"title":"it broke"}}`)
	eventually(t, "the webhook path to be served", 20*time.Second, func() bool {
		return post(t, url, webhooktest.GitHub(ghSecret, "d-1", "issues", body), body) == 200
	})
	if st := post(t, url, webhooktest.GitHub("forged", "d-2", "issues", body), body); st != 401 {
		t.Fatalf("forged delivery = %d", st)
	}
	var pv serve.PipelineView
	eventually(t, "the issue to land", 20*time.Second, func() bool {
		call(t, "GET", s.URL+"/v1/pipelines/gh", "", nil, &pv)
		return pv.Streams[0].RecordsTotal != nil && *pv.Streams[0].RecordsTotal == 1
	})
	if !pv.Streams[0].Unbounded || pv.Streams[0].Kind != "webhook" || pv.Streams[0].Running == nil {
		t.Fatalf("webhook stream = %+v", pv.Streams[0])
	}
	var wh struct {
		Endpoints []serve.WebhookEndpoint `json:"endpoints"`
	}
	eventually(t, "the delivery to be applied", 20*time.Second, func() bool {
		call(t, "GET", s.URL+"/v1/webhooks", "", nil, &wh)
		return len(wh.Endpoints) == 1 && wh.Endpoints[0].Applied == 1
	})
	ep := wh.Endpoints[0]
	if ep.Pipeline != "gh" || ep.Path != "/hooks/gh" || ep.Verify != "github" || ep.Received != 2 || ep.Rejected != 1 || len(ep.Recent) != 2 {
		t.Fatalf("endpoint = %+v", ep)
	}
	if ep.Recent[0].Verified || ep.Recent[0].Status != 401 || ep.Recent[0].Reason == nil || !ep.Recent[1].Verified || ep.Recent[1].Status != 200 || ep.Recent[1].ReceivedAt.IsZero() || ep.Recent[0].ID == ep.Recent[1].ID {
		t.Fatalf("recent deliveries (newest first) = %+v", ep.Recent)
	}
	// The webhook counters are metrics.
	resp, err := http.Get(s.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`ferry_webhooks_received_total{pipeline="gh"} 2`, `ferry_webhooks_rejected_total{pipeline="gh"} 1`, `ferry_webhooks_applied_total{pipeline="gh"} 1`, `ferry_webhook_queue_depth{pipeline="gh"} 0`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// Nothing to trigger: the pipeline only runs continuously.
	var e map[string]string
	if st := call(t, "POST", s.URL+"/v1/pipelines/gh/runs", "", nil, &e); st != 409 {
		t.Fatalf("trigger of a webhook pipeline = %d %v", st, e)
	}
	// On shutdown the continuous run is cancelled and recorded so.
	id := runs.Runs[0].ID
	s.stop(t)
	r, err := s.Store.GetRun(t.Context(), id)
	if err != nil || r.Status != "cancelled" || r.Ended == nil {
		t.Fatalf("continuous run after shutdown = %+v, %v", r, err)
	}
}
