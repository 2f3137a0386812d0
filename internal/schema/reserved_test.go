package schema

import (
	"strings"
	"testing"
)

// Keys that normalise to a name the destination reserves get the clash
// suffix, the same on every run; case does not matter; a column a table
// already has under a reserved name keeps it.
func TestNamerReserving(t *testing.T) {
	reserved := []string{"xmin", "ctid", "DB_ROW_ID"}
	names := map[string]string{}
	n := NewNamer(63).Reserving(reserved...)
	for _, key := range []string{"xmin", "XMIN", "Xmin", "ctid", "db_row_id", "dbRowId", "DB_ROW_ID", "xmin_", "id"} {
		got := n.Name(key)
		names[key] = got
		for _, r := range reserved {
			if strings.EqualFold(got, r) {
				t.Errorf("key %q got the reserved name %q", key, got)
			}
		}
		if again := n.Name(key); again != got {
			t.Errorf("key %q: %q, then %q", key, got, again)
		}
	}
	if want := "xmin_" + shortHash("xmin"); names["xmin"] != want {
		t.Errorf("xmin → %q, want %q (the clash suffix)", names["xmin"], want)
	}
	if names["id"] != "id" || names["xmin_"] != "xmin_" {
		t.Errorf("names that are not reserved changed: %v", names)
	}
	seen := map[string]string{}
	for key, name := range names {
		if other, ok := seen[strings.ToLower(name)]; ok {
			t.Errorf("keys %q and %q share the name %q", key, other, name)
		}
		seen[strings.ToLower(name)] = key
	}
	// Another run, another Namer: the same names.
	m := NewNamer(63).Reserving(reserved...)
	for _, key := range []string{"DB_ROW_ID", "ctid", "xmin"} {
		if got := m.Name(key); got != names[key] {
			t.Errorf("next run: key %q → %q, was %q", key, got, names[key])
		}
	}
	// A table created before the name was reserved keeps its column.
	old := NewNamer(128).Reserving("rowid", "oid")
	old.Reserve("rowid", "rowid")
	if got := old.Name("rowid"); got != "rowid" {
		t.Errorf("existing column rowid renamed to %q", got)
	}
	if got := old.Name("OID"); got == "oid" {
		t.Errorf("key OID got the reserved name")
	}
	// A reserved name as long as the limit still leaves room for the suffix.
	if got := NewNamer(20).Reserving("abcdefghijklmnopqrst").Name("abcdefghijklmnopqrst"); len(got) > 20 || got == "abcdefghijklmnopqrst" {
		t.Errorf("long reserved name: %q", got)
	}
}
