// Package queue is the webhook source's durable queue: deliveries are
// appended and made durable before the sender gets its 2xx, read by
// stream in order, acknowledged once applied, kept for a retention and
// replayed on demand.
//
// Queue is the contract; SQLite is the local implementation (one file in
// WAL mode, one writer goroutine that groups every waiting append into one
// transaction, so concurrent deliveries share one fsync). A JetStream
// implementation can stand behind the same interface.
package queue

import (
	"context"
	"errors"
	"time"
)

// Status says what kind of delivery an event is.
type Status uint8

// Event statuses.
const (
	// Accepted is a verified delivery with a JSON body.
	Accepted Status = iota
	// Malformed is a verified delivery whose body is not JSON: it is kept
	// so that it lands in the rejected records, and answered 400.
	Malformed
)

// Event is one delivery as kept.
type Event struct {
	// Seq is the event's position in the queue, assigned by Append;
	// events of one stream are read in Seq order. Replay gives events new,
	// higher positions.
	Seq uint64
	// ID identifies the event for de-duplication: the sender's event id,
	// or a digest of the body when the sender gives none.
	ID string
	// Stream is the stream the event was routed to ("" when none takes
	// it: it is kept, and applied by a replay after a routing change).
	Stream string
	// Type is the event's type (customer.created), "" when unknown.
	Type string
	// Path is the URL path it was delivered to.
	Path string
	// ReceivedAt is when it arrived.
	ReceivedAt time.Time
	Status     Status
	// Body is the raw body, exactly as received and verified.
	Body []byte
}

// Filter selects events for Replay and List.
type Filter struct {
	// Stream limits to one stream ("": every stream).
	Stream string
	// Since limits to events received at or after it (zero: all kept).
	Since time.Time
}

// Queue keeps deliveries until they are applied and for a retention
// after. Its methods are safe for concurrent use.
type Queue interface {
	// Append stores events and returns once they are durable (on stable
	// storage: after an fsync). It sets each new event's Seq; dup[i] is
	// true when an event with events[i].ID was already kept (it is not
	// stored again, and its Seq is left 0). On error nothing of the call
	// is known to be durable and the sender must be refused.
	Append(ctx context.Context, events []*Event) (dup []bool, err error)
	// Read returns up to limit events of stream with Seq > after, in Seq
	// order, and an empty slice when there are none yet.
	Read(ctx context.Context, stream string, after uint64, limit int) ([]Event, error)
	// Notify returns a channel closed at the next Append that stores an
	// event (readers wait on it instead of polling).
	Notify() <-chan struct{}
	// Ack records that the events of stream up to Seq upTo are applied.
	// It returns at once; the position is saved with the next write, so a
	// crash may forget the last acknowledgements (the engine's state,
	// committed with the rows, is what a run resumes from).
	Ack(stream string, upTo uint64)
	// Acked returns the saved acknowledged position of stream (0: none).
	Acked(ctx context.Context, stream string) (uint64, error)
	// Depth counts the events of stream not yet acknowledged.
	Depth(ctx context.Context, stream string) (int64, error)
	// Prune deletes the acknowledged events received before cutoff and
	// returns how many. Events not yet applied are never pruned.
	Prune(ctx context.Context, cutoff time.Time) (int64, error)
	// Replay moves the kept events that f selects behind every other, in
	// their order, so that readers apply them again; routeTo, when set,
	// re-routes each (a connector change), returning its stream. It
	// returns how many events will be applied again.
	Replay(ctx context.Context, f Filter, routeTo func(Event) string) (int64, error)
	// List returns up to limit of the latest events f selects, newest
	// first.
	List(ctx context.Context, f Filter, limit int) ([]Event, error)
	// Close stops the writer, saving the last acknowledgements.
	Close() error
}

// ErrClosed is returned by a closed queue.
var ErrClosed = errors.New("the webhook queue is closed")
