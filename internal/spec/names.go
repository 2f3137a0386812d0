package spec

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/message"
)

// keyKind is a validation error about a key itself, reported at the key.
type keyKind struct {
	msg string
	// The key is prop, under a mapping whose own key is parent, depth
	// levels into the document: the validator reports the location of
	// propertyNames errors wrongly (santhosh-tekuri/jsonschema v6.0.3 keeps
	// a slice it goes on to reuse), so the key is looked up in the file.
	parent, prop string
	depth        int
}

func (k *keyKind) KeywordPath() []string                   { return nil }
func (k *keyKind) LocalizedString(*message.Printer) string { return k.msg }

// locate returns the YAML path of the key in f, or fallback.
func (k *keyKind) locate(f *File, fallback []string) []string {
	var find func(prefix []string) []string
	find = func(prefix []string) []string {
		if len(prefix) == k.depth-1 {
			at := append(slices.Clip(prefix), k.parent)
			if slices.Contains(f.Keys(at), k.prop) {
				return append(at, k.prop)
			}
			return nil
		}
		for _, key := range f.Keys(prefix) {
			if p := find(append(slices.Clip(prefix), key)); p != nil {
				return p
			}
		}
		return nil
	}
	if k.parent != "" && k.depth >= 1 && k.depth <= 3 {
		if p := find(nil); p != nil {
			return p
		}
	}
	return fallback
}

// namePattern is the pattern of stream and config parameter names.
const namePattern = "^[A-Za-z_][A-Za-z0-9_]*$"

// propertyNamesURL matches the schema location of a propertyNames keyword
// and captures the property whose names it constrains.
var propertyNamesURL = regexp.MustCompile(`/properties/([^/]+)/propertyNames$`)

// propertyNameLeaf turns a propertyNames error (a stream or config
// parameter name that does not match its pattern) into one error located
// at the key, such as streams.bad-name, with a message naming what the key
// is. It returns nil for other errors.
func propertyNameLeaf(e *jsonschema.ValidationError) *jsonschema.ValidationError {
	pn, ok := e.ErrorKind.(*kind.PropertyNames)
	if !ok {
		return nil
	}
	k := &keyKind{prop: pn.Property, depth: len(e.InstanceLocation)}
	if m := propertyNamesURL.FindStringSubmatch(e.SchemaURL); m != nil {
		k.parent = m[1]
	}
	what := "name"
	switch k.parent {
	case "streams":
		what = "stream name"
	case "config":
		what = "config parameter name"
	}
	want := "a name matching the schema"
	for _, c := range e.Causes {
		if p, ok := c.ErrorKind.(*kind.Pattern); ok {
			want = "match " + p.Want
			if p.Want == namePattern {
				want = "use letters, digits and _, not starting with a digit"
			}
		}
	}
	k.msg = fmt.Sprintf("invalid %s %q: %s", what, pn.Property, want)
	if s := validName(pn.Property); s != "" && s != pn.Property {
		k.msg += fmt.Sprintf(" (such as %q)", s)
	}
	return &jsonschema.ValidationError{
		InstanceLocation: append(slices.Clone(e.InstanceLocation), pn.Property),
		ErrorKind:        k,
		SchemaURL:        e.SchemaURL,
	}
}

// validName turns s into a name matching namePattern: other characters
// become _, and a leading digit gets a _ before it.
func validName(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	out := b.String()
	if out != "" && out[0] >= '0' && out[0] <= '9' {
		out = "_" + out
	}
	return out
}
