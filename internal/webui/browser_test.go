package webui_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ferry-dev/ferry/internal/webui"
	"github.com/ferry-dev/ferry/internal/webui/browsertest"
)

func sel(testid string) chromedp.CSS { return chromedp.CSS(`[data-testid="` + testid + `"]`) }

func jsq(testid string) string { return `document.querySelector('[data-testid="` + testid + `"]')` }

// TestBrowserFake drives the UI in headless Chromium against a fake of the
// control-plane API that asks for a token: the dashboard asks for the
// token, shows the pipeline and its chart; a run is triggered (a second
// trigger while it runs is refused with the server's message) and watched
// to the end; its rejected record, hostile markup included, is shown as
// text, opened, and replayed; drift, webhooks and stream state render.
func TestBrowserFake(t *testing.T) {
	api := newFakeAPI("s3cret")
	mux := http.NewServeMux()
	mux.Handle("/ui/", http.StripPrefix("/ui", webui.Handler()))
	mux.Handle("/v1/", api)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	b := browsertest.Start(t)

	// Without a token the API answers 401 and the page says what to do.
	cold := time.Now()
	b.Step("load the dashboard without a token", chromedp.Navigate(srv.URL+"/ui/"), chromedp.WaitVisible(sel("view-error")))
	coldLoad := time.Since(cold)
	if msg := browsertest.Eval[string](b, "read the error", jsq("view-error")+`.textContent`); !strings.Contains(msg, "API token") {
		t.Errorf("401 message = %q, want it to ask for the API token", msg)
	}
	b.Step("save the token",
		chromedp.SendKeys(sel("token-input"), "s3cret"),
		chromedp.Click(sel("token-save")),
		chromedp.WaitVisible(sel("pipeline-shop")))
	if got := browsertest.Eval[string](b, "read localStorage", `localStorage.getItem('ferry_token')`); got != "s3cret" {
		t.Errorf("localStorage ferry_token = %q, want s3cret", got)
	}

	// Reload: assets from the cache, the token from localStorage.
	warm := time.Now()
	b.Step("reload the dashboard", chromedp.Navigate(srv.URL+"/ui/"), chromedp.WaitVisible(sel("pipeline-shop")))
	warmLoad := time.Since(warm)
	domReady := browsertest.Eval[float64](b, "navigation timing", `performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd`)
	t.Logf("dashboard load: %v cold to first render, %v with cached assets to the pipelines listed (DOMContentLoaded at %.0f ms)", coldLoad.Round(time.Millisecond), warmLoad.Round(time.Millisecond), domReady)

	if got := browsertest.Eval[string](b, "last run", jsq("last-run-status-shop")+`.textContent`); got != "succeeded" {
		t.Errorf("last run status = %q, want succeeded", got)
	}
	if got := browsertest.Eval[string](b, "freshness", jsq("freshness-shop")+`.textContent`); !strings.HasPrefix(got, "2m 5s") {
		t.Errorf("freshness = %q, want the stalest stream's 2m 5s", got)
	}
	if got := browsertest.Eval[string](b, "chart", jsq("throughput-chart")+`.getAttribute('data-points')`); got != "11" {
		t.Errorf("chart points = %s, want 11", got)
	}
	if got := browsertest.Eval[int](b, "chart dots", jsq("throughput-chart")+`.querySelectorAll('circle').length`); got != 11 {
		t.Errorf("chart draws %d points, want 11", got)
	}
	b.Screenshot("dashboard")
	b.CheckAccessible("dashboard")

	// Trigger a run; it is queued and the run page opens.
	b.Step("trigger a run", chromedp.Click(sel("trigger-shop")), chromedp.WaitVisible(sel("run-status")))
	if got := browsertest.Eval[string](b, "run address", `location.hash`); got != "#/runs/r-2" {
		t.Fatalf("after trigger the address is %q, want #/runs/r-2", got)
	}
	// Leave it (the fake advances a run only when it is read) and try again:
	// the server's 409 message is shown.
	b.Step("trigger again while it runs",
		chromedp.Click(sel("nav-dashboard")),
		chromedp.WaitVisible(sel("trigger-shop")),
		chromedp.Click(sel("trigger-shop")))
	b.WaitFor("the conflict is shown", jsq("flash")+`.textContent.includes('run r-2 of shop is still running')`)
	if got := browsertest.Eval[string](b, "flash kind", jsq("flash")+`.dataset.kind`); got != "error" {
		t.Errorf("flash kind = %q, want error", got)
	}

	// Watch the run: live counters while running, then the end.
	b.Step("open the run", chromedp.Click(sel("run-row-r-2")+" a"), chromedp.WaitVisible(sel("run-status")))
	b.WaitFor("the run makes progress", jsq("run-status")+`.dataset.status === 'running' && Number(`+jsq("run-stream-records-orders")+`.textContent) > 0`)
	b.Screenshot("run-running")
	b.WaitFor("the run completes", jsq("run-status")+`.dataset.status === 'succeeded'`)
	for _, s := range fakeStreams {
		if got := browsertest.Eval[string](b, "records of "+s, jsq("run-stream-records-"+s)+`.textContent`); got != "160" {
			t.Errorf("records of %s = %q, want 160", s, got)
		}
	}
	b.WaitFor("the log shows the end", jsq("run-log")+`.textContent.includes('run succeeded')`)
	b.Screenshot("run-succeeded")
	b.CheckAccessible("run-succeeded")

	// Its rejected record: hostile markup stays text.
	b.Step("open the rejected records", chromedp.Click(sel("run-stream-rejected-orders")), chromedp.WaitVisible(sel("rejected-rej-r-2")))
	if got := browsertest.Eval[string](b, "reason", jsq("rejected-reason-rej-r-2")+`.textContent`); got != hostileReason {
		t.Errorf("reason shown as %q, want the text %q", got, hostileReason)
	}
	b.Step("open the record", chromedp.Click(sel("rejected-open-rej-r-2")), chromedp.WaitVisible(sel("rejected-record-rej-r-2")))
	var shown, want any
	if err := json.Unmarshal([]byte(browsertest.Eval[string](b, "record", jsq("rejected-record-rej-r-2")+`.textContent`)), &shown); err != nil {
		t.Errorf("the record shown is not its JSON: %v", err)
	}
	json.Unmarshal([]byte(hostileRecordJSON), &want)
	if !reflect.DeepEqual(shown, want) {
		t.Errorf("record shown = %v, want %v", shown, want)
	}
	if got := browsertest.Eval[string](b, "injected markup", `String(window.__pwned) + ' ' + document.querySelectorAll('main script, main img, main b').length`); got != "undefined 0" {
		t.Errorf("hostile record ran or became markup: window.__pwned and elements = %s, want undefined 0", got)
	}
	b.Screenshot("rejected-open")
	b.CheckAccessible("rejected-open")

	b.Step("replay it", chromedp.Click(sel("rejected-replay-rej-r-2")), chromedp.WaitVisible(sel("rejected-table-empty")))
	b.WaitFor("the result is shown", jsq("flash")+`.textContent.includes('Replayed 1 record: 0 rejected again')`)
	api.mu.Lock()
	replays := api.replays
	api.mu.Unlock()
	if want := []replayRequest{{IDs: []string{"rej-r-2"}}}; !reflect.DeepEqual(replays, want) {
		t.Errorf("replay requests = %+v, want %+v", replays, want)
	}
	b.Screenshot("rejected-replayed")

	// Drift and webhooks.
	b.Step("schema drift", chromedp.Click(sel("nav-drift")), chromedp.WaitVisible(sel("drift-table")))
	b.CheckAccessible("drift")
	if got := browsertest.Eval[string](b, "drift", jsq("drift-table")+`.textContent`); !strings.Contains(got, "added column note (text)") || !strings.Contains(got, "r-2") {
		t.Errorf("drift table = %q, want the run's added column", got)
	}
	b.Step("webhooks", chromedp.Click(sel("nav-webhooks")), chromedp.WaitVisible(sel("delivery-d-2")))
	if got := browsertest.Eval[string](b, "failed delivery", jsq("delivery-d-2")+`.textContent`); !strings.Contains(got, "not verified") ||
		!strings.Contains(got, "401") || !strings.Contains(got, "signature does not match <b>any secret</b>") {
		t.Errorf("failed delivery row = %q, want not verified, 401 and the reason as text", got)
	}
	if got := browsertest.Eval[string](b, "good delivery", jsq("delivery-verified-d-1")+`.textContent`); got != "verified" {
		t.Errorf("good delivery shows %q, want verified", got)
	}
	b.Screenshot("webhooks")
	b.CheckAccessible("webhooks")

	// The pipeline page: run one stream, see a stream's state.
	b.Step("pipeline page", chromedp.Click(sel("nav-dashboard")), chromedp.Click(sel("pipeline-link-shop")), chromedp.WaitVisible(sel("streams-table")))
	b.Step("stream state", chromedp.Click(sel("state-show-orders")), chromedp.WaitVisible(sel("state-orders")))
	if got := browsertest.Eval[string](b, "state", jsq("state-orders")+`.textContent`); !strings.Contains(got, `"cursor": "2024-06-01T00:00:00Z"`) {
		t.Errorf("state shown = %q", got)
	}
	b.Step("run one stream", chromedp.Click(sel("select-orders")), chromedp.Click(sel("trigger-selected")), chromedp.WaitVisible(sel("run-status")))
	api.mu.Lock()
	triggers := api.triggers
	api.mu.Unlock()
	if want := [][]string{nil, {"orders"}}; !reflect.DeepEqual(triggers, want) {
		t.Errorf("trigger bodies' streams = %q, want %q", triggers, want)
	}
	b.Screenshot("pipeline-run")
	b.CheckAccessible("pipeline-run")

	for _, e := range b.Errors() {
		if strings.HasPrefix(e, "network:") && (strings.Contains(e, "401") || strings.Contains(e, "409")) {
			continue // the refusals this test asked for
		}
		t.Errorf("page error: %s", e)
	}
}
