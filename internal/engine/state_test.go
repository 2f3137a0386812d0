package engine

import (
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/source"
)

// TestStateGolden pins the JSON shape of stored state: a renamed field
// would make every user's saved state unreadable.
func TestStateGolden(t *testing.T) {
	states := []PartitionState{
		{},
		{Cursor: "2024-05-01T12:00:00Z", Seen: []string{"00000000000000ff", "0123456789abcdef"}},
		{Cursor: "17", Completed: "20261122T010000Z-abcdef", Filled: []string{"email", "id"}},
		{Completed: "20261122T010000Z-abcdef", ParentCursor: "2024-05-01T12:00:00Z", ParentSeen: []string{"00000000000000ff"}},
		{Cursor: "2024-01-01T00:00:00Z", Pass: &Pass{ID: "20261122T010000Z-abcdef", Since: "2023-12-31T23:00:00Z", Position: json.RawMessage(`{"page":4,"count":300,"pages":3}`), MaxCursor: "2024-02-01T00:00:00Z", MaxSeen: []string{"0000000000000001"}}},
	}
	got, err := json.MarshalIndent(states, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("testdata/state.golden.json")
	if err != nil {
		t.Fatal(err)
	}
	if string(got)+"\n" != string(want) {
		t.Fatalf("state JSON changed:\n%s\nwant:\n%s", got, want)
	}
	var back []PartitionState
	if err := json.Unmarshal(want, &back); err != nil {
		t.Fatal(err)
	}
	for i := range back {
		if b := back[i]; b.Pass != nil {
			b.Pass.Position = json.RawMessage(compact(t, b.Pass.Position))
		}
	}
	if !reflect.DeepEqual(back, states) {
		t.Fatalf("round trip:\n%+v\nwant\n%+v", back, states)
	}
}

func compact(t *testing.T, raw json.RawMessage) []byte {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestSince(t *testing.T) {
	ts := source.Stream{Start: "2020-01-01T00:00:00Z", Lookback: source.Lookback{Duration: 90 * time.Minute}}
	tests := []struct {
		st     source.Stream
		cursor string
		want   string
		err    bool
	}{
		{ts, "", "2020-01-01T00:00:00Z", false},
		{ts, "2024-05-01T12:00:00+02:00", "2024-05-01T08:30:00Z", false},
		{source.Stream{Lookback: source.Lookback{Amount: 100, IsAmount: true}}, "1000", "900", false},
		{source.Stream{}, "abc", "abc", false},
		{ts, "1000", "", true},
		{source.Stream{Lookback: source.Lookback{Amount: 5, IsAmount: true}}, "2024-01-01T00:00:00Z", "", true},
	}
	for _, tt := range tests {
		got, err := since(tt.st, tt.cursor)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("since(%q) = %q, %v; want %q (error %v)", tt.cursor, got, err, tt.want, tt.err)
		}
	}
}
