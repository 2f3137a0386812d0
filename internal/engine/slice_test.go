package engine

import (
	"fmt"
	"testing"
)

// TestSlices: index/count parses and prints back; every partition key
// belongs to exactly one slice of a count, and the slices share keys
// roughly evenly.
func TestSlices(t *testing.T) {
	for _, bad := range []string{"", "1", "4/4", "-1/4", "0/0", "a/b", "01/4", "1/4x"} {
		if _, err := ParseSlice(bad); err == nil {
			t.Errorf("ParseSlice(%q) accepted", bad)
		}
	}
	s, err := ParseSlice("3/8")
	if err != nil || s != (Slice{Index: 3, Count: 8}) || s.String() != "3/8" || s.StateKey() != "ferry.slice 3/8" {
		t.Fatalf("ParseSlice(3/8) = %+v, %v", s, err)
	}
	const count, keys = 8, 8000
	per := make([]int, count)
	for k := range keys {
		key := fmt.Sprintf(`{"id":%d}`, k)
		n := 0
		for i := range count {
			if (Slice{Index: i, Count: count}).Has(key) {
				n++
				per[i]++
			}
		}
		if n != 1 {
			t.Fatalf("key %s is in %d slices", key, n)
		}
	}
	for i, n := range per {
		if n < keys/count*8/10 || n > keys/count*12/10 {
			t.Errorf("slice %d/%d has %d of %d keys: uneven", i, count, n, keys)
		}
	}
}
