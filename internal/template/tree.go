package template

import (
	"fmt"
	"maps"
	"slices"
)

// ParseTree compiles every string in a JSON-like value (maps, slices and
// scalars, as a request body decodes) into a *Template checked against env
// (nil: the default environment of Parse), keeping other values as they
// are. An error names the path of the first string that fails, in key
// order ("items: 2: …").
func ParseTree(v any, env map[string]any) (any, error) {
	switch x := v.(type) {
	case string:
		if env == nil {
			return Parse(x)
		}
		return ParseEnv(x, env)
	case map[string]any:
		out := make(map[string]any, len(x))
		for _, k := range slices.Sorted(maps.Keys(x)) { // the first problem by key, every time
			c, err := ParseTree(x[k], env)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			out[k] = c
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			c, err := ParseTree(e, env)
			if err != nil {
				return nil, fmt.Errorf("%d: %w", i, err)
			}
			out[i] = c
		}
		return out, nil
	}
	return v, nil
}

// EvalTree evaluates the templates of a value ParseTree compiled, giving
// a value of the same shape with each template replaced by its result.
func EvalTree(v any, env Env) (any, error) {
	switch x := v.(type) {
	case *Template:
		return x.Eval(env)
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			r, err := EvalTree(e, env)
			if err != nil {
				return nil, err
			}
			out[k] = r
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			r, err := EvalTree(e, env)
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	}
	return v, nil
}
