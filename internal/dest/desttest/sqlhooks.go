package desttest

import (
	"context"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/dest/sqldest"
	"github.com/ferry-dev/ferry/internal/schema"
)

// SQLOf returns the SQL hooks of a destination built on sqldest;
// indexQuery lists a table's indexes as (name, comma-separated columns).
// It panics when d is not a sqldest destination.
func SQLOf(d dest.Destination, indexQuery func(table string) string) SQL {
	return sqlHooks{d: d.(*sqldest.Destination), indexes: indexQuery}
}

type sqlHooks struct {
	d       *sqldest.Destination
	indexes func(string) string
}

func (h sqlHooks) Exec(ctx context.Context, stmt string) error { return h.d.DB().Exec(ctx, stmt) }
func (h sqlHooks) Quote(ident string) string                   { return h.d.Dialect().Quote(ident) }
func (h sqlHooks) Table(name string) string                    { return h.d.Dialect().Table(name) }
func (h sqlHooks) ColumnType(t schema.Type) string             { return h.d.Dialect().ColumnType(t, false) }
func (h sqlHooks) StagingName(table string) string             { return sqldest.StagingName(h.d.Dialect(), table) }
func (h sqlHooks) IndexQuery(table string) string              { return h.indexes(table) }
func (h sqlHooks) TypeChecks() bool {
	_, ok := h.d.Dialect().(sqldest.TypeChecker)
	return ok
}
