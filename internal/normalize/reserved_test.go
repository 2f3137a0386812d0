package normalize

import (
	"slices"
	"testing"

	"github.com/ferry-dev/ferry/internal/schema"
)

// Keys named like a destination's reserved columns get other names, in
// the root table, as the key and cursor, and in child tables of unnested
// arrays.
func TestReservedColumns(t *testing.T) {
	reserved := []string{"xmin", "ctid"}
	n := mustNew(t, Options{PrimaryKey: []string{"xmin"}, Cursor: "CTID", Nested: schema.Unnest, ReservedColumns: reserved})
	c, res, err := n.Page(page(t, `[{"xmin": 1, "CTID": 5, "items": [{"ctid": "a", "xmin": 2}]}]`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows != 1 || res.Rejected != 0 || len(c.Children) != 1 {
		t.Fatalf("result %+v, rejects %+v, children %d", res, c.Rejects, len(c.Children))
	}
	for _, ch := range append(slices.Clone(c.Children), c) {
		for _, col := range ch.Table.Columns {
			if slices.Contains(reserved, col.Name) {
				t.Errorf("table %s has the reserved column %s", ch.Table.Name, col.Name)
			}
		}
	}
	pk := c.Table.PrimaryKey
	if len(pk) != 1 || pk[0] == "xmin" || c.Table.Column(pk[0]) == nil || c.Table.Cursor == "ctid" || c.Table.Column(c.Table.Cursor) == nil {
		t.Errorf("key %v, cursor %q", pk, c.Table.Cursor)
	}
}
