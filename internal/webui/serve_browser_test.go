package webui_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	_ "github.com/ferry-dev/ferry/internal/components/all"
	"github.com/ferry-dev/ferry/internal/demo"
	"github.com/ferry-dev/ferry/internal/demo/shopapi"
	"github.com/ferry-dev/ferry/internal/metastore"
	"github.com/ferry-dev/ferry/internal/serve"
	"github.com/ferry-dev/ferry/internal/source/webhook/webhooktest"
	"github.com/ferry-dev/ferry/internal/spec"
	"github.com/ferry-dev/ferry/internal/webui"
	"github.com/ferry-dev/ferry/internal/webui/browsertest"
)

// shopConnector syncs the demo shop's customers under a contract that
// is too strict: a lifetime value over 3000 is rejected (fixed by raising
// the maximum).
const shopConnector = `name: shop
base_url: "{{ config.base_url }}/v1"
config:
  base_url:
    description: Where the shop API lives.
  token:
    description: API token.
    secret: true
auth:
  type: bearer
  token: "{{ config.token }}"
streams:
  customers:
    path: /customers
    records: data
    primary_key: id
    cursor: updated_at
    schema:
      type: object
      properties:
        lifetime_value: {type: number, maximum: 3000}
    paginate:
      type: page_number
      size: 100
      size_param: per_page
      total_pages_path: meta.total_pages
`

const shopPipeline = `name: shop-ui
connector: shop.connector.yaml
config:
  base_url: ${FERRY_DEMO_URL}
  token: ${FERRY_DEMO_TOKEN}
destination:
  type: sqlite
  path: shop-ui.db
streams:
  customers: {}
`

// hooksConnector receives GitHub-signed deliveries into a pushes table.
const hooksConnector = `name: hooks
type: webhook
config:
  secret:
    description: The webhook secret.
    secret: true
path: /hooks/github
verify:
  preset: github
  secrets: ["{{ config.secret }}"]
streams:
  pushes: {}
`

const hooksPipeline = `name: hooks
connector: hooks.connector.yaml
config:
  secret: ${HOOK_SECRET}
destination:
  type: sqlite
  path: hooks.db
`

const hookSecret = "it's a secret to everybody"

// realServer is ferry serve's server with the UI, on loopback.
type realServer struct {
	URL  string
	stop func()
}

// startServe runs serve over the pipeline file in dir with the web UI,
// as ferry serve does, until stop or the end of the test.
func startServe(t *testing.T, shop *demo.Server, dir string, store *metastore.Store) *realServer {
	t.Helper()
	lookup := func(k string) (string, bool) {
		if k == "HOOK_SECRET" {
			return hookSecret, true
		}
		return shop.Lookup("")(k)
	}
	var pipes []serve.Pipeline
	for _, name := range []string{"shop-ui.pipeline.yaml", "hooks.pipeline.yaml"} {
		path := filepath.Join(dir, name)
		p, err := spec.LoadPipeline(path)
		if err != nil {
			t.Fatal(err)
		}
		res, err := p.Resolve(lookup)
		if err != nil {
			t.Fatal(err)
		}
		pipes = append(pipes, serve.Pipeline{Spec: p, Resolved: res, File: path})
	}
	ctx := context.Background()
	srv, err := serve.New(ctx, serve.Config{Pipelines: pipes, Store: store,
		Listen: "127.0.0.1:0", UI: webui.Handler(), ShutdownTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	l, err := srv.Listen()
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Run(rctx, l) }()
	rs := &realServer{URL: "http://" + l.Addr().String()}
	stopped := false
	rs.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("ferry serve: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("ferry serve did not stop within 30s")
		}
	}
	t.Cleanup(rs.stop)
	return rs
}

