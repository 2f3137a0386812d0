package spec

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ferry-dev/ferry/internal/source"
)

// ParseDuration parses a Go duration with an extra unit d (24h).
func ParseDuration(s string) (time.Duration, error) {
	var total time.Duration
	rest := s
	for rest != "" {
		i := strings.IndexByte(rest, 'd')
		if i < 0 {
			d, err := time.ParseDuration(rest)
			if err != nil {
				return 0, fmt.Errorf("invalid duration %q (examples: 500ms, 30s, 2h, 3d)", s)
			}
			return total + d, nil
		}
		n, err := strconv.ParseFloat(rest[:i], 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("invalid duration %q (examples: 500ms, 30s, 2h, 3d)", s)
		}
		total += time.Duration(n * float64(24*time.Hour))
		rest = rest[i+1:]
	}
	if total < 0 {
		return 0, fmt.Errorf("invalid duration %q: negative", s)
	}
	return total, nil
}

// ParseLookback parses "2h", "3d" or "100".
func ParseLookback(s string) (source.Lookback, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 {
			return source.Lookback{}, fmt.Errorf("lookback %q is negative", s)
		}
		return source.Lookback{Amount: n, IsAmount: true}, nil
	}
	d, err := ParseDuration(s)
	if err != nil {
		return source.Lookback{}, fmt.Errorf("invalid lookback %q: want a duration such as 2h or 3d, or a number for integer cursors", s)
	}
	return source.Lookback{Duration: d}, nil
}

// convertParam converts a config value to the parameter's declared type.
func convertParam(p *ConfigParam, v any) (any, error) {
	switch p.Type {
	case "", "string":
		s, err := scalarString(v)
		if err != nil {
			return nil, err
		}
		return s, nil
	case "integer":
		switch x := v.(type) {
		case int, int64, uint64:
			s, _ := scalarString(x)
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%v is not an integer", v)
			}
			return n, nil
		case string:
			n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%q is not an integer", x)
			}
			return n, nil
		}
		return nil, fmt.Errorf("%v is not an integer", v)
	case "number":
		switch x := v.(type) {
		case int, int64, uint64, float64:
			s, _ := scalarString(x)
			f, _ := strconv.ParseFloat(s, 64)
			return f, nil
		case string:
			f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
			if err != nil {
				return nil, fmt.Errorf("%q is not a number", x)
			}
			return f, nil
		}
		return nil, fmt.Errorf("%v is not a number", v)
	case "boolean":
		switch x := v.(type) {
		case bool:
			return x, nil
		case string:
			b, err := strconv.ParseBool(strings.TrimSpace(x))
			if err != nil {
				return nil, fmt.Errorf("%q is not a boolean", x)
			}
			return b, nil
		}
		return nil, fmt.Errorf("%v is not a boolean", v)
	}
	return nil, fmt.Errorf("unknown parameter type %q", p.Type)
}

// checkParam checks a connector's config parameter declaration.
func checkParam(ps *problems, p []string, param *ConfigParam) {
	if param == nil {
		return
	}
	if param.Default != nil {
		if _, err := convertParam(param, param.Default); err != nil {
			ps.atValue(path(p, "default"), "%v", err)
		}
		if param.Secret {
			ps.at(path(p, "default"), "a secret parameter cannot have a default: secrets come from the environment or a file")
		}
	}
}

func sortStrings(s []string) { slices.Sort(s) }

// RejectLimit is how many rejected records fail a stream: Count records,
// or Percent of the records read; the zero value is the default (all of a
// non-empty run).
type RejectLimit struct {
	Count   int64
	Percent float64
	Set     bool
}

// ParseRejectLimit reads a max_rejected setting: "100" or "5%".
func ParseRejectLimit(s string) (RejectLimit, error) {
	s = strings.TrimSpace(s)
	if pct, ok := strings.CutSuffix(s, "%"); ok {
		f, err := strconv.ParseFloat(strings.TrimSpace(pct), 64)
		if err != nil || f < 0 || f > 100 {
			return RejectLimit{}, fmt.Errorf("max_rejected %q: want a number of records or a percentage from 0%% to 100%%", s)
		}
		return RejectLimit{Percent: f, Set: true}, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return RejectLimit{}, fmt.Errorf("max_rejected %q: want a number of records or a percentage such as 5%%", s)
	}
	return RejectLimit{Count: n, Set: true}, nil
}

// Exceeded reports whether rejected records of read ones break the limit.
func (l RejectLimit) Exceeded(rejected, read int64) bool {
	switch {
	case rejected == 0:
		return false
	case !l.Set:
		return rejected >= read
	case l.Percent > 0:
		return float64(rejected) > l.Percent/100*float64(read)
	}
	return rejected > l.Count
}
