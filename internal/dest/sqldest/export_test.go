package sqldest

import "time"

// WaitForEndedHolders makes Lock give up on a live holder after patience
// and call f when it waits on for one that has ended, until the test ends.
func WaitForEndedHolders(patience time.Duration, f func(pipeline, stream string)) (restore func()) {
	old, oldHook := lockPatience, onEndedHolder
	lockPatience, onEndedHolder = patience, f
	return func() { lockPatience, onEndedHolder = old, oldHook }
}
