package sqlite

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/dest/desttest"
)

func TestConformance(t *testing.T) {
	desttest.Run(t, func(t *testing.T) dest.Destination {
		d, err := Open(context.Background(), &Config{Path: filepath.Join(t.TempDir(), "test.db")}, dest.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		return d
	}, desttest.SQLCaps(indexQuery))
}

// indexQuery lists a table's indexes for the conformance suite.
func indexQuery(table string) string {
	lit := "'" + strings.ReplaceAll(table, "'", "''") + "'"
	return "SELECT il.name, (SELECT group_concat(name, ',') FROM (SELECT name FROM pragma_index_info(il.name) ORDER BY seqno)) FROM pragma_index_list(" + lit + ") il"
}
