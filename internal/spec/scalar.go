package spec

import (
	"fmt"
	"strconv"
)

// Scalar is a string that may be written in YAML as a number or boolean
// too (per_page: 100).
type Scalar string

// JSONSchema accepts a string or a number.
func (Scalar) JSONSchema() map[string]any {
	return map[string]any{"type": []any{"string", "integer"}}
}

// UnmarshalYAML accepts any scalar.
func (s *Scalar) UnmarshalYAML(unmarshal func(any) error) error {
	var v any
	if err := unmarshal(&v); err != nil {
		return err
	}
	str, err := scalarString(v)
	if err != nil {
		return err
	}
	*s = Scalar(str)
	return nil
}

// Templates maps names to template strings; numbers and booleans are
// accepted and kept as their text.
type Templates map[string]string

// JSONSchema is the shared templates shape.
func (Templates) JSONSchema() map[string]any {
	return map[string]any{"$ref": "#/$defs/templates", "$defs": map[string]any{"templates": sharedDefs["templates"]}}
}

// UnmarshalYAML accepts a mapping of scalars.
func (t *Templates) UnmarshalYAML(unmarshal func(any) error) error {
	var m map[string]any
	if err := unmarshal(&m); err != nil {
		return err
	}
	out := make(Templates, len(m))
	for k, v := range m {
		s, err := scalarString(v)
		if err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
		out[k] = s
	}
	*t = out
	return nil
}

func scalarString(v any) (string, error) {
	switch x := v.(type) {
	case nil:
		return "", nil
	case string:
		return x, nil
	case bool:
		return strconv.FormatBool(x), nil
	case int:
		return strconv.Itoa(x), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case uint64:
		return strconv.FormatUint(x, 10), nil
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), nil
	}
	return "", fmt.Errorf("want a string, number or boolean, got %T", v)
}

// StringList is a list of strings that may be written as one string.
type StringList []string

// UnmarshalYAML accepts a string or a sequence of strings.
func (l *StringList) UnmarshalYAML(unmarshal func(any) error) error {
	var one string
	if err := unmarshal(&one); err == nil {
		*l = StringList{one}
		return nil
	}
	var many []string
	if err := unmarshal(&many); err != nil {
		return err
	}
	*l = many
	return nil
}

// JSONSchema accepts a non-empty string or a list of distinct ones.
func (StringList) JSONSchema() map[string]any {
	return map[string]any{"oneOf": []any{
		map[string]any{"type": "string", "minLength": 1},
		map[string]any{"type": "array", "minItems": 1, "items": map[string]any{"type": "string", "minLength": 1}, "uniqueItems": true},
	}}
}
