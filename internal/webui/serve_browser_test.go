package webui_test

import (
	"context"
	"fmt"
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
	"github.com/ferry-dev/ferry/internal/spec"
	"github.com/ferry-dev/ferry/internal/webui"
	"github.com/ferry-dev/ferry/internal/webui/browsertest"
)

// shopConnector syncs the demo shop's customers, declaring lifetime_value
// an int: the customers whose value has cents are rejected ("fixed" by
// declaring it a decimal).
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
    columns:
      lifetime_value: int
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

// realServer is ferry serve's server with the UI, on loopback.
type realServer struct {
	URL  string
	stop func()
}

// startServe runs serve over the pipeline file in dir with the web UI,
// as ferry serve does, until stop or the end of the test.
func startServe(t *testing.T, shop *demo.Server, dir string, store *metastore.Store) *realServer {
	t.Helper()
	path := filepath.Join(dir, "shop-ui.pipeline.yaml")
	p, err := spec.LoadPipeline(path)
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.Resolve(shop.Lookup(""))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	srv, err := serve.New(ctx, serve.Config{Pipelines: []serve.Pipeline{{Spec: p, Resolved: res, File: path}}, Store: store,
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
// has cents rejected by the declared int type.
func TestBrowserServe(t *testing.T) {
	shop, err := demo.Start(shopapi.Options{Customers: 4, Products: -1, RateLimitEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shop.Close() })
	var wantRejected, wantRows int
	for _, c := range shop.API.Customers() {
		if c.LifetimeValue != float64(int64(c.LifetimeValue)) {
			wantRejected++
		} else {
			wantRows++
		}
	}
	if wantRejected == 0 || wantRows == 0 {
		t.Fatalf("the shop's data changed: %d customers with cents, %d without; the test needs both", wantRejected, wantRows)
	}
	dir := t.TempDir()
	for name, body := range map[string]string{"shop.connector.yaml": shopConnector, "shop-ui.pipeline.yaml": shopPipeline} {
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

	for _, e := range b.Errors() {
		t.Errorf("page error: %s", e)
	}
}
