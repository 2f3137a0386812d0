package tableapi

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// The query parameters that are not filters.
const (
	paramSelect = "select"
	paramOrder  = "order"
	paramLimit  = "limit"
	paramCursor = "cursor"
	paramExpand = "expand"
)

// reserved lists the query parameters that are not column filters: a
// column with one of these names cannot be filtered on.
var reserved = []string{paramSelect, paramOrder, paramLimit, paramCursor, paramExpand}

// Op is a filter operator.
type Op string

// The filter operators, as PostgREST spells them.
const (
	OpEq    Op = "eq"
	OpNeq   Op = "neq"
	OpGt    Op = "gt"
	OpGte   Op = "gte"
	OpLt    Op = "lt"
	OpLte   Op = "lte"
	OpIn    Op = "in"
	OpLike  Op = "like"
	OpILike Op = "ilike"
	OpIs    Op = "is"
)

var ops = []Op{OpEq, OpNeq, OpGt, OpGte, OpLt, OpLte, OpIn, OpLike, OpILike, OpIs}

// Filter is one condition on a column, as parsed from col=op.value. Its
// values are still text: they are checked against the column's type when
// the query is planned.
type Filter struct {
	Column string
	Op     Op
	// Not negates the condition (col=not.eq.5).
	Not bool
	// Values holds the operand (one; several for in).
	Values []string
	// Pattern is the operand of like and ilike.
	Pattern []PatternPart
}

// PatternPart is a piece of a like pattern: a literal text, or a
// wildcard (Any: any run of characters; One: exactly one character).
type PatternPart struct {
	Literal string
	Any     bool
	One     bool
}

// OrderTerm is one column of an order.
type OrderTerm struct {
	Column string
	Desc   bool
}

// Request is what a collection request asks for, parsed from its query
// string and not yet checked against a table.
type Request struct {
	Filters []Filter
	// Select lists the columns asked for (nil: all the role may read).
	Select []string
	Order  []OrderTerm
	// Limit is the page size asked for (0: the default).
	Limit int
	// Cursor is the opaque cursor of the page to read ("": the first).
	Cursor string
	// Expand lists the child tables to embed.
	Expand []string
}

// ParamError is a query parameter that does not parse or does not fit the
// table; the response is 400 naming it.
type ParamError struct {
	Param   string
	Message string
}

func (e *ParamError) Error() string {
	return fmt.Sprintf("parameter %s: %s", e.Param, e.Message)
}

func paramErr(param, format string, args ...any) *ParamError {
	return &ParamError{Param: param, Message: fmt.Sprintf(format, args...)}
}

// ParseRequest parses a collection request's query string. Parameters
// other than select, order, limit, cursor and expand are filters on the
// column they name; several filters on one column must all hold.
func ParseRequest(q url.Values) (*Request, error) {
	r := &Request{}
	names := make([]string, 0, len(q))
	for k := range q {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		vs := q[k]
		switch k {
		case paramSelect, paramOrder, paramLimit, paramCursor, paramExpand:
			if len(vs) > 1 {
				return nil, paramErr(k, "given %d times; give it once", len(vs))
			}
		}
		v := vs[0]
		var err error
		switch k {
		case paramSelect:
			r.Select, err = parseList(k, v)
		case paramExpand:
			r.Expand, err = parseList(k, v)
		case paramOrder:
			r.Order, err = ParseOrder(v)
		case paramLimit:
			n, perr := strconv.Atoi(v)
			if perr != nil || n < 1 {
				return nil, paramErr(k, "%q is not a positive whole number", v)
			}
			r.Limit = n
		case paramCursor:
			if v == "" {
				return nil, paramErr(k, "is empty")
			}
			r.Cursor = v
		default:
			if k == "" {
				return nil, paramErr(`""`, "a parameter without a name")
			}
			for _, v := range vs {
				f, ferr := ParseFilter(k, v)
				if ferr != nil {
					return nil, ferr
				}
				r.Filters = append(r.Filters, f)
			}
		}
		if err != nil {
			return nil, err
		}
	}
	return r, nil
}

// parseList splits a comma-separated list of names.
func parseList(param, v string) ([]string, error) {
	if v == "" {
		return nil, paramErr(param, "is empty")
	}
	parts := strings.Split(v, ",")
	seen := map[string]bool{}
	out := parts[:0]
	for _, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			return nil, paramErr(param, "has an empty name in %q", v)
		}
		if seen[p] {
			return nil, paramErr(param, "names %s twice", p)
		}
		seen[p] = true
		out = append(out, p)
	}
	return out, nil
}

