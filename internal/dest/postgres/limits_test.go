package postgres

import (
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/internal/dest/desttest"
)

// A table of MaxColumns columns is created and takes a row; PostgreSQL
// refuses one more.
func TestMaxColumns(t *testing.T) {
	t.Parallel()
	d := openTest(t, nil)
	limit := Dialect{}.MaxColumns()
	if err := desttest.WriteColumns(t, d, "widest", limit); err != nil {
		t.Fatalf("%d columns: %v", limit, err)
	}
	err := desttest.WriteColumns(t, d, "too_wide", limit+1)
	if err == nil || !strings.Contains(err.Error(), "at most 1600 columns") {
		t.Fatalf("%d columns: %v, want PostgreSQL's refusal", limit+1, err)
	}
}
