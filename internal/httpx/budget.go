package httpx

import (
	"context"
	"errors"
	"slices"
	"sync"
)

// The bodies a client is reading at once share one budget of memory
// (Config.MaxBodyBytes): a body takes memory from it as it grows, not its
// cap up front, so ordinary pages go side by side, and gives it back when
// Do returns it. A body that needs memory others hold waits for it.
//
// Bodies that grow while they wait could wait for each other forever: two
// half-read bodies, each waiting for what the other holds. Waiters are
// served oldest request first, so the oldest always gets what it needs
// once the others are out of the way; when every body holding memory is
// waiting, the youngest of them gives its memory back and its attempt is
// made again (it does not count against Config.MaxAttempts), first
// waiting for as much memory as it had, so it does not take memory from
// the older ones again before they are done.

// errEvicted fails an attempt whose body gave its memory back to break a
// deadlock; the attempt is made again.
var errEvicted = errors.New("gave its memory back to an older response (all the memory responses may hold was in use)")

// errOverBudget is returned by grow for a body that would need more than
// the whole budget.
var errOverBudget = errors.New("response body larger than the memory budget")

// budget bounds the bytes that the bodies being read at once hold.
type budget struct {
	limit int64

	mu   sync.Mutex
	used int64
	peak int64 // the most used at once, for tests
	// onTake, if set (by tests), is called with b.mu held after memory
	// is granted.
	onTake  func(used int64)
	seq     uint64
	leases  map[*lease]bool // leases holding memory or waiting for some
	waiters []*lease        // oldest first
}

func newBudget(limit int64) *budget {
	return &budget{limit: limit, leases: map[*lease]bool{}}
}

// lease is the memory one Do call holds for the body of its current
// attempt. Its age is the Do call's.
type lease struct {
	b       *budget
	seq     uint64
	held    int64         // granted; b.mu guards it
	inUse   int64         // what the attempt's buffers take of held
	need    int64         // while waiting
	waiting bool          // in b.waiters
	ready   chan struct{} // told when granted or evicted
	evicted bool
}

// lease returns a lease younger than all earlier ones.
func (b *budget) lease() *lease {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seq++
	return &lease{b: b, seq: b.seq, ready: make(chan struct{}, 1)}
}

// use takes n more bytes for the attempt's buffers, from what l holds
// and does not use yet, else from the budget, waiting while others hold
// them. It fails with errOverBudget if l would hold more than the whole
// budget, with errEvicted if l must give its memory back to break a
// deadlock (the caller then calls release), and with ctx.Err() if ctx
// ends first.
func (l *lease) use(ctx context.Context, n int64) error {
	b := l.b
	b.mu.Lock()
	spare := l.held - l.inUse
	b.mu.Unlock()
	if n > spare {
		if err := l.reserve(ctx, n-spare); err != nil {
			return err
		}
	}
	b.mu.Lock()
	l.inUse += n
	b.mu.Unlock()
	return nil
}

// reserve takes n more bytes from the budget for l, without using them
// yet, waiting while others hold them; it fails as use does.
func (l *lease) reserve(ctx context.Context, n int64) error {
	b := l.b
	b.mu.Lock()
	if l.held+n > b.limit {
		b.mu.Unlock()
		return errOverBudget
	}
	if len(b.waiters) == 0 && b.used+n <= b.limit {
		l.take(n)
		b.mu.Unlock()
		return nil
	}
	l.need, l.waiting, l.evicted = n, true, false
	b.leases[l] = true
	i, _ := slices.BinarySearchFunc(b.waiters, l.seq, func(w *lease, seq uint64) int { return compareSeq(w.seq, seq) })
	b.waiters = slices.Insert(b.waiters, i, l)
	b.dispatch()
	b.mu.Unlock()

	select {
	case <-l.ready:
	case <-ctx.Done():
		b.mu.Lock()
		defer b.mu.Unlock()
		select {
		case <-l.ready: // granted or evicted meanwhile: the caller releases
		default:
			b.unwait(l)
			b.dispatch()
		}
		return ctx.Err()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if l.evicted {
		return errEvicted
	}
	return nil
}

// release gives back all l holds, and returns how much its buffers used.
func (l *lease) release() int64 {
	b := l.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if l.waiting {
		b.unwait(l)
	}
	used := l.inUse
	b.used -= l.held
	l.held, l.inUse = 0, 0
	delete(b.leases, l)
	b.dispatch()
	return used
}

// take grants n bytes to l; b.mu is held.
func (l *lease) take(n int64) {
	b := l.b
	b.used += n
	b.peak = max(b.peak, b.used)
	l.held += n
	b.leases[l] = true
	if b.onTake != nil {
		b.onTake(b.used)
	}
}

// unwait removes l from the waiters; b.mu is held.
func (b *budget) unwait(l *lease) {
	b.waiters = slices.DeleteFunc(b.waiters, func(w *lease) bool { return w == l })
	l.waiting = false
}

// dispatch grants memory to waiters, oldest first, while it lasts, and
// breaks a deadlock; b.mu is held.
func (b *budget) dispatch() {
	for len(b.waiters) > 0 {
		w := b.waiters[0]
		if b.used+w.need > b.limit {
			break
		}
		b.waiters = b.waiters[1:]
		w.waiting = false
		w.take(w.need)
		w.ready <- struct{}{}
	}
	if len(b.waiters) == 0 {
		return
	}
	// Deadlock: memory is held, and only by waiters. (Some is held, or the
	// first waiter would have got what it needs.)
	var victim *lease
	for l := range b.leases {
		if l.held == 0 {
			continue
		}
		if !l.waiting {
			return // it will finish or wait, and dispatch runs again
		}
		if victim == nil || compareSeq(l.seq, victim.seq) > 0 {
			victim = l
		}
	}
	if victim != nil {
		b.unwait(victim)
		victim.evicted = true
		victim.ready <- struct{}{}
	}
}

func compareSeq(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