// ParseOrder parses an order such as "created_at.desc,id" (asc is the
// default direction).
func ParseOrder(v string) ([]OrderTerm, error) {
	names, err := parseList(paramOrder, v)
	if err != nil {
		return nil, err
	}
	out := make([]OrderTerm, 0, len(names))
	for _, n := range names {
		t := OrderTerm{Column: n}
		if col, dir, ok := strings.Cut(n, "."); ok {
			t.Column = col
			switch dir {
			case "asc":
			case "desc":
				t.Desc = true
			default:
				return nil, paramErr(paramOrder, "%q: the direction must be asc or desc", n)
			}
		}
		if t.Column == "" {
			return nil, paramErr(paramOrder, "%q names no column", n)
		}
		out = append(out, t)
	}
	return out, nil
}

// ParseFilter parses one filter: the value of parameter col, such as
// "eq.5", "not.in.(a,b)", "like.ab*" or "is.null".
func ParseFilter(col, v string) (Filter, error) {
	f := Filter{Column: col}
	rest := v
	if r, ok := strings.CutPrefix(rest, "not."); ok {
		f.Not, rest = true, r
	}
	name, operand, ok := strings.Cut(rest, ".")
	if !ok {
		return f, paramErr(col, "%q is not operator.value (for example eq.5; operators: %s)", v, opList())
	}
	f.Op = Op(name)
	if !slices.Contains(ops, f.Op) {
		return f, paramErr(col, "unknown operator %q (operators: %s)", name, opList())
	}
	switch f.Op {
	case OpIn:
		vals, err := parseInList(col, operand)
		if err != nil {
			return f, err
		}
		f.Values = vals
	case OpLike, OpILike:
		f.Pattern = ParsePattern(operand)
		f.Values = []string{operand}
	case OpIs:
		switch operand {
		case "null", "true", "false":
		default:
			return f, paramErr(col, "is.%s: is takes null, true or false", operand)
		}
		f.Values = []string{operand}
	default:
		f.Values = []string{operand}
	}
	return f, nil
}

func opList() string {
	s := make([]string, len(ops))
	for i, o := range ops {
		s[i] = string(o)
	}
	return strings.Join(s, ", ")
}

// parseInList parses "(a,b,"c,d")": values separated by commas, a value
// in double quotes may hold commas, parentheses and quotes (escaped with
// a backslash).
func parseInList(col, s string) ([]string, error) {
	if len(s) < 2 || s[0] != '(' || s[len(s)-1] != ')' {
		return nil, paramErr(col, "in.%s: the values go in parentheses, as in.(a,b)", s)
	}
	s = s[1 : len(s)-1]
	if s == "" {
		return []string{}, nil
	}
	var out []string
	for i := 0; ; {
		var val strings.Builder
		if i < len(s) && s[i] == '"' {
			i++
			closed := false
			for i < len(s) {
				c := s[i]
				if c == '\\' && i+1 < len(s) {
					val.WriteByte(s[i+1])
					i += 2
					continue
				}
				if c == '"' {
					closed = true
					i++
					break
				}
				val.WriteByte(c)
				i++
			}
			if !closed {
				return nil, paramErr(col, "in.(%s): a quoted value is not closed", s)
			}
			if i < len(s) && s[i] != ',' {
				return nil, paramErr(col, "in.(%s): a comma must follow a quoted value", s)
			}
		} else {
			for i < len(s) && s[i] != ',' {
				val.WriteByte(s[i])
				i++
			}
		}
		out = append(out, val.String())
		if i >= len(s) {
			return out, nil
		}
		i++ // the comma
		if i == len(s) {
			out = append(out, "")
			return out, nil
		}
	}
}

// ParsePattern reads a like pattern: * and % match any run of characters,
// _ exactly one, and a backslash makes the next character literal.
func ParsePattern(s string) []PatternPart {
	var out []PatternPart
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			out = append(out, PatternPart{Literal: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			if i+1 < len(s) {
				i++
				lit.WriteByte(s[i])
			} else {
				lit.WriteByte(c)
			}
		case '*', '%':
			flush()
			out = append(out, PatternPart{Any: true})
		case '_':
			flush()
			out = append(out, PatternPart{One: true})
		default:
			lit.WriteByte(c)
		}
	}
	flush()
	return out
}
