package cursor

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
)

// MaxSeen bounds how many identities of records at the boundary a state
// keeps. Beyond it the next sync re-reads the extra boundary records:
// harmless when deduplicating, a few duplicates when appending.
const MaxSeen = 10000

// recentWindow is how many identities of the latest records the filter
// remembers to drop records an API repeats on neighbouring pages (a
// record that moved down a page while the pass read it).
const recentWindow = 20000

// Filter decides which records of one partition's pass become rows, and
// tracks the pass's largest cursor. It drops
//   - records whose cursor is below Min (APIs that cannot filter, and the
//     rows an append has already stored);
//   - records whose cursor equals Boundary (the saved cursor, which reads
//     include) and whose identity is in Seen: exactly the records the last
//     sync stored at that value, so none is lost and none repeated;
//   - when Dedupe is set, a record whose identity (with its cursor) is
//     among the latest ones kept in this pass: an API that repeats records
//     across neighbouring pages would otherwise have them written twice.
//
// A record's identity is a hash of its primary key values, or of its
// whole content when the stream has no key; with a cursor, the cursor
// value is part of the identity used for repeats, so a newer version of a
// record is never taken for a repeat of an older one.
//
// A Filter is used by one goroutine.
type Filter struct {
	Min      *Value
	Boundary *Value
	Seen     map[uint64]bool
	// Dedupe drops records repeated within the pass (see above).
	Dedupe bool
	// SeenByContent is true when Seen holds hashes of whole records (state
	// written before identities were keys): boundary records are then
	// recognised by content.
	SeenByContent bool

	max    Value
	hasMax bool
	atMax  map[uint64]bool
	recent ring
	// Dropped counts records dropped, by reason.
	Below, AtBoundary, Repeated int64
}

// Keep decides about one record; cur is its cursor value (has is false
// when the record has none), key the hash of its primary key values
// (hasKey false when the stream has no key), raw its JSON (nil for typed
// rows; then a stream without a key has no identity and is not deduped).
// The value may alias the record: Keep copies what it keeps.
func (f *Filter) Keep(cur Value, has bool, key uint64, hasKey bool, raw []byte) bool {
	if f == nil {
		return true
	}
	if has && f.Min != nil && cur.Compare(*f.Min) < 0 {
		f.Below++
		return false
	}
	id := key
	if !hasKey {
		if raw == nil {
			return f.track(cur, has, 0, false)
		}
		id = Hash(raw)
	}
	if has && f.Boundary != nil && len(f.Seen) > 0 && cur.Compare(*f.Boundary) == 0 {
		seenID := id
		if f.SeenByContent && raw != nil {
			seenID = Hash(raw)
		}
		if f.Seen[seenID] {
			f.AtBoundary++
			// Still at the boundary: its identity stays in the pass's.
			f.track(cur, has, id, true)
			return false
		}
	}
	if f.Dedupe {
		rid := id
		if has {
			rid = mix(id, cur)
		}
		if f.recent.has(rid) {
			f.Repeated++
			return false
		}
		f.recent.add(rid)
	}
	return f.track(cur, has, id, true)
}

// track notes a kept record's cursor and identity for the boundary.
func (f *Filter) track(cur Value, has bool, id uint64, hasID bool) bool {
	if has {
		cmp := 1
		if f.hasMax {
			cmp = cur.Compare(f.max)
		}
		if cmp > 0 {
			raw := append(f.max.Raw[:0], cur.Raw...) // reuses the buffer: the max moves on every record of an ordered stream
			f.max, f.hasMax = cur, true
			f.max.Raw = raw
			if len(f.atMax) > 0 {
				clear(f.atMax)
			}
		}
		if cmp >= 0 {
			if f.atMax == nil {
				f.atMax = map[uint64]bool{}
			}
			if hasID && len(f.atMax) < MaxSeen {
				f.atMax[id] = true
			}
		}
	}
	return true
}

// Dropped returns how many records the filter dropped.
func (f *Filter) Dropped() int64 {
	if f == nil {
		return 0
	}
	return f.Below + f.AtBoundary + f.Repeated
}

// Max returns the largest cursor the filter kept, "" for none, with the
// identities of the records at that value.
func (f *Filter) Max() Boundary {
	if f == nil || !f.hasMax {
		return Boundary{}
	}
	b := Boundary{Cursor: f.max.Text(), seen: map[uint64]bool{}}
	for id := range f.atMax {
		b.seen[id] = true
	}
	return b
}

// Recent returns the identities of the latest records kept (at most n),
// to carry the repeat window across a resumed pass.
func (f *Filter) Recent(n int) []uint64 { return f.recent.last(n) }

// Remember adds identities to the repeat window (from a resumed pass).
func (f *Filter) Remember(ids []uint64) {
	for _, id := range ids {
		f.recent.add(id)
	}
}

