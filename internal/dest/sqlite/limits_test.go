package sqlite

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/dest/desttest"
)

// A table of MaxColumns columns is created and takes a row; SQLite
// refuses one more.
func TestMaxColumns(t *testing.T) {
	t.Parallel()
	d, err := Open(context.Background(), &Config{Path: filepath.Join(t.TempDir(), "wide.db")}, dest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	limit := Dialect{}.MaxColumns()
	if err := desttest.WriteColumns(t, d, "widest", limit); err != nil {
		t.Fatalf("%d columns: %v", limit, err)
	}
	err = desttest.WriteColumns(t, d, "too_wide", limit+1)
	if err == nil || !strings.Contains(err.Error(), "too many columns") {
		t.Fatalf("%d columns: %v, want SQLite's refusal", limit+1, err)
	}
}
