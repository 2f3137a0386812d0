package webui_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/internal/webui"
)

// mounted is the handler as ferry serve mounts it.
func mounted() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/ui/", http.StripPrefix("/ui", webui.Handler()))
	return mux
}

func get(t *testing.T, h http.Handler, path string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest("GET", path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

var assetRef = regexp.MustCompile(`(?:href|src)="(assets/[^"]+)"`)

// TestPageAndAssets: the page is revalidated (no-cache + ETag) and carries
// a strict Content-Security-Policy; every asset it names is served under a
// hashed directory, immutable, with its type and an ETag.
func TestPageAndAssets(t *testing.T) {
	h := mounted()
	w := get(t, h, "/ui/")
	if w.Code != 200 {
		t.Fatalf("GET /ui/: %d", w.Code)
	}
	for k, want := range map[string]string{
		"Content-Type":           "text/html; charset=utf-8",
		"Cache-Control":          "no-cache",
		"X-Content-Type-Options": "nosniff",
	} {
		if got := w.Header().Get(k); got != want {
			t.Errorf("page %s = %q, want %q", k, got, want)
		}
	}
	if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
		t.Errorf("page CSP = %q, want scripts from self only", csp)
	}
	if w.Header().Get("ETag") == "" {
		t.Error("page has no ETag")
	}
	page := w.Body.String()
	if strings.Contains(page, "{{ASSETS}}") {
		t.Error("page still has the assets placeholder")
	}
	refs := assetRef.FindAllStringSubmatch(page, -1)
	if len(refs) < 4 {
		t.Fatalf("page names %d assets, want the icon, styles and scripts: %s", len(refs), page)
	}
	dir := ""
	for _, m := range refs {
		d, _ := filepath.Split(m[1])
		if dir == "" {
			dir = d
		} else if d != dir {
			t.Errorf("assets in two directories: %s and %s", dir, d)
		}
		aw := get(t, h, "/ui/"+m[1])
		if aw.Code != 200 {
			t.Errorf("GET %s: %d", m[1], aw.Code)
			continue
		}
		if got := aw.Header().Get("Cache-Control"); got != "public, max-age=31536000, immutable" {
			t.Errorf("%s Cache-Control = %q", m[1], got)
		}
		if aw.Header().Get("ETag") == "" {
			t.Errorf("%s has no ETag", m[1])
		}
		ct := aw.Header().Get("Content-Type")
		switch filepath.Ext(m[1]) {
		case ".js":
			if ct != "text/javascript; charset=utf-8" {
				t.Errorf("%s Content-Type = %q", m[1], ct)
			}
		case ".css":
			if ct != "text/css; charset=utf-8" {
				t.Errorf("%s Content-Type = %q", m[1], ct)
			}
		}
	}
	if !regexp.MustCompile(`^assets/[0-9a-f]{16}/$`).MatchString(dir) {
		t.Errorf("asset directory %q is not a content hash", dir)
	}
}

// TestIndexPaths: the page answers at the mount point and as index.html;
// everything else, an asset under another hash included, is 404.
func TestIndexPaths(t *testing.T) {
	h := mounted()
	for _, p := range []string{"/ui/", "/ui/index.html"} {
		if w := get(t, h, p); w.Code != 200 || !strings.Contains(w.Body.String(), "<title>Ferry</title>") {
			t.Errorf("GET %s: %d", p, w.Code)
		}
	}
	page := get(t, h, "/ui/").Body.String()
	app := regexp.MustCompile(`assets/[0-9a-f]+/app\.js`).FindString(page)
	// Mounted with the slash stripped too.
	slash := http.NewServeMux()
	slash.Handle("/ui/", http.StripPrefix("/ui/", webui.Handler()))
	for _, p := range []string{"/ui/", "/ui/" + app} {
		if w := get(t, slash, p); w.Code != 200 {
			t.Errorf("StripPrefix(\"/ui/\"): GET %s: %d", p, w.Code)
		}
	}
	for _, p := range []string{"/ui/assets/0000000000000000/app.js", "/ui/" + strings.Replace(app, "app.js", "nope.js", 1), "/ui/elsewhere", "/ui/assets/"} {
		if w := get(t, h, p); w.Code != 404 {
			t.Errorf("GET %s: %d, want 404", p, w.Code)
		}
	}
	r := httptest.NewRequest("POST", "/ui/", nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != 405 || w.Header().Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /ui/: %d Allow %q, want 405 GET, HEAD", w.Code, w.Header().Get("Allow"))
	}
	r = httptest.NewRequest("HEAD", "/ui/", nil)
	w = httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != 200 || w.Body.Len() != 0 || w.Header().Get("Content-Length") == "" {
		t.Errorf("HEAD /ui/: %d, %d bytes, Content-Length %q", w.Code, w.Body.Len(), w.Header().Get("Content-Length"))
	}
}

// TestConditionalAndGzip: a client's current copy gets 304 with no body;
// gzip is sent when accepted (and only then), as its own representation.
func TestConditionalAndGzip(t *testing.T) {
	h := mounted()
	page := get(t, h, "/ui/").Body.String()
	app := "/ui/" + regexp.MustCompile(`assets/[0-9a-f]+/app\.js`).FindString(page)

	plain := get(t, h, app)
	if plain.Header().Get("Content-Encoding") != "" {
		t.Errorf("no Accept-Encoding, yet Content-Encoding %q", plain.Header().Get("Content-Encoding"))
	}
	if !strings.Contains(plain.Header().Get("Vary"), "Accept-Encoding") {
		t.Errorf("Vary = %q, want Accept-Encoding", plain.Header().Get("Vary"))
	}
	gz := get(t, h, app, "Accept-Encoding", "br, gzip;q=0.8")
	if gz.Header().Get("Content-Encoding") != "gzip" {
		t.Fatalf("Accept-Encoding gzip: Content-Encoding %q", gz.Header().Get("Content-Encoding"))
	}
	zr, err := gzip.NewReader(gz.Body)
	if err != nil {
		t.Fatal(err)
	}
	unz, err := io.ReadAll(zr)
	if err != nil || !bytes.Equal(unz, plain.Body.Bytes()) {
		t.Errorf("gzip body does not decompress to the plain one (err %v)", err)
	}
	if gz.Body.Len() >= plain.Body.Len() {
		t.Errorf("gzip %d bytes, plain %d", gz.Body.Len(), plain.Body.Len())
	}
	if gz.Header().Get("ETag") == plain.Header().Get("ETag") {
		t.Error("gzip and plain bodies share an ETag")
	}
	if w := get(t, h, app, "Accept-Encoding", "gzip;q=0"); w.Header().Get("Content-Encoding") != "" {
		t.Error("gzip;q=0 still got gzip")
	}

	for _, c := range []struct{ path, enc string }{{"/ui/", ""}, {app, ""}, {app, "gzip"}} {
		first := get(t, h, c.path, "Accept-Encoding", c.enc)
		etag := first.Header().Get("ETag")
		w := get(t, h, c.path, "Accept-Encoding", c.enc, "If-None-Match", `"other", W/`+etag)
		if w.Code != 304 || w.Body.Len() != 0 {
			t.Errorf("%s (%q) If-None-Match its ETag: %d with %d bytes, want 304 empty", c.path, c.enc, w.Code, w.Body.Len())
		}
		if w := get(t, h, c.path, "Accept-Encoding", c.enc, "If-None-Match", `"stale"`); w.Code != 200 {
			t.Errorf("%s with a stale ETag: %d, want 200", c.path, w.Code)
		}
	}
}

// TestNoMarkupSinks keeps every value on the text path: the scripts build
// the page with DOM calls only, so a record or a reason that contains
// markup stays text. (The browser test checks the same with a hostile
// record.)
func TestNoMarkupSinks(t *testing.T) {
	sinks := regexp.MustCompile(`\.(innerHTML|outerHTML)\b|insertAdjacentHTML|document\.write|\beval\(|new Function|setAttribute\(\s*['"]on|javascript:`)
	imports := regexp.MustCompile(`from '\./([^']+)'`)
	err := fs.WalkDir(os.DirFS("assets"), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(p) != ".js" {
			return err
		}
		src, err := os.ReadFile(filepath.Join("assets", p))
		if err != nil {
			return err
		}
		for i, line := range strings.Split(string(src), "\n") {
			if m := sinks.FindString(line); m != "" && !strings.HasPrefix(strings.TrimSpace(line), "//") {
				t.Errorf("assets/%s:%d: %s: build elements with h() and text nodes instead", p, i+1, m)
			}
		}
		for _, m := range imports.FindAllStringSubmatch(string(src), -1) {
			if _, err := os.Stat(filepath.Join("assets", m[1])); err != nil {
				t.Errorf("assets/%s imports ./%s, which is not an asset", p, m[1])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestAssetBudget keeps the UI small: every embedded asset together, as a
// browser that accepts gzip receives them.
func TestAssetBudget(t *testing.T) {
	raw, gz := webui.Size()
	t.Logf("embedded UI assets: %d bytes, %d gzip-compressed", raw, gz)
	const budget = 30 << 10
	if gz > budget {
		t.Errorf("the UI sends %d bytes compressed, over its %d-byte budget", gz, budget)
	}
}
