package mysql

import "github.com/ferry-dev/ferry/internal/dest/sqldest"

var (
	_ sqldest.ColumnReserver = Dialect{}
	_ sqldest.ColumnLimiter  = Dialect{}
)

// ReservedColumns returns the column names InnoDB refuses whatever the
// case and even quoted ("Incorrect column name 'db_row_id'"): its hidden
// columns and the full-text document id (which only a BIGINT UNSIGNED NOT
// NULL column may take); and my_row_id, the generated invisible primary key
// of MySQL 8.0.30+ with sql_generate_invisible_primary_key on, which a
// table without a primary key (an append table) gets. MariaDB's
// row_start and row_end are only taken in system-versioned tables, which
// Ferry does not create.
func (Dialect) ReservedColumns() []string {
	return []string{"db_row_id", "db_trx_id", "db_roll_ptr", "fts_doc_id", "my_row_id"}
}

// MaxColumns returns 383: with InnoDB's default 16 KB pages and
// innodb_strict_mode on (the default), CREATE TABLE refuses a 384th
// LONGTEXT or JSON column ("Row size too large"), each counting for its
// 20-byte off-page pointer against the 8126 bytes a row may take in its
// page. Narrower types allow more (997 BIGINT columns, 1017 BOOLEAN: InnoDB
// allows no more than 1017 columns of any type); text and JSON, Ferry's
// most common columns, bind first. The server's own 4096-column and
// 65,535-byte row limits are never reached before these. A widening that
// goes through a temporary column (bool or timestamp to text) still fits
// at 383.
//
// A row must also fit in its page when written: text values of up to 40
// bytes stay in the row (with a length byte each), longer ones move
// off-page. 383 text values fit when each is at most 20 bytes or longer
// than 40; 197 values of 40 bytes each do not.
func (Dialect) MaxColumns() int { return 383 }
