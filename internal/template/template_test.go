package template

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestEval(t *testing.T) {
	env := Env{
		"config":      map[string]any{"token": "s3cret", "per_page": 50},
		"parent":      map[string]any{"id": json.Number("42"), "slug": "a/b c"},
		"page":        map[string]any{"cursor": nil, "number": 3},
		"incremental": map[string]any{"since": "2024-01-01T00:00:00Z"},
		"stream":      "orders",
	}
	tests := []struct {
		src  string
		want any
	}{
		{"plain", "plain"},
		{"", ""},
		{"Bearer {{ config.token }}", "Bearer s3cret"},
		{"{{ config.per_page }}", 50},
		{"{{ page.cursor }}", nil},
		{"/customers/{{parent.id}}/orders", "/customers/42/orders"},
		{"{{ page.number * 10 }}", 30},
		{"{{ stream }}-{{ upper(stream) }}", "orders-ORDERS"},
		{"{{ incremental.since }}", "2024-01-01T00:00:00Z"},
	}
	for _, tt := range tests {
		tpl, err := Parse(tt.src)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tt.src, err)
		}
		got, err := tpl.Eval(env)
		if err != nil {
			t.Fatalf("Eval(%q): %v", tt.src, err)
		}
		if got != tt.want {
			t.Errorf("Eval(%q) = %#v, want %#v", tt.src, got, tt.want)
		}
	}
}

func TestNullInText(t *testing.T) {
	tpl := MustParse("/x/{{ page.cursor }}")
	_, err := tpl.Eval(Env{"page": map[string]any{}})
	if err == nil || !strings.Contains(err.Error(), "is null") {
		t.Fatalf("err = %v, want null error", err)
	}
}

func TestRenderEachEscapes(t *testing.T) {
	tpl := MustParse("/c/{{ parent.slug }}/o")
	got, err := tpl.RenderEach(Env{"parent": map[string]any{"slug": "a/b c"}}, func(s string) string {
		return strings.NewReplacer("/", "%2F", " ", "%20").Replace(s)
	})
	if err != nil || got != "/c/a%2Fb%20c/o" {
		t.Fatalf("RenderEach = %q, %v", got, err)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		src, msg string
		offset   int
	}{
		{"abc {{ config.x", `without a closing`, 4},
		{"a {{ }}", "empty", 2},
		{"x {{ confg.token }}", "unknown name confg", 5},
		{"{{ 1 + }}", "", 2},
	}
	for _, tt := range tests {
		_, err := Parse(tt.src)
		te, ok := err.(*Error)
		if !ok {
			t.Fatalf("Parse(%q) = %v, want *Error", tt.src, err)
		}
		if !strings.Contains(te.Msg, tt.msg) || te.Offset < tt.offset {
			t.Errorf("Parse(%q) = %q at %d, want %q at >= %d", tt.src, te.Msg, te.Offset, tt.msg, tt.offset)
		}
	}
}

func TestRefs(t *testing.T) {
	tpl := MustParse("{{ config.base }}/x/{{ parent.id }}?{{ page }}{{ lower(config['token']) }}")
	var got []string
	for _, r := range tpl.Refs() {
		got = append(got, r.String())
	}
	want := "config.base parent.id page config.token"
	if strings.Join(got, " ") != want {
		t.Fatalf("Refs = %q, want %q", strings.Join(got, " "), want)
	}
}

// TestParseEnv: a template compiled for other variables (a destination's
// request templates) reads those, typed, and no others.
func TestParseEnv(t *testing.T) {
	env := map[string]any{"op": "", "row": map[string]any{}}
	tp, err := ParseEnv(`{{ op == "delete" ? "DELETE" : "POST" }} /items/{{ row.id }}`, env)
	if err != nil {
		t.Fatal(err)
	}
	if s, _, err := tp.Render(Env{"op": "delete", "row": map[string]any{"id": int64(3)}}); err != nil || s != "DELETE /items/3" {
		t.Fatalf("render = %q, %v", s, err)
	}
	if _, err := ParseEnv(`{{ config.x }}`, env); err == nil {
		t.Fatal("a variable outside the environment compiled")
	}
}
