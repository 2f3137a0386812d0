// Package connectors_test replays every connector of this folder against
// its recorded exchanges (replay/*.json, written from the provider's
// documented response formats) into SQLite, and compares the tables with
// expected.txt: lines "> QUERY" followed by the rows, "|" between columns.
//
//	go test ./connectors                 # check
//	go test ./connectors -update         # rewrite the rows of expected.txt
package connectors_test

import (
	"bufio"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/ferry-dev/ferry/internal/components/all"
	"github.com/ferry-dev/ferry/internal/engine"
	"github.com/ferry-dev/ferry/internal/enginetest"
	"github.com/ferry-dev/ferry/internal/httpx"
	"github.com/ferry-dev/ferry/internal/redact"
)

var update = flag.Bool("update", false, "rewrite the rows of each expected.txt")

func TestConnectors(t *testing.T) {
	dirs, _ := filepath.Glob("*/connector.yaml")
	if len(dirs) < 8 && !*update {
		t.Fatalf("%d connectors, want at least 8", len(dirs))
	}
	for _, c := range dirs {
		dir := filepath.Dir(c)
		t.Run(dir, func(t *testing.T) {
			t.Parallel()
			replayConnector(t, dir)
		})
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func replayConnector(t *testing.T, dir string) {
	// Dummy secrets: the recordings hold none, and replay matches
	// requests without them.
	env := map[string]string{}
	pipeline := read(t, filepath.Join(dir, "test.pipeline.yaml"))
	for _, f := range strings.Fields(strings.NewReplacer("${", " ", "}", " ").Replace(pipeline)) {
		if strings.ToUpper(f) == f && strings.Trim(f, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789") == "" {
			env[f] = "dummy-" + strings.ToLower(f)
		}
	}
	files := map[string]string{}
	extra, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	for _, f := range extra {
		files[filepath.Base(f)] = read(t, f)
	}
	p := enginetest.New(t, enginetest.Config{Connector: read(t, filepath.Join(dir, "connector.yaml")), Pipeline: pipeline, Env: env, Files: files})
	rp, err := httpx.NewReplayer(filepath.Join(dir, "replay"), redact.New())
	if err != nil {
		t.Fatal(err)
	}
	res := p.RunWith(enginetest.Options{Engine: engine.Options{Transport: rp}})
	res.Check(t)
	for _, st := range res.Summary.Streams {
		if st.Records == 0 {
			t.Errorf("stream %s wrote no rows", st.Stream)
		}
	}
	expPath := filepath.Join(dir, "expected.txt")
	var out strings.Builder
	sc := bufio.NewScanner(strings.NewReader(read(t, expPath)))
	var query string
	var want []string
	check := func() {
		if query == "" {
			return
		}
		got := p.Query(query)
		out.WriteString("> " + query + "\n")
		for _, g := range got {
			out.WriteString(g + "\n")
		}
		if !*update && strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s:\n%s\nwant:\n%s", query, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	for sc.Scan() {
		line := sc.Text()
		if q, ok := strings.CutPrefix(line, "> "); ok {
			check()
			query, want = q, nil
			continue
		}
		want = append(want, line)
	}
	check()
	if *update {
		os.WriteFile(expPath, []byte(out.String()), 0o644)
	}
}
