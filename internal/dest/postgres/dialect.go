package postgres

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ferry-dev/ferry/internal/dest/sqldest"
	"github.com/ferry-dev/ferry/internal/schema"
)

// Dialect spells SQL for PostgreSQL, for tables in one schema.
type Dialect struct {
	// Schema holds every table Ferry writes, its own included.
	Schema string
}

var (
	_ sqldest.Dialect     = Dialect{}
	_ sqldest.TypeChecker = Dialect{}
)

// Name returns "postgres".
func (Dialect) Name() string { return "postgres" }

// Quote quotes an identifier.
func (Dialect) Quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// Table returns "schema"."name".
func (d Dialect) Table(name string) string { return d.Quote(d.Schema) + "." + d.Quote(name) }

// Placeholder returns $i.
func (Dialect) Placeholder(i int) string { return fmt.Sprintf("$%d", i) }

// MaxIdentLen returns 63: PostgreSQL silently truncates longer names
// (NAMEDATALEN - 1 bytes).
func (Dialect) MaxIdentLen() int { return 63 }

// ColumnType spells a logical type. Columns of unknown type (only nulls
// seen so far) are text until a value shows their type.
func (Dialect) ColumnType(t schema.Type, _ bool) string {
	switch t {
	case schema.Bool:
		return "boolean"
	case schema.Int:
		return "bigint"
	case schema.Float:
		return "double precision"
	case schema.Decimal:
		return "numeric"
	case schema.Timestamp:
		return "timestamp with time zone"
	case schema.JSON:
		return "jsonb"
	}
	return "text"
}

// Holds reports whether a column of database type dbType (as Columns
// spells it) can store values of logical type t as Ferry writes them.
func (Dialect) Holds(dbType string, t schema.Type) bool {
	// Drop type modifiers: numeric(10,2), character varying(20),
	// timestamp(3) with time zone.
	base := dbType
	for {
		i := strings.IndexByte(base, '(')
		j := strings.IndexByte(base, ')')
		if i < 0 || j < i {
			break
		}
		base = base[:i] + base[j+1:]
	}
	base = strings.TrimSpace(base)
	switch t {
	case schema.Unknown:
		return true
	case schema.Bool:
		return base == "boolean"
	case schema.Int:
		return base == "bigint"
	case schema.Float:
		return base == "double precision"
	case schema.Decimal:
		return base == "numeric"
	case schema.Timestamp:
		return base == "timestamp with time zone" || base == "timestamp without time zone"
	case schema.Text:
		return base == "text" || base == "character varying" || base == "character"
	case schema.JSON:
		return base == "jsonb" || base == "json"
	}
	return false
}

// TransactionalDDL is true: PostgreSQL rolls back CREATE and ALTER.
func (Dialect) TransactionalDDL() bool { return true }

// Columns lists a table's columns in the target schema. A table without
// columns exists.
func (d Dialect) Columns(ctx context.Context, q sqldest.Queryer, table string) (map[string]string, bool, error) {
	rows, err := q.Query(ctx, `SELECT a.attname, format_type(a.atttypid, a.atttypmod)
		FROM pg_catalog.pg_class c
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
		WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')`, d.Schema, table)
	if err != nil {
		return nil, false, err
	}
	defer rows.Close()
	cols := map[string]string{}
	exists := false
	for rows.Next() {
		var name, typ *string
		if err := rows.Scan(&name, &typ); err != nil {
			return nil, false, err
		}
		exists = true
		if name != nil && typ != nil {
			cols[*name] = *typ
		}
	}
	if err := rows.Close(); err != nil {
		return nil, false, err
	}
	return cols, exists, nil
}

// AddColumn adds a column.
func (d Dialect) AddColumn(table string, c schema.Column) string {
	return fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s %s", d.Table(table), d.Quote(c.Name), d.ColumnType(c.Type, false))
}

// Widen changes a column's type in place, converting its values.
func (d Dialect) Widen(table string, next *schema.Table, col string, from schema.Type) []string {
	c := next.Column(col)
	if c == nil {
		return nil
	}
	return []string{fmt.Sprintf("ALTER TABLE %s ALTER COLUMN %s TYPE %s USING %s",
		d.Table(table), d.Quote(col), d.ColumnType(c.Type, false), convert(d.Quote(col), from, c.Type))}
}

// convert returns the SQL expression turning a value of type from into to,
// so that existing rows read as new rows of type to would have been
// written.
func convert(expr string, from, to schema.Type) string {
	switch {
	case to == schema.Float:
		return expr + "::double precision"
	case to == schema.Decimal && from == schema.Float:
		// Through the float's shortest text (extra_float_digits is 1 on
		// Ferry's connections), so 0.1 stays 0.1 and not
		// 0.1000000000000000055511151231257827.
		return "(" + expr + "::text)::numeric"
	case to == schema.Decimal:
		return expr + "::numeric"
	case to == schema.Text && from == schema.Bool:
		return "CASE " + expr + " WHEN true THEN 'true' WHEN false THEN 'false' END"
	case to == schema.Text && from == schema.Timestamp:
		// RFC 3339 in UTC, with as many fraction digits as needed, as
		// Ferry renders timestamps as text.
		utc := "(" + expr + " AT TIME ZONE 'UTC')"
		return "to_char(" + utc + `, 'YYYY-MM-DD"T"HH24:MI:SS') || COALESCE(NULLIF('.' || rtrim(to_char(` + utc + ", 'US'), '0'), '.'), '') || 'Z'"
	case to == schema.Text:
		return expr + "::text"
	}
	return expr + "::" + Dialect{}.ColumnType(to, false)
}

