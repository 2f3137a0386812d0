package spec

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/token"
)

// Limits on what a connector or pipeline file may hold. They keep the cost
// of loading any file small (tens of megabytes and well under a second),
// whatever its content: the YAML parser's memory grows with the number of
// values, with the number of keys of a mapping squared, and with the
// length of the keys above each value, and aliases can make a small file
// expand into a huge document. Real files stay well below every limit: a
// stream with a dozen settings takes some 30 values.
// MaxFileSize (connector.go) bounds the size of a file.
const (
	// MaxValues is the number of values in a file: keys, scalars,
	// mappings and sequences, before aliases are expanded.
	MaxValues = 100_000
	// MaxDepth is how deeply mappings and sequences may nest, aliases
	// expanded.
	MaxDepth = 64
	// MaxKeys is the number of keys of one mapping, such as the fields of a
	// stream's columns, params or headers.
	MaxKeys = 1000
	// MaxStreams is the number of streams of a connector.
	MaxStreams = MaxKeys
	// MaxAliases is the number of aliases (*name) in a file, counting an
	// alias each time the anchor holding it is itself used.
	MaxAliases = 10_000
	// MaxAliasValues and MaxAliasBytes bound what aliases add to a file
	// when they are expanded: the values they repeat, and the text of the
	// scalars among them.
	MaxAliasValues = 100_000
	MaxAliasBytes  = 4 << 20
	// MaxExpressions is the number of {{ }} template expressions in a file.
	MaxExpressions = 20_000
	// MaxTemplateLength is the length of one template string, in bytes.
	MaxTemplateLength = 64 << 10
	// MaxPathBytes bounds the YAML paths of a file's values added up (a
	// value's path is the keys above it, as in streams.orders.params.page):
	// long keys above many values.
	MaxPathBytes = 16 << 20

	// maxMarks bounds, before the YAML is read, the lines and indicator
	// characters of a file: the tokens the YAML scanner makes, each of
	// which costs memory, are at most a few per mark.
	maxMarks = 2 * MaxValues
)

// ReadFile reads a connector or pipeline file: at most MaxFileSize+1
// bytes of it, so that a huge file is never read in full (ParseFile
// refuses it).
func ReadFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, MaxFileSize+1))
}

// sizeLimit reports data longer than MaxFileSize.
func sizeLimit(name string, data []byte) *Problem {
	if len(data) <= MaxFileSize {
		return nil
	}
	return &Problem{File: name, Line: 1, Col: 1, Message: fmt.Sprintf("the file is larger than %s, the limit for connector and pipeline files: split it (one connector per API, one pipeline per connector)", formatBytes(MaxFileSize))}
}

// marksCuts returns nil when data has at most maxMarks lines and YAML
// indicators. Otherwise it returns where data first has more than
// maxMarks/16, /8, /4, /2 and maxMarks of them (at the start of that line
// when it can): the file is refused, and only these prefixes of it are
// scanned for tokens, growing, so the scanner's memory stays bounded and
// the first limit the file crosses is found cheaply and reported as usual.
func marksCuts(data []byte) []int {
	var cuts []int
	next := maxMarks >> 4
	marks, lineStart, line := 0, true, 0
	for i, c := range data {
		switch c {
		case '\n', '\r':
			lineStart = true
			continue
		case ' ', '\t':
			continue
		case '-', '?', ':', ',', '[', ']', '{', '}', '#', '&', '*', '!', '|', '>', '\'', '"', '%', '@', '`':
			marks++
		default:
			if lineStart {
				marks++
			}
		}
		if lineStart {
			line = i
		}
		lineStart = false
		if marks > next {
			cut := i
			if line > 0 {
				cut = line
			}
			cuts = append(cuts, cut)
			if next == maxMarks {
				return cuts
			}
			next *= 2
		}
	}
	return nil
}

// marksProblem reports data with more than maxMarks marks before cut.
func marksProblem(name string, data []byte, cut int) *Problem {
	head := strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(string(data[:cut]))
	line := strings.Count(head, "\n") + 1
	col := utf8.RuneCountInString(head[strings.LastIndexByte(head, '\n')+1:]) + 1
	return &Problem{File: name, Line: line, Col: col, Message: fmt.Sprintf("the file has more than %s lines and YAML indicators (- : , [ ] { } # and the like) by here, more than a file within the limit of %s values can have: split it", formatCount(maxMarks), formatCount(MaxValues))}
}

