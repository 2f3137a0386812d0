package cursor

import (
	"reflect"
	"testing"
	"time"
)

func TestBoundary(t *testing.T) {
	b := NewBoundary("5", []string{"0000000000000001"})
	b.Merge(NewBoundary("4", []string{"0000000000000009"}))
	b.Merge(NewBoundary("5", []string{"0000000000000002"}))
	if b.Cursor != "5" || len(b.Seen()) != 2 {
		t.Fatalf("boundary = %+v", b)
	}
	b.Merge(NewBoundary("10", []string{"0000000000000003"}))
	if b.Cursor != "10" || !reflect.DeepEqual(b.Hashes(), []string{"0000000000000003"}) {
		t.Fatalf("boundary after a larger cursor = %+v", b)
	}
	empty := NewBoundary("", nil)
	empty.Merge(b)
	if empty.Cursor != "10" || len(empty.Seen()) != 1 {
		t.Fatalf("merge = %+v", empty)
	}
	// A clone shares nothing.
	c := b.Clone()
	c.Merge(NewBoundary("11", []string{"0000000000000004"}))
	if b.Cursor != "10" || len(b.Seen()) != 1 || !b.Seen()[3] {
		t.Fatalf("the original changed with its clone: %+v", b)
	}
}

func TestCompare(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"2024-01-01T00:00:00Z", "2024-01-01T01:00:00+01:00", 0},
		{"9", "10", -1},
		{"9.75", "10.25", -1},
		{"1e3", "999", 1},
		{"b", "a", 1},
		{"", "a", -1},
	}
	for _, tt := range tests {
		if got := CompareText(tt.a, tt.b); got != tt.want {
			t.Errorf("CompareText(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestGranule(t *testing.T) {
	for _, tt := range []struct {
		cursor string
		g      time.Duration
		want   string
	}{
		{"2024-05-01T10:00:00.250Z", time.Second, "2024-05-01T09:59:59Z"},
		{"2024-05-01T10:00:00Z", time.Second, "2024-05-01T09:59:59Z"},
		{"2024-05-01T10:00:30Z", time.Minute, "2024-05-01T09:59:00Z"},
		{"2024-05-01T10:00:00.000001Z", 0, "2024-05-01T10:00:00Z"},
		{"42", 0, "41"},
		{"abc", time.Second, "abc"},
	} {
		if got := Granule(tt.cursor, tt.g); got != tt.want {
			t.Errorf("Granule(%q, %s) = %q, want %q", tt.cursor, tt.g, got, tt.want)
		}
	}
}

// TestFilter: the boundary records a sync already has are dropped by
// their identity (not their content), repeats within a pass are dropped,
// and a newer version of a record is not a repeat.
func TestFilter(t *testing.T) {
	min := Parse("2024-01-01T00:00:00Z")
	f := &Filter{Min: &min, Boundary: &min, Seen: map[uint64]bool{7: true}, Dedupe: true}
	v := func(s string) Value { return Parse(s) }
	keep := func(cur string, key uint64) bool { return f.Keep(v(cur), true, key, true, []byte(`{"x":1}`)) }
	if keep("2023-12-31T23:59:59Z", 1) {
		t.Fatal("a record below the start was kept")
	}
	if keep("2024-01-01T00:00:00Z", 7) {
		t.Fatal("a boundary record the last sync stored was kept")
	}
	if !keep("2024-01-01T00:00:00Z", 8) {
		t.Fatal("a boundary record the last sync did not store was dropped")
	}
	if !keep("2024-01-02T00:00:00Z", 9) || keep("2024-01-02T00:00:00Z", 9) {
		t.Fatal("a repeat within the pass was not dropped once")
	}
	if !keep("2024-01-03T00:00:00Z", 9) {
		t.Fatal("a newer version of a record was taken for a repeat")
	}
	if f.Below != 1 || f.AtBoundary != 1 || f.Repeated != 1 {
		t.Fatalf("counts = %d %d %d", f.Below, f.AtBoundary, f.Repeated)
	}
	if m := f.Max(); m.Cursor != "2024-01-03T00:00:00Z" || !m.Seen()[9] || len(m.Seen()) != 1 {
		t.Fatalf("max = %+v", m)
	}
	// Legacy state: identities were hashes of whole records.
	rec := []byte(`{"id":1}`)
	g := &Filter{Boundary: &min, Seen: map[uint64]bool{Hash(rec): true}, SeenByContent: true}
	if g.Keep(min, true, 42, true, rec) {
		t.Fatal("a boundary record stored under a content hash was kept")
	}
	if m := g.Max(); !m.Seen()[42] {
		t.Fatalf("the boundary record's key identity was not carried over: %+v", m)
	}
}
