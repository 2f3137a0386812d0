package postgres

import (
	"context"
	"fmt"
	"hash/fnv"

	"github.com/ferry-dev/ferry/internal/dest/sqldest"
	"github.com/jackc/pgx/v5"
)

// locker takes stream locks as session-level advisory locks, each on a
// connection of its own (not the pool's, so that holding locks never
// starves the writers). The server releases a lock when its connection
// ends, so a run killed with SIGKILL leaves none behind.
//
// Advisory locks are database-wide: the key includes the schema, so the
// same pipeline synced into two schemas of one database runs in both.
type locker struct {
	cc     *pgx.ConnConfig
	schema string
}

// lockID maps a lock name to the advisory lock's bigint key.
func lockID(key string) int64 {
	h := fnv.New64a()
	h.Write([]byte(key))
	return int64(h.Sum64())
}

// TryLock takes the advisory lock of key without waiting.
func (l *locker) TryLock(ctx context.Context, key string) (func(), bool, error) {
	conn, err := pgx.ConnectConfig(ctx, l.cc.Copy())
	if err != nil {
		return nil, false, err
	}
	id := lockID(l.schema + "\x00" + key)
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", id).Scan(&ok); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, false, err
	}
	if !ok {
		conn.Close(context.WithoutCancel(ctx))
		return nil, false, nil
	}
	return func() {
		// Closing the session releases the lock; unlocking first makes it
		// immediate even if the close is slow.
		bg := context.Background()
		_, _ = conn.Exec(bg, "SELECT pg_advisory_unlock($1)", id)
		conn.Close(bg)
	}, true, nil
}

// Check proves, without writing, that a run could write: the schema
// exists and the user may create tables in it, or it does not and the
// user may create it.
func (d Dialect) Check(ctx context.Context, q sqldest.DB) (string, error) {
	rows, err := q.Query(ctx, `SELECT current_user, current_database(),
		EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1),
		COALESCE((SELECT has_schema_privilege(current_user, $1, 'CREATE') WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)), false),
		has_database_privilege(current_user, current_database(), 'CREATE')`, d.schema())
	if err != nil {
		return "", err
	}
	defer rows.Close()
	var user, dbName string
	var exists, schemaCreate, dbCreate bool
	if rows.Next() {
		if err := rows.Scan(&user, &dbName, &exists, &schemaCreate, &dbCreate); err != nil {
			return "", err
		}
	}
	if err := rows.Err(); err != nil {
		return "", err
	}
	switch {
	case exists && !schemaCreate:
		return "", fmt.Errorf("user %s may not create tables in schema %q of database %s: GRANT CREATE ON SCHEMA %s TO %s", user, d.schema(), dbName, d.Quote(d.schema()), d.Quote(user))
	case !exists && !dbCreate:
		return "", fmt.Errorf("schema %q does not exist in database %s and user %s may not create it: CREATE SCHEMA %s, or GRANT CREATE ON DATABASE %s TO %s", d.schema(), dbName, user, d.Quote(d.schema()), d.Quote(dbName), d.Quote(user))
	case exists:
		return fmt.Sprintf("database %s as %s: schema %q exists, tables may be created", dbName, user, d.schema()), nil
	}
	return fmt.Sprintf("database %s as %s: schema %q will be created", dbName, user, d.schema()), nil
}

// schema returns the target schema.
func (d Dialect) schema() string {
	if d.Schema == "" {
		return DefaultSchema
	}
	return d.Schema
}
