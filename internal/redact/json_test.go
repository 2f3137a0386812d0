package redact

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"unicode/utf16"
	"unicode/utf8"
)

// TestRedactorJSONEscaped checks that a secret is hidden however a JSON
// encoder wrote it: APIs echo what they received inside JSON error
// documents, and Ferry shows those in errors, logs and the runs table.
func TestRedactorJSONEscaped(t *testing.T) {
	const secret = `sk/<live>&"x\y` + "\u2028é😀"
	tests := []struct{ name, in string }{
		{"go html-escaping", `{"error":"key sk\/\u003clive\u003e\u0026\"x\\y\u2028é😀 revoked"}`},
		{"go", `{"error":"key sk/<live>&\"x\\y\u2028é😀 revoked"}`},
		{"php", `{"error":"key sk\/<live>&\"x\\y\u2028\u00e9\ud83d\ude00 revoked"}`},
		{"every char as \\u, lower-case", `{"error":"key ` + escapeAll(secret, "%04x") + ` revoked"}`},
		{"every char as \\u, upper-case", `{"error":"key ` + escapeAll(secret, "%04X") + ` revoked"}`},
		{"mixed case hex", `{"error":"key sk\/\u003Clive\u003e\u0026\u0022x\u005Cy\u2028\u00E9\uD83D\ude00 revoked"}`},
		{"json in a query", "https://h/cb?state=" + url.QueryEscape(`{"k":"sk\/\u003clive\u003e\u0026\"x\\y\u2028é😀"}`)},
		{"json in a path", "https://h/x/" + url.PathEscape(`{"k":"sk\/<live>&\"x\\y\u2028\u00e9\ud83d\ude00"}`) + "/y"},
		{"url in json", `{"next":"https:\/\/h\/p?key=` + url.QueryEscape(secret) + `"}`},
		{"json in json", `{"error":"body was {\"key\":\"sk\\\/\\u003clive\\u003e\\u0026\\\"x\\\\y\\u2028é😀\"}"}`},
	}
	r := New(secret)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := r.String(tt.in)
			if !strings.Contains(got, Redacted) {
				t.Errorf("String(%s) =\n%s\nwant the secret hidden", tt.in, got)
			}
			for _, leak := range []string{"live", "sk", "😀", "\\ud83d"} {
				if strings.Contains(strings.ToLower(got), strings.ToLower(leak)) {
					t.Errorf("String(%s) =\n%s\nshows %q", tt.in, got, leak)
				}
			}
		})
	}
	// What is around a secret keeps its spelling.
	in := `{"a":"x\/y","error":"key ` + escapeAll(secret, "%04x") + `","b":"\u00e9"}`
	want := `{"a":"x\/y","error":"key REDACTED","b":"\u00e9"}`
	if got := r.String(in); got != want {
		t.Errorf("String(%s) =\n%s\nwant\n%s", in, got, want)
	}
}

// escapeAll writes s as a JSON string body with every character a \u
// escape, astral characters as surrogate pairs, in the hex format given.
func escapeAll(s, hexFormat string) string {
	var b strings.Builder
	for _, r := range s {
		for _, u := range utf16.Encode([]rune{r}) {
			fmt.Fprintf(&b, `\u`+hexFormat, u)
		}
	}
	return b.String()
}

// jsonEncoders write a string as the body of a JSON string (no quotes) the
// way common encoders do.
var jsonEncoders = []struct {
	name string
	enc  func(s string, seed uint64) string
}{
	{"encoding/json", func(s string, _ uint64) string {
		b, _ := json.Marshal(s)
		return string(b[1 : len(b)-1])
	}},
	{"encoding/json without HTML escaping", func(s string, _ uint64) string {
		var buf bytes.Buffer
		e := json.NewEncoder(&buf)
		e.SetEscapeHTML(false)
		e.Encode(s)
		b := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
		return string(b[1 : len(b)-1])
	}},
	{"every character as \\u (lower-case hex)", func(s string, _ uint64) string { return escapeAll(s, "%04x") }},
	{"every character as \\u (upper-case hex)", func(s string, _ uint64) string { return escapeAll(s, "%04X") }},
	{"PHP json_encode", func(s string, _ uint64) string { return phpEncode(s) }},
	{"some characters as \\u, mixed-case hex", func(s string, seed uint64) string { return mixedEncode(s, seed) }},
}

