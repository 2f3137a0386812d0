package postgres

import "github.com/ferry-dev/ferry/internal/dest/sqldest"

var (
	_ sqldest.ColumnReserver = Dialect{}
	_ sqldest.ColumnLimiter  = Dialect{}
)

// ReservedColumns returns PostgreSQL's system column names, which every
// table has and no column may take ("column name "xmin" conflicts with a
// system column name"), and oid, a system column before PostgreSQL 12:
// reserving it everywhere keeps the names Ferry picks the same whatever
// the server's version.
func (Dialect) ReservedColumns() []string {
	return []string{"ctid", "xmin", "xmax", "cmin", "cmax", "tableoid", "oid"}
}

// MaxColumns returns 1600, PostgreSQL's limit on a table's columns
// (MaxHeapAttributeNumber). Widening a column changes its type in place,
// so it needs no column beyond the table's own.
func (Dialect) MaxColumns() int { return 1600 }