// A frame is a mapping or sequence being scanned.
type frame struct {
	flow  bool
	seq   bool
	col   int    // the column of the keys or dashes (block), of [ or { (flow)
	n     int    // keys of a mapping, entries of a sequence
	key   string // a mapping's current key
	base  int    // length of the frame's own YAML path, as the parser builds it
	limit bool   // the keys limit was reported
}

// entryPath is the length of the path of the frame's current entry.
func (f *frame) entryPath() int {
	if f.seq {
		return f.base + 2 + len(strconv.Itoa(f.n))
	}
	return f.base + 1 + len(f.key)
}

// tokenScan follows the structure of a file's tokens, before they are
// parsed, to enforce the limits that the parser's own cost depends on, and
// notes the first unquoted ${ in a flow collection, for the message of the
// syntax error it causes.
type tokenScan struct {
	name      string
	tokens    token.Tokens
	stack     []frame
	values    int
	exprs     int
	pathBytes int
	problem   *Problem
	dollar    *dollarHint // the first unquoted ${ in a flow collection
	// lastFlow is the last top-level flow collection closed: its start's
	// column and its end token.
	lastFlow struct {
		col int
		end *token.Token
	}
}

// scanTokens checks tokens against the limits; s.problem is the first
// limit crossed, if any.
func scanTokens(name string, tokens token.Tokens) *tokenScan {
	s := &tokenScan{name: name, tokens: tokens}
	for i, tk := range tokens {
		if s.problem != nil {
			break
		}
		if tk.Position == nil {
			continue
		}
		switch tk.Type {
		case token.CommentType, token.LiteralType, token.FoldedType, token.DirectiveType, token.SpaceType, token.InvalidType:
		case token.DocumentHeaderType, token.DocumentEndType:
			s.stack = s.stack[:0]
		case token.SequenceStartType, token.MappingStartType:
			s.value(tk)
			s.push(frame{flow: true, seq: tk.Type == token.SequenceStartType, col: tk.Position.Column}, tk)
		case token.SequenceEndType, token.MappingEndType:
			for len(s.stack) > 0 {
				f := s.stack[len(s.stack)-1]
				s.stack = s.stack[:len(s.stack)-1]
				if f.flow {
					if !s.inFlow() {
						s.lastFlow.col, s.lastFlow.end = f.col, tk
					}
					break
				}
			}
		case token.CollectEntryType:
			if f := s.top(); f != nil && f.flow {
				if f.seq {
					f.n++
				}
				f.key = ""
			}
		case token.MappingValueType:
			s.mappingValue(i, tk)
		case token.MappingKeyType:
			if !s.inFlow() {
				s.blockKey(tk.Position.Column, "?", tk)
			}
		case token.SequenceEntryType:
			if !s.inFlow() {
				s.blockEntry(tk)
			}
		case token.AnchorType, token.TagType:
		case token.AliasType:
			s.value(tk)
		default:
			if i > 0 && (tokens[i-1].Type == token.AnchorType || tokens[i-1].Type == token.AliasType) {
				continue // the name of an anchor or alias
			}
			s.value(tk)
			s.scalar(i, tk)
		}
	}
	return s
}

func (s *tokenScan) top() *frame {
	if len(s.stack) == 0 {
		return nil
	}
	return &s.stack[len(s.stack)-1]
}

func (s *tokenScan) inFlow() bool {
	f := s.top()
	return f != nil && f.flow
}

// path renders the YAML path of the current position; withEntry adds the
// top frame's current entry.
func (s *tokenScan) path(withEntry bool) string {
	var segs []string
	for i := range s.stack {
		f := &s.stack[i]
		if i == len(s.stack)-1 && !withEntry {
			break
		}
		switch {
		case f.seq && f.n > 0:
			segs = append(segs, strconv.Itoa(f.n-1))
		case !f.seq && f.key != "":
			segs = append(segs, f.key)
		}
	}
	return strings.Join(segs, ".")
}