// phpEncode is PHP's json_encode with its default flags: "/" as "\/",
// anything not ASCII as \u escapes with lower-case hex.
func phpEncode(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '"' || r == '\\' || r == '/':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\b':
			b.WriteString(`\b`)
		case r == '\f':
			b.WriteString(`\f`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r >= 0x7f:
			for _, u := range utf16.Encode([]rune{r}) {
				fmt.Fprintf(&b, `\u%04x`, u)
			}
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// mixedEncode escapes what JSON requires and, as seed says, other
// characters as \u escapes with hex digits of either case. The choice
// depends on the character and seed only, so a string is encoded the same
// way alone and inside a longer one.
func mixedEncode(s string, seed uint64) string {
	var b strings.Builder
	for _, r := range s {
		h := (seed ^ uint64(r)) * 0x9e3779b97f4a7c15
		must := r == '"' || r == '\\' || r < 0x20
		if !must && h>>63 == 0 {
			b.WriteRune(r)
			continue
		}
		for i, u := range utf16.Encode([]rune{r}) {
			x := fmt.Sprintf("%04x", u)
			if h>>(62-i)&1 == 1 {
				x = strings.ToUpper(x)
			}
			b.WriteString(`\u` + x)
		}
	}
	return b.String()
}

// wrappers put a JSON document where Ferry meets one: as is, in a query
// parameter or a path segment, or as a string inside another document.
var wrappers = []struct {
	name string
	wrap func(string) string
}{
	{"as is", func(s string) string { return s }},
	{"query-escaped", url.QueryEscape},
	{"path-escaped", url.PathEscape},
	{"inside json", func(s string) string { return jsonEncoders[0].enc(s, 0) }},
}

// FuzzRedactorJSON builds a secret, has a JSON encoder write a message
// holding it, wraps the document as Ferry may meet it, and checks that
// String hides the secret where the encoder wrote it, and anywhere in its
// plain form; and that Prefix, given the text cut anywhere, shows no part
// of it either.
//
// The check is on the place the encoder wrote the secret, not on the
// output's text: the hex digits of escapes around it may spell the
// secret's form ("000\u0010" inside "\u0000\u0010") without any secret
// being there, and as in FuzzRedactorURL the marker itself may spell one.
func FuzzRedactorJSON(f *testing.F) {
	f.Add("sk/<live>&\"x", "key ", " revoked", uint8(0), uint64(1))
	f.Add("a\u2028b\u00e9😀", "", "", uint8(2), uint64(7))
	f.Add("p\\ss\nword", "x\\", "\\", uint8(4), uint64(3))
	f.Add("tok+en %2F", "?", "&", uint8(5), uint64(99))
	f.Add("000\x10", "\x00\x10", "0", uint8(1), uint64(3))
	f.Fuzz(func(t *testing.T, secret, prefix, suffix string, mode uint8, seed uint64) {
		if len(secret) < 4 || !utf8.ValidString(secret) {
			t.Skip()
		}
		e := jsonEncoders[int(mode)%len(jsonEncoders)]
		w := wrappers[int(mode/16)%len(wrappers)]
		const outer = "GET https://api.example.com/v1: 400: body: "
		head := `{"error":"` + e.enc(prefix, seed)
		text := outer + w.wrap(head+e.enc(secret+suffix, seed)+`"}`) + " (end)"
		form := w.wrap(e.enc(secret, seed))
		at := len(outer) + len(w.wrap(head))
		if text[at:at+len(form)] != form {
			t.Fatalf("the encoders are not context-free: %q at %d in %q", form, at, text)
		}
		r := New(secret)
		out := r.String(text)
		for _, piece := range strings.Split(out, Redacted) {
			if strings.Contains(piece, secret) {
				t.Fatalf("%s, %s: String(%q) =\n%q\nshows the secret %q", e.name, w.name, text, out, secret)
			}
		}
		spans, _ := r.load().find(text, false)
		if !covered(spans, at, at+len(form), len(text)) {
			t.Fatalf("%s, %s: String(%q) =\n%q\nshows the secret %q, written %q", e.name, w.name, text, out, secret, form)
		}
		// The text cut anywhere: what Prefix keeps of it must not show the
		// part of the secret before the cut.
		cut := text[:seed%uint64(len(text)+1)]
		spans, tail := r.load().find(cut, true)
		if end := min(len(cut), at+len(form)); at < end && !covered(spans, at, end, tail) {
			t.Fatalf("%s, %s: Prefix(%q) =\n%q\nshows the start of the secret %q, written %q", e.name, w.name, cut, r.Prefix(cut), secret, form)
		}
	})
}

// covered reports whether every byte of [from, to) is in one of the
// sorted, merged spans or at or after tail.
func covered(spans []span, from, to, tail int) bool {
	for _, sp := range spans {
		if sp.start <= from && from < sp.end {
			from = sp.end
		}
	}
	return from >= to || from >= tail
}

func TestRedactorPrefix(t *testing.T) {
	r := New("split-secret", "a/b")
	tests := []struct{ in, want string }{
		{"error for split-sec", "error for "},
		{"error for split-secret and more", "error for REDACTED and more"},
		{`{"k":"split-se`, `{"k":"`},
		{`{"k":"\u0073plit`, `{"k":"`},        // escaped
		{`{"k":"\u007`, `{"k":"`},             // an escape cut in half
		{`{"k":"a\`, `{"k":"`},                // "a\/b" cut after the backslash
		{`https://h/?q=a%2`, `https://h/?q=`}, // a percent-escape cut in half
		{"nothing to hide", "nothing to hide"},
		{"ends with a", "ends with "}, // a may begin "a/b"
	}
	for _, tt := range tests {
		if got := r.Prefix(tt.in); got != tt.want {
			t.Errorf("Prefix(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := (*Redactor)(nil).Prefix("abc"); got != "abc" {
		t.Errorf("nil Prefix = %q", got)
	}
}
