package mysql

import "github.com/ferry-dev/ferry/internal/dest/sqldest"

var _ sqldest.ColumnReserver = Dialect{}

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
