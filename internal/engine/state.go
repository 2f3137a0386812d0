package engine

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/ferry-dev/ferry/internal/normalize"
	"github.com/ferry-dev/ferry/internal/schema"
	"github.com/ferry-dev/ferry/internal/source"
)

// PartitionState is the sync state of one partition (or of a stream
// without partitions), stored as JSON in the destination's state table in
// the same transaction as the rows it covers. Its JSON shape is persisted:
// add fields, never rename them (state_test.go holds golden copies).
type PartitionState struct {
	// Cursor is the high-water mark of the cursor field over every
	// completed pass, as the source wrote it.
	Cursor string `json:"cursor,omitempty"`
	// Seen holds hashes (normalize.RecordHash, hex) of the records already
	// synced whose cursor equals Cursor, so the next sync, which reads from
	// Cursor inclusive, skips exactly those.
	Seen []string `json:"seen,omitempty"`
	// Pass is the pass in progress, present only between a pass's first
	// commit and its end; a run that finds it resumes the pass.
	Pass *Pass `json:"pass,omitempty"`
	// Completed is the id of the last stream pass that read this partition
	// to the end (child streams), so a resumed pass can skip it.
	Completed string `json:"completed,omitempty"`
	// Filled lists the columns the last run that wrote rows gave values to
	// (stream-level entry only), to report columns the data stopped filling.
	Filled []string `json:"filled,omitempty"`
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
	// MaxSeen holds the hashes of the pass's rows at MaxCursor.
	MaxSeen []string `json:"max_seen,omitempty"`
}

// maxSeen bounds how many boundary hashes a state keeps. Beyond it the
// next sync re-reads the extra boundary records: harmless when
// deduplicating, a few duplicates when appending.
const maxSeen = 10000

// boundary accumulates the largest cursor and the hashes of its rows.
type boundary struct {
	cursor string
	seen   map[uint64]bool
}

func newBoundary(cursor string, hashes []string) boundary {
	b := boundary{cursor: cursor, seen: map[uint64]bool{}}
	for _, h := range hashes {
		if v, err := strconv.ParseUint(h, 16, 64); err == nil {
			b.seen[v] = true
		}
	}
	return b
}

// add merges the rows at cursor c (hashes) into the boundary.
func (b *boundary) add(c string, hashes []uint64) {
	switch cmp := compareCursors(c, b.cursor); {
	case cmp > 0:
		b.cursor = c
		clear(b.seen)
		fallthrough
	case cmp == 0:
		for _, h := range hashes {
			if len(b.seen) >= maxSeen {
				break
			}
			b.seen[h] = true
		}
	}
}

// merge merges another boundary into b.
func (b *boundary) merge(o boundary) {
	hs := make([]uint64, 0, len(o.seen))
	for h := range o.seen {
		hs = append(hs, h)
	}
	b.add(o.cursor, hs)
}

func (b boundary) hashes() []string {
	out := make([]string, 0, len(b.seen))
	for h := range b.seen {
		out = append(out, fmt.Sprintf("%016x", h))
	}
	slices.Sort(out)
	return out
}

// compareCursors orders cursor texts; "" is the smallest.
func compareCursors(a, b string) int {
	switch {
	case a == b:
		return 0
	case a == "":
		return -1
	case b == "":
		return 1
	}
	return normalize.ParseCursor(a).Compare(normalize.ParseCursor(b))
}

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
// back by the lookback, or the stream's start value for a first sync.
func since(st source.Stream, cursor string) (string, error) {
	if cursor == "" {
		return st.Start, nil
	}
	lb := st.Lookback
	if lb.Duration == 0 && lb.Amount == 0 {
		return cursor, nil
	}
	c := normalize.ParseCursor(cursor)
	switch {
	case c.Type == schema.Timestamp && !lb.IsAmount:
		t := time.UnixMicro(c.Int - lb.Duration.Microseconds()).UTC()
		return t.Format(time.RFC3339Nano), nil
	case c.Type == schema.Int && lb.IsAmount:
		return strconv.FormatInt(c.Int-lb.Amount, 10), nil
	case c.Type == schema.Timestamp:
		return "", fmt.Errorf("lookback %d is a number but cursor %q is a timestamp: write it as a duration such as 2h", lb.Amount, cursor)
	default:
		return "", fmt.Errorf("lookback %s is a duration but cursor %q is not a timestamp", lb.Duration, cursor)
	}
}
