package template

import (
	"reflect"
	"strings"
	"testing"
)

// TestTree: every string of a body is a template, other values stay, the
// shape is kept, and an error names the path of the first bad string.
func TestTree(t *testing.T) {
	body := map[string]any{"name": "{{ config.name }}", "n": 3.0, "tags": []any{"a", "{{ config.id }}", nil}, "nested": map[string]any{"ok": true}}
	tree, err := ParseTree(body, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := EvalTree(tree, Env{"config": map[string]any{"name": "Ada", "id": 7}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"name": "Ada", "n": 3.0, "tags": []any{"a", 7, nil}, "nested": map[string]any{"ok": true}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v", got)
	}
	for range 5 { // map order must not change which problem is named
		_, err = ParseTree(map[string]any{"b": []any{"ok", "{{ ( }}"}, "a": "fine", "c": "{{ ) }}"}, nil)
		if err == nil || !strings.HasPrefix(err.Error(), "b: 1: ") {
			t.Fatalf("error = %v", err)
		}
	}
}
