package spec

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/lexer"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

type tokenT = token.Token

const (
	tokenDoubleQuote = token.DoubleQuoteType
	tokenSingleQuote = token.SingleQuoteType
)

// File is a YAML file with its syntax tree, for locating problems.
type File struct {
	// Name is the path as the user gave it.
	Name string
	// Data is the file's content.
	Data []byte
	ast  *ast.File
}

// ParseFile parses YAML data. A syntax error is returned as Problems with
// the position of the offending token. Data beyond the limits (see
// MaxFileSize and the others) is refused before it can cost much.
func ParseFile(name string, data []byte) (*File, error) {
	if p := sizeLimit(name, data); p != nil {
		return nil, Problems{*p}
	}
	if cuts := marksCuts(data); cuts != nil {
		for _, cut := range cuts {
			if scan := scanTokens(name, lexer.Tokenize(string(data[:cut]))); scan.problem != nil {
				return nil, Problems{*scan.problem}
			}
		}
		return nil, Problems{*marksProblem(name, data, cuts[len(cuts)-1])}
	}
	tokens := lexer.Tokenize(string(data))
	scan := scanTokens(name, tokens)
	if scan.problem != nil {
		return nil, Problems{*scan.problem}
	}
	f, err := parser.Parse(tokens, 0)
	if err != nil {
		p := Problem{File: name, Message: err.Error()}
		var ye interface {
			GetMessage() string
			GetToken() *tokenT
		}
		if errors.As(err, &ye) {
			p.Message = ye.GetMessage()
			if tk := ye.GetToken(); tk != nil && tk.Position != nil {
				p.Line, p.Col = tk.Position.Line, tk.Position.Column
			}
		}
		if hint := scan.dollarProblem(data, p.Line, p.Col); hint != nil {
			return nil, Problems{*hint}
		}
		p.Message = "invalid YAML: " + p.Message
		return nil, Problems{p}
	}
	if len(f.Docs) > 1 {
		return nil, Problems{{File: name, Line: 1, Col: 1, Message: "the file holds several YAML documents; put one per file"}}
	}
	if p := checkAliases(name, f, scan.exprs); p != nil {
		return nil, Problems{*p}
	}
	return &File{Name: name, Data: data, ast: f}, nil
}

// yamlProblem turns an error converting the YAML to values into a
// Problem at the token the error names (or at base), without the source
// excerpt the error's text carries.
func (f *File) yamlProblem(base []string, err error) Problem {
	line, col := f.Pos(base)
	p := Problem{File: f.Name, Line: line, Col: col, Path: joinPath(base), Message: err.Error()}
	var ye interface {
		GetMessage() string
		GetToken() *tokenT
	}
	if errors.As(err, &ye) {
		p.Message = ye.GetMessage()
		if tk := ye.GetToken(); tk != nil && tk.Position != nil {
			p.Line, p.Col = tk.Position.Line, tk.Position.Column
			if n := nodeWithToken(f.body(), tk); n != nil {
				p.Path = nodePath(n)
			}
		}
	}
	return p
}

// nodeWithToken returns the node under n whose token is tk, or nil.
func nodeWithToken(n ast.Node, tk *tokenT) ast.Node {
	if n == nil {
		return nil
	}
	var found ast.Node
	ast.Walk(visitFunc(func(n ast.Node) bool {
		if found == nil && n.GetToken() == tk {
			found = n
		}
		return found == nil
	}), n)
	return found
}

type visitFunc func(ast.Node) bool

func (v visitFunc) Visit(n ast.Node) ast.Visitor {
	if n == nil || !v(n) {
		return nil
	}
	return v
}

// body returns the root node of the document, or nil for an empty file.
func (f *File) body() ast.Node {
	if f == nil || f.ast == nil || len(f.ast.Docs) == 0 {
		return nil
	}
	return f.ast.Docs[0].Body
}

// Problem is one thing wrong with a file.
type Problem struct {
	File    string
	Line    int // 1-based; 0 when unknown
	Col     int
	Path    string // YAML path such as streams.orders.cursor; "" for the whole file
	Message string
}

// String renders the problem as file:line:col: path: message.
func (p Problem) String() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		if p.Line > 0 {
			fmt.Fprintf(&b, ":%d:%d", p.Line, p.Col)
		}
		b.WriteString(": ")
	}
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// Problems is every problem found in a file or set of files. It is the
// error type returned by the loaders.
type Problems []Problem

// MaxShown is how many problems Error lists; a file with more ends the
// list with how many were left out.
const MaxShown = 100

// Error lists the problems, one per line, at most MaxShown of them.
func (ps Problems) Error() string {
	n := min(len(ps), MaxShown)
	lines := make([]string, n, n+1)
	for i, p := range ps[:n] {
		lines[i] = p.String()
	}
	if len(ps) > n {
		lines = append(lines, fmt.Sprintf("… and %d more problems (%d in all); fix these first", len(ps)-n, len(ps)))
	}
	return strings.Join(lines, "\n")
}

// sort orders problems by file and position, and drops exact duplicates.
func (ps Problems) sort() Problems {
	slices.SortStableFunc(ps, func(a, b Problem) int {
		if c := strings.Compare(a.File, b.File); c != 0 {
			return c
		}
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return a.Col - b.Col
	})
	return slices.Compact(ps)
}

// Pos returns the 1-based line and column of the YAML node at path
// (keys and sequence indices), or of its nearest existing ancestor. A
// mapping entry is placed at its key.
func (f *File) Pos(path []string) (line, col int) { return f.pos(path, true) }

