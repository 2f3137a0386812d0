package spec

import (
	"reflect"
	"testing"
)

type walkInner struct {
	Name string `yaml:"name"`
}

type walkConfig struct {
	URL     string            `yaml:"url" secret:"url"`
	Headers map[string]string `yaml:"headers"`
	Body    any               `yaml:"body"`
	List    []string          `yaml:"list"`
	Inner   *walkInner        `yaml:"inner"`
	Streams map[string]*walkInner
}

// TestStringsOf: every string of a configuration is found and can be
// replaced: fields, mappings, sequences, and values of interface type.
func TestStringsOf(t *testing.T) {
	cfg := &walkConfig{
		URL:     "${A}",
		Headers: map[string]string{"X": "${B}"},
		Body:    map[string]any{"q": "${C}", "n": 1, "l": []any{"${D}"}},
		List:    []string{"${E}"},
		Inner:   &walkInner{Name: "${F}"},
	}
	got := map[string]string{}
	for _, sf := range stringsOf(cfg, []string{"destination"}) {
		got[joinPath(sf.path)] = sf.value
		sf.set("ok")
	}
	want := map[string]string{"destination.url": "${A}", "destination.headers.X": "${B}", "destination.body.q": "${C}",
		"destination.body.l.0": "${D}", "destination.list.0": "${E}", "destination.inner.name": "${F}"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("strings = %v\nwant %v", got, want)
	}
	if cfg.URL != "ok" || cfg.Headers["X"] != "ok" || cfg.Body.(map[string]any)["q"] != "ok" || cfg.Body.(map[string]any)["l"].([]any)[0] != "ok" || cfg.List[0] != "ok" || cfg.Inner.Name != "ok" {
		t.Fatalf("not replaced: %+v %+v", cfg, cfg.Body)
	}
}