// mix combines an identity with a cursor value.
func mix(id uint64, v Value) uint64 {
	h := id ^ 0x9e3779b97f4a7c15
	for _, b := range v.Raw {
		h ^= uint64(b)
		h *= 1099511628211
	}
	if len(v.Raw) == 0 {
		h ^= uint64(v.Int)
		h *= 1099511628211
	}
	return h
}

// ring is a bounded set of the latest identities added: at least the
// last recentWindow of them, at most twice as many. Membership is two
// generations of sets, the older dropped whole when the newer is full, so
// adding costs one map insert (no per-identity counting); the order of
// the latest identities is kept apart, for last.
type ring struct {
	cur, prev map[uint64]struct{}
	ids       []uint64 // the latest identities, a circular buffer
	next      int
}

func (r *ring) has(id uint64) bool {
	if _, ok := r.cur[id]; ok {
		return true
	}
	_, ok := r.prev[id]
	return ok
}

func (r *ring) add(id uint64) {
	if r.cur == nil {
		r.cur, r.prev = make(map[uint64]struct{}, recentWindow), make(map[uint64]struct{}, recentWindow)
	}
	if len(r.cur) >= recentWindow {
		r.prev, r.cur = r.cur, r.prev
		clear(r.cur)
	}
	r.cur[id] = struct{}{}
	if len(r.ids) < recentWindow {
		r.ids = append(r.ids, id)
		return
	}
	r.ids[r.next] = id
	r.next = (r.next + 1) % recentWindow
}

// last returns up to n of the latest identities, oldest first.
func (r *ring) last(n int) []uint64 {
	if len(r.ids) < recentWindow {
		return slices.Clone(r.ids[max(0, len(r.ids)-n):])
	}
	out := make([]uint64, 0, min(n, recentWindow))
	for i := max(0, recentWindow-n); i < recentWindow; i++ {
		out = append(out, r.ids[(r.next+i)%recentWindow])
	}
	return out
}

// Boundary is the largest cursor of a set of records and the identities
// of those at it.
type Boundary struct {
	Cursor string
	seen   map[uint64]bool
}

// NewBoundary reads a boundary from state (hashes in hex).
func NewBoundary(cursor string, hashes []string) Boundary {
	b := Boundary{Cursor: cursor, seen: map[uint64]bool{}}
	for _, h := range hashes {
		if v, err := strconv.ParseUint(h, 16, 64); err == nil {
			b.seen[v] = true
		}
	}
	return b
}

// Merge merges another boundary into b: the larger cursor wins, equal
// cursors pool their identities (up to MaxSeen).
func (b *Boundary) Merge(o Boundary) {
	if b.seen == nil {
		b.seen = map[uint64]bool{}
	}
	switch c := CompareText(o.Cursor, b.Cursor); {
	case c > 0:
		b.Cursor = o.Cursor
		clear(b.seen)
		fallthrough
	case c == 0:
		for h := range o.seen {
			if len(b.seen) >= MaxSeen {
				break
			}
			b.seen[h] = true
		}
	}
}

// Add merges one record into b: its cursor and identity.
func (b *Boundary) Add(cursor string, id uint64) {
	if b.seen == nil {
		b.seen = map[uint64]bool{}
	}
	switch c := CompareText(cursor, b.Cursor); {
	case c > 0:
		b.Cursor = cursor
		clear(b.seen)
		fallthrough
	case c == 0:
		if len(b.seen) < MaxSeen {
			b.seen[id] = true
		}
	}
}

// Clone returns a copy that shares nothing with b.
func (b Boundary) Clone() Boundary {
	out := Boundary{Cursor: b.Cursor, seen: make(map[uint64]bool, len(b.seen))}
	for h := range b.seen {
		out.seen[h] = true
	}
	return out
}

// Seen returns the identities at the cursor, for a Filter.
func (b Boundary) Seen() map[uint64]bool { return b.seen }

// Hashes returns the identities in hex, sorted, for state.
func (b Boundary) Hashes() []string {
	out := make([]string, 0, len(b.seen))
	for h := range b.seen {
		out = append(out, fmt.Sprintf("%016x", h))
	}
	slices.Sort(out)
	return out
}

// HashHex renders identities for state.
// Every page's checkpoint carries a pass's recent identities, so this is
// one allocation for all of them: 16 hex digits each, sliced from one
// string.
func HashHex(ids []uint64) []string {
	buf := make([]byte, 0, 16*len(ids))
	var b [8]byte
	for _, h := range ids {
		binary.BigEndian.PutUint64(b[:], h)
		buf = hex.AppendEncode(buf, b[:])
	}
	all := string(buf)
	out := make([]string, len(ids))
	for i := range out {
		out[i] = all[16*i : 16*i+16]
	}
	return out
}

// ParseHashes reads identities from state, skipping unreadable ones.
func ParseHashes(hexes []string) []uint64 {
	out := make([]uint64, 0, len(hexes))
	for _, h := range hexes {
		if v, err := strconv.ParseUint(h, 16, 64); err == nil {
			out = append(out, v)
		}
	}
	return out
}

// Hash is the FNV-1a hash of b, the identity of a record without a key.
func Hash(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}
