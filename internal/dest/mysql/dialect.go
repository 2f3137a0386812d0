package mysql

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ferry-dev/ferry/internal/dest/sqldest"
	"github.com/ferry-dev/ferry/internal/schema"
)

// KeyChars is the width of text, decimal and JSON key columns
// (VARCHAR(255)): with utf8mb4, three such columns (3 × 1020 bytes) plus a
// BIGINT fit InnoDB's 3072-byte index limit. Longer key values are
// refused, never truncated.
const KeyChars = 255

// Dialect spells SQL for MySQL 8 and MariaDB 10.6+. Its fields are set
// once, from the server, when the destination opens; a Dialect is
// immutable and safe for concurrent use.
type Dialect struct {
	// MariaDB is true on MariaDB, which has ADD COLUMN IF NOT EXISTS; on
	// MySQL the statement checks information_schema first.
	MariaDB bool
	// Collation is every text column's collation: binary and, where the
	// server has one, without trailing-space padding.
	Collation string
	// MaxPacket is the server's max_allowed_packet in bytes (0: unknown).
	MaxPacket int
}

var _ sqldest.Dialect = Dialect{}

// Name returns "mysql".
func (Dialect) Name() string { return "mysql" }

// Quote quotes an identifier with backticks.
func (Dialect) Quote(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

// Table quotes a table name (tables live in the connection's database).
func (d Dialect) Table(name string) string { return d.Quote(name) }

// Placeholder returns ?.
func (Dialect) Placeholder(int) string { return "?" }

// MaxIdentLen returns 64: MySQL's limit is 64 characters, and 64 bytes is
// never more.
func (Dialect) MaxIdentLen() int { return 64 }

func (d Dialect) collation() string {
	if d.Collation == "" {
		return "utf8mb4_bin"
	}
	return d.Collation
}

// ColumnType spells a logical type. Text-like key columns are bounded
// VARCHARs so they can be indexed.
func (d Dialect) ColumnType(t schema.Type, key bool) string {
	switch t {
	case schema.Bool:
		return "BOOLEAN"
	case schema.Int:
		return "BIGINT"
	case schema.Float:
		return "DOUBLE"
	case schema.Timestamp:
		return "DATETIME(6)"
	}
	if key {
		return fmt.Sprintf("VARCHAR(%d) CHARACTER SET utf8mb4 COLLATE %s", KeyChars, d.collation())
	}
	if t == schema.JSON {
		return "JSON"
	}
	return "LONGTEXT CHARACTER SET utf8mb4 COLLATE " + d.collation()
}

// TransactionalDDL is false: MySQL commits before every CREATE or ALTER.
func (Dialect) TransactionalDDL() bool { return false }

// Columns lists a table's columns from information_schema.
func (Dialect) Columns(ctx context.Context, q sqldest.Queryer, table string) (map[string]string, bool, error) {
	return sqldest.ColumnsOf(ctx, q, "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?", table)
}

// AddColumn adds a column; the statement does nothing when the column is
// there already (a change interrupted by a crash).
func (d Dialect) AddColumn(table string, c schema.Column) string {
	return d.addColumn(table, c.Name, d.ColumnType(c.Type, false))
}

func (d Dialect) addColumn(table, col, typ string) string {
	if d.MariaDB {
		return fmt.Sprintf("ALTER TABLE %s ADD COLUMN IF NOT EXISTS %s %s", d.Table(table), d.Quote(col), typ)
	}
	stmt := fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s %s", d.Table(table), d.Quote(col), typ)
	return d.choose(d.columnExists(table, col), "DO 0", stmt)
}

// Widen changes a column's type. Conversions MySQL does as Ferry would
// (numbers to wider numbers or to their shortest text, NULL-only columns
// to anything) are one MODIFY COLUMN. Booleans become 'true'/'false' and
// timestamps RFC 3339 UTC text: those are converted into a new column
// that then replaces the old one in a single ALTER TABLE, so a crash
// leaves either the old column or the converted one, never a mix.
func (d Dialect) Widen(table string, next *schema.Table, col string, from schema.Type) []string {
	c := next.Column(col)
	if c == nil {
		return nil
	}
	key := isKey(next, col)
	oldType, newType := d.ColumnType(from, key), d.ColumnType(c.Type, key)
	if key {
		oldType += " NOT NULL"
		newType += " NOT NULL"
	}
	if oldType == newType {
		return nil // decimal → text: both are text already
	}
	tbl, q := d.Table(table), d.Quote(col)
	var expr string
	switch from {
	case schema.Bool:
		expr = fmt.Sprintf("CASE WHEN %s IS NULL THEN NULL WHEN %s <> 0 THEN 'true' ELSE 'false' END", q, q)
	case schema.Timestamp:
		// time.RFC3339Nano in UTC, as Ferry writes timestamps as text.
		expr = fmt.Sprintf("CONCAT(DATE_FORMAT(%s, '%%Y-%%m-%%dT%%H:%%i:%%s'), IF(MICROSECOND(%s) = 0, '', CONCAT('.', TRIM(TRAILING '0' FROM LPAD(MICROSECOND(%s), 6, '0')))), 'Z')", q, q, q)
	default:
		return []string{fmt.Sprintf("ALTER TABLE %s MODIFY COLUMN %s %s", tbl, q, newType)}
	}
	tmp := schema.Truncate(schema.MetaPrefix+"widen_"+col, col, d.MaxIdentLen())
	place := "FIRST"
	for i := range next.Columns {
		if next.Columns[i].Name == col {
			if i > 0 {
				place = "AFTER " + d.Quote(next.Columns[i-1].Name)
			}
			break
		}
	}
	swap := fmt.Sprintf("DROP COLUMN %s, CHANGE COLUMN %s %s %s %s", q, d.Quote(tmp), q, newType, place)
	stmts := []string{
		d.addColumn(table, tmp, d.ColumnType(c.Type, key)),
		fmt.Sprintf("UPDATE %s SET %s = %s", tbl, d.Quote(tmp), expr),
	}
	if !key {
		return append(stmts, fmt.Sprintf("ALTER TABLE %s %s", tbl, swap))
	}
	// Dropping a key column would shrink the primary key to the other key
	// columns; drop the key whole, the writer adds it again.
	stmts = append(stmts, d.choose(d.primaryKeyExists(table),
		fmt.Sprintf("ALTER TABLE %s DROP PRIMARY KEY, %s", tbl, swap),
		fmt.Sprintf("ALTER TABLE %s %s", tbl, swap)))
	return stmts
}

func isKey(t *schema.Table, col string) bool {
	for _, k := range t.PrimaryKey {
		if k == col {
			return true
		}
	}
	return false
}

// CreateUnique makes the key columns the table's PRIMARY KEY, unless it
// has one. InnoDB clusters rows by their primary key, so an upsert finds
// its row in one B-tree instead of a secondary index and then the table
// (about a third faster than a separate unique index). On a table that
// already holds rows, this rebuilds it once.
func (d Dialect) CreateUnique(table string, cols []string) string {
	q := make([]string, len(cols))
	for i, c := range cols {
		q[i] = d.Quote(c)
	}
	stmt := fmt.Sprintf("ALTER TABLE %s ADD PRIMARY KEY (%s)", d.Table(table), strings.Join(q, ", "))
	// The comment is for sqldest, which explains a failing statement that
	// mentions a unique index as duplicate keys in the table.
	return "/* UNIQUE INDEX for the primary key */ " + d.choose(d.primaryKeyExists(table), "DO 0", stmt)
}

// choose returns statements running a when the query cond counts more
// than zero rows and b otherwise, for DDL that has no IF [NOT] EXISTS.
// The driver sends them together on one connection (multiStatements).
func (d Dialect) choose(cond, a, b string) string {
	return fmt.Sprintf("SET @ferry_ddl = IF((%s) > 0, %s, %s); PREPARE ferry_ddl FROM @ferry_ddl; EXECUTE ferry_ddl; DEALLOCATE PREPARE ferry_ddl",
		cond, stringLiteral(a), stringLiteral(b))
}

func (d Dialect) primaryKeyExists(table string) string {
	return fmt.Sprintf("SELECT COUNT(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s AND INDEX_NAME = 'PRIMARY'",
		stringLiteral(table))
}

func (d Dialect) columnExists(table, col string) string {
	return fmt.Sprintf("SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s AND COLUMN_NAME = %s",
		stringLiteral(table), stringLiteral(col))
}

// stringLiteral quotes s as an SQL string (backslash escapes are on:
// Ferry's sql_mode has no NO_BACKSLASH_ESCAPES).
func stringLiteral(s string) string {
	return string(appendString(nil, []byte(s)))
}

// Upsert builds INSERT … ON DUPLICATE KEY UPDATE for one row. VALUES(c)
// works on MariaDB and MySQL 8 alike (MySQL 8.0.20+ warns that it is
// deprecated).
func (d Dialect) Upsert(table string, cols, key []string) string {
	q := make([]string, len(cols))
	for i, c := range cols {
		q[i] = d.Quote(c)
	}
	ph := strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ")
	var set []string
	for _, c := range cols {
		if !contains(key, c) {
			set = append(set, fmt.Sprintf("%s = VALUES(%s)", d.Quote(c), d.Quote(c)))
		}
	}
	if len(set) == 0 && len(key) > 0 {
		set = append(set, fmt.Sprintf("%s = %s", d.Quote(key[0]), d.Quote(key[0])))
	}
	return fmt.Sprintf("INSERT INTO %s (%s) VALUES (%s) ON DUPLICATE KEY UPDATE %s", d.Table(table), strings.Join(q, ", "), ph, strings.Join(set, ", "))
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// oldName is where the swap parks the live table before dropping it.
func (d Dialect) oldName(live string) string {
	return schema.Truncate(schema.MetaPrefix+"old_"+live, live, d.MaxIdentLen())
}

// Swap replaces live with staging: see SwapAll.
func (d Dialect) Swap(live, staging string, liveExists bool) []string {
	return d.SwapAll([]sqldest.TableSwap{{Live: live, Staging: staging, LiveExists: liveExists}})
}

// SwapAll replaces every live table with its staging table in one
// RENAME TABLE, which MySQL and MariaDB run atomically: readers see all
// the old tables or all the new ones. A table with nothing staged is
// replaced by an empty copy of itself. Each statement can be run again
// after a crash: tables parked by an interrupted swap are dropped first.
func (d Dialect) SwapAll(swaps []sqldest.TableSwap) []string {
	var pre, renames, post []string
	for _, s := range swaps {
		if s.Empty {
			pre = append(pre, d.DropTable(s.Staging), fmt.Sprintf("CREATE TABLE %s LIKE %s", d.Table(s.Staging), d.Table(s.Live)))
		}
		if s.LiveExists {
			old := d.oldName(s.Live)
			pre = append(pre, d.DropTable(old))
			renames = append(renames, fmt.Sprintf("%s TO %s", d.Table(s.Live), d.Table(old)))
			post = append(post, d.DropTable(old))
		}
		renames = append(renames, fmt.Sprintf("%s TO %s", d.Table(s.Staging), d.Table(s.Live)))
	}
	if len(renames) == 0 {
		return nil
	}
	return slices.Concat(pre, []string{"RENAME TABLE " + strings.Join(renames, ", ")}, post)
}

// DropTable drops a table if it exists.
func (d Dialect) DropTable(table string) string { return "DROP TABLE IF EXISTS " + d.Table(table) }

// Time returns t in UTC, which the driver sends as a DATETIME literal,
// or NULL for the zero time (strict mode refuses a zero date).
func (Dialect) Time(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC()
}

// Transient reports connection losses (bad or reset connections, server
// gone away or shutting down) and lock waits or deadlocks that a retry
// can get past.
func (Dialect) Transient(err error) bool { return transient(err) }

// CreateIndex creates a (non-unique) lookup index on cols unless the
// table has one by that name. The statement reads the columns' types from
// information_schema so that text columns get a prefix (MySQL cannot index
// a whole LONGTEXT), which is enough for lookups.
func (d Dialect) CreateIndex(table string, cols []string) string {
	name := schema.Truncate(schema.MetaPrefix+"ix_"+strings.Join(cols, "_"), strings.Join(cols, "\x00"), d.MaxIdentLen())
	lits := make([]string, len(cols))
	for i, c := range cols {
		lits[i] = stringLiteral(c)
	}
	in := strings.Join(lits, ", ")
	create := fmt.Sprintf("CONCAT(%s, GROUP_CONCAT(CONCAT('`', REPLACE(COLUMN_NAME, '`', '``'), '`', IF(DATA_TYPE IN ('tinytext', 'text', 'mediumtext', 'longtext'), '(191)', '')) ORDER BY FIELD(COLUMN_NAME, %s) SEPARATOR ', '), ')')",
		stringLiteral(fmt.Sprintf("CREATE INDEX %s ON %s (", d.Quote(name), d.Table(table))), in)
	exists := fmt.Sprintf("SELECT COUNT(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s AND INDEX_NAME = %s",
		stringLiteral(table), stringLiteral(name))
	return fmt.Sprintf("SET @ferry_ddl = (SELECT IF((%s) > 0, 'DO 0', %s) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s AND COLUMN_NAME IN (%s)); PREPARE ferry_ddl FROM @ferry_ddl; EXECUTE ferry_ddl; DEALLOCATE PREPARE ferry_ddl",
		exists, create, stringLiteral(table), in)
}

// MoveIndex has nothing to move: MySQL's index names belong to their
// table and are named for the columns alone, so the staging table's index
// is already the live one. It only creates the index if it is missing.
func (d Dialect) MoveIndex(live, _ string, cols []string) []string {
	return []string{d.CreateIndex(live, cols)}
}

// InList returns a condition matching rows whose cols equal one of n
// tuples of placeholders: (a, b) IN ((?, ?), …), or a IN (?, …).
func (d Dialect) InList(cols []string, n int) string {
	q := make([]string, len(cols))
	for i, c := range cols {
		q[i] = d.Quote(c)
	}
	tuple := strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ")
	lhs := strings.Join(q, ", ")
	if len(cols) > 1 {
		tuple, lhs = "("+tuple+")", "("+lhs+")"
	}
	return lhs + " IN (" + strings.TrimSuffix(strings.Repeat(tuple+", ", n), ", ") + ")"
}

// LogicalType returns the logical type a column of database type dbType
// (as information_schema.COLUMNS.COLUMN_TYPE spells it) was created for,
// as far as the database type tells: text columns hold decimals, text and
// JSON alike and report Text. ok is false for a type Ferry does not create.
// sqldest can use it to notice a widening that a crash interrupted (the
// layout was recorded, the ALTER did not run) and run it again.
func (Dialect) LogicalType(dbType string) (schema.Type, bool) {
	t := strings.ToLower(strings.TrimSpace(dbType))
	switch {
	case t == "tinyint(1)":
		return schema.Bool, true
	case strings.HasPrefix(t, "bigint"):
		return schema.Int, true
	case t == "double":
		return schema.Float, true
	case strings.HasPrefix(t, "datetime"):
		return schema.Timestamp, true
	case t == "json":
		return schema.JSON, true
	case strings.HasPrefix(t, "varchar"), strings.HasSuffix(t, "text"):
		return schema.Text, true
	}
	return schema.Unknown, false
}
