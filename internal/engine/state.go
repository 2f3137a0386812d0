package engine

import (
	"encoding/json"
	"fmt"

	"github.com/ferry-dev/ferry/internal/cursor"
	"github.com/ferry-dev/ferry/internal/source"
)

// PartitionState is the sync state of one partition (or of a stream
// without partitions), stored as JSON in the state store, in the same
// transaction as the rows it covers when the store is the destination's.
// Its JSON shape is persisted: add fields, never rename them
// (state_test.go holds golden copies).
type PartitionState struct {
	// Cursor is the high-water mark of the cursor field over every
	// completed pass, as the source wrote it.
	Cursor string `json:"cursor,omitempty"`
	// Seen holds the identities (hex) of the records already synced whose
	// cursor equals Cursor, so the next sync, which reads from Cursor
	// inclusive, skips exactly those.
	Seen []string `json:"seen,omitempty"`
	// SeenKeys is true when the identities in Seen and MaxSeen are hashes
	// of primary keys; states written before it hold hashes of whole
	// records, which are still recognised.
	SeenKeys bool `json:"seen_keys,omitempty"`
	// Pass is the pass in progress, present only between a pass's first
	// commit and its end; a run that finds it resumes the pass.
	Pass *Pass `json:"pass,omitempty"`
	// Completed is the id of the last stream pass that read this partition
	// to the end (child streams), so a resumed pass can skip it.
	Completed string `json:"completed,omitempty"`
	// Filled lists the columns the last run that wrote rows gave values to
	// (stream-level entry only), to report columns the data stopped filling.
	Filled []string `json:"filled,omitempty"`
	// ParentCursor is, for a child stream that follows its parent
	// (stream-level entry only), the largest parent cursor its last
	// completed pass read: the next pass reads the parents from there.
	ParentCursor string `json:"parent_cursor,omitempty"`
	// ParentSeen holds the keys (hashed, hex) of the parents at
	// ParentCursor whose children that pass read.
	ParentSeen []string `json:"parent_seen,omitempty"`
}

// Pass is a read of a stream or partition in progress.
type Pass struct {
	// ID identifies the pass: the id of the run that started it.
	ID string `json:"id"`
	// Since is the cursor value the pass filters from.
	Since string `json:"since,omitempty"`
	// Position is the source's position after the last committed page.
	Position json.RawMessage `json:"position,omitempty"`
	// MaxCursor is the largest cursor among the pass's committed rows.
	MaxCursor string `json:"max_cursor,omitempty"`
	// MaxSeen holds the identities of the pass's rows at MaxCursor.
	MaxSeen []string `json:"max_seen,omitempty"`
	// Recent holds the identities of the latest rows an appending pass
	// kept, so that a record the API repeats across the resume point is
	// not appended twice.
	Recent []string `json:"recent,omitempty"`
}

// recentKept is how many identities a pass keeps in Recent.
const recentKept = 1000

// DecodeState reads a stored partition state.
func DecodeState(raw json.RawMessage) (PartitionState, error) {
	var s PartitionState
	if len(raw) == 0 {
		return s, nil
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return s, fmt.Errorf("stored state %s is unreadable: %w (reset it with ferry state reset)", raw, err)
	}
	return s, nil
}

func encodeState(s PartitionState) json.RawMessage {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err) // only strings and raw JSON: cannot fail
	}
	return b
}

// since computes where an incremental read starts: the saved cursor moved
// back by the lookback, and by one granule for an exclusive filter, or the
// stream's start value for a first sync.
func since(st source.Stream, saved string) (string, error) {
	if saved == "" {
		return st.Start, nil
	}
	s, err := cursor.Lookback(st.Lookback).Before(saved)
	if err != nil {
		return "", err
	}
	if st.Exclusive {
		s = cursor.Granule(s, st.Granularity)
	}
	return s, nil
}
