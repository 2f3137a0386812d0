package tableapi

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ferry-dev/ferry/internal/dest/sqldest"
	"github.com/ferry-dev/ferry/internal/schema"
)

// flavor is what the table API needs to know about a database beyond its
// sqldest.Dialect: how it compares decimals kept as text, how it matches
// patterns with and without case, and how it orders nulls.
type flavor struct {
	d    sqldest.Dialect
	kind string // postgres, mysql or sqlite
}

func newFlavor(d sqldest.Dialect) (flavor, error) {
	switch k := d.Name(); k {
	case "postgres", "mysql", "sqlite":
		return flavor{d: d, kind: k}, nil
	default:
		return flavor{}, fmt.Errorf("the table API does not know how to query %s databases", k)
	}
}

// builder collects a statement's bind arguments.
type builder struct {
	f    flavor
	args []any
}

// arg binds v and returns its placeholder.
func (b *builder) arg(v any) string {
	b.args = append(b.args, v)
	return b.f.d.Placeholder(len(b.args))
}

// col returns the expression a column is compared and ordered by:
// decimals kept as text are compared as numbers.
func (f flavor) col(c *column) string {
	q := f.d.Quote(c.name)
	if c.typ == schema.Decimal {
		switch f.kind {
		case "sqlite":
			return "CAST(" + q + " AS NUMERIC)"
		case "mysql":
			return "CAST(" + q + " AS DECIMAL(65,30))"
		}
	}
	return q
}

// param binds a value of column c, cast to what the column is compared as.
func (b *builder) param(c *column, v any) string {
	p := b.arg(v)
	if c.typ == schema.Decimal {
		switch b.f.kind {
		case "postgres":
			return "CAST(" + p + " AS NUMERIC)"
		case "sqlite":
			return "CAST(" + p + " AS NUMERIC)"
		case "mysql":
			return "CAST(" + p + " AS DECIMAL(65,30))"
		}
	}
	return p
}

// orderBy spells one term of ORDER BY. Every database orders nulls last
// ascending and first descending (PostgreSQL's default), so that a cursor
// means the same everywhere.
func (f flavor) orderBy(c *column, desc bool) string {
	e := f.col(c)
	dir := " ASC"
	if desc {
		dir = " DESC"
	}
	if f.kind == "postgres" || !c.nullable {
		return e + dir
	}
	return "(" + e + " IS NULL)" + dir + ", " + e + dir
}

// like spells a pattern match. Case-sensitive everywhere: SQLite's LIKE
// ignores ASCII case, so it uses GLOB there.
func (b *builder) like(c *column, pat []PatternPart, ci bool) string {
	q := b.f.d.Quote(c.name)
	if b.f.kind == "sqlite" && !ci {
		return q + " GLOB " + b.arg(globPattern(pat))
	}
	p := b.arg(likePattern(pat))
	switch {
	case !ci:
		if b.f.kind == "sqlite" {
			return q + " LIKE " + p + ` ESCAPE '\'`
		}
		return q + " LIKE " + p
	case b.f.kind == "postgres":
		return q + " ILIKE " + p
	case b.f.kind == "sqlite":
		return q + " LIKE " + p + ` ESCAPE '\'`
	default:
		return "LOWER(" + q + ") LIKE LOWER(" + p + ")"
	}
}

// likePattern spells a pattern for LIKE with backslash as the escape
// character (the default of PostgreSQL and MySQL).
func likePattern(pat []PatternPart) string {
	var s strings.Builder
	for _, p := range pat {
		switch {
		case p.Any:
			s.WriteByte('%')
		case p.One:
			s.WriteByte('_')
		default:
			for _, r := range p.Literal {
				if r == '%' || r == '_' || r == '\\' {
					s.WriteByte('\\')
				}
				s.WriteRune(r)
			}
		}
	}
	return s.String()
}

// globPattern spells a pattern for SQLite's GLOB.
func globPattern(pat []PatternPart) string {
	var s strings.Builder
	for _, p := range pat {
		switch {
		case p.Any:
			s.WriteByte('*')
		case p.One:
			s.WriteByte('?')
		default:
			for _, r := range p.Literal {
				switch r {
				case '*', '?', '[':
					s.WriteByte('[')
					s.WriteRune(r)
					s.WriteByte(']')
				default:
					s.WriteRune(r)
				}
			}
		}
	}
	return s.String()
}

var decimalRE = regexp.MustCompile(`^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$`)

