// Package template evaluates the {{ expression }} parts of connector
// strings, such as "/customers/{{ parent.id }}/orders" or
// "Bearer {{ config.token }}". Expressions use the expr language
// (github.com/expr-lang/expr) over a fixed set of variables: config,
// parent, page, incremental, stream and job (an export job's id and
// status).
package template

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"
)

// Variables are the names an expression may use.
var Variables = []string{"config", "parent", "page", "incremental", "stream", "job"}

// Env holds the values of the variables for one evaluation.
type Env map[string]any

// compileEnv declares the variables' types for compilation.
var compileEnv = map[string]any{
	"config":      map[string]any{},
	"parent":      map[string]any{},
	"page":        map[string]any{},
	"incremental": map[string]any{},
	"stream":      "",
	"job":         map[string]any{},
}

// Template is a compiled template string. The zero value renders "".
type Template struct {
	src   string
	parts []part
}

type part struct {
	lit    string
	prog   *vm.Program
	offset int // byte offset of the expression in src
}

// Error is a template syntax or compile error at a byte offset of the
// template string.
type Error struct {
	Offset int
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

// Parse compiles src. Text outside {{ }} is literal.
func Parse(src string) (*Template, error) { return parse(src, compileEnv) }

// ParseEnv compiles src for a setting that reads other variables than
// connectors do (a destination's request templates read the change being
// delivered): the keys of env are the only variables the expressions may
// use, and their values' types are the variables' types (a map for
// fields, "" for a string).
func ParseEnv(src string, env map[string]any) (*Template, error) { return parse(src, env) }

func parse(src string, env map[string]any) (*Template, error) {
	t := &Template{src: src}
	rest, off := src, 0
	for {
		i := strings.Index(rest, "{{")
		if i < 0 {
			if rest != "" {
				t.parts = append(t.parts, part{lit: rest})
			}
			return t, nil
		}
		if i > 0 {
			t.parts = append(t.parts, part{lit: rest[:i]})
		}
		j := strings.Index(rest[i+2:], "}}")
		if j < 0 {
			return nil, &Error{Offset: off + i, Msg: `"{{" without a closing "}}"`}
		}
		code := rest[i+2 : i+2+j]
		if strings.TrimSpace(code) == "" {
			return nil, &Error{Offset: off + i, Msg: "empty {{ }} expression"}
		}
		prog, err := expr.Compile(code, expr.Env(env))
		if err != nil {
			return nil, compileError(err, off+i+2, code)
		}
		t.parts = append(t.parts, part{prog: prog, offset: off + i + 2})
		rest = rest[i+2+j+2:]
		off += i + 2 + j + 2
	}
}

func compileError(err error, base int, code string) error {
	var fe *file.Error
	if errors.As(err, &fe) {
		msg := fe.Message
		return &Error{Offset: base + max(0, fe.From), Msg: fmt.Sprintf("in {{%s}}: %s", code, msg)}
	}
	return &Error{Offset: base, Msg: fmt.Sprintf("in {{%s}}: %v", code, err)}
}

// MustParse is Parse for templates known to be valid; it panics otherwise.
func MustParse(src string) *Template {
	t, err := Parse(src)
	if err != nil {
		panic(err)
	}
	return t
}

// String returns the template's source.
func (t *Template) String() string { return t.src }

// Literal reports whether the template has no expressions.
func (t *Template) Literal() bool {
	for _, p := range t.parts {
		if p.prog != nil {
			return false
		}
	}
	return true
}

// single reports whether the template is exactly one expression.
func (t *Template) single() bool { return len(t.parts) == 1 && t.parts[0].prog != nil }

// Refs lists the variable paths the template reads, such as "config.token"
// or "parent.id" ("page" alone when the whole variable is used).
func (t *Template) Refs() []Ref {
	var out []Ref
	for _, p := range t.parts {
		if p.prog == nil {
			continue
		}
		v := &refVisitor{}
		node := p.prog.Node()
		ast.Walk(&node, v)
		for _, r := range v.result() {
			r.Offset += p.offset
			out = append(out, r)
		}
	}
	return out
}

// Ref is a variable read by a template: the variable and, when accessed
// with a constant member, the member name.
type Ref struct {
	Var    string
	Member string
	Offset int
}

// String renders the ref as var.member.
func (r Ref) String() string {
	if r.Member == "" {
		return r.Var
	}
	return r.Var + "." + r.Member
}

type refVisitor struct {
	idents  []*ast.IdentifierNode
	members map[*ast.IdentifierNode]Ref
}

// Visit records identifiers and member accesses on them; Refs combines them
// after the walk, whatever order the walk visits nodes in.
func (v *refVisitor) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.MemberNode:
		id, ok := n.Node.(*ast.IdentifierNode)
		if !ok {
			return
		}
		r := Ref{Var: id.Value, Offset: n.Location().From}
		if s, ok := n.Property.(*ast.StringNode); ok {
			r.Member = s.Value
		}
		if v.members == nil {
			v.members = map[*ast.IdentifierNode]Ref{}
		}
		v.members[id] = r
	case *ast.IdentifierNode:
		if isVariable(n.Value) {
			v.idents = append(v.idents, n)
		}
	}
}

