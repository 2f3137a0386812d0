package engine

import (
	"time"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/schema"
	"github.com/ferry-dev/ferry/internal/source"
)

// Observer is told what a run does, as it happens: the CLI's progress
// display, metrics, a control plane and workers subscribe to it. Observe
// is called from the run's goroutines, possibly at once: it must be safe
// for concurrent use, return quickly and never call back into the run.
type Observer interface {
	Observe(Event)
}

// ObserverFunc adapts a function to Observer.
type ObserverFunc func(Event)

// Observe calls f.
func (f ObserverFunc) Observe(e Event) { f(e) }

// Event is one thing a run did. The concrete types are RunStarted,
// StreamStarted, PageFetched, Requested, Committed, DriftFound,
// StreamFinished and RunFinished.
type Event interface {
	// RunID is the run the event belongs to.
	Run() string
}

// Base carries what every event has.
type Base struct {
	RunID string
	At    time.Time
}

// Run returns the run's id.
func (b Base) Run() string { return b.RunID }

// RunStarted: a run began.
type RunStarted struct {
	Base
	Pipeline string
	Streams  []string
}

// StreamStarted: a stream began (again, after the database was back).
type StreamStarted struct {
	Base
	Stream, Table string
	Mode          dest.Mode
	// Resume is true when the stream continues a pass an earlier run
	// began.
	Resume bool
	// Attempt counts the stream's starts in this run from 1.
	Attempt int
}

// PageFetched: a page was converted to rows.
type PageFetched struct {
	Base
	Stream    string
	Partition string
	Records   int // records on the page
	Rows      int // rows made from them
	Rejected  int
	Filtered  int
	Last      bool // the partition's last page
}

// Requested: the source made a request (an HTTP attempt).
type Requested struct {
	Base
	source.Request
}

// Committed: rows and the state covering them became durable.
type Committed struct {
	Base
	Stream string
	// Rows is how many rows this commit made durable; Total how many of
	// the stream's rows are durable in this run.
	Rows, Total int64
	// Partitions is how many partition checkpoints the commit stored.
	Partitions int
}

// DriftFound: a table's layout changed (columns added or widened) or
// stopped being filled.
type DriftFound struct {
	Base
	Stream, Table string
	Changes       []schema.Change
}

// StreamFinished: a stream ended; Err is its typed error (nil on success).
type StreamFinished struct {
	Base
	Summary StreamSummary
	Err     error
}

// RunFinished: the run ended.
type RunFinished struct {
	Base
	Summary *Summary
	Err     error
}
