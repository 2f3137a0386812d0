package spec

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/goccy/go-yaml/token"
)

// A dollarHint is an unquoted ${ inside a flow collection, where YAML
// reads the { as the start of a mapping.
type dollarHint struct {
	line, col int // the value's start
	key       string
	path      string
	inMapping bool
}

// noteDollar notes tk at index i if it is the first unquoted ${ in a flow
// collection: a plain scalar ending in $ right before a {.
func (s *tokenScan) noteDollar(i int, tk *token.Token) {
	f := s.top()
	if s.dollar != nil || f == nil || !f.flow || tk.Type != token.StringType || !strings.HasSuffix(tk.Value, "$") || i+1 >= len(s.tokens) {
		return
	}
	next := s.tokens[i+1]
	if next.Type != token.MappingStartType || next.Position == nil || next.Position.Line != tk.Position.Line ||
		next.Position.Column != tk.Position.Column+utf8.RuneCountInString(tk.Value) {
		return
	}
	h := dollarHint{line: tk.Position.Line, col: tk.Position.Column, path: s.path(true), inMapping: !f.seq}
	if !f.seq {
		h.key = f.key
		if h.key == "" {
			return // "${" is itself a key: {${A}: b}
		}
	}
	s.dollar = &h
}

// dollarProblem explains a syntax error at line:col that an unquoted ${ in
// a flow collection, at or before it, causes: YAML cannot read past one.
func (s *tokenScan) dollarProblem(data []byte, line, col int) *Problem {
	h := s.dollar
	if h == nil || h.line > line || (h.line == line && h.col > col) {
		return nil
	}
	value := flowValue(sourceLine(data, h.line), h.col)
	quoted := yamlQuote(value)
	what, fix := "flow sequence ([...])", quoted
	if h.inMapping {
		what, fix = "flow mapping ({...})", h.key+": "+quoted
	}
	return &Problem{File: s.name, Line: h.line, Col: h.col, Path: h.path,
		Message: fmt.Sprintf("invalid YAML: in a %s, an unquoted ${ starts a nested mapping: quote the value: %s", what, fix)}
}

// sourceLine returns line n (1-based) of data, breaking lines as YAML does
// (CR LF, CR or LF).
func sourceLine(data []byte, n int) string {
	s := strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(string(data))
	for i := 1; i < n; i++ {
		j := strings.IndexByte(s, '\n')
		if j < 0 {
			return ""
		}
		s = s[j+1:]
	}
	if j := strings.IndexByte(s, '\n'); j >= 0 {
		s = s[:j]
	}
	return s
}

// flowValue returns the plain value starting at column col (1-based, in
// runes) of line: up to the ',', '}' or ']' that ends it, ${...} kept whole.
func flowValue(line string, col int) string {
	r := []rune(line)
	if col < 1 || col > len(r) {
		return ""
	}
	r = r[col-1:]
	end := len(r)
loop:
	for i := 0; i < len(r); i++ {
		switch {
		case r[i] == '$' && i+1 < len(r) && r[i+1] == '{':
			for i < len(r) && r[i] != '}' {
				i++
			}
		case r[i] == ',' || r[i] == '}' || r[i] == ']':
			end = i
			break loop
		case r[i] == '#' && i > 0 && r[i-1] == ' ':
			end = i
			break loop
		}
	}
	return strings.TrimRight(string(r[:end]), " \t")
}

// yamlQuote writes s as a double-quoted YAML scalar.
func yamlQuote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}
