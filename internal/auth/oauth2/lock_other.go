//go:build !unix

package oauth2

import "os"

// tryLock is a no-op where flock(2) does not exist: runs of one pipeline
// that share a token store must not overlap there.
func tryLock(*os.File) (bool, error) { return true, nil }