// KeyPos returns the position of the key at path itself (for problems
// with a key, such as an unknown field).
func (f *File) KeyPos(path []string) (line, col int) { return f.Pos(path) }

// ValuePos returns the position of the value at path.
func (f *File) ValuePos(path []string) (line, col int) { return f.pos(path, false) }

// pos walks path from the document's body; atKey places a mapping entry
// at its key rather than its value.
func (f *File) pos(path []string, atKey bool) (line, col int) {
	node := f.body()
	if node == nil {
		return 1, 1
	}
	line, col = position(node)
	for _, seg := range path {
		next, keyNode := child(node, seg)
		if next == nil {
			return line, col
		}
		node = next
		if atKey && keyNode != nil {
			line, col = position(keyNode)
		} else {
			line, col = position(next)
		}
	}
	return line, col
}

// Keys returns the keys of the mapping at path in file order.
func (f *File) Keys(path []string) []string {
	node := f.body()
	for _, seg := range path {
		if node == nil {
			return nil
		}
		node, _ = child(node, seg)
	}
	m := mapping(node)
	if m == nil {
		return nil
	}
	var keys []string
	for _, v := range m.Values {
		keys = append(keys, keyString(v.Key))
	}
	return keys
}

func position(n ast.Node) (int, int) {
	// A block mapping's token is the ':' of its first entry; it starts at
	// that entry's key.
	switch x := n.(type) {
	case *ast.MappingNode:
		if !x.IsFlowStyle && len(x.Values) > 0 && x.Values[0].Key != nil {
			return position(x.Values[0].Key)
		}
	case *ast.MappingValueNode:
		if x.Key != nil {
			return position(x.Key)
		}
	}
	if tk := n.GetToken(); tk != nil && tk.Position != nil {
		return tk.Position.Line, tk.Position.Column
	}
	return 0, 0
}

func unwrap(n ast.Node) ast.Node {
	for {
		switch x := n.(type) {
		case *ast.AnchorNode:
			n = x.Value
		case *ast.TagNode:
			n = x.Value
		case *ast.DocumentNode:
			n = x.Body
		default:
			return n
		}
	}
}

func mapping(n ast.Node) *ast.MappingNode {
	if n == nil {
		return nil
	}
	switch x := unwrap(n).(type) {
	case *ast.MappingNode:
		return x
	case *ast.MappingValueNode:
		return &ast.MappingNode{BaseNode: x.BaseNode, Values: []*ast.MappingValueNode{x}}
	}
	return nil
}

func keyString(k ast.MapKeyNode) string {
	switch x := k.(type) {
	case *ast.StringNode:
		return x.Value
	case *ast.MappingKeyNode:
		return keyString(x.Value.(ast.MapKeyNode))
	}
	return strings.TrimSpace(k.String())
}

// child returns the value under seg (a mapping key or a sequence index) and,
// for mappings, the key node.
func child(n ast.Node, seg string) (ast.Node, ast.Node) {
	n = unwrap(n)
	if m := mapping(n); m != nil {
		for _, v := range m.Values {
			if keyString(v.Key) == seg {
				return v.Value, v.Key
			}
		}
		return nil, nil
	}
	if s, ok := n.(*ast.SequenceNode); ok {
		i, err := strconv.Atoi(seg)
		if err == nil && i >= 0 && i < len(s.Values) {
			return s.Values[i], nil
		}
	}
	return nil, nil
}

// problems collects Problems for one file.
type problems struct {
	file *File
	list Problems
}

// at records a problem located at the key of path.
func (c *problems) at(path []string, format string, args ...any) {
	line, col := c.file.Pos(path)
	c.list = append(c.list, Problem{File: c.file.Name, Line: line, Col: col, Path: joinPath(path), Message: fmt.Sprintf(format, args...)})
}

// atValue records a problem located at the value of path.
func (c *problems) atValue(path []string, format string, args ...any) {
	line, col := c.file.ValuePos(path)
	c.list = append(c.list, Problem{File: c.file.Name, Line: line, Col: col, Path: joinPath(path), Message: fmt.Sprintf(format, args...)})
}

// atOffset records a problem inside the string value at path, offset bytes
// into it (for template errors), when the value is a plain one-line string.
func (c *problems) atOffset(path []string, offset int, format string, args ...any) {
	line, col := c.file.ValuePos(path)
	if offset > 0 && line > 0 {
		// Quoted scalars start one column before their content.
		node := c.file.body()
		for _, seg := range path {
			if node == nil {
				break
			}
			node, _ = child(node, seg)
		}
		if s, ok := unwrapString(node); ok && !strings.Contains(s.Value, "\n") {
			if tk := s.GetToken(); tk != nil && (tk.Type == tokenDoubleQuote || tk.Type == tokenSingleQuote) {
				col++
			}
			col += offset
		}
	}
	c.list = append(c.list, Problem{File: c.file.Name, Line: line, Col: col, Path: joinPath(path), Message: fmt.Sprintf(format, args...)})
}

func unwrapString(n ast.Node) (*ast.StringNode, bool) {
	if n == nil {
		return nil, false
	}
	s, ok := unwrap(n).(*ast.StringNode)
	return s, ok
}

func (c *problems) err() error {
	if len(c.list) == 0 {
		return nil
	}
	return c.list.sort()
}

// joinPath renders a YAML path for messages: streams.orders.paginate.
func joinPath(path []string) string { return strings.Join(path, ".") }

// path builds a YAML path from a base and more segments without aliasing.
func path(base []string, more ...string) []string {
	out := make([]string, 0, len(base)+len(more))
	return append(append(out, base...), more...)
}
