//go:build unix

package sqlite

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// fileLocker takes stream locks as flock(2) locks on one small file per
// lock, in a directory beside the database (<db>-ferry-locks/). The kernel
// releases a lock when its file is closed or its process dies, so a run
// killed with SIGKILL leaves no stale lock; two opens of the same file
// exclude each other even within one process.
type fileLocker struct{ path string }

// TryLock takes the lock named key without waiting.
func (l fileLocker) TryLock(_ context.Context, key string) (func(), bool, error) {
	dir := l.path + "-ferry-locks"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, false, fmt.Errorf("create the lock directory: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, key), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, false, fmt.Errorf("open the lock file: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if err == unix.EWOULDBLOCK {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, true, nil
}
