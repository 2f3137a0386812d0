// Package transform reshapes records declaratively, between the response
// and the table: add computed fields, remove, rename and cast fields,
// flatten objects, explode arrays into records, and filter records. Every
// expression is in the expr language (github.com/expr-lang/expr), the one
// connector templates use, over the variables record, parent and config.
//
// A record that a step cannot transform (an expression that fails, a
// value that does not cast) is rejected with the reason, never passed on
// half-transformed and never dropped without a word.
package transform

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"
)

// Step is one transformation; exactly one of its fields is set.
type Step struct {
	// Add sets fields to the values of expressions (field → expression);
	// an existing field is replaced. Later entries see earlier ones.
	Add map[string]string
	// AddOrder is the order of Add's keys (the file's); sorted if empty.
	AddOrder []string
	// Remove deletes fields (dotted paths reach into objects).
	Remove []string
	// Rename moves fields: old path → new name (at the same level).
	Rename map[string]string
	// Cast converts fields: path → type (see Types); a path through an
	// array converts the field in every element.
	Cast map[string]string
	// Flatten replaces each named object field by its members, named
	// field__member (recursively).
	Flatten []string
	// Explode turns a record into one record per element of an array
	// field, the field holding the element; a record whose field is
	// missing, null or empty yields none.
	Explode string
	// Filter keeps only the records for which the expression is true.
	Filter string
}

// Types are the cast targets.
var Types = []string{"string", "int", "float", "number", "bool", "timestamp", "unix", "unix_ms", "json"}

// Env is what expressions see besides the record.
type Env struct {
	Parent map[string]any
	Config map[string]any
}

// Program is a compiled list of steps. It is safe for concurrent use.
type Program struct {
	steps []step
}

type step struct {
	Step
	add    []compiled
	filter *vm.Program
}

type compiled struct {
	field string
	prog  *vm.Program
}

// StepError says which step and entry failed to compile.
type StepError struct {
	Step  int    // index in the list
	Field string // the entry (a field name, or "filter")
	Err   error
}

func (e *StepError) Error() string { return e.Err.Error() }
func (e *StepError) Unwrap() error { return e.Err }

var compileEnv = map[string]any{"record": map[string]any{}, "parent": map[string]any{}, "config": map[string]any{}}

func compileExpr(src string, boolean bool) (*vm.Program, error) {
	opts := []expr.Option{expr.Env(compileEnv)}
	if boolean {
		opts = append(opts, expr.AsBool())
	}
	return expr.Compile(src, opts...)
}

// Compile checks and compiles steps.
func Compile(steps []Step) (*Program, error) {
	p := &Program{}
	for i, s := range steps {
		c := step{Step: s}
		n := 0
		for _, set := range []bool{len(s.Add) > 0, len(s.Remove) > 0, len(s.Rename) > 0, len(s.Cast) > 0, len(s.Flatten) > 0, s.Explode != "", s.Filter != ""} {
			if set {
				n++
			}
		}
		if n != 1 {
			return nil, &StepError{Step: i, Err: fmt.Errorf("a step has exactly one of add, remove, rename, cast, flatten, explode and filter (this one has %d)", n)}
		}
		order := s.AddOrder
		if len(order) == 0 {
			for k := range s.Add {
				order = append(order, k)
			}
			sortStrings(order)
		}
		for _, f := range order {
			prog, err := compileExpr(s.Add[f], false)
			if err != nil {
				return nil, &StepError{Step: i, Field: f, Err: err}
			}
			c.add = append(c.add, compiled{f, prog})
		}
		for f, t := range s.Cast {
			if !validType(t) {
				return nil, &StepError{Step: i, Field: f, Err: fmt.Errorf("unknown type %q (want one of %s)", t, strings.Join(Types, ", "))}
			}
		}
		if s.Filter != "" {
			prog, err := compileExpr(s.Filter, true)
			if err != nil {
				return nil, &StepError{Step: i, Field: "filter", Err: err}
			}
			c.filter = prog
		}
		p.steps = append(p.steps, c)
	}
	return p, nil
}

