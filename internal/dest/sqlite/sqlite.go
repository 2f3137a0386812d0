// Package sqlite is the SQLite destination, Ferry's embedded default
// (pure Go, via modernc.org/sqlite). The database is opened in WAL mode
// with full fsync; writes go through one connection at a time, reads
// (state lookups, users' queries) are never blocked.
//
// Types: booleans and integers are INTEGER, floats REAL, and timestamps
// TEXT in a fixed-width RFC 3339 UTC form (2024-05-01T12:30:00.000000Z)
// that sorts chronologically and that SQLite's date functions read.
// Decimals stay TEXT so no digit is lost; JSON is TEXT.
package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/dest/sqldest"
	"github.com/ferry-dev/ferry/internal/schema"
)

func init() {
	dest.Register("sqlite", "An SQLite database file, embedded: nothing to run.", Open)
}

// Config is the sqlite destination's section of a pipeline file.
type Config struct {
	// Path is the database file, relative to the pipeline file; created
	// with its directory if missing.
	Path string `yaml:"path" required:"true" min:"1" doc:"Database file, relative to the pipeline file; created if missing."`
	// TablePrefix is put before every table name.
	TablePrefix string `yaml:"table_prefix,omitempty" doc:"Put before every table name."`
}

// Declare says what the destination can do: every mode, its own state,
// and the prefix of its table names.
func (c *Config) Declare() dest.Declaration { return dest.Declaration{TablePrefix: c.TablePrefix} }

// TimeLayout is how timestamps are stored.
const TimeLayout = "2006-01-02T15:04:05.000000Z"

// Open opens the database file (creating it, unless opts.ReadOnly).
func Open(ctx context.Context, cfg *Config, opts dest.Options) (dest.Destination, error) {
	path := cfg.Path
	if path == "" {
		return nil, fmt.Errorf("sqlite destination needs path")
	}
	if !filepath.IsAbs(path) && opts.Dir != "" {
		path = filepath.Join(opts.Dir, path)
	}
	var db *sql.DB
	var err error
	if opts.ReadOnly {
		if _, serr := os.Stat(path); serr != nil {
			return nil, fmt.Errorf("sqlite: %w", serr)
		}
		db, err = OpenReadOnly(path)
	} else {
		if dir := filepath.Dir(path); dir != "" {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, fmt.Errorf("sqlite: create directory for %s: %w", path, err)
			}
		}
		db, err = OpenDB(path)
	}
	if err != nil {
		return nil, err
	}
	d, err := sqldest.New(ctx, sqldest.Config{DB: &sqldest.StdDB{DB: db, Serialize: true}, Dialect: Dialect{}, Prefix: cfg.TablePrefix, ReadOnly: opts.ReadOnly, Locker: fileLocker{path: path}})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite %s: %w", path, err)
	}
	return d, nil
}

// OpenDB opens a database file with Ferry's settings.
func OpenDB(path string) (*sql.DB, error) {
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "busy_timeout(30000)")
	q.Add("_pragma", "foreign_keys(OFF)")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(4)
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	return db, nil
}

// OpenReadOnly opens an existing database file for reading only: nothing
// is created, not even a journal mode is set, and every statement that
// would write fails.
func OpenReadOnly(path string) (*sql.DB, error) {
	q := url.Values{}
	q.Set("mode", "ro")
	q.Add("_pragma", "busy_timeout(30000)")
	q.Add("_pragma", "query_only(true)")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(4)
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	return db, nil
}

// Dialect spells SQL for SQLite.
type Dialect struct{}

var _ sqldest.Dialect = Dialect{}

// Name returns "sqlite".
func (Dialect) Name() string { return "sqlite" }

// Quote quotes an identifier.
func (Dialect) Quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// Table quotes a table name.
func (d Dialect) Table(name string) string { return d.Quote(name) }

// Placeholder returns ?.
func (Dialect) Placeholder(int) string { return "?" }

// MaxIdentLen returns a generous limit: SQLite has none, but names that
// long help nobody.
func (Dialect) MaxIdentLen() int { return 128 }

// ColumnType spells a logical type.
func (Dialect) ColumnType(t schema.Type, _ bool) string {
	switch t {
	case schema.Bool, schema.Int:
		return "INTEGER"
	case schema.Float:
		return "REAL"
	}
	return "TEXT"
}

// Holds reports whether a column declared dbType stores type t without
// SQLite's type affinity changing the values.
func (d Dialect) Holds(dbType string, t schema.Type) bool {
	return strings.EqualFold(strings.TrimSpace(dbType), d.ColumnType(t, false))
}

// TransactionalDDL is true: SQLite rolls back schema changes.
func (Dialect) TransactionalDDL() bool { return true }

// Columns lists a table's columns.
func (Dialect) Columns(ctx context.Context, q sqldest.Queryer, table string) (map[string]string, bool, error) {
	return sqldest.ColumnsOf(ctx, q, "SELECT name, type FROM pragma_table_info(?)", table)
}

