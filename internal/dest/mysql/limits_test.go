package mysql

import (
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/internal/dest/desttest"
)

// A table of MaxColumns columns, all but Ferry's own text, is created, takes
// rows, and has room to widen a timestamp column to text through a
// temporary column; with one more column, InnoDB refuses the widening (in
// strict mode, its default: otherwise it only refuses rows that do not
// fit).
func TestMaxColumns(t *testing.T) {
	t.Parallel()
	d := openFresh(t, nil)
	limit := Dialect{}.MaxColumns()
	if err := desttest.WriteColumns(t, d, "widest", limit); err != nil {
		t.Fatalf("%d columns: %v", limit, err)
	}
	var strict bool
	if err := admin(t).QueryRow("SELECT @@innodb_strict_mode").Scan(&strict); err != nil {
		t.Fatal(err)
	}
	if !strict {
		t.Skip("innodb_strict_mode is off on the test server: tables of any width up to 1017 columns are created")
	}
	err := desttest.WriteColumns(t, d, "too_wide", limit+1)
	if err == nil || !strings.Contains(err.Error(), "Row size too large") {
		t.Fatalf("%d columns: %v, want InnoDB's refusal", limit+1, err)
	}
}