func validType(t string) bool {
	for _, x := range Types {
		if x == t {
			return true
		}
	}
	return false
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// Reject is a record a step could not transform.
type Reject struct {
	Reason string
}

func (r *Reject) Error() string { return r.Reason }

// Apply transforms one record (a JSON object) into zero or more records.
// A *Reject error means this record is rejected; the caller goes on.
func (p *Program) Apply(rec []byte, env Env) ([][]byte, error) {
	v, err := Parse(rec)
	if err != nil {
		return nil, &Reject{Reason: "not JSON: " + err.Error()}
	}
	obj, ok := v.(*Object)
	if !ok {
		return nil, &Reject{Reason: "a record must be a JSON object"}
	}
	recs := []*Object{obj}
	for i, s := range p.steps {
		var next []*Object
		for _, r := range recs {
			out, err := s.apply(r, env)
			if err != nil {
				return nil, &Reject{Reason: fmt.Sprintf("transform step %d: %v", i+1, err)}
			}
			next = append(next, out...)
		}
		recs = next
		if len(recs) == 0 {
			return nil, nil
		}
	}
	out := make([][]byte, 0, len(recs))
	for _, r := range recs {
		b, err := Marshal(r)
		if err != nil {
			return nil, &Reject{Reason: "transform: " + err.Error()}
		}
		out = append(out, b)
	}
	return out, nil
}

func (s *step) apply(r *Object, env Env) ([]*Object, error) {
	switch {
	case len(s.add) > 0:
		for _, a := range s.add {
			v, err := run(a.prog, r, env)
			if err != nil {
				return nil, fmt.Errorf("add %s: %w", a.field, err)
			}
			setPath(r, a.field, fromNative(v))
		}
	case len(s.Remove) > 0:
		for _, f := range s.Remove {
			parent, key, ok := lookupParent(r, f)
			if ok {
				parent.Delete(key)
			}
		}
	case len(s.Rename) > 0:
		for _, from := range sortedKeys(s.Rename) {
			parent, key, ok := lookupParent(r, from)
			if !ok {
				continue
			}
			v, found := parent.Get(key)
			if !found {
				continue
			}
			to := s.Rename[from]
			parent.renameKey(key, to, v)
		}
	case len(s.Cast) > 0:
		for _, f := range sortedKeys(s.Cast) {
			// A path through an array casts the field of every element
			// (items.created: the created of each item).
			err := eachParent(r, splitPath(f), func(parent *Object, key string) error {
				v, found := parent.Get(key)
				if !found || v == nil {
					return nil
				}
				c, err := cast(v, s.Cast[f])
				if err != nil {
					return fmt.Errorf("cast %s to %s: %w", f, s.Cast[f], err)
				}
				parent.vals[key] = c
				return nil
			})
			if err != nil {
				return nil, err
			}
		}
	case len(s.Flatten) > 0:
		for _, f := range s.Flatten {
			flatten(r, f)
		}
	case s.Explode != "":
		parent, key, ok := lookupParent(r, s.Explode)
		if !ok {
			return nil, nil
		}
		v, _ := parent.Get(key)
		arr, isArr := v.([]any)
		if v == nil {
			return nil, nil
		}
		if !isArr {
			return nil, fmt.Errorf("explode %s: the field is %s, not an array", s.Explode, kindOf(v))
		}
		out := make([]*Object, 0, len(arr))
		for _, e := range arr {
			c := r.clone()
			cp, ck, _ := lookupParent(c, s.Explode)
			cp.vals[ck] = cloneValue(e)
			out = append(out, c)
		}
		return out, nil
	case s.filter != nil:
		v, err := run(s.filter, r, env)
		if err != nil {
			return nil, fmt.Errorf("filter: %w", err)
		}
		if keep, _ := v.(bool); !keep {
			return nil, nil
		}
	}
	return []*Object{r}, nil
}

func run(p *vm.Program, r *Object, env Env) (out any, err error) {
	defer func() {
		if x := recover(); x != nil {
			err = fmt.Errorf("%v", x)
		}
	}()
	parent, config := env.Parent, env.Config
	if parent == nil {
		parent = map[string]any{}
	}
	if config == nil {
		config = map[string]any{}
	}
	return expr.Run(p, map[string]any{"record": native(r), "parent": parent, "config": config})
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sortStrings(out)
	return out
}

// splitPath splits a dotted path; \. escapes a dot.
func splitPath(p string) []string {
	var segs []string
	var cur strings.Builder
	for i := 0; i < len(p); i++ {
		switch {
		case p[i] == '\\' && i+1 < len(p) && p[i+1] == '.':
			cur.WriteByte('.')
			i++
		case p[i] == '.':
			segs = append(segs, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(p[i])
		}
	}
	return append(segs, cur.String())
}

// lookupParent finds the object holding the last segment of path.
func lookupParent(r *Object, path string) (*Object, string, bool) {
	segs := splitPath(path)
	cur := r
	for _, s := range segs[:len(segs)-1] {
		v, ok := cur.Get(s)
		o, isObj := v.(*Object)
		if !ok || !isObj {
			return nil, "", false
		}
		cur = o
	}
	return cur, segs[len(segs)-1], true
}

// eachParent calls fn with every object holding the last segment of
// segs, descending through objects and through every element of arrays.
func eachParent(o *Object, segs []string, fn func(*Object, string) error) error {
	if len(segs) == 1 {
		return fn(o, segs[0])
	}
	v, ok := o.Get(segs[0])
	if !ok {
		return nil
	}
	var walk func(v any) error
	walk = func(v any) error {
		switch x := v.(type) {
		case *Object:
			return eachParent(x, segs[1:], fn)
		case []any:
			for _, e := range x {
				if err := walk(e); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return walk(v)
}

// setPath sets a dotted path, creating objects on the way.
func setPath(r *Object, path string, v any) {
	segs := splitPath(path)
	cur := r
	for _, s := range segs[:len(segs)-1] {
		x, _ := cur.Get(s)
		o, ok := x.(*Object)
		if !ok {
			o = NewObject()
			cur.Set(s, o)
		}
		cur = o
	}
	cur.Set(segs[len(segs)-1], v)
}

// renameKey replaces key by to, in key's place.
func (o *Object) renameKey(key, to string, v any) {
	if key == to {
		return
	}
	o.Delete(to)
	for i, k := range o.keys {
		if k == key {
			o.keys[i] = to
		}
	}
	delete(o.vals, key)
	o.vals[to] = v
}

// flatten replaces an object field by its members, in its place.
func flatten(r *Object, path string) {
	parent, key, ok := lookupParent(r, path)
	if !ok {
		return
	}
	v, _ := parent.Get(key)
	obj, isObj := v.(*Object)
	if !isObj {
		return
	}
	var flat []string
	vals := map[string]any{}
	var walk func(prefix string, o *Object)
	walk = func(prefix string, o *Object) {
		for _, k := range o.keys {
			name := prefix + "__" + k
			if sub, ok := o.vals[k].(*Object); ok && len(sub.keys) > 0 {
				walk(name, sub)
				continue
			}
			flat = append(flat, name)
			vals[name] = o.vals[k]
		}
	}
	walk(key, obj)
	var keys []string
	for _, k := range parent.keys {
		if k == key {
			for _, f := range flat {
				if _, clash := parent.vals[f]; !clash || f == key {
					keys = append(keys, f)
				}
			}
			continue
		}
		keys = append(keys, k)
	}
	delete(parent.vals, key)
	for _, f := range flat {
		parent.vals[f] = vals[f]
	}
	parent.keys = keys
}

func kindOf(v any) string {
	switch v.(type) {
	case *Object:
		return "an object"
	case []any:
		return "an array"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}

// cast converts a value to type t.
func cast(v any, t string) (any, error) {
	switch t {
	case "string":
		switch x := v.(type) {
		case string:
			return x, nil
		case json.Number:
			return string(x), nil
		case bool:
			return strconv.FormatBool(x), nil
		}
		b, err := Marshal(v)
		return string(b), err
	case "int":
		s, ok := scalarText(v)
		if !ok {
			return nil, fmt.Errorf("%s is not a number", kindOf(v))
		}
		s = strings.TrimSpace(s)
		if _, err := strconv.ParseInt(s, 10, 64); err == nil {
			return json.Number(s), nil
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
			return nil, fmt.Errorf("%q is not an integer", s)
		}
		return json.Number(strconv.FormatInt(int64(f), 10)), nil
	case "float", "number":
		s, ok := scalarText(v)
		if !ok {
			return nil, fmt.Errorf("%s is not a number", kindOf(v))
		}
		s = strings.TrimSpace(s)
		if !json.Valid([]byte(s)) || (s[0] != '-' && (s[0] < '0' || s[0] > '9')) {
			return nil, fmt.Errorf("%q is not a number", s)
		}
		return json.Number(s), nil
	case "bool":
		switch x := v.(type) {
		case bool:
			return x, nil
		case string:
			switch strings.ToLower(strings.TrimSpace(x)) {
			case "true", "t", "yes", "y", "1":
				return true, nil
			case "false", "f", "no", "n", "0":
				return false, nil
			}
			return nil, fmt.Errorf("%q is not a boolean", x)
		case json.Number:
			switch x {
			case "1":
				return true, nil
			case "0":
				return false, nil
			}
		}
		return nil, fmt.Errorf("%s is not a boolean", kindOf(v))
	case "timestamp":
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("%s is not a timestamp string (cast a number with unix or unix_ms)", kindOf(v))
		}
		ts, err := ParseTime(s)
		if err != nil {
			return nil, err
		}
		return ts.UTC().Format(time.RFC3339Nano), nil
	case "unix", "unix_ms":
		s, ok := scalarText(v)
		if !ok {
			return nil, fmt.Errorf("%s is not a number of seconds", kindOf(v))
		}
		return Epoch(strings.TrimSpace(s), t == "unix_ms")
	case "json":
		s, ok := v.(string)
		if !ok {
			return v, nil
		}
		x, err := Parse([]byte(s))
		if err != nil {
			return nil, fmt.Errorf("not JSON: %v", err)
		}
		return x, nil
	}
	return nil, fmt.Errorf("unknown type %q", t)
}

func scalarText(v any) (string, bool) {
	switch x := v.(type) {
	case json.Number:
		return string(x), true
	case string:
		return x, x != ""
	}
	return "", false
}

// Epoch turns Unix seconds (or milliseconds) written as a JSON number or
// numeric string into an RFC 3339 timestamp in UTC, keeping fractions
// down to microseconds.
func Epoch(s string, ms bool) (string, error) {
	whole, frac, _ := strings.Cut(s, ".")
	n, err := strconv.ParseInt(whole, 10, 64)
	if err != nil || (frac != "" && strings.Trim(frac, "0123456789") != "") {
		return "", fmt.Errorf("%q is not a Unix time", s)
	}
	unit := int64(1_000_000)
	if ms {
		unit = 1000
	}
	if n > math.MaxInt64/unit || n < math.MinInt64/unit {
		return "", fmt.Errorf("%q is out of range for a Unix time", s)
	}
	us := n * unit
	if frac != "" {
		digits := 6
		if ms {
			digits = 3
		}
		frac = (frac + "000000")[:digits]
		f, _ := strconv.ParseInt(frac, 10, 64)
		if n < 0 || strings.HasPrefix(whole, "-") {
			us -= f
		} else {
			us += f
		}
	}
	t := time.UnixMicro(us).UTC()
	if t.Year() < 1 || t.Year() > 9999 {
		return "", fmt.Errorf("%q is out of range for a timestamp", s)
	}
	return t.Format(time.RFC3339Nano), nil
}

// ParseTime reads the timestamp layouts APIs commonly send.
func ParseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999Z0700", "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999", time.DateOnly, time.RFC1123Z, time.RFC1123} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a timestamp this cast knows (RFC 3339, 2006-01-02 15:04:05, a date, RFC 1123)", s)
}
