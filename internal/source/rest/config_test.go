package rest

import (
	"errors"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/internal/spec"
)

// TestDefaultsReportedOnce: a bad template in defaults is reported once,
// where it is written, not again for every stream it is merged into.
func TestDefaultsReportedOnce(t *testing.T) {
	_, err := spec.ParseConnector("c.yaml", []byte(`name: c
base_url: https://x
defaults:
  params: {bad: "{{ 1 + }}"}
  headers: {X-Bad: "{{ nope.x }}"}
streams:
  a: {path: /a}
  b: {path: /b, params: {own: "{{ 2 + }}"}}
`))
	var ps spec.Problems
	if !errors.As(err, &ps) {
		t.Fatalf("error = %v", err)
	}
	var paths []string
	for _, p := range ps {
		paths = append(paths, p.Path)
	}
	if got := strings.Join(paths, " "); got != "defaults.params.bad defaults.headers.X-Bad streams.b.params.own" {
		t.Fatalf("problems at %s:\n%v", got, err)
	}
}
