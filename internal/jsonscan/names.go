package jsonscan

import (
	"hash/maphash"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// linearNames is how many names an object may have before its names get
// a hash index: up to it a linear scan is cheaper than hashing.
const linearNames = 16

var nameSeed = maphash.MakeSeed()

// nameEntry is one member name of an object whose names are checked: the
// string token src[start:end], quotes included. Offsets rather than
// slices, so that old entries pin no old input.
type nameEntry struct {
	start, end int
	esc        bool // the token must be unescaped to be compared
}

// names holds the member names of the objects being checked, innermost
// last: an object's names are list[start:] for the start it began at.
// Small objects are searched linearly; an object passing linearNames names
// gets the hash index (one at a time: an inner wide object takes it over,
// and the outer one rebuilds it when it next needs it). Nothing is
// allocated once the buffers have grown.
type names struct {
	src    []byte // the input the tokens are in
	list   []nameEntry
	hashes []uint64 // of the unescaped names, for the indexed object's entries
	index  []int32  // open addressing over list[owner-1:]: list index + 1, 0 when free
	owner  int      // start + 1 of the object index belongs to, 0 for none
	a, b   []byte   // scratch for unescaping
}

func (ns *names) reset() {
	if len(ns.list) == 0 && ns.owner == 0 {
		return
	}
	ns.list = ns.list[:0]
	ns.owner = 0
	if cap(ns.list) > 1<<12 || cap(ns.index) > 1<<14 {
		ns.list, ns.hashes, ns.index = nil, nil, nil // keep no memory a rare wide object took
	}
}

// pop ends the object whose names start at start.
func (ns *names) pop(start int) {
	ns.list = ns.list[:start]
	if ns.owner == start+1 {
		ns.owner = 0
	}
}

// add adds the name token src[from:to] to the object whose names start
// at start, and reports whether the object already had it.
func (ns *names) add(start, from, to int, esc bool) bool {
	if len(ns.list)-start >= linearNames {
		return ns.addIndexed(start, from, to, esc)
	}
	for i := start; i < len(ns.list); i++ {
		o := ns.list[i]
		if o.end-o.start == to-from && string(ns.src[o.start:o.end]) == string(ns.src[from:to]) ||
			(o.esc || esc) && ns.sameUnquoted(o, nameEntry{from, to, esc}) {
			return true
		}
	}
	ns.list = append(ns.list, nameEntry{from, to, esc})
	return false
}

// addIndexed is add for an object with linearNames names or more.
func (ns *names) addIndexed(start, from, to int, esc bool) bool {
	n := len(ns.list) - start
	if ns.owner != start+1 || 2*(n+1) > len(ns.index) {
		ns.rebuild(start, 4*(n+1))
	}
	e := nameEntry{from, to, esc}
	h := ns.hash(e)
	mask := uint64(len(ns.index) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		j := ns.index[i]
		if j == 0 {
			ns.index[i] = int32(len(ns.list) + 1)
			ns.list = append(ns.list, e)
			for len(ns.hashes) < len(ns.list) {
				ns.hashes = append(ns.hashes, 0)
			}
			ns.hashes[len(ns.list)-1] = h
			return false
		}
		if o := ns.list[j-1]; ns.hashes[j-1] == h && (string(ns.src[o.start:o.end]) == string(ns.src[from:to]) || ns.sameUnquoted(o, e)) {
			return true
		}
	}
}

// rebuild indexes the names of the object starting at start, in a table
// of at least size slots.
func (ns *names) rebuild(start, size int) {
	slots := 64
	for slots < size {
		slots *= 2
	}
	if cap(ns.index) < slots {
		ns.index = make([]int32, slots)
	} else {
		ns.index = ns.index[:slots]
		clear(ns.index)
	}
	for len(ns.hashes) < len(ns.list) {
		ns.hashes = append(ns.hashes, 0)
	}
	ns.owner = start + 1
	mask := uint64(slots - 1)
	for k := start; k < len(ns.list); k++ {
		h := ns.hash(ns.list[k])
		ns.hashes[k] = h
		i := h & mask
		for ns.index[i] != 0 {
			i = (i + 1) & mask
		}
		ns.index[i] = int32(k + 1)
	}
}

func (ns *names) hash(e nameEntry) uint64 {
	if !e.esc {
		return maphash.Bytes(nameSeed, ns.src[e.start+1:e.end-1])
	}
	ns.a = unquote(ns.a[:0], ns.src[e.start:e.end])
	return maphash.Bytes(nameSeed, ns.a)
}

// sameUnquoted reports whether two entries hold the same name once
// unescaped; it is for entries of which one at least has escapes.
func (ns *names) sameUnquoted(e, o nameEntry) bool {
	if !e.esc && !o.esc {
		return false
	}
	ns.a = unquote(ns.a[:0], ns.src[e.start:e.end])
	ns.b = unquote(ns.b[:0], ns.src[o.start:o.end])
	return string(ns.a) == string(ns.b)
}

// unquote appends the content of a string token a Scanner accepted, as
// jsontext unescapes it: invalid UTF-8 and unpaired surrogates (accepted
// under LaxUTF8) become U+FFFD.
func unquote(dst, raw []byte) []byte {
	b := raw[1 : len(raw)-1]
	for i := 0; i < len(b); {
		c := b[i]
		switch {
		case c == '\\' && i+1 < len(b):
			e := b[i+1]
			i += 2
			switch e {
			case 'b':
				dst = append(dst, '\b')
			case 'f':
				dst = append(dst, '\f')
			case 'n':
				dst = append(dst, '\n')
			case 'r':
				dst = append(dst, '\r')
			case 't':
				dst = append(dst, '\t')
			case 'u':
				r, ok := hex4(b, i)
				if !ok {
					return append(dst, b[i-2:]...) // not from a Scanner
				}
				i += 4
				if utf16.IsSurrogate(r) {
					lo, ok := rune(0), false
					if i+6 <= len(b) && b[i] == '\\' && b[i+1] == 'u' {
						lo, ok = hex4(b, i+2)
					}
					if r = utf16.DecodeRune(r, lo); ok && r != utf8.RuneError {
						i += 6
					} else {
						r = utf8.RuneError
					}
				}
				dst = utf8.AppendRune(dst, r)
			default: // '"', '\\', '/'
				dst = append(dst, e)
			}
		case c < utf8.RuneSelf:
			dst = append(dst, c)
			i++
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				dst = utf8.AppendRune(dst, utf8.RuneError)
			} else {
				dst = append(dst, b[i:i+size]...)
			}
			i += size
		}
	}
	return dst
}

