// Package browsertest drives a real headless Chromium from tests, through
// chromedp: it finds the browser (failing under CI=true when it is missing,
// skipping otherwise), starts it with the flags an offline machine needs,
// collects what the page logs as errors, and saves screenshots as test
// artifacts.
package browsertest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// EnvChromium names the browser to use instead of looking for `chromium`.
const EnvChromium = "FERRY_CHROMIUM"

// EnvArtifacts names the directory screenshots go to; by default
// `$TMPDIR/ferry-ui-artifacts`. Each test gets a folder named after it.
const EnvArtifacts = "FERRY_TEST_ARTIFACTS"

// StepTimeout bounds one step of a test; generous, for a loaded machine.
const StepTimeout = 30 * time.Second

// Chromium returns the browser's path. When there is none it fails the
// test under CI=true (CI installs it: .ci/run) and skips it otherwise.
func Chromium(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(EnvChromium); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s=%s: %v", EnvChromium, p, err)
		}
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "/usr/bin/chromium"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("no chromium on PATH: the browser tests need it under CI=true (apt-get install -y chromium, as .ci/run does)")
	}
	t.Skipf("no chromium on PATH: skipping the browser test (apt-get install -y chromium, or set %s)", EnvChromium)
	return ""
}

// Browser is one headless Chromium with one tab.
type Browser struct {
	// Ctx is the tab's chromedp context; it ends with the test.
	Ctx context.Context

	t    testing.TB
	dir  string
	shot int

	mu     sync.Mutex
	errors []string
}

// Start launches Chromium for t with a fresh profile and no network
// features (no QUIC, no background networking, no component updates, no
// sync: with them an offline Chromium hangs). The browser is closed when
// the test ends.
func Start(t testing.TB) *Browser {
	t.Helper()
	path := Chromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-proxy-server", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	b := &Browser{Ctx: ctx, t: t, dir: artifactDir(t)}
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
	})
	// The first action starts the browser, which lives as long as the
	// context of that call: it must be the tab's, bounded by a timer.
	stuck := time.AfterFunc(StepTimeout, cancelTab)
	err := chromedp.Do(ctx, chromedp.Navigate("about:blank"))
	if !stuck.Stop() {
		err = fmt.Errorf("not started within %s", StepTimeout)
	}
	if err != nil {
		t.Fatalf("start chromium %s: %v", path, err)
	}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.IsException() || m.Type == chromedp.ConsoleError {
				b.mu.Lock()
				src := m.Source
				if src == "" {
					src = string(m.Type)
				}
				b.errors = append(b.errors, fmt.Sprintf("%s: %s (%s:%d)", src, m.Text, m.URL, m.Line+1))
				b.mu.Unlock()
			}
		}
	}()
	return b
}

// Errors returns what the page reported as errors so far, each as
// "source: text (url:line)": uncaught exceptions ("exception"),
// console.error calls ("error"), and the browser's error log ("network"
// for failed loads and error statuses, "security" for
// Content-Security-Policy violations).
func (b *Browser) Errors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.errors...)
}

// Step runs actions within StepTimeout; on failure it saves a screenshot
// and the page's text and fails the test naming the step.
func (b *Browser) Step(name string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, StepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.fail(name, err)
	}
}

// Eval evaluates a JavaScript expression in the page and decodes its value.
func Eval[T any](b *Browser, name, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, StepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.fail(name, err)
	}
	return v
}

// WaitFor polls a JavaScript condition until it is true, failing the test
// after StepTimeout with the step's name.
func (b *Browser) WaitFor(name, cond string) {
	b.t.Helper()
	b.Step(name, chromedp.Poll[chromedp.Void](cond, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(StepTimeout)))
}

func (b *Browser) fail(name string, err error) {
	b.t.Helper()
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("not done within %s: %w", StepTimeout, err)
	}
	b.Screenshot("failed-" + name)
	ctx, cancel := context.WithTimeout(b.Ctx, 5*time.Second)
	defer cancel()
	text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ''`))
	b.t.Fatalf("%s: %v\npage text:\n%s\npage errors: %q", name, err, text, b.Errors())
}

// auditJS lists what makes the page hard to use without a mouse or a
// screen: form fields without a label, buttons and links without a name,
// images without a text, duplicate ids, not exactly one h1.
const auditJS = `(() => {
  const out = [];
  const name = (el) => (el.getAttribute('aria-label') || el.textContent || el.getAttribute('title') || '').trim();
  const where = (el) => el.outerHTML.slice(0, 120);
  for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea'))
    if (!el.labels.length && !el.getAttribute('aria-label')) out.push('field without a label: ' + where(el));
  for (const el of document.querySelectorAll('button, a[href]'))
    if (!name(el)) out.push('no accessible name: ' + where(el));
  for (const el of document.querySelectorAll('[role=img], img'))
    if (!el.getAttribute('aria-label') && !el.getAttribute('alt')) out.push('image without a text: ' + where(el));
  const ids = {};
  for (const el of document.querySelectorAll('[id]')) {
    if (ids[el.id]) out.push('duplicate id ' + el.id);
    ids[el.id] = true;
  }
  for (const el of document.querySelectorAll('[aria-controls], label[for]')) {
    const id = el.getAttribute('aria-controls') || el.getAttribute('for');
    if (!document.getElementById(id)) out.push('refers to a missing id ' + id + ': ' + where(el));
  }
  const h1 = document.querySelectorAll('h1').length;
  if (h1 !== 1) out.push(h1 + ' h1 elements, want 1');
  return out;
})()`

// CheckAccessible reports (as test errors) what on the current page is
// out of reach of keyboard and screen-reader users: unlabeled fields,
// nameless buttons and links, images without a text, duplicate or
// dangling ids, not exactly one h1.
func (b *Browser) CheckAccessible(page string) {
	b.t.Helper()
	for _, p := range b.Audit() {
		b.t.Errorf("%s: %s", page, p)
	}
}

// Audit returns the problems CheckAccessible reports.
func (b *Browser) Audit() []string {
	b.t.Helper()
	return Eval[[]string](b, "accessibility audit", auditJS)
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// Screenshot saves a full-page PNG under the test's artifact folder as
// NN-name.png and logs its path.
func (b *Browser) Screenshot(name string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, StepTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
		return ""
	}
	b.shot++
	p := filepath.Join(b.dir, fmt.Sprintf("%02d-%s.png", b.shot, unsafeName.ReplaceAllString(name, "_")))
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Errorf("save screenshot: %v", err)
		return ""
	}
	b.t.Logf("screenshot: %s", p)
	return p
}

// artifactDir is a fresh folder for t's screenshots, kept after the test.
func artifactDir(t testing.TB) string {
	t.Helper()
	root := os.Getenv(EnvArtifacts)
	if root == "" {
		root = filepath.Join(os.TempDir(), "ferry-ui-artifacts")
	}
	dir := filepath.Join(root, unsafeName.ReplaceAllString(strings.ReplaceAll(t.Name(), "/", "-"), "_"))
	if err := os.RemoveAll(dir); err != nil {
		t.Fatalf("artifacts: %v", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("artifacts: %v", err)
	}
	t.Logf("browser artifacts (screenshots) in %s", dir)
	return dir
}
