package cursor

import (
	"fmt"
	"slices"
	"strconv"
	"testing"

	"github.com/ferry-dev/ferry/internal/schema"
)

// BenchmarkFilterKeep: the per-record cost of an incremental, keyed pass
// whose cursor rises with every record (the common case).
func BenchmarkFilterKeep(b *testing.B) {
	f := &Filter{Dedupe: true}
	raw := make([]byte, 0, 32)
	b.ReportAllocs()
	for i := range b.N {
		raw = strconv.AppendInt(raw[:0], int64(1_700_000_000+i), 10)
		if !f.Keep(Value{Type: schema.Int, Int: int64(1_700_000_000 + i), Raw: raw}, true, uint64(i)*0x9e3779b97f4a7c15, true, nil) {
			b.Fatal("dropped")
		}
	}
}

// TestHashHexRoundTrip: identities render as 16 zero-padded hex digits
// and read back.
func TestHashHexRoundTrip(t *testing.T) {
	ids := []uint64{0, 1, 0xdeadbeef, 1<<64 - 1}
	hexes := HashHex(ids)
	for i, h := range hexes {
		if want := fmt.Sprintf("%016x", ids[i]); h != want {
			t.Fatalf("HashHex(%d) = %q, want %q", ids[i], h, want)
		}
	}
	if got := ParseHashes(hexes); !slices.Equal(got, ids) {
		t.Fatalf("round trip = %v", got)
	}
}

// TestRepeatWindow: a record repeated up to recentWindow records later is
// dropped, however the window's generations fall; one much older is a
// new record again (memory stays bounded). Recent gives the latest
// identities in order.
func TestRepeatWindow(t *testing.T) {
	for _, lag := range []int{1, 999, recentWindow/2 + 1, recentWindow - 1, recentWindow} {
		f := &Filter{Dedupe: true}
		n := 3*recentWindow + 17
		for i := range n {
			f.Keep(Value{}, false, uint64(i), true, nil)
		}
		if f.Keep(Value{}, false, uint64(n-lag), true, nil) {
			t.Fatalf("a repeat %d records back was kept", lag)
		}
	}
	f := &Filter{Dedupe: true}
	for i := range 3 * recentWindow {
		f.Keep(Value{}, false, uint64(i), true, nil)
	}
	if !f.Keep(Value{}, false, 0, true, nil) {
		t.Fatal("a record 3 windows back was taken for a repeat")
	}
	if got := f.Recent(3); !slices.Equal(got, []uint64{3*recentWindow - 2, 3*recentWindow - 1, 0}) {
		t.Fatalf("Recent(3) = %v", got)
	}
}
