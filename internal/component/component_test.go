package component

import (
	"errors"
	"strings"
	"testing"
)

type widgetConfig struct {
	Size int `yaml:"size"`
}

func TestRegistry(t *testing.T) {
	const kind Kind = "widget"
	mk := func(name string) Info {
		return Info{Kind: kind, Name: name, Config: func() any { return new(widgetConfig) }, Factory: func() int { return 1 }}
	}
	Register(mk("b"))
	Register(mk("a"))
	info, err := Lookup(kind, "a")
	if err != nil || info.ID() != "widget.a" || info.ConfigType().Name() != "widgetConfig" {
		t.Fatalf("Lookup(a) = %+v, %v", info, err)
	}
	_, err = Lookup(kind, "c")
	var ue *UnknownError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), `unknown widget type "c" (known: a, b;`) {
		t.Fatalf("Lookup(c) error = %v", err)
	}
	if got := Names(kind); len(got) != 2 || got[0] != "a" {
		t.Fatalf("Names = %v", got)
	}
	bad := []Info{
		mk("a"), // duplicate
		{Kind: kind, Name: "nilfactory", Config: func() any { return new(widgetConfig) }},
		{Kind: kind, Name: "noconfig", Factory: func() {}},
		{Kind: kind, Name: "notastruct", Config: func() any { return new(int) }, Factory: func() {}},
		{Name: "nokind", Config: func() any { return new(widgetConfig) }, Factory: func() {}},
	}
	for _, b := range bad {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Register(%s) did not panic", b.Name)
				}
			}()
			Register(b)
		}()
	}
}
