// Package webui is Ferry's browser interface: static pages and small ES
// modules, embedded in the binary, that drive the control-plane JSON API
// (`/v1/...`) from the browser. Nothing is rendered on the server and
// nothing is built on the user's side; `ferry serve` mounts Handler at
// `/ui/`.
//
// Every asset is served from a path that carries a hash of all the assets
// (`assets/<hash>/app.js`), so it can be cached for a year; the page that
// names them (`index.html`) is revalidated on every load with its ETag.
package webui

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
)

//go:embed assets
var embedded embed.FS

// assetsPlaceholder is what index.html writes where the versioned asset
// directory goes.
const assetsPlaceholder = "{{ASSETS}}"

// contentSecurityPolicy allows the page's own scripts, styles and API
// calls and nothing else: no inline script, no other origin, no frames.
// Data from the API is inserted as text, never as markup; the policy is the
// second wall behind that.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; " +
	"img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// asset is one file ready to serve.
type asset struct {
	name  string
	ctype string
	body  []byte
	gz    []byte // nil when compressing does not pay
	etag  string // quoted, strong
}

// site is the set of assets, built once from the embedded files.
type site struct {
	version string // hash of every asset: the versioned directory's name
	index   *asset
	files   map[string]*asset // by name under the versioned directory
}

// built is the site, built on first use: commands that serve no UI (every
// one but ferry serve) do not pay for hashing and compressing it.
var built = sync.OnceValue(mustBuild)

func mustBuild() *site {
	s, err := build(embedded)
	if err != nil {
		// The assets are compiled in; a failure here is a broken build,
		// caught by the package's tests.
		panic("webui: " + err.Error())
	}
	return s
}

// build reads the assets from fsys ("assets/..."), hashes them, and fills
// the versioned directory's name into index.html.
func build(fsys fs.FS) (*site, error) {
	sub, err := fs.Sub(fsys, "assets")
	if err != nil {
		return nil, err
	}
	raw := map[string][]byte{}
	err = fs.WalkDir(sub, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(sub, p)
		if err != nil {
			return err
		}
		raw[p] = b
		return nil
	})
	if err != nil {
		return nil, err
	}
	indexHTML, ok := raw["index.html"]
	if !ok {
		return nil, fs.ErrNotExist
	}
	delete(raw, "index.html")

	names := make([]string, 0, len(raw))
	for n := range raw {
		names = append(names, n)
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		h.Write([]byte(n))
		h.Write([]byte{0})
		h.Write(raw[n])
		h.Write([]byte{0})
	}
	s := &site{version: hex.EncodeToString(h.Sum(nil))[:16], files: map[string]*asset{}}
	for _, n := range names {
		s.files[n] = newAsset(n, raw[n])
	}
	page := bytes.ReplaceAll(indexHTML, []byte(assetsPlaceholder), []byte("assets/"+s.version))
	s.index = newAsset("index.html", page)
	return s, nil
}

func newAsset(name string, body []byte) *asset {
	sum := sha256.Sum256(body)
	a := &asset{name: name, body: body, etag: `"` + hex.EncodeToString(sum[:])[:20] + `"`}
	a.ctype = mime.TypeByExtension(path.Ext(name))
	switch path.Ext(name) { // the system's MIME table may lack or misname these
	case ".js":
		a.ctype = "text/javascript; charset=utf-8"
	case ".css":
		a.ctype = "text/css; charset=utf-8"
	case ".html":
		a.ctype = "text/html; charset=utf-8"
	case ".svg":
		a.ctype = "image/svg+xml"
	}
	if a.ctype == "" {
		a.ctype = "application/octet-stream"
	}
	if len(body) >= 512 && !strings.HasPrefix(a.ctype, "image/png") {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		zw.Write(body)
		zw.Close()
		if buf.Len() < len(body)*9/10 {
			a.gz = buf.Bytes()
		}
	}
	return a
}

// Handler serves the UI. Paths are relative to where it is mounted: `/`
// (or an empty path) is the page, `/assets/<hash>/<file>` the scripts and
// styles it loads. Mount it under `/ui/` with the prefix stripped:
//
//	mux.Handle("/ui/", http.StripPrefix("/ui", webui.Handler()))
//
// It answers GET and HEAD only. The page is sent with `Cache-Control:
// no-cache` and an ETag; assets under the current hash are immutable for a
// year; an asset under any other hash is 404, so a stale page never caches
// new content under an old name. Bodies are gzip-compressed when the
// client accepts it.
func Handler() http.Handler { return built() }

// ServeHTTP implements http.Handler.
func (s *site) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	p := strings.TrimPrefix(r.URL.Path, "/")
	hdr := w.Header()
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer")
	switch {
	case p == "" || p == "index.html":
		hdr.Set("Cache-Control", "no-cache")
		hdr.Set("Content-Security-Policy", contentSecurityPolicy)
		hdr.Set("X-Frame-Options", "DENY")
		s.index.serve(w, r)
	case strings.HasPrefix(p, "assets/"):
		version, name, _ := strings.Cut(strings.TrimPrefix(p, "assets/"), "/")
		a := s.files[name]
		if version != s.version || a == nil {
			http.NotFound(w, r)
			return
		}
		hdr.Set("Cache-Control", "public, max-age=31536000, immutable")
		a.serve(w, r)
	default:
		http.NotFound(w, r)
	}
}

// serve writes the asset, or 304 when the client's copy is current.
func (a *asset) serve(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	body, etag := a.body, a.etag
	if a.gz != nil {
		hdr.Add("Vary", "Accept-Encoding")
		if acceptsGzip(r.Header.Get("Accept-Encoding")) {
			body = a.gz
			etag = strings.TrimSuffix(a.etag, `"`) + `-gz"`
			hdr.Set("Content-Encoding", "gzip")
		}
	}
	hdr.Set("ETag", etag)
	hdr.Set("Content-Type", a.ctype)
	if etagMatches(r.Header.Get("If-None-Match"), etag) {
		hdr.Del("Content-Encoding")
		w.WriteHeader(http.StatusNotModified)
		return
	}
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}

// etagMatches reports whether an If-None-Match header names etag (weak
// comparison, as RFC 9110 asks for If-None-Match).
func etagMatches(header, etag string) bool {
	if header == "" {
		return false
	}
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == etag {
			return true
		}
	}
	return false
}

// acceptsGzip reports whether an Accept-Encoding header allows gzip.
func acceptsGzip(header string) bool {
	for _, part := range strings.Split(header, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(coding), "gzip") {
			continue
		}
		params = strings.ReplaceAll(strings.TrimSpace(params), " ", "")
		return params != "q=0" && params != "q=0.0" && params != "q=0.00" && params != "q=0.000"
	}
	return false
}

// Size reports the embedded assets' total size in bytes as stored and as
// sent to a browser that accepts gzip.
func Size() (raw, compressed int) {
	add := func(a *asset) {
		raw += len(a.body)
		if a.gz != nil {
			compressed += len(a.gz)
		} else {
			compressed += len(a.body)
		}
	}
	site := built()
	add(site.index)
	for _, a := range site.files {
		add(a)
	}
	return raw, compressed
}
