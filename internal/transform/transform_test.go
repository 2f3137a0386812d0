package transform

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func apply(t *testing.T, steps []Step, rec string, env Env) ([]string, error) {
	t.Helper()
	p, err := Compile(steps)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	out, err := p.Apply([]byte(rec), env)
	var s []string
	for _, o := range out {
		s = append(s, string(o))
	}
	return s, err
}

func TestSteps(t *testing.T) {
	env := Env{Parent: map[string]any{"id": 7}, Config: map[string]any{"region": "eu"}}
	for _, tc := range []struct {
		name  string
		steps []Step
		in    string
		want  []string
	}{
		{"add", []Step{{Add: map[string]string{"full": "record.first + ' ' + record.last", "region": "config.region", "parent_id": "parent.id", "cents": "record.amount * 100"}, AddOrder: []string{"full", "region", "parent_id", "cents"}}},
			`{"first":"Ada","last":"L","amount":2.5}`, []string{`{"first":"Ada","last":"L","amount":2.5,"full":"Ada L","region":"eu","parent_id":7,"cents":250}`}},
		{"add nested", []Step{{Add: map[string]string{"meta.source": "'api'"}}}, `{"id":1}`, []string{`{"id":1,"meta":{"source":"api"}}`}},
		{"remove", []Step{{Remove: []string{"secret", "a.b", "missing"}}}, `{"id":1,"secret":"x","a":{"b":1,"c":2}}`, []string{`{"id":1,"a":{"c":2}}`}},
		{"rename", []Step{{Rename: map[string]string{"ID": "id", "a.old": "new"}}}, `{"ID":1,"x":2,"a":{"old":3}}`, []string{`{"id":1,"x":2,"a":{"new":3}}`}},
		{"cast", []Step{{Cast: map[string]string{"n": "int", "f": "float", "b": "bool", "s": "string", "ts": "unix", "ms": "unix_ms", "when": "timestamp", "j": "json", "nul": "int"}}},
			`{"n":"42","f":"1.50","b":"yes","s":12,"ts":1700000000,"ms":"1700000000123","when":"2024-01-02 03:04:05","j":"{\"k\":[1]}","nul":null}`,
			[]string{`{"n":42,"f":1.50,"b":true,"s":"12","ts":"2023-11-14T22:13:20Z","ms":"2023-11-14T22:13:20.123Z","when":"2024-01-02T03:04:05Z","j":{"k":[1]},"nul":null}`}},
		{"cast in arrays", []Step{{Cast: map[string]string{"items.at": "unix", "items.n": "int"}}}, `{"items":[{"at":0,"n":"1"},{"at":"1700000000.5"},[{"at":1}]]}`,
			[]string{`{"items":[{"at":"1970-01-01T00:00:00Z","n":1},{"at":"2023-11-14T22:13:20.5Z"},[{"at":"1970-01-01T00:00:01Z"}]]}`}},
		{"flatten", []Step{{Flatten: []string{"address"}}}, `{"id":1,"address":{"city":"Oslo","geo":{"lat":1}},"z":0}`, []string{`{"id":1,"address__city":"Oslo","address__geo__lat":1,"z":0}`}},
		{"explode", []Step{{Explode: "items"}, {Flatten: []string{"items"}}}, `{"id":1,"items":[{"sku":"a"},{"sku":"b"}]}`,
			[]string{`{"id":1,"items__sku":"a"}`, `{"id":1,"items__sku":"b"}`}},
		{"explode empty", []Step{{Explode: "items"}}, `{"id":1,"items":[]}`, nil},
		{"filter", []Step{{Filter: "record.status != 'draft'"}}, `{"status":"draft"}`, nil},
		{"filter keeps", []Step{{Filter: "record.n > 1"}}, `{"n":2}`, []string{`{"n":2}`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := apply(t, tc.steps, tc.in, env)
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestRejects(t *testing.T) {
	for _, tc := range []struct {
		steps []Step
		in    string
		want  string
	}{
		{[]Step{{Cast: map[string]string{"n": "int"}}}, `{"n":"4x"}`, `cast n to int: "4x" is not an integer`},
		{[]Step{{Cast: map[string]string{"t": "unix"}}}, `{"t":"soon"}`, `"soon" is not a Unix time`},
		{[]Step{{Explode: "items"}}, `{"items":3}`, "not an array"},
		{[]Step{{Add: map[string]string{"x": "record.a.b.c"}}}, `{"a":1}`, "add x"},
		{[]Step{{Filter: "record.n > 1"}}, `[1]`, "must be a JSON object"},
	} {
		_, err := apply(t, tc.steps, tc.in, Env{})
		var r *Reject
		if !errors.As(err, &r) || !strings.Contains(r.Reason, tc.want) {
			t.Errorf("%s: got %v, want a reject saying %q", tc.in, err, tc.want)
		}
	}
	if _, err := Compile([]Step{{Filter: "record.n >"}}); err == nil {
		t.Error("a bad expression compiled")
	}
	if _, err := Compile([]Step{{Remove: []string{"a"}, Filter: "true"}}); err == nil {
		t.Error("a step with two operations compiled")
	}
	if _, err := Compile([]Step{{Cast: map[string]string{"a": "money"}}}); err == nil {
		t.Error("an unknown type compiled")
	}
}

func FuzzTransform(f *testing.F) {
	f.Add([]byte(`{"a":{"b":[1,2]},"n":"3","s":"x"}`), "record.n + record.s")
	f.Add([]byte(`{"items":[{"x":1}],"t":1700000000}`), "len(record.items) > 0")
	f.Fuzz(func(t *testing.T, rec []byte, expression string) {
		steps := []Step{
			{Add: map[string]string{"computed": expression}},
			{Cast: map[string]string{"n": "int", "t": "unix", "s": "timestamp"}},
			{Flatten: []string{"a"}},
			{Explode: "items"},
			{Rename: map[string]string{"computed": "c"}},
		}
		p, err := Compile(steps)
		if err != nil {
			return // the expression does not compile
		}
		out, err := p.Apply(rec, Env{})
		var r *Reject
		if err != nil && !errors.As(err, &r) {
			t.Fatalf("Apply failed without a reject: %v", err)
		}
		for _, o := range out {
			if !json.Valid(o) || o[0] != '{' {
				t.Fatalf("invalid JSON record %q", o)
			}
		}
	})
}