func (v *refVisitor) result() []Ref {
	var out []Ref
	for _, id := range v.idents {
		if r, ok := v.members[id]; ok {
			out = append(out, r)
		} else {
			out = append(out, Ref{Var: id.Value, Offset: id.Location().From})
		}
	}
	return out
}

func isVariable(name string) bool {
	for _, v := range Variables {
		if v == name {
			return true
		}
	}
	return false
}

// Eval evaluates the template. A template that is exactly one expression
// returns the expression's value, of any type, nil included; any other
// template returns a string, and fails if an expression in it is null.
func (t *Template) Eval(env Env) (any, error) {
	if t == nil || len(t.parts) == 0 {
		return "", nil
	}
	if t.single() {
		return t.run(t.parts[0], env)
	}
	var b strings.Builder
	for _, p := range t.parts {
		if p.prog == nil {
			b.WriteString(p.lit)
			continue
		}
		v, err := t.run(p, env)
		if err != nil {
			return nil, err
		}
		if v == nil {
			return nil, fmt.Errorf("template %q: {{%s}} is null", t.src, exprSource(t.src, p))
		}
		b.WriteString(Format(v))
	}
	return b.String(), nil
}

// Render evaluates the template as a string; null is true when the template
// is a single expression that evaluated to null.
func (t *Template) Render(env Env) (s string, null bool, err error) {
	v, err := t.Eval(env)
	if err != nil {
		return "", false, err
	}
	if v == nil {
		return "", true, nil
	}
	return Format(v), false, nil
}

// RenderEach evaluates the template like Eval, passing each expression's
// value through escape before it joins the literal text (for URL paths).
func (t *Template) RenderEach(env Env, escape func(string) string) (string, error) {
	var b strings.Builder
	for _, p := range t.parts {
		if p.prog == nil {
			b.WriteString(p.lit)
			continue
		}
		v, err := t.run(p, env)
		if err != nil {
			return "", err
		}
		if v == nil {
			return "", fmt.Errorf("template %q: {{%s}} is null", t.src, exprSource(t.src, p))
		}
		b.WriteString(escape(Format(v)))
	}
	return b.String(), nil
}

func exprSource(src string, p part) string {
	end := strings.Index(src[p.offset:], "}}")
	if end < 0 {
		return src[p.offset:]
	}
	return src[p.offset : p.offset+end]
}

func (t *Template) run(p part, env Env) (any, error) {
	v, err := expr.Run(p.prog, map[string]any(env))
	if err != nil {
		return nil, fmt.Errorf("template %q: {{%s}}: %w", t.src, exprSource(t.src, p), err)
	}
	return v, nil
}

// Format renders a value as text for URLs, headers and string bodies.
func Format(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case json.Number:
		return x.String()
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case fmt.Stringer:
		return x.String()
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
