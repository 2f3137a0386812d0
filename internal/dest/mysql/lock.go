package mysql

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"

	"github.com/go-sql-driver/mysql"
)

// locker takes stream locks with GET_LOCK, each on a connection of its own
// (not the pool's, which would hand the connection, lock and all, to
// another statement). The server releases a lock when its session ends,
// so a run killed with SIGKILL leaves none behind. Lock names are at most
// 64 characters. GET_LOCK is server-wide: the name includes the database,
// so the same pipeline synced into two databases of one server runs in
// both.
type locker struct{ cfg *mysql.Config }

// TryLock takes the named lock without waiting.
func (l *locker) TryLock(ctx context.Context, key string) (func(), bool, error) {
	conn, err := mysql.NewConnector(l.cfg)
	if err != nil {
		return nil, false, err
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(1)
	c, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		return nil, false, err
	}
	sum := sha256.Sum256([]byte(l.cfg.DBName + "\x00" + key))
	key = "ferry_" + hex.EncodeToString(sum[:16])
	var got sql.NullInt64
	if err := c.QueryRowContext(ctx, "SELECT GET_LOCK(?, 0)", key).Scan(&got); err != nil {
		c.Close()
		db.Close()
		return nil, false, err
	}
	if !got.Valid || got.Int64 != 1 {
		c.Close()
		db.Close()
		if !got.Valid {
			return nil, false, fmt.Errorf("GET_LOCK(%s) failed", key)
		}
		return nil, false, nil
	}
	return func() {
		_, _ = c.ExecContext(context.Background(), "DO RELEASE_LOCK(?)", key)
		c.Close()
		db.Close()
	}, true, nil
}
