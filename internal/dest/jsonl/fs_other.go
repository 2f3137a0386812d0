//go:build !unix

package jsonl

import (
	"errors"
	"os"
)

// errLocked reports a file another open holds the lock of.
var errLocked = errors.New("locked")

// tryLock does nothing: without flock(2), two runs writing one table are
// not kept apart (the state store's stream locks still keep apart the runs
// of one pipeline).
func tryLock(*os.File) error { return nil }

// lock does nothing (see tryLock).
func lock(*os.File) error { return nil }

// syncDir does nothing: directories cannot be synced here.
func syncDir(string) error { return nil }

// writable reports whether dir is a directory (permissions are not
// checked here).
func writable(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return errors.New("not a directory")
	}
	return nil
}
