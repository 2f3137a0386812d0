//go:build unix

package oauth2

import (
	"os"

	"golang.org/x/sys/unix"
)

// tryLock takes the exclusive flock(2) lock of f without waiting; the
// kernel releases it when f is closed or the process dies.
func tryLock(f *os.File) (bool, error) {
	err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	switch err {
	case nil:
		return true, nil
	case unix.EWOULDBLOCK, unix.EINTR:
		return false, nil
	}
	return false, err
}