// value converts the text of a filter or cursor operand into the value
// bound for column c.
func (f flavor) value(c *column, s string) (any, error) {
	switch c.typ {
	case schema.Int:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not an integer", s)
		}
		return n, nil
	case schema.Float:
		x, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not a number", s)
		}
		return x, nil
	case schema.Decimal:
		if len(s) > 100 || !decimalRE.MatchString(s) {
			return nil, fmt.Errorf("%q is not a decimal number", s)
		}
		return s, nil
	case schema.Bool:
		switch strings.ToLower(s) {
		case "true", "t", "1":
			return true, nil
		case "false", "f", "0":
			return false, nil
		}
		return nil, fmt.Errorf("%q is not true or false", s)
	case schema.Timestamp:
		t, err := parseTime(s)
		if err != nil {
			return nil, err
		}
		return f.d.Time(t), nil
	case schema.Text:
		if err := checkText(s); err != nil {
			return nil, err
		}
		return s, nil
	}
	return nil, fmt.Errorf("a %s column can only be tested with is", c.typ)
}

// checkText refuses text no column can hold: invalid UTF-8, or NUL
// (which PostgreSQL refuses in text).
func checkText(s string) error {
	if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("%q is not valid UTF-8 text without NUL characters", s)
	}
	return nil
}

// parseTime reads an RFC 3339 timestamp, or a date (midnight UTC).
func parseTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is not an RFC 3339 timestamp (2024-05-01T12:30:00Z) or a date (2024-05-01)", s)
}

// condition spells a filter on column c.
func (b *builder) condition(c *column, flt Filter) (string, error) {
	q := b.f.col(c)
	var cond string
	switch flt.Op {
	case OpIs:
		switch flt.Values[0] {
		case "null":
			cond = b.f.d.Quote(c.name) + " IS NULL"
		default:
			if c.typ != schema.Bool {
				return "", fmt.Errorf("is.%s needs a bool column; %s is %s", flt.Values[0], c.name, c.typ)
			}
			cond = b.f.d.Quote(c.name) + " = " + b.arg(flt.Values[0] == "true")
		}
	case OpLike, OpILike:
		if c.typ != schema.Text {
			return "", fmt.Errorf("%s needs a text column; %s is %s", flt.Op, c.name, c.typ)
		}
		if err := checkText(flt.Values[0]); err != nil {
			return "", err
		}
		cond = b.like(c, flt.Pattern, flt.Op == OpILike)
	case OpIn:
		if len(flt.Values) == 0 {
			cond = "1 = 0"
			break
		}
		if len(flt.Values) > maxInValues {
			return "", fmt.Errorf("in takes at most %d values", maxInValues)
		}
		parts := make([]string, len(flt.Values))
		for i, s := range flt.Values {
			v, err := b.f.value(c, s)
			if err != nil {
				return "", err
			}
			parts[i] = b.param(c, v)
		}
		cond = q + " IN (" + strings.Join(parts, ", ") + ")"
	default:
		if (c.typ == schema.Bool) && flt.Op != OpEq && flt.Op != OpNeq {
			return "", fmt.Errorf("%s cannot compare bool values (use eq, neq, in or is)", flt.Op)
		}
		v, err := b.f.value(c, flt.Values[0])
		if err != nil {
			return "", err
		}
		cond = q + " " + comparison[flt.Op] + " " + b.param(c, v)
	}
	if flt.Not {
		return "NOT (" + cond + ")", nil
	}
	return cond, nil
}

// maxInValues bounds an in list.
const maxInValues = 1000

var comparison = map[Op]string{OpEq: "=", OpNeq: "<>", OpGt: ">", OpGte: ">=", OpLt: "<", OpLte: "<="}

// keysetTerm is one column of a page's order with the last row's value.
type keysetTerm struct {
	c     *column
	desc  bool
	value any // bound value; nil for NULL
}

// keyset spells "after the row with these values" in the order of terms
// (nulls last ascending, first descending).
func (b *builder) keyset(terms []keysetTerm) string {
	var ors []string
	for i, t := range terms {
		var ands []string
		for _, e := range terms[:i] {
			if e.value == nil {
				ands = append(ands, b.f.d.Quote(e.c.name)+" IS NULL")
			} else {
				ands = append(ands, b.f.col(e.c)+" = "+b.param(e.c, e.value))
			}
		}
		var after string
		switch {
		case t.value == nil && !t.desc:
			continue // nothing sorts after a null ascending
		case t.value == nil:
			after = b.f.d.Quote(t.c.name) + " IS NOT NULL"
		case t.desc:
			after = b.f.col(t.c) + " < " + b.param(t.c, t.value)
		case t.c.nullable:
			after = "(" + b.f.col(t.c) + " > " + b.param(t.c, t.value) + " OR " + b.f.d.Quote(t.c.name) + " IS NULL)"
		default:
			after = b.f.col(t.c) + " > " + b.param(t.c, t.value)
		}
		ors = append(ors, strings.Join(append(ands, after), " AND "))
	}
	if len(ors) == 0 {
		return "1 = 0"
	}
	if len(ors) == 1 {
		return ors[0]
	}
	return "(" + strings.Join(ors, ") OR (") + ")"
}
