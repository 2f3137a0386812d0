package decode

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// XMLOptions tune how XML elements become JSON.
//
// An element with only text becomes a string; any other becomes an
// object of its attributes (AttrPrefix before their names), its child
// elements (a name seen twice becomes an array, and so does any name in
// Arrays) and its text under TextKey. Namespaces are dropped: names are
// local names.
type XMLOptions struct {
	// AttrPrefix is put before attribute names (default "").
	AttrPrefix string
	// TextKey holds an element's text beside attributes or children
	// (default "text").
	TextKey string
	// Arrays are element names that are always arrays, even when an
	// element has just one of them.
	Arrays []string
}

// eachXML streams the elements at the records path (element names from
// the root, * for any) as JSON objects.
func eachXML(r io.Reader, o Options, fn func([]byte) error) error {
	path := splitPath(o.Records)
	if len(path) == 0 {
		return &Error{Format: XML, Err: errors.New("records must name the record elements (e.g. feed.entry)")}
	}
	x := o.XML
	if x.TextKey == "" {
		x.TextKey = "text"
	}
	dec := xml.NewDecoder(r)
	dec.Strict = true
	dec.CharsetReader = func(label string, in io.Reader) (io.Reader, error) {
		// The body was converted to UTF-8 already when an encoding was
		// given; a declaration saying otherwise is taken at its word.
		if strings.EqualFold(label, "utf-8") || o.Encoding != "" {
			return in, nil
		}
		return nil, fmt.Errorf("the document declares encoding %q: set encoding: %s", label, label)
	}
	var stack []string
	found := false
	n := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			line, _ := dec.InputPos()
			return &Error{Format: XML, Where: fmt.Sprintf("line %d", line), Err: err}
		}
		switch t := tok.(type) {
		case xml.StartElement:
			stack = append(stack, t.Name.Local)
			if !matchXML(path, stack) {
				continue
			}
			found = true
			start := dec.InputOffset()
			v, err := x.element(dec, t, o.MaxRecordBytes, start)
			if err != nil {
				line, _ := dec.InputPos()
				return &Error{Format: XML, Where: fmt.Sprintf("record %d, line %d", n+1, line), Err: err}
			}
			stack = stack[:len(stack)-1]
			obj, ok := v.(*ordered)
			if !ok {
				obj = &ordered{vals: map[string]any{}}
				if v != nil {
					obj.keys, obj.vals[x.TextKey] = []string{x.TextKey}, v
				}
			}
			b, err := obj.MarshalJSON()
			if err != nil {
				return &Error{Format: XML, Err: err}
			}
			n++
			if err := fn(b); err != nil {
				return err
			}
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		}
	}
	if !found {
		return fmt.Errorf("%w: no element at %q", ErrRecordsNotFound, o.Records)
	}
	return nil
}

func matchXML(path, stack []string) bool {
	if len(path) != len(stack) {
		return false
	}
	for i, p := range path {
		if p != "*" && p != stack[i] {
			return false
		}
	}
	return true
}

// ordered is an object that keeps its keys in document order.
type ordered struct {
	keys []string
	vals map[string]any
}

func (x XMLOptions) element(dec *xml.Decoder, start xml.StartElement, max int, from int64) (any, error) {
	obj := &ordered{vals: map[string]any{}}
	set := func(k string, v any) {
		old, ok := obj.vals[k]
		if !ok {
			obj.keys = append(obj.keys, k)
			if slices.Contains(x.Arrays, k) {
				v = []any{v}
			}
			obj.vals[k] = v
			return
		}
		if arr, isArr := old.([]any); isArr && (slices.Contains(x.Arrays, k) || obj.multi(k)) {
			obj.vals[k] = append(arr, v)
			return
		}
		obj.vals[k] = []any{old, v}
		obj.markMulti(k)
	}
	for _, a := range start.Attr {
		if a.Name.Space == "xmlns" || a.Name.Local == "xmlns" {
			continue
		}
		set(x.AttrPrefix+a.Name.Local, a.Value)
	}
	var text strings.Builder
	for {
		if dec.InputOffset()-from > int64(max) {
			return nil, fmt.Errorf("an element of more than %d bytes", max)
		}
		tok, err := dec.Token()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			v, err := x.element(dec, t, max, from)
			if err != nil {
				return nil, err
			}
			set(t.Name.Local, v)
		case xml.CharData:
			text.Write(t)
		case xml.EndElement:
			s := strings.TrimSpace(text.String())
			if len(obj.keys) == 0 {
				if s == "" && text.Len() == 0 {
					return nil, nil
				}
				return s, nil
			}
			if s != "" {
				set(x.TextKey, s)
			}
			return obj, nil
		}
	}
}

// multi and markMulti remember which keys became arrays by repetition.
func (o *ordered) multi(k string) bool {
	_, ok := o.vals["\x00multi:"+k]
	return ok
}

func (o *ordered) markMulti(k string) { o.vals["\x00multi:"+k] = true }

// MarshalJSON writes the keys in document order.
func (o *ordered) MarshalJSON() ([]byte, error) {
	out := []byte{'{'}
	for i, k := range o.keys {
		if i > 0 {
			out = append(out, ',')
		}
		kb, _ := json.Marshal(k)
		out = append(out, kb...)
		out = append(out, ':')
		vb, err := json.Marshal(o.vals[k])
		if err != nil {
			return nil, err
		}
		out = append(out, vb...)
	}
	return append(out, '}'), nil
}
