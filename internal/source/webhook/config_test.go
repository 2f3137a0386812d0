package webhook_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/internal/spec"
)

// TestValidate: mistakes in a webhook connector are reported at their
// place, all at once.
func TestValidate(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "connector.yaml"), []byte(`name: bad
type: webhook
config:
  secret: {}
path: hooks
verify: {preset: hmac, secrets: ["{{ config.secret }}", "literal"], tolerance: 5m}
event: {deletes: ["[*.deleted"]}
streams:
  a: {when: "type ==", path: "/x/../y"}
`), 0o644)
	os.WriteFile(filepath.Join(dir, "pipeline.yaml"), []byte("connector: connector.yaml\nconfig: {secret: \"${S}\"}\ndestination: {type: sqlite, path: out.db}\n"), 0o644)
	_, err := spec.LoadPipeline(filepath.Join(dir, "pipeline.yaml"))
	if err == nil {
		t.Fatal("a bad connector loaded")
	}
	msg := err.Error()
	for _, want := range []string{
		"connector.yaml:5:7: path: a URL path starts with /",
		`connector.yaml:6:45: verify.secrets.0: config parameter "secret" holds a credential here: declare it with secret: true`,
		"verify.secrets.1: a credential cannot be written in the connector: use a secret config parameter, such as {{ config.secrets }}",
		"verify: preset hmac needs header",
		"event.deletes.0: not a valid glob",
		"streams.a.when:",
		"streams.a.path: a URL path starts with / and is clean",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("no %q in:\n%s", want, msg)
		}
	}
}