func (s *tokenScan) fail(tk *token.Token, path, format string, args ...any) {
	if s.problem == nil {
		s.problem = &Problem{File: s.name, Line: tk.Position.Line, Col: tk.Position.Column, Path: path, Message: fmt.Sprintf(format, args...)}
	}
}

// value counts one value and the length of its path.
func (s *tokenScan) value(tk *token.Token) {
	s.values++
	if s.values > MaxValues {
		s.fail(tk, s.path(true), "the file holds more than %s values (keys, scalars, mappings and sequences), the limit: split it", formatCount(MaxValues))
		return
	}
	p := 1
	if f := s.top(); f != nil {
		if f.flow && f.seq && f.n == 0 {
			f.n = 1
		}
		p = f.entryPath()
	}
	s.pathBytes += p
	if s.pathBytes > MaxPathBytes {
		s.fail(tk, s.path(true), "the YAML paths of the file's values add up to more than %s, the limit (long keys above many values): shorten the keys", formatBytes(MaxPathBytes))
	}
}

// push opens a mapping or sequence.
func (s *tokenScan) push(f frame, tk *token.Token) {
	f.base = 1
	if t := s.top(); t != nil {
		f.base = t.entryPath()
	}
	s.stack = append(s.stack, f)
	if len(s.stack) > MaxDepth {
		s.fail(tk, s.path(false), "mappings and sequences nest more than %d levels deep here, the limit", MaxDepth)
	}
}

// popBlock closes the block frames deeper than col.
func (s *tokenScan) popBlock(col int) {
	for len(s.stack) > 0 {
		f := s.top()
		if f.flow || f.col <= col {
			return
		}
		s.stack = s.stack[:len(s.stack)-1]
	}
}

// blockKey notes a key of a block mapping at col.
func (s *tokenScan) blockKey(col int, key string, tk *token.Token) {
	s.popBlock(col)
	if f := s.top(); f != nil && !f.flow && f.seq && f.col == col {
		// A key at the column of a sequence's dashes ends the sequence:
		//   a:
		//   - x
		//   b: y
		s.stack = s.stack[:len(s.stack)-1]
	}
	if f := s.top(); f != nil && !f.flow && !f.seq && f.col == col {
		f.key = key
		s.key(f, tk)
		return
	}
	s.values++ // the mapping itself
	s.push(frame{col: col, n: 1, key: key}, tk)
}

// blockEntry notes a dash of a block sequence.
func (s *tokenScan) blockEntry(tk *token.Token) {
	col := tk.Position.Column
	s.popBlock(col)
	if f := s.top(); f != nil && !f.flow && f.seq && f.col == col {
		f.n++
		return
	}
	s.values++ // the sequence itself
	s.push(frame{col: col, seq: true, n: 1}, tk)
}

// key counts a new key of the mapping f.
func (s *tokenScan) key(f *frame, tk *token.Token) {
	f.n++
	if f.n <= MaxKeys || f.limit {
		return
	}
	f.limit = true
	p := s.path(false)
	if p == "streams" || p == "connector.streams" {
		s.fail(tk, p, "more than %d streams, the limit: split the connector into several, each with its own pipeline", MaxStreams)
		return
	}
	s.fail(tk, p, "more than %d keys in one mapping, the limit", MaxKeys)
}

// mappingValue handles a ':' at index i.
func (s *tokenScan) mappingValue(i int, tk *token.Token) {
	k := s.prevToken(i)
	if f := s.top(); f != nil && f.flow {
		if f.seq {
			return // a single-pair mapping in a sequence: [a: b]
		}
		f.key = ""
		at := tk
		if k != nil && isScalar(k.Type) {
			f.key, at = k.Value, k
		}
		s.key(f, at)
		return
	}
	if k == nil || k.Position.Line != tk.Position.Line {
		return // ": value" after "? key", on a line of its own
	}
	col, key := k.Position.Column, k.Value
	if !isScalar(k.Type) {
		key = ""
	}
	if s.lastFlow.end == k {
		col = s.lastFlow.col // a flow collection as the key: [a, b]: c
	}
	// Anchors, tags and the alias indicator before the key start it.
	for j := indexOf(s.tokens, k, i) - 1; j >= 0; j-- {
		p := s.tokens[j]
		if p.Position == nil || p.Position.Line != k.Position.Line {
			break
		}
		if p.Type == token.AnchorType || p.Type == token.TagType || p.Type == token.AliasType {
			col = p.Position.Column
			continue
		}
		if j > 0 && s.tokens[j-1].Type == token.AnchorType {
			continue // an anchor's name
		}
		break
	}
	s.blockKey(col, key, k)
}

