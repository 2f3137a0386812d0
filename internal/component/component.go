// Package component is Ferry's one registry of components, in the manner
// of database/sql's drivers and Caddy's modules: every source kind,
// destination type and auth scheme registers itself here from its
// package's init function, with its configuration type, so that the spec
// package can decode, check and document its section of a file, and the
// kind's own package (source, dest, auth) can build it.
//
// A registration refuses duplicates and nil values; a lookup of an
// unknown name names the known ones and the likely fix. A new component
// is one package plus one blank import in internal/components/all.
package component

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
)

// Kind is a family of components that fill the same place in a file.
type Kind string

// The kinds of components.
const (
	Source      Kind = "source"      // a connector's type: how records are read
	Destination Kind = "destination" // a pipeline's destination: where rows go
	Auth        Kind = "auth"        // a connector's auth.type: how requests authenticate
	State       Kind = "state"       // a pipeline's state store, when not the destination
)

// Info describes one registered component.
type Info struct {
	Kind Kind
	// Name is what files write in the component's type field ("postgres").
	Name string
	// Summary is one line for humans, used in docs and messages.
	Summary string
	// Doc is a longer Markdown description (optional), for the generated
	// reference.
	Doc string
	// Config returns a new, zero configuration value: a pointer to the
	// struct the component's section of a file decodes into. Its yaml tags
	// name the fields; the doc, enum, default and required tags describe
	// them for the JSON Schema and the docs (see package spec).
	Config func() any
	// Factory builds the component; its type belongs to the kind's package
	// (dest.Factory, source.Factory, auth.Factory).
	Factory any
}

// ID names the component in logs, metrics and docs: "destination.postgres".
func (i Info) ID() string { return string(i.Kind) + "." + i.Name }

// ConfigType returns the struct type of the component's configuration.
func (i Info) ConfigType() reflect.Type {
	t := reflect.TypeOf(i.Config())
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

var (
	mu    sync.RWMutex
	known = map[Kind]map[string]Info{}
)

// Register adds a component. It panics on a missing kind, name, Config or
// Factory, and on a name already taken in its kind: registration happens
// in init functions, where either is a programming error.
func Register(info Info) {
	if info.Kind == "" || info.Name == "" {
		panic(fmt.Sprintf("component: Register(%+v) without a kind or name", info))
	}
	// A summary of several paragraphs is the summary and the doc.
	if first, rest, ok := strings.Cut(info.Summary, "\n\n"); ok && info.Doc == "" {
		info.Summary, info.Doc = strings.TrimSpace(first), strings.TrimSpace(rest)
	}
	if info.Config == nil || isNil(info.Config()) || isNil(info.Factory) {
		panic(fmt.Sprintf("component: %s registered without a config type or a factory", info.ID()))
	}
	if k := reflect.TypeOf(info.Config()); k.Kind() != reflect.Pointer || k.Elem().Kind() != reflect.Struct {
		panic(fmt.Sprintf("component: %s: Config must return a pointer to a struct, not %s", info.ID(), k))
	}
	mu.Lock()
	defer mu.Unlock()
	if _, dup := known[info.Kind][info.Name]; dup {
		panic(fmt.Sprintf("component: %s registered twice", info.ID()))
	}
	if known[info.Kind] == nil {
		known[info.Kind] = map[string]Info{}
	}
	known[info.Kind][info.Name] = info
}

// UnknownError reports a name no component of its kind has.
type UnknownError struct {
	Kind  Kind
	Name  string
	Known []string
}

func (e *UnknownError) Error() string {
	if len(e.Known) == 0 {
		return fmt.Sprintf("unknown %s type %q: no %s is registered (forgotten import of internal/components/all?)", e.Kind, e.Name, e.Kind)
	}
	return fmt.Sprintf("unknown %s type %q (known: %s; a new one needs its import in internal/components/all)", e.Kind, e.Name, strings.Join(e.Known, ", "))
}

// Lookup returns the component of a kind registered under name.
func Lookup(kind Kind, name string) (Info, error) {
	mu.RLock()
	info, ok := known[kind][name]
	mu.RUnlock()
	if !ok {
		return Info{}, &UnknownError{Kind: kind, Name: name, Known: Names(kind)}
	}
	return info, nil
}

// Names lists the names registered in a kind, sorted.
func Names(kind Kind) []string {
	mu.RLock()
	defer mu.RUnlock()
	out := make([]string, 0, len(known[kind]))
	for n := range known[kind] {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// List returns the components of a kind, sorted by name.
func List(kind Kind) []Info {
	names := Names(kind)
	mu.RLock()
	defer mu.RUnlock()
	out := make([]Info, len(names))
	for i, n := range names {
		out[i] = known[kind][n]
	}
	return out
}

// isNil reports whether v is nil (a nil func, pointer, map, interface…).
func isNil(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Func, reflect.Pointer, reflect.Map, reflect.Slice, reflect.Interface, reflect.Chan:
		return rv.IsNil()
	}
	return false
}
