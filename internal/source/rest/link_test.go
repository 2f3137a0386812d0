package rest

import (
	"strings"
	"testing"
)

func TestLinkNext(t *testing.T) {
	tests := []struct {
		in   []string
		want string
	}{
		{[]string{`<https://api.x/items?page=2>; rel="next"`}, "https://api.x/items?page=2"},
		{[]string{`<https://api.x/items?page=1>; rel="prev", <https://api.x/items?page=3>; rel="next"`}, "https://api.x/items?page=3"},
		{[]string{`<https://a/1>; rel="first"`, `<https://a/2>; rel=next`}, "https://a/2"},
		{[]string{`<https://a/2>; rel="next last"`}, "https://a/2"},
		{[]string{`<https://a/2>; REL="NEXT"`}, "https://a/2"},
		{[]string{`<https://a/x,y>; title="a, b; c"; rel="next"`}, "https://a/x,y"},
		{[]string{`<https://a/2>; rel="prev"`}, ""},
		{[]string{`garbage, <https://a/3>; rel="next"`}, "https://a/3"},
		{[]string{`<https://a/2; rel="next"`}, ""},
		{nil, ""},
	}
	for _, tt := range tests {
		if got := linkNext(tt.in); got != tt.want {
			t.Errorf("linkNext(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzLinkNext: any header value parses without panicking, and a found
// target is always text that appeared between < and > in the input.
func FuzzLinkNext(f *testing.F) {
	f.Add(`<https://api.x/items?page=2>; rel="next", <https://api.x/items?page=9>; rel="last"`)
	f.Add(`<a>;rel=next,<b>;rel="prev next"`)
	f.Add(`<x>; title="<y>; rel=next"; rel=prev`)
	f.Fuzz(func(t *testing.T, h string) {
		got := linkNext([]string{h})
		if got == "" {
			return
		}
		if !strings.Contains(h, "<"+got) && !strings.Contains(h, got+">") {
			t.Fatalf("linkNext(%q) = %q, not a bracketed target", h, got)
		}
		if strings.ContainsAny(got, "<>") {
			t.Fatalf("target %q contains brackets", got)
		}
	})
}