// prevToken returns the token before index i, comments skipped.
func (s *tokenScan) prevToken(i int) *token.Token {
	for j := i - 1; j >= 0; j-- {
		if s.tokens[j].Type != token.CommentType {
			return s.tokens[j]
		}
	}
	return nil
}

// indexOf returns the index of tk, searching back from i.
func indexOf(tokens token.Tokens, tk *token.Token, i int) int {
	for j := i; j >= 0; j-- {
		if tokens[j] == tk {
			return j
		}
	}
	return 0
}

func isScalar(t token.Type) bool {
	switch t {
	case token.StringType, token.SingleQuoteType, token.DoubleQuoteType, token.IntegerType, token.BinaryIntegerType,
		token.OctetIntegerType, token.HexIntegerType, token.FloatType, token.BoolType, token.NullType,
		token.InfinityType, token.NanType, token.MergeKeyType:
		return true
	}
	return false
}

// scalar counts template expressions and notes unquoted ${ in flow
// collections.
func (s *tokenScan) scalar(i int, tk *token.Token) {
	if n := strings.Count(tk.Value, "{{"); n > 0 {
		s.exprs += n
		if s.exprs > MaxExpressions {
			s.fail(tk, s.path(true), "the file holds more than %s {{ }} template expressions, the limit", formatCount(MaxExpressions))
		}
	}
	s.noteDollar(i, tk)
}

// aliasScan bounds what aliases expand to, in document order: the alias
// that crosses a limit is the one reported.
type aliasScan struct {
	name    string
	anchors map[string]expansion
	open    map[string]bool
	added   expansion // what aliases added so far; exprs counts the file's own too
	problem *Problem
}

// expansion is the size of a value with its aliases expanded.
type expansion struct {
	values, bytes, aliases, exprs int
	height                        int // levels of mappings and sequences
}

func (e *expansion) add(o expansion) {
	e.values += o.values
	e.bytes += o.bytes
	e.aliases += o.aliases
	e.exprs += o.exprs
	e.height = max(e.height, o.height)
}

// checkAliases walks the document and reports the first alias that makes
// it expand past a limit, refers to no anchor, or sits inside its own
// anchor. exprs is the number of template expressions in the file.
func checkAliases(name string, f *ast.File, exprs int) *Problem {
	s := &aliasScan{name: name, anchors: map[string]expansion{}, open: map[string]bool{}}
	s.added.exprs = exprs
	for _, doc := range f.Docs {
		s.walk(doc, 0)
	}
	return s.problem
}

func (s *aliasScan) fail(n ast.Node, format string, args ...any) {
	if s.problem == nil {
		line, col := position(n)
		s.problem = &Problem{File: s.name, Line: line, Col: col, Path: nodePath(n), Message: fmt.Sprintf(format, args...)}
	}
}

