package spec_test

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"runtime/metrics"
	"strings"
	"testing"

	_ "github.com/ferry-dev/ferry/internal/components/all"
	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/dest/sqlite"
	"github.com/ferry-dev/ferry/internal/source/rest"
	"github.com/ferry-dev/ferry/internal/spec"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestLoadShop(t *testing.T) {
	conn, err := spec.LoadConnector("testdata/shop.connector.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c := conn.Body.(*rest.Config)
	if got := c.StreamOrder; len(got) != 3 || got[0] != "customers" || got[2] != "orders" {
		t.Fatalf("StreamOrder = %v", got)
	}
	o := c.Streams["orders"]
	if o.Parent.Fields["customers_id"] != "id" {
		t.Fatalf("parent fields = %v", o.Parent.Fields)
	}
	if *c.Streams["customers"].Records != "data" || *o.Records != "" {
		t.Fatalf("records not merged: %q %q", *c.Streams["customers"].Records, *o.Records)
	}
	if c.Streams["products"].PrimaryKey[0] != "id" {
		t.Fatalf("primary key default not merged")
	}
	if c.Streams["orders"].Paginate.Type != "link_header" || c.Streams["customers"].Paginate.Type != "page_number" {
		t.Fatalf("paginate not kept")
	}
}

// TestBadFiles checks the exact messages for broken files: the messages
// are the product here. Run with -update to rewrite the .golden files.
func TestBadFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no bad files: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if spec.Kind(data) == "pipeline" {
				_, err = spec.ParsePipeline(f, data)
			} else {
				_, err = spec.ParseConnector(f, data)
			}
			var ps spec.Problems
			if !errors.As(err, &ps) {
				t.Fatalf("error = %v (%T), want spec.Problems", err, err)
			}
			got := err.Error() + "\n"
			golden := strings.TrimSuffix(f, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if got != string(want) {
				t.Errorf("problems:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "token.txt")
	if err := os.WriteFile(secretFile, []byte("file-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	conn, _ := os.ReadFile("testdata/shop.connector.yaml")
	if err := os.WriteFile(filepath.Join(dir, "shop.connector.yaml"), conn, 0o644); err != nil {
		t.Fatal(err)
	}
	write := func(body string) string {
		name := filepath.Join(dir, "p.yaml")
		if err := os.WriteFile(name, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return name
	}
	env := map[string]string{"SHOP_TOKEN": "env-secret", "HOST": "api.test"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }

	p, err := spec.LoadPipeline(write("connector: shop.connector.yaml\nconfig:\n  token: ${SHOP_TOKEN}\n  base_url: https://${HOST}:${PORT:-443}\ndestination: {type: sqlite, path: out.db}\n"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := p.Resolve(lookup)
	if err != nil {
		t.Fatal(err)
	}
	if r.Config["token"] != "env-secret" || r.Config["base_url"] != "https://api.test:443" {
		t.Fatalf("config = %v", r.Config)
	}
	if len(r.Secrets) != 1 || r.Secrets[0] != "env-secret" {
		t.Fatalf("secrets = %v", r.Secrets)
	}
	if path := r.Destination.(*sqlite.Config).Path; path != "out.db" || p.Dir != dir {
		t.Fatalf("destination path = %q in %q", path, p.Dir)
	}
	if p.Name != "shop" || p.ModeOf("customers") != dest.IncrementalDedup || p.ModeOf("products") != dest.FullRefreshOverwrite {
		t.Fatalf("name/mode defaults: %q %q %q", p.Name, p.ModeOf("customers"), p.ModeOf("products"))
	}

	p, err = spec.LoadPipeline(write("connector: shop.connector.yaml\nconfig:\n  token: {file: token.txt}\ndestination: {type: sqlite, path: out.db}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r, err = p.Resolve(lookup); err != nil || r.Config["token"] != "file-secret" {
		t.Fatalf("file secret: %v %v", r, err)
	}

	p, err = spec.LoadPipeline(write("connector: shop.connector.yaml\nconfig:\n  token: {env: NOPE_TOKEN}\ndestination: {type: sqlite, path: out.db}\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Resolve(lookup)
	if err == nil || !strings.Contains(err.Error(), "p.yaml:3:10: config.token: environment variable NOPE_TOKEN is not set") {
		t.Fatalf("missing env error = %v", err)
	}
}

// FuzzParseConnector feeds arbitrary bytes to the loader: it must never
// panic, a failure must be spec.Problems with a position inside the file,
// and no input may cost much memory (alias bombs, deep nesting and the
// like are refused early).
func FuzzParseConnector(f *testing.F) {
	for _, name := range []string{"testdata/shop.connector.yaml"} {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	bad, _ := filepath.Glob("testdata/bad/*.yaml")
	for _, name := range bad {
		data, _ := os.ReadFile(name)
		f.Add(data)
	}
	f.Add([]byte("name: x\nbase_url: y\nstreams: {a: {path: /a, paginate: {type: cursor, cursor_path: 'a..b'}}}"))
	f.Add([]byte("name: x\nbase_url: y\na: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b, {<<: *a}]\nstreams: {s: {path: /x}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<14 {
			return
		}
		var err error
		alloc := allocated(func() { _, err = spec.ParseConnector("fuzz.yaml", data) })
		checkFuzzResult(t, data, "fuzz.yaml", err, alloc)
	})
}

// FuzzParsePipeline is FuzzParseConnector for pipelines, with inline
// connectors or the shop connector.
func FuzzParsePipeline(f *testing.F) {
	bad, _ := filepath.Glob("testdata/bad/*.pipeline.yaml")
	for _, name := range bad {
		data, _ := os.ReadFile(name)
		f.Add(data)
	}
	f.Add([]byte("connector: ../shop.connector.yaml\nconfig:\n  token: ${T}\ndestination: {type: postgres, url: \"postgres://${U}@db/x\"}\nmode: incremental_dedup\nstreams:\n  customers: {table: c, schema: {nested: unnest}}\n  orders:\nsync: {checkpoint_interval: 1s}\n"))
	f.Add([]byte("connector: {name: x, base_url: y, streams: {a: {path: /a}, b: {path: /b}}}\ndestination: {type: sqlite, path: x.db}\nstreams: {a: {table: t}, b: {table: T}}\n"))
	name := filepath.Join("testdata", "bad", "fuzz.pipeline.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<14 {
			return
		}
		// The connector may be a path: stay away from devices and the like.
		for _, dir := range []string{"/dev", "/proc", "/sys"} {
			if bytes.Contains(data, []byte(dir)) {
				return
			}
		}
		var err error
		alloc := allocated(func() { _, err = spec.ParsePipeline(name, data) })
		checkFuzzResult(t, data, name, err, alloc)
	})
}

// allocated returns the bytes fn allocates.
func allocated(fn func()) uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	before := s[0].Value.Uint64()
	fn()
	metrics.Read(s)
	return s[0].Value.Uint64() - before
}

// checkFuzzResult checks the outcome of loading data from file.
func checkFuzzResult(t *testing.T, data []byte, file string, err error, alloc uint64) {
	t.Helper()
	// Loading a 16 KiB file within the limits allocates tens of MiB at
	// most (mostly template compilation); an unbounded expansion would be
	// gigabytes.
	if alloc > 512<<20 {
		t.Fatalf("loading %d bytes allocated %d MiB", len(data), alloc>>20)
	}
	if err == nil {
		return
	}
	var ps spec.Problems
	if !errors.As(err, &ps) {
		t.Fatalf("error %v (%T) is not spec.Problems", err, err)
	}
	// YAML breaks lines at CR LF, CR and LF alike, and so do positions.
	lines := strings.Count(strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(string(data)), "\n") + 1
	for _, p := range ps {
		if p.Message == "" {
			t.Fatalf("problem %+v without a message", p)
		}
		if p.File == file && (p.Line < 0 || p.Line > lines+1) {
			t.Fatalf("problem %+v outside the %d-line file", p, lines)
		}
	}
}

// TestConnectorRefusesEnv: a ${VAR} anywhere in a connector (a stream's
// path, a header, a request body) is refused with what to do instead; $${
// is a literal.
func TestConnectorRefusesEnv(t *testing.T) {
	_, err := spec.ParseConnector("c.yaml", []byte("name: c\nbase_url: https://x\nstreams:\n  s:\n    path: /x/${Y}\n    method: POST\n    headers: {X-K: \"${K}\"}\n    body: {q: [\"${Q}\"], ok: \"$${literal}\"}\n"))
	var ps spec.Problems
	if !errors.As(err, &ps) || len(ps) != 3 {
		t.Fatalf("problems = %v", err)
	}
	for i, p := range []string{"streams.s.body.q.0", "streams.s.headers.X-K", "streams.s.path"} {
		found := false
		for _, pr := range ps {
			found = found || (pr.Path == p && strings.Contains(pr.Message, "a connector does not read the environment"))
		}
		if !found {
			t.Errorf("%d: no problem at %s: %v", i, p, err)
		}
	}
}
