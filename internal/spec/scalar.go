package spec

import (
	"fmt"
	"strconv"
)

// Scalar is a string that may be written in YAML as a number or boolean
// too (per_page: 100).
type Scalar string

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

// UnmarshalYAML accepts a stream name or a mapping.
func (p *Parent) UnmarshalYAML(unmarshal func(any) error) error {
	var name string
	if err := unmarshal(&name); err == nil {
		*p = Parent{Stream: name}
		return nil
	}
	type plain Parent
	var x plain
	if err := unmarshal(&x); err != nil {
		return err
	}
	*p = Parent(x)
	return nil
}