// walk returns the expansion of n, at depth levels of nesting.
func (s *aliasScan) walk(n ast.Node, depth int) expansion {
	if n == nil || s.problem != nil {
		return expansion{}
	}
	var e expansion
	switch x := n.(type) {
	case *ast.DocumentNode:
		return s.walk(x.Body, depth)
	case *ast.MappingNode:
		e.values, e.height = 1, 1
		for _, v := range x.Values {
			c := s.walk(v, depth+1)
			c.height++
			e.add(c)
		}
	case *ast.MappingValueNode:
		e.add(s.walk(x.Key, depth))
		e.add(s.walk(x.Value, depth))
	case *ast.MappingKeyNode:
		return s.walk(x.Value, depth)
	case *ast.SequenceNode:
		e.values, e.height = 1, 1
		for _, v := range x.Values {
			c := s.walk(v, depth+1)
			c.height++
			e.add(c)
		}
	case *ast.TagNode:
		return s.walk(x.Value, depth)
	case *ast.AnchorNode:
		name := anchorName(x.Name)
		s.open[name] = true
		e = s.walk(x.Value, depth)
		delete(s.open, name)
		s.anchors[name] = e
	case *ast.AliasNode:
		name := anchorName(x.Value)
		a, ok := s.anchors[name]
		switch {
		case s.open[name]:
			s.fail(x, "the alias *%s is inside the anchor &%s it refers to: a value cannot contain itself", name, name)
		case !ok:
			s.fail(x, "unknown alias *%s: put an anchor &%s on a value before this alias", name, name)
		}
		if s.problem != nil {
			return e
		}
		e = a
		e.aliases++
		s.added.values += a.values
		s.added.bytes += a.bytes
		s.added.aliases += a.aliases + 1
		s.added.exprs += a.exprs
		switch {
		case s.added.aliases > MaxAliases:
			s.fail(x, "more than %s aliases once expanded (an alias inside an anchor counts each time the anchor is used), the limit", formatCount(MaxAliases))
		case s.added.values > MaxAliasValues:
			s.fail(x, "aliases expand to more than %s values, the limit: write the values out, or use fewer aliases", formatCount(MaxAliasValues))
		case s.added.bytes > MaxAliasBytes:
			s.fail(x, "aliases expand to more than %s of text, the limit: write the values out, or use fewer aliases", formatBytes(MaxAliasBytes))
		case s.added.exprs > MaxExpressions:
			s.fail(x, "aliases make the file hold more than %s {{ }} template expressions, the limit", formatCount(MaxExpressions))
		case depth+a.height > MaxDepth:
			s.fail(x, "the alias *%s makes mappings and sequences nest more than %d levels deep, the limit", name, MaxDepth)
		}
	case *ast.LiteralNode:
		e.values = 1
		if x.Value != nil {
			e.bytes = len(x.Value.Value)
			e.exprs = strings.Count(x.Value.Value, "{{")
		}
	case *ast.CommentGroupNode, *ast.CommentNode:
	default:
		e.values = 1
		if tk := n.GetToken(); tk != nil {
			e.bytes = len(tk.Value)
			e.exprs = strings.Count(tk.Value, "{{")
		}
	}
	return e
}

func anchorName(n ast.Node) string {
	if n == nil {
		return ""
	}
	if tk := n.GetToken(); tk != nil {
		return tk.Value
	}
	return n.String()
}

// nodePath renders the parser's path of n ($.streams.orders) as a YAML path
// (streams.orders).
func nodePath(n ast.Node) string {
	p := strings.TrimPrefix(strings.TrimPrefix(n.GetPath(), "$"), ".")
	p = strings.NewReplacer("[", ".", "]", "").Replace(p)
	return p
}

// formatBytes renders a limit such as 4 MiB or 64 KiB.
func formatBytes(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// formatCount renders a count with thousands separators: 100,000.
func formatCount(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// maxHintLength bounds the names "did you mean" compares: the comparison
// costs the product of the two lengths.
const maxHintLength = 256

// hintCandidates returns the allowed names worth comparing with got for a
// "did you mean" hint: none for a long got, and only names whose length is
// within the distance a hint allows.
func hintCandidates(got string, allowed []string) []string {
	if len(got) > maxHintLength {
		return nil
	}
	limit := max(2, len(got)/3)
	var out []string
	for _, a := range allowed {
		if d := len(a) - len(got); d <= limit && -d <= limit {
			out = append(out, a)
		}
	}
	return out
}

// templateTooLong reports a template string longer than MaxTemplateLength.
func (c *problems) templateTooLong(p []string, src string) bool {
	if len(src) <= MaxTemplateLength {
		return false
	}
	c.atValue(p, "the template is %s bytes long, more than the limit of %s", formatCount(len(src)), formatBytes(MaxTemplateLength))
	return true
}