func hex4(b []byte, at int) (rune, bool) {
	if at+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[at : at+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	return r, true
}

// maxQuotedName bounds the names QuoteName renders, in bytes of the name.
const maxQuotedName = 60

// QuoteName renders a member name token for messages: unescaped, quoted
// as a Go string, and cut to about 60 bytes with an ellipsis.
func QuoteName(raw []byte) string {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return strconv.Quote(string(Excerpt(raw, maxQuotedName)))
	}
	// Unescape no more than can be shown (an escape cut in two is kept
	// as it is, and cut off by Excerpt anyway).
	end := min(len(raw)-1, 1+6*maxQuotedName)
	name := unquote(nil, append(raw[:end:end], '"'))
	return strconv.Quote(string(Excerpt(name, maxQuotedName)))
}

// Excerpt returns b cut to at most limit bytes at a character boundary,
// with "…" appended when it was cut.
func Excerpt(b []byte, limit int) []byte {
	if len(b) <= limit {
		return b
	}
	cut := limit
	for cut > 0 && b[cut]&0xC0 == 0x80 {
		cut--
	}
	return append(b[:cut:cut], "…"...)
}

// Names finds repeated member names in one object, for a caller that
// walks the object itself (see BeginUnchecked), the way a Scanner does
// for the objects it checks. The zero value is empty; Reset empties it and
// keeps its memory.
type Names struct{ ns names }

// Reset forgets every name.
func (n *Names) Reset() {
	if len(n.ns.src) == 0 {
		return // empty
	}
	n.ns.reset()
	n.ns.src = n.ns.src[:0]
	if cap(n.ns.src) > 1<<16 {
		n.ns.src = nil
	}
}

// Add adds a name token (quotes included, as Scanner.Name returns it) and
// reports whether it was already there, comparing names after unescaping.
// It keeps a copy of the token.
func (n *Names) Add(raw []byte) bool {
	esc := false
	for _, c := range raw {
		if c == '\\' || c >= utf8.RuneSelf {
			esc = true
			break
		}
	}
	from := len(n.ns.src)
	n.ns.src = append(n.ns.src, raw...)
	if n.ns.add(0, from, len(n.ns.src), esc) {
		n.ns.src = n.ns.src[:from]
		return true
	}
	return false
}