// AddColumn adds a column.
func (d Dialect) AddColumn(table string, c schema.Column) string {
	return fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s %s", d.Table(table), d.Quote(c.Name), d.ColumnType(c.Type, false))
}

// Widen rebuilds the table: SQLite cannot change a column's type, and its
// type affinity would turn numeric-looking text back into numbers.
func (d Dialect) Widen(table string, next *schema.Table, col string, from schema.Type) []string {
	tmp := schema.Truncate(schema.MetaPrefix+"rebuild_"+table, table, d.MaxIdentLen())
	defs := sqldest.ColumnDefs(d, next)
	var sel, names []string
	for _, c := range next.Columns {
		names = append(names, d.Quote(c.Name))
		expr := d.Quote(c.Name)
		if c.Name == col {
			expr = convert(expr, from, c.Type)
		}
		sel = append(sel, expr)
	}
	return []string{
		d.DropTable(tmp),
		fmt.Sprintf("CREATE TABLE %s (%s)", d.Table(tmp), strings.Join(defs, ", ")),
		fmt.Sprintf("INSERT INTO %s (%s) SELECT %s FROM %s", d.Table(tmp), strings.Join(names, ", "), strings.Join(sel, ", "), d.Table(table)),
		fmt.Sprintf("DROP TABLE %s", d.Table(table)),
		fmt.Sprintf("ALTER TABLE %s RENAME TO %s", d.Table(tmp), d.Table(table)),
	}
}

// convert returns the SQL expression turning a value of type from into to.
func convert(expr string, from, to schema.Type) string {
	switch {
	case to == schema.Float:
		return "CAST(" + expr + " AS REAL)"
	case from == schema.Bool:
		return "CASE " + expr + " WHEN 1 THEN 'true' WHEN 0 THEN 'false' END"
	case from == schema.Float:
		// Whole numbers without ".0", as the source most likely wrote them;
		// others in SQLite's 15-digit form.
		return "CASE WHEN " + expr + " = CAST(" + expr + " AS INTEGER) AND abs(" + expr + ") < 1e15 THEN CAST(CAST(" + expr + " AS INTEGER) AS TEXT) ELSE CAST(" + expr + " AS TEXT) END"
	case from == schema.Int:
		return "CAST(" + expr + " AS TEXT)"
	}
	return expr
}

func (d Dialect) uniqueName(table string) string {
	return schema.Truncate(schema.MetaPrefix+"pk_"+table, table, d.MaxIdentLen())
}

// CreateUnique creates the index enforcing the primary key.
func (d Dialect) CreateUnique(table string, cols []string) string {
	return fmt.Sprintf("CREATE UNIQUE INDEX IF NOT EXISTS %s ON %s (%s)", d.Quote(d.uniqueName(table)), d.Table(table), sqldest.QuoteList(d, cols))
}

// Upsert builds a one-row upsert.
func (d Dialect) Upsert(table string, cols, key []string) string {
	return upsert(d, table, cols, key, 1, "")
}

// upsert builds INSERT … VALUES (…)×rows ON CONFLICT (key) DO UPDATE, or a
// plain INSERT when key is empty. where guards the update.
func upsert(d Dialect, table string, cols, key []string, rows int, where string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "INSERT INTO %s (%s) VALUES ", d.Table(table), sqldest.QuoteList(d, cols))
	row := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ") + ")"
	for i := 0; i < rows; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(row)
	}
	if len(key) == 0 {
		return b.String()
	}
	kq := make([]string, len(key))
	for i, k := range key {
		kq[i] = d.Quote(k)
	}
	fmt.Fprintf(&b, " ON CONFLICT (%s) DO ", strings.Join(kq, ", "))
	var set []string
	for _, c := range cols {
		isKey := false
		for _, k := range key {
			isKey = isKey || k == c
		}
		if !isKey {
			set = append(set, fmt.Sprintf("%s = excluded.%s", d.Quote(c), d.Quote(c)))
		}
	}
	if len(set) == 0 {
		b.WriteString("NOTHING")
		return b.String()
	}
	b.WriteString("UPDATE SET " + strings.Join(set, ", "))
	if where != "" {
		b.WriteString(" WHERE " + where)
	}
	return b.String()
}

// Swap replaces live with staging.
func (d Dialect) Swap(live, staging string, liveExists bool) []string {
	return []string{
		d.DropTable(live),
		fmt.Sprintf("ALTER TABLE %s RENAME TO %s", d.Table(staging), d.Table(live)),
		fmt.Sprintf("DROP INDEX IF EXISTS %s", d.Quote(d.uniqueName(staging))),
	}
}

// DropTable drops a table if it exists.
func (d Dialect) DropTable(table string) string { return "DROP TABLE IF EXISTS " + d.Table(table) }

// Transient reports SQLite errors worth retrying: the database is locked
// by another process beyond the busy timeout.
func (Dialect) Transient(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	return strings.Contains(msg, "SQLITE_BUSY") || strings.Contains(msg, "database is locked")
}

// Time formats a time for a Timestamp column.
func (Dialect) Time(t time.Time) any { return t.UTC().Format(TimeLayout) }
