package sqlite

import "github.com/ferry-dev/ferry/internal/dest/sqldest"

var (
	_ sqldest.ColumnReserver = Dialect{}
	_ sqldest.ColumnLimiter  = Dialect{}
)

// ReservedColumns returns the names of the rowid. SQLite lets a column
// take them, but the column then hides the rowid under that name: tools
// that read rows by rowid (and SELECT rowid) would get the column instead.
// Keys so named get another column, and the rowid stays reachable by all
// three names.
func (Dialect) ReservedColumns() []string { return []string{"rowid", "oid", "_rowid_"} }

// MaxColumns returns 2000, SQLite's default SQLITE_MAX_COLUMN, which
// modernc.org/sqlite keeps. A widening rebuilds the table with as many
// columns.
func (Dialect) MaxColumns() int { return 2000 }
