//go:build !unix

package sqlite

import (
	"context"
	"errors"
)

// fileLocker is not available on this system: runs are not protected
// against each other.
type fileLocker struct{ path string }

// TryLock fails: file locks need a unix system.
func (fileLocker) TryLock(context.Context, string) (func(), bool, error) {
	return nil, false, errors.New("stream locks need a unix system")
}
