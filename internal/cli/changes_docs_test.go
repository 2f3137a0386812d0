package cli

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestChangesDocExamples: every connector and pipeline of docs/changes.md
// is valid as written (ferry validate), so the examples cannot drift
// from the code.
func TestChangesDocExamples(t *testing.T) {
	doc, err := os.ReadFile("../../docs/changes.md")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var files []string
	for _, m := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(doc), -1) {
		first, _, _ := strings.Cut(m[1], "\n")
		name := regexp.MustCompile(`^# ([A-Za-z0-9_.-]+\.yaml)`).FindStringSubmatch(first)
		if name == nil {
			t.Fatalf("a yaml example without a # file.yaml first line: %q", first)
		}
		if err := os.WriteFile(filepath.Join(dir, name[1]), []byte(m[1]), 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, filepath.Join(dir, name[1]))
	}
	for _, v := range regexp.MustCompile(`\$\{([A-Z_][A-Z0-9_]*)\}`).FindAllStringSubmatch(string(doc), -1) {
		val := "secret-value"
		if strings.HasSuffix(v[1], "_URL") {
			val = "postgres://ferry:pw@db.internal:5432/app"
		}
		t.Setenv(v[1], val)
	}
	if len(files) < 10 {
		t.Fatalf("only %d examples found", len(files))
	}
	code, out, errs := ferry(t, append([]string{"validate"}, files...)...)
	if code != 0 || strings.Count(out, ": valid ") != len(files) {
		t.Fatalf("validate the examples: exit %d\n%s%s", code, out, errs)
	}
}
