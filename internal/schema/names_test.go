package schema

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// TestTruncateAnyLimit: names fit every positive limit, the same name and
// key always give the same result, two keys give different ones, and a
// cut never splits a UTF-8 character.
func TestTruncateAnyLimit(t *testing.T) {
	name := strings.Repeat("日本語_column_", 10)
	for limit := 1; limit <= len(name)+1; limit++ {
		a, b := Truncate(name, "key-a", limit), Truncate(name, "key-b", limit)
		if len(a) > limit || !utf8.ValidString(a) || a == "" {
			t.Fatalf("Truncate(limit %d) = %q", limit, a)
		}
		if a != Truncate(name, "key-a", limit) {
			t.Fatalf("Truncate(limit %d) is not stable", limit)
		}
		if limit > 4 && limit < len(name) && a == b {
			t.Fatalf("Truncate(limit %d) gives two keys one name %q", limit, a)
		}
	}
}
