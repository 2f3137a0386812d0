package browsertest_test

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ferry-dev/ferry/internal/webui/browsertest"
)

const badPage = `<!doctype html><html lang="en"><head><title>t</title></head><body>
<input id="a"><input id="a" aria-label="named">
<button type="button"></button><a href="#x"></a>
<svg role="img"></svg><label for="nowhere">x</label>
<script>console.error("boom")</script>
</body></html>`

// TestAuditAndErrors: the audit finds each kind of problem on a page made
// of them, console errors are collected, and a screenshot lands in the
// artifact folder.
func TestAuditAndErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(badPage))
	}))
	t.Cleanup(srv.Close)
	t.Setenv(browsertest.EnvArtifacts, t.TempDir())
	b := browsertest.Start(t)
	b.Step("load", chromedp.Navigate(srv.URL), chromedp.WaitVisible(chromedp.CSS("button")))
	got := b.Audit()
	for _, want := range []string{"field without a label", "duplicate id a", "no accessible name: <button", "no accessible name: <a",
		"image without a text", "missing id nowhere", "0 h1 elements"} {
		if !slices.ContainsFunc(got, func(p string) bool { return strings.Contains(p, want) }) {
			t.Errorf("audit misses %q: %q", want, got)
		}
	}
	p := b.Screenshot("bad page")
	if filepath.Dir(filepath.Dir(p)) != os.Getenv(browsertest.EnvArtifacts) || !strings.HasSuffix(p, "01-bad_page.png") {
		t.Errorf("screenshot at %s, want <artifacts>/<test>/01-bad_page.png", p)
	}
	if fi, err := os.Stat(p); err != nil || fi.Size() < 1000 {
		t.Errorf("screenshot %s: %v", p, err)
	}
	// The messages arrive on their own goroutine: poll with a deadline.
	deadline := time.Now().Add(browsertest.StepTimeout)
	for !slices.ContainsFunc(b.Errors(), func(e string) bool { return strings.Contains(e, "boom") }) {
		if time.Now().After(deadline) {
			t.Fatalf("console.error not collected: %q", b.Errors())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