func (d Dialect) uniqueName(table string) string {
	return schema.Truncate(schema.MetaPrefix+"pk_"+table, table, d.MaxIdentLen())
}

// HasUnique reports whether the index CreateUnique makes exists.
func (d Dialect) HasUnique(ctx context.Context, q sqldest.Queryer, table string) (bool, error) {
	rows, err := q.Query(ctx, "SELECT 1 FROM pg_indexes WHERE schemaname = $1 AND tablename = $2 AND indexname = $3", d.Schema, table, d.uniqueName(table))
	if err != nil {
		return false, err
	}
	defer rows.Close()
	found := rows.Next()
	return found, rows.Err()
}

// CreateUnique creates the index enforcing the primary key.
func (d Dialect) CreateUnique(table string, cols []string) string {
	return fmt.Sprintf("CREATE UNIQUE INDEX IF NOT EXISTS %s ON %s (%s)", d.Quote(d.uniqueName(table)), d.Table(table), quoteAll(d, cols))
}

// Upsert builds a one-row INSERT … ON CONFLICT DO UPDATE.
func (d Dialect) Upsert(table string, cols, key []string) string {
	ph := make([]string, len(cols))
	for i := range cols {
		ph[i] = d.Placeholder(i + 1)
	}
	stmt := fmt.Sprintf("INSERT INTO %s (%s) VALUES (%s)", d.Table(table), quoteAll(d, cols), strings.Join(ph, ", "))
	if len(key) == 0 {
		return stmt
	}
	var set []string
	for _, c := range cols {
		if !slices.Contains(key, c) {
			set = append(set, fmt.Sprintf("%s = EXCLUDED.%s", d.Quote(c), d.Quote(c)))
		}
	}
	if len(set) == 0 {
		return stmt + fmt.Sprintf(" ON CONFLICT (%s) DO NOTHING", quoteAll(d, key))
	}
	return stmt + fmt.Sprintf(" ON CONFLICT (%s) DO UPDATE SET %s", quoteAll(d, key), strings.Join(set, ", "))
}

// Swap replaces live with staging and renames staging's unique index so
// the live table's index keeps a stable name.
func (d Dialect) Swap(live, staging string, _ bool) []string {
	return []string{
		d.DropTable(live),
		fmt.Sprintf("ALTER TABLE %s RENAME TO %s", d.Table(staging), d.Quote(live)),
		fmt.Sprintf("ALTER INDEX IF EXISTS %s.%s RENAME TO %s", d.Quote(d.Schema), d.Quote(d.uniqueName(staging)), d.Quote(d.uniqueName(live))),
	}
}

// MoveIndex renames a staging table's index to the live table's name
// (no rebuild), creating it if the staging table had none.
func (d Dialect) MoveIndex(live, staging string, cols []string) []string {
	from := sqldest.IndexName(staging, cols, d.MaxIdentLen())
	to := sqldest.IndexName(live, cols, d.MaxIdentLen())
	return []string{
		fmt.Sprintf("ALTER INDEX IF EXISTS %s.%s RENAME TO %s", d.Quote(d.Schema), d.Quote(from), d.Quote(to)),
		fmt.Sprintf("CREATE INDEX IF NOT EXISTS %s ON %s (%s)", d.Quote(to), d.Table(live), quoteAll(d, cols)),
	}
}

// DropTable drops a table if it exists.
func (d Dialect) DropTable(table string) string { return "DROP TABLE IF EXISTS " + d.Table(table) }

// Time returns t in UTC for a timestamptz parameter.
func (Dialect) Time(t time.Time) any { return t.UTC() }

// Transient reports errors worth retrying: the connection failed or was
// cut, the server is starting or shutting down or out of connection
// slots, or the transaction lost a serialization conflict or deadlock.
// Errors in a statement or its data, and cancelled contexts, are not.
func (Dialect) Transient(err error) bool { return transient(err) }

func transient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || tlsFailure(err) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "57P01", // admin_shutdown
			"57P02", // crash_shutdown
			"57P03", // cannot_connect_now (starting up, shutting down, recovering)
			"53300", // too_many_connections
			"40001", // serialization_failure
			"40P01": // deadlock_detected
			return true
		}
		return strings.HasPrefix(pgErr.Code, "08") // connection exceptions
	}
	// SafeToRetry means nothing reached the server; with the TLS failures
	// excluded above, that is a connection that failed or was lost.
	if pgconn.SafeToRetry(err) || errors.Is(err, pgconn.ErrConnClosed) {
		return true
	}
	for _, e := range []error{syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED, syscall.EPIPE, syscall.ETIMEDOUT, syscall.EHOSTUNREACH, syscall.ENETUNREACH, io.EOF, io.ErrUnexpectedEOF, net.ErrClosed} {
		if errors.Is(err, e) {
			return true
		}
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return dnsErr.IsTemporary || dnsErr.IsTimeout
	}
	var netErr net.Error
	return errors.As(err, &netErr) && netErr.Timeout()
}

// tlsFailure reports an error in setting up TLS: the server's certificate
// was refused, or the server does not speak TLS. Retrying cannot fix it.
func tlsFailure(err error) bool {
	var (
		verify   *tls.CertificateVerificationError
		header   tls.RecordHeaderError
		alert    tls.AlertError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
	)
	return errors.As(err, &verify) || errors.As(err, &header) || errors.As(err, &alert) ||
		errors.As(err, &unknown) || errors.As(err, &hostname) || errors.As(err, &invalid)
}
