package registry

import (
	"strings"
	"testing"
)

func TestRegistry(t *testing.T) {
	r := New[func() int]("widget type")
	r.Register("b", func() int { return 2 })
	r.Register("a", func() int { return 1 })
	f, err := r.Get("a")
	if err != nil || f() != 1 {
		t.Fatalf("Get(a): %v", err)
	}
	if _, err := r.Get("c"); err == nil || !strings.Contains(err.Error(), `unknown widget type "c"`) || !strings.Contains(err.Error(), "[a b]") {
		t.Fatalf("Get(c) error = %v", err)
	}
	for _, tc := range []struct {
		name string
		f    func() int
	}{{"a", func() int { return 0 }}, {"nil", nil}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Register(%s) did not panic", tc.name)
				}
			}()
			r.Register(tc.name, tc.f)
		}()
	}
}
