package transform

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	"github.com/go-json-experiment/json/jsontext"
)

// Object is a JSON object that keeps its keys in order, so that a
// transformed record's columns keep the order the API sent them in.
type Object struct {
	keys []string
	vals map[string]any
}

// NewObject returns an empty object.
func NewObject() *Object { return &Object{vals: map[string]any{}} }

// Get returns the value of key.
func (o *Object) Get(k string) (any, bool) {
	v, ok := o.vals[k]
	return v, ok
}

// Set sets key to v, appending the key if it is new.
func (o *Object) Set(k string, v any) {
	if _, ok := o.vals[k]; !ok {
		o.keys = append(o.keys, k)
	}
	o.vals[k] = v
}

// Delete removes key.
func (o *Object) Delete(k string) {
	if _, ok := o.vals[k]; !ok {
		return
	}
	delete(o.vals, k)
	for i, x := range o.keys {
		if x == k {
			o.keys = append(o.keys[:i:i], o.keys[i+1:]...)
			break
		}
	}
}

// Keys returns the keys in order.
func (o *Object) Keys() []string { return o.keys }

// clone copies the object (values that are objects or arrays are copied
// too).
func (o *Object) clone() *Object {
	c := &Object{keys: append([]string(nil), o.keys...), vals: make(map[string]any, len(o.vals))}
	for k, v := range o.vals {
		c.vals[k] = cloneValue(v)
	}
	return c
}

func cloneValue(v any) any {
	switch x := v.(type) {
	case *Object:
		return x.clone()
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = cloneValue(e)
		}
		return out
	}
	return v
}

// Parse reads one JSON value: objects become *Object, arrays []any,
// numbers json.Number (exactly as written), strings, booleans and nil.
func Parse(b []byte) (any, error) {
	dec := jsontext.NewDecoder(bytes.NewReader(b), jsontext.AllowDuplicateNames(true))
	v, err := parseValue(dec)
	if err != nil {
		return nil, err
	}
	if _, err := dec.ReadToken(); err == nil {
		return nil, fmt.Errorf("more than one JSON value")
	}
	return v, nil
}

func parseValue(dec *jsontext.Decoder) (any, error) {
	tok, err := dec.ReadToken()
	if err != nil {
		return nil, err
	}
	switch tok.Kind() {
	case '{':
		o := NewObject()
		for dec.PeekKind() != '}' {
			tok, err := dec.ReadToken()
			if err != nil {
				return nil, err
			}
			name := tok.String() // before the next read voids the token
			v, err := parseValue(dec)
			if err != nil {
				return nil, err
			}
			o.Set(name, v)
		}
		_, err := dec.ReadToken()
		return o, err
	case '[':
		arr := []any{}
		for dec.PeekKind() != ']' {
			v, err := parseValue(dec)
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
		_, err := dec.ReadToken()
		return arr, err
	case '"':
		return tok.String(), nil
	case '0':
		return json.Number(tok.String()), nil
	case 't':
		return true, nil
	case 'f':
		return false, nil
	case 'n':
		return nil, nil
	}
	return nil, fmt.Errorf("unexpected JSON token %v", tok)
}

// Marshal writes a value back as JSON.
func Marshal(v any) ([]byte, error) { return appendJSON(nil, v) }

func appendJSON(out []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case *Object:
		out = append(out, '{')
		for i, k := range x.keys {
			if i > 0 {
				out = append(out, ',')
			}
			var err error
			if out, err = jsontext.AppendQuote(out, k); err != nil {
				return nil, err
			}
			out = append(out, ':')
			if out, err = appendJSON(out, x.vals[k]); err != nil {
				return nil, err
			}
		}
		return append(out, '}'), nil
	case []any:
		out = append(out, '[')
		for i, e := range x {
			if i > 0 {
				out = append(out, ',')
			}
			var err error
			if out, err = appendJSON(out, e); err != nil {
				return nil, err
			}
		}
		return append(out, ']'), nil
	case map[string]any:
		// From an expression: keys sorted, as encoding/json writes them.
		b, err := json.Marshal(fromNative(x))
		return append(out, b...), err
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, fmt.Errorf("%v is not a JSON number", x)
		}
	case float32:
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return nil, fmt.Errorf("%v is not a JSON number", x)
		}
	}
	b, err := json.Marshal(fromNative(v))
	return append(out, b...), err
}

// native turns a value into what expressions compute with: objects
// become maps, numbers int (when integral and in range) or float64.
func native(v any) any {
	switch x := v.(type) {
	case *Object:
		m := make(map[string]any, len(x.keys))
		for k, e := range x.vals {
			m[k] = native(e)
		}
		return m
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = native(e)
		}
		return out
	case json.Number:
		if i, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return int(i)
		}
		f, _ := strconv.ParseFloat(string(x), 64)
		return f
	}
	return v
}

// fromNative turns an expression's result back into a value: maps and
// slices of any kind are walked, *Object kept.
func fromNative(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = fromNative(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = fromNative(e)
		}
		return out
	case *Object:
		return jsonObject{x}
	}
	return v
}

type jsonObject struct{ o *Object }

func (j jsonObject) MarshalJSON() ([]byte, error) { return Marshal(j.o) }
