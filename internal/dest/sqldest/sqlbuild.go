package sqldest

import (
	"strings"

	"github.com/ferry-dev/ferry/internal/schema"
)

// QuoteList quotes identifiers and joins them with commas.
func QuoteList(d Dialect, names []string) string { return quoteList(d, names) }

// quoteList quotes and joins identifiers.
func quoteList(d Dialect, names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = d.Quote(n)
	}
	return strings.Join(q, ", ")
}

// IndexName names an index of table on cols, within maxLen bytes.
func IndexName(table string, cols []string, maxLen int) string {
	return schema.Truncate(schema.MetaPrefix+"ix_"+table+"_"+strings.Join(cols, "_"), table+"\x00"+strings.Join(cols, "\x00"), maxLen)
}

// InValues builds cols IN (…) over bound rows: a plain IN list for one
// column, row values with VALUES for several (SQLite, PostgreSQL,
// MariaDB ≥ 10.3).
func InValues(d Dialect, cols []string, rows int) string {
	var b strings.Builder
	n := 1
	if len(cols) == 1 {
		b.WriteString(d.Quote(cols[0]) + " IN (")
		for r := 0; r < rows; r++ {
			if r > 0 {
				b.WriteString(", ")
			}
			b.WriteString(d.Placeholder(n))
			n++
		}
		b.WriteString(")")
		return b.String()
	}
	b.WriteString("(" + quoteList(d, cols) + ") IN (VALUES ")
	for r := 0; r < rows; r++ {
		if r > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(")
		for c := range cols {
			if c > 0 {
				b.WriteString(", ")
			}
			b.WriteString(d.Placeholder(n))
			n++
		}
		b.WriteString(")")
	}
	b.WriteString(")")
	return b.String()
}