// TestBrowserServe drives the UI of the real ferry serve (the server
// package with webui.Handler mounted, as the command line builds it) over
// the demo shop API: the dashboard loads from /, a run is triggered and
// watched until it ends partial, with the customers whose lifetime value
// breaks the stream's JSON Schema rejected; webhook deliveries, signed and
// forged, show with their verification result; a rejected record is
// opened, and after the fix and a restart the records are replayed, one
// and then the rest of the stream: every customer lands.
func TestBrowserServe(t *testing.T) {
	shop, err := demo.Start(shopapi.Options{Customers: 4, Products: -1, RateLimitEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shop.Close() })
	var wantRejected, wantRows int
	for _, c := range shop.API.Customers() {
		if c.LifetimeValue > 3000 {
			wantRejected++
		} else {
			wantRows++
		}
	}
	if wantRejected == 0 || wantRows == 0 {
		t.Fatalf("the shop's data changed: %d customers over 3000, %d not; the test needs both", wantRejected, wantRows)
	}
	dir := t.TempDir()
	for name, body := range map[string]string{"shop.connector.yaml": shopConnector, "shop-ui.pipeline.yaml": shopPipeline,
		"hooks.connector.yaml": hooksConnector, "hooks.pipeline.yaml": hooksPipeline} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	store, err := metastore.Open(context.Background(), "sqlite:"+filepath.Join(dir, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	srv := startServe(t, shop, dir, store)
	b := browsertest.Start(t)

	start := time.Now()
	b.Step("load the dashboard from /", chromedp.Navigate(srv.URL+"/"), chromedp.WaitVisible(sel("pipeline-shop-ui")))
	load := time.Since(start)
	domReady := browsertest.Eval[float64](b, "navigation timing", `performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd`)
	t.Logf("dashboard load from the real server: %v to the pipelines listed (DOMContentLoaded at %.0f ms)", load.Round(time.Millisecond), domReady)
	if got := browsertest.Eval[string](b, "address", `location.pathname`); got != "/ui/" {
		t.Errorf("/ led to %s, want /ui/", got)
	}
	if got := browsertest.Eval[string](b, "last run", jsq("last-run-shop-ui")+`.textContent`); got != "never run" {
		t.Errorf("last run before any = %q, want never run", got)
	}
	b.Screenshot("dashboard")
	b.CheckAccessible("dashboard")

	b.Step("trigger a run", chromedp.Click(sel("trigger-shop-ui")), chromedp.WaitVisible(sel("run-status")))
	b.WaitFor("the run ends", `['succeeded','partial','failed','stopped','cancelled','skipped'].includes(`+jsq("run-status")+`.dataset.status)`)
	if got := browsertest.Eval[string](b, "run status", jsq("run-status")+`.dataset.status`); got != "partial" {
		t.Fatalf("run status = %s, want partial (records rejected)", got)
	}
	if got := browsertest.Eval[string](b, "records", jsq("run-stream-records-customers")+`.textContent`); got != fmt.Sprint(wantRows) {
		t.Errorf("records shown = %s, want %d", got, wantRows)
	}
	if got := browsertest.Eval[string](b, "rejected", jsq("run-stream-rejected-customers")+`.textContent`); got != fmt.Sprint(wantRejected) {
		t.Errorf("rejected shown = %s, want %d", got, wantRejected)
	}
	b.WaitFor("the run's log is shown", jsq("run-log")+`.textContent.trim() !== ''`)
	b.Screenshot("run-partial")
	b.CheckAccessible("run")

	b.Step("back to the dashboard", chromedp.Click(sel("nav-dashboard")), chromedp.WaitVisible(sel("last-run-status-shop-ui")))
	if got := browsertest.Eval[string](b, "last run", jsq("last-run-status-shop-ui")+`.textContent`); got != "partial" {
		t.Errorf("dashboard last run = %q, want partial", got)
	}
	if got := browsertest.Eval[string](b, "records", jsq("pipeline-shop-ui")+`.textContent`); !strings.Contains(got, fmt.Sprint(wantRows)) {
		t.Errorf("dashboard row %q lacks the %d rows", got, wantRows)
	}

	// Webhooks: a signed delivery is accepted, a forged one refused; the
	// page shows both with their verification result.
	body := []byte(`{"id": 1, "ref": "refs/heads/main"}`)
	if st := deliver(t, srv.URL+"/hooks/github", body, webhooktest.GitHub(hookSecret, "delivery-good", "push", body)); st/100 != 2 {
		t.Fatalf("signed delivery answered %d", st)
	}
	if st := deliver(t, srv.URL+"/hooks/github", body, webhooktest.GitHub("not the secret", "delivery-forged", "push", body)); st != 401 {
		t.Fatalf("forged delivery answered %d, want 401", st)
	}
	b.Step("webhooks", chromedp.Click(sel("nav-webhooks")), chromedp.WaitVisible(sel("webhook-/hooks/github")))
	b.WaitFor("both deliveries listed", `document.querySelectorAll('[data-testid="deliveries-/hooks/github"] tbody tr').length === 2`)
	rows := browsertest.Eval[[]string](b, "deliveries", `[...document.querySelectorAll('[data-testid="deliveries-/hooks/github"] tbody tr')].map((r) => r.textContent)`)
	if len(rows) != 2 || !strings.Contains(rows[0], "not verified") || !strings.Contains(rows[0], "401") ||
		!strings.Contains(rows[1], "delivery-good") || strings.Contains(rows[1], "not verified") {
		t.Errorf("deliveries, newest first = %q, want the forged one (not verified, 401) and the good one (verified)", rows)
	}
	b.Screenshot("webhooks")
	b.CheckAccessible("webhooks")

	// The rejected records, with their reasons; open one.
	b.Step("open the rejected records", chromedp.Click(sel("nav-dashboard")), chromedp.WaitVisible(sel("last-run-shop-ui")),
		chromedp.Click(sel("last-run-shop-ui")+" a"), chromedp.WaitVisible(sel("run-stream-rejected-customers")),
		chromedp.Click(sel("run-stream-rejected-customers")), chromedp.WaitVisible(sel("rejected-table")))
	ids := rejectedIDs(b)
	if len(ids) != wantRejected {
		t.Fatalf("rejected page lists %d records, want %d", len(ids), wantRejected)
	}
	if got := browsertest.Eval[string](b, "reason", jsq("rejected-reason-"+ids[0])+`.textContent`); !strings.Contains(got, "lifetime_value") {
		t.Errorf("reason = %q, want it to name lifetime_value", got)
	}
	b.Step("open a record", chromedp.Click(sel("rejected-open-"+ids[0])), chromedp.WaitVisible(sel("rejected-record-"+ids[0])))
	if got := browsertest.Eval[string](b, "record", jsq("rejected-record-"+ids[0])+`.textContent`); !strings.Contains(got, `"lifetime_value":`) || !strings.Contains(got, `"email":`) {
		t.Errorf("record shown = %q, want the customer's JSON", got)
	}
	b.Screenshot("rejected-open")
	b.CheckAccessible("rejected")

	// The fix: a maximum that real customers stay under. ferry serve reads
	// its files at start: restart it.
	srv.stop()
	conn := filepath.Join(dir, "shop.connector.yaml")
	raw, err := os.ReadFile(conn)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conn, []byte(strings.Replace(string(raw), "maximum: 3000", "maximum: 1000000", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	srv = startServe(t, shop, dir, store)
	b.Step("the rejected records again", chromedp.Navigate(srv.URL+"/ui/#/rejected?pipeline=shop-ui&stream=customers"), chromedp.WaitVisible(sel("rejected-table")))
	ids = rejectedIDs(b)
	if len(ids) != wantRejected {
		t.Fatalf("after the restart the rejected page lists %d records, want %d", len(ids), wantRejected)
	}
	b.Step("replay one", chromedp.Click(sel("rejected-replay-"+ids[0])))
	b.WaitFor("it lands", jsq("flash")+`.textContent.includes('Replayed 1 record: 0 rejected again')`)
	b.WaitFor("it leaves the list", `!document.querySelector('[data-testid="rejected-reason-`+ids[0]+`"]')`)
	b.Screenshot("replayed-one")
	b.Step("replay the rest of the stream", chromedp.Click(sel("replay-stream")), chromedp.WaitVisible(sel("rejected-table-empty")))
	b.WaitFor("they land", jsq("flash")+fmt.Sprintf(`.textContent.includes('Replayed %d record')`, wantRejected-1))
	b.Screenshot("replayed-all")

	// Every customer is a row now, as the dashboard says.
	b.Step("dashboard", chromedp.Click(sel("nav-dashboard")), chromedp.WaitVisible(sel("pipeline-shop-ui")))
	b.WaitFor("every customer counted", jsq("pipeline-shop-ui")+fmt.Sprintf(`.querySelectorAll('td.n')[1].textContent === '%d'`, wantRows+wantRejected))
	b.Screenshot("dashboard-after")
	if got := browsertest.Eval[string](b, "hooks actions", jsq("pipeline-hooks")+`.querySelector('td.actions').textContent`); got != "continuous" {
		t.Errorf("a pipeline of webhook streams offers %q, want no Run now (it runs continuously)", got)
	}

	for _, e := range b.Errors() {
		t.Errorf("page error: %s", e)
	}
}

// deliver posts a webhook delivery and returns the status.
func deliver(t *testing.T, url string, body []byte, hdr http.Header) int {
	t.Helper()
	req, err := http.NewRequest("POST", url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = hdr
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// rejectedIDs lists the ids of the rejected records on the page.
func rejectedIDs(b *browsertest.Browser) []string {
	return browsertest.Eval[[]string](b, "rejected ids",
		`[...document.querySelectorAll('[data-testid^="rejected-reason-"]')].map((e) => e.dataset.testid.slice('rejected-reason-'.length))`)
}
