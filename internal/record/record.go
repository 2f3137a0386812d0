// Package record defines what flows through a Ferry pipeline: pages of raw
// JSON records as a source emits them, and chunks of typed, columnar rows
// as a destination writes them, each carrying the sync state that becomes
// true once it is committed.
//
// Records flow one way: source → converter → destination. A Page is what a
// source produced from one response; a Chunk is the same page converted to
// the destination table's layout. State travels inside them, so a
// destination commits rows and the state that covers them in one
// transaction.
package record

import "encoding/json"

// Op is what a row does to the destination table. Pull sources emit
// Upsert; push and change-data-capture sources also emit Delete.
//
// Change-data-capture sources may say more precisely what happened at the
// source with Insert and Update. Both are upserts to every destination
// that does not tell them apart (tables are written by key either way);
// destinations that call APIs use them to choose the request (create or
// update).
type Op uint8

// Row operations.
const (
	Upsert Op = iota // insert the row, or in dedup mode replace the row with the same key
	Delete           // remove the row with this key (dedup mode); appended as a tombstone otherwise
	Insert           // an upsert that was an insert at the source
	Update           // an upsert that was an update at the source
)

// String names the operation.
func (o Op) String() string {
	switch o {
	case Delete:
		return "delete"
	case Insert:
		return "insert"
	case Update:
		return "update"
	}
	return "upsert"
}

// Partition identifies a slice of a stream that keeps its own state: for a
// child stream, the records belonging to one parent record.
type Partition struct {
	// Key is a canonical, stable string for the partition: "" for a stream
	// without a parent, the JSON object of the parent's key values otherwise
	// (e.g. {"id":42}).
	Key string
	// Fields are copied onto every record of the partition (the parent's
	// key, under the column name the connector chose).
	Fields []Field
}

// Field is a named JSON value.
type Field struct {
	Name  string
	Value json.RawMessage
}

// Page is a batch of records produced by one source request (or, for a
// push source, one delivery; for a database source, one batch of rows).
type Page struct {
	// Stream names the stream the records belong to.
	Stream string
	// Partition is the partition the page belongs to.
	Partition *Partition
	// Records are the raw JSON values selected from the response, each
	// expected to be an object. They alias Body.
	Records [][]byte
	// Ops holds one operation per record; nil means every record is an
	// Upsert. A Delete record needs only its primary key fields.
	Ops []Op
	// Chunk, when set instead of Records, holds rows a source already has
	// typed (a database): it is converted to the table's layout without a
	// JSON round trip. Its Table names the source's columns and types.
	Chunk *Chunk
	// Ack, when set, is called exactly once: with nil after the commit
	// that made the page's rows (and the state covering them) durable, or
	// with the error that prevented it (the run failed or was cancelled
	// first). A push source answers its sender from Ack. It must return
	// quickly and must not call back into the engine.
	Ack func(error)
	// Rejects are records the source could not turn into records of the
	// stream (a declared schema they fail, a transformation that cannot
	// apply), with the reason; they are stored with the page's rows.
	Rejects []Reject
	// Flush asks for a commit as soon as the page is written, so that its
	// Position is durable at once even without rows (a source that started
	// a job on the server and must find it again after a crash).
	Flush bool
	// Body is the response body the records point into.
	Body []byte
	// Position is where reading resumes after this page, in the source's own
	// encoding. It is opaque to everything but the source.
	Position json.RawMessage
	// Last is true on the final page of the partition.
	Last bool
	// Number counts pages within the partition from 1.
	Number int
	// Request describes the request that produced the page with secrets
	// redacted (e.g. "GET https://api.example.com/v1/orders?page=3"), for
	// messages.
	Request string
	// FetchedAt is when the response arrived, in microseconds since the epoch.
	FetchedAt int64
}

// Checkpoint is sync state that becomes true once every row before it is
// committed. A destination stores each checkpoint's State under its
// partition key, in the same transaction as the rows.
type Checkpoint struct {
	Stream    string
	Partition string
	State     json.RawMessage
}
