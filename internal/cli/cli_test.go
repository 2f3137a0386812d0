package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/ferry-dev/ferry/internal/components/all"
	"github.com/ferry-dev/ferry/internal/demo"
)

// ferry runs the command line in-process.
func ferry(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	if err := demo.Export(dir); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FERRY_DEMO_URL", "http://127.0.0.1:1")
	t.Setenv("FERRY_DEMO_TOKEN", "x")
	code, out, errs := ferry(t, "validate", filepath.Join(dir, demo.ConnectorFile), filepath.Join(dir, demo.PipelineFile))
	if code != 0 || !strings.Contains(out, "valid connector") || !strings.Contains(out, "valid pipeline") {
		t.Fatalf("validate good files: %d\n%s%s", code, out, errs)
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("name: x\nbase_url: http://x\nstreams:\n  a:\n    path: /a\n    cursr: updated_at\n"), 0o644)
	code, _, errs = ferry(t, "validate", bad)
	if code != 2 || !strings.Contains(errs, "bad.yaml:6:5: streams.a.cursr: unknown field \"cursr\" (did you mean \"cursor\"?)") {
		t.Fatalf("validate bad file: %d\n%s", code, errs)
	}
	// A pipeline whose secret is missing from the environment.
	os.Unsetenv("FERRY_DEMO_TOKEN")
	code, _, errs = ferry(t, "validate", filepath.Join(dir, demo.PipelineFile))
	if code != 2 || !strings.Contains(errs, "environment variable FERRY_DEMO_TOKEN is not set") {
		t.Fatalf("validate without env: %d\n%s", code, errs)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"run"}, {"run", "a", "b"}, {"--nope"}, {"schema", "other"}, {"validate"}} {
		code, _, errs := ferry(t, args...)
		if code != 2 || errs == "" {
			t.Errorf("%v: code %d, stderr %q", args, code, errs)
		}
	}
	code, out, _ := ferry(t, "schema", "connector")
	var v map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || v["title"] != "Ferry connector" {
		t.Fatalf("schema connector: %d %.100s", code, out)
	}
}

func TestDemoTwiceThenStateAndQuery(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo waits out the sample API's rate limits")
	}
	dir := t.TempDir()
	db := filepath.Join(dir, "demo.db")
	code, out, errs := ferry(t, "demo", "--quiet", "--db", db)
	if code != 0 {
		t.Fatalf("demo: %d\n%s\n%s", code, out, errs)
	}
	for _, want := range []string{"customers   500", "products    120", "orders     2016", "ferry query " + db} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	// The second run is incremental: customers and orders fetch only what
	// changed (a handful of records touched in the current minute at most).
	code, out, errs = ferry(t, "demo", "--quiet", "--db", db)
	if code != 0 {
		t.Fatalf("second demo: %d\n%s\n%s", code, out, errs)
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 5 && (f[0] == "customers" || f[0] == "orders") && f[2] == "incremental_dedup" {
			if n := f[4]; len(n) > 2 {
				t.Errorf("second run wrote %s rows of %s: not incremental\n%s", n, f[0], out)
			}
		}
	}
	code, out, errs = ferry(t, "query", db, "SELECT COUNT(*) AS n FROM orders WHERE customer_id IS NULL")
	if code != 0 || !strings.Contains(out, "n\n0\n") {
		t.Fatalf("query: %d\n%s%s", code, out, errs)
	}
	code, out, _ = ferry(t, "query", db, "SELECT stream, partition_key FROM _ferry_state WHERE stream = 'customers'")
	if code != 0 || !strings.Contains(out, "customers") {
		t.Fatalf("state rows: %s", out)
	}
}

// TestValidateReportsOnce checks that a connector's problem is reported
// once when the connector and a pipeline using it are validated together,
// however the connector's path is spelled.
func TestValidateReportsOnce(t *testing.T) {
	dir := t.TempDir()
	conn := filepath.Join(dir, "bad.connector.yaml")
	os.WriteFile(conn, []byte("name: x\nbase_url: http://x\nstreams:\n  bad-name:\n    path: /a\n"), 0o644)
	pipe := filepath.Join(dir, "bad.pipeline.yaml")
	os.WriteFile(pipe, []byte("connector: bad.connector.yaml\ndestination: {type: sqlite, path: x.db}\n"), 0o644)
	t.Chdir(dir)
	code, _, errs := ferry(t, "validate", "bad.connector.yaml", "bad.pipeline.yaml", "./bad.connector.yaml")
	want := `bad.connector.yaml:4:3: streams.bad-name: invalid stream name "bad-name": use letters, digits and _, not starting with a digit (such as "bad_name")` + "\n"
	if code != 2 || errs != want {
		t.Fatalf("validate: %d\n%s\nwant:\n%s", code, errs, want)
	}
}
