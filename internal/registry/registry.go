// Package registry is the one way Ferry's components are registered by
// name, in the manner of database/sql's drivers: a guarded map that
// refuses duplicates and nil values, and a lookup whose error names the
// known names and the likely fix.
package registry

import (
	"fmt"
	"reflect"
	"sort"
	"sync"
)

// Registry maps names to values of type T. The zero value is ready to use
// and safe for concurrent use.
type Registry[T any] struct {
	// Kind names what is registered ("source type", "destination type"),
	// for messages.
	Kind string
	mu   sync.RWMutex
	m    map[string]T
}

// New returns a registry of the given kind.
func New[T any](kind string) *Registry[T] { return &Registry[T]{Kind: kind} }

// Register adds a value under name. It panics on a duplicate name, as
// registration happens in init functions where a duplicate is a bug.
func (r *Registry[T]) Register(name string, v T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if isNil(v) {
		panic(fmt.Sprintf("registry: Register of %s %q with a nil value", r.Kind, name))
	}
	if _, dup := r.m[name]; dup {
		panic(fmt.Sprintf("registry: %s %q registered twice", r.Kind, name))
	}
	if r.m == nil {
		r.m = map[string]T{}
	}
	r.m[name] = v
}

// Get returns the value registered under name, or an error listing the
// known names.
func (r *Registry[T]) Get(name string) (T, error) {
	r.mu.RLock()
	v, ok := r.m[name]
	r.mu.RUnlock()
	if !ok {
		var zero T
		return zero, fmt.Errorf("unknown %s %q (forgotten import in internal/components/all?); known: %v", r.Kind, name, r.Names())
	}
	return v, nil
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

// Names lists the registered names, sorted.
func (r *Registry[T]) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.m))
	for k := range r.m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
