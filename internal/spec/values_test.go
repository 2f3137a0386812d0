package spec

import (
	"strings"
	"testing"
)

func TestExpandEnv(t *testing.T) {
	lookup := func(k string) (string, bool) {
		v, ok := map[string]string{"A": "1", "EMPTY": ""}[k]
		return v, ok
	}
	tests := []struct{ in, want, err string }{
		{in: "plain", want: "plain"},
		{in: "${A}-${A}", want: "1-1"},
		{in: "$$A ${A}", want: "$A 1"},
		{in: "${EMPTY:-d}", want: "d"},
		{in: "${EMPTY}", want: ""},
		{in: "${B:-x}", want: "x"},
		{in: "${B}${C}", err: "environment variables B, C are not set"},
		{in: "${A", err: "unclosed"},
		{in: "${1X}", err: "invalid environment variable name"},
		{in: "cost: $5", want: "cost: $5"},
	}
	for _, tt := range tests {
		got, err := expandEnv(tt.in, lookup)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("expandEnv(%q) err = %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("expandEnv(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]string{"30s": "30s", "1d": "24h0m0s", "1d12h": "36h0m0s", "1.5d": "36h0m0s", "500ms": "500ms"} {
		d, err := ParseDuration(in)
		if err != nil || d.String() != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %s", in, d, err, want)
		}
	}
	for _, in := range []string{"", "3 days", "d", "-1d", "1x"} {
		if _, err := ParseDuration(in); err == nil && in != "" {
			t.Errorf("ParseDuration(%q) succeeded", in)
		}
	}
}
