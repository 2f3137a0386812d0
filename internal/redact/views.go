package redact

import (
	"bytes"
	"slices"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// A secret reaches a message in many spellings: as is, percent-encoded in
// a URL, escaped by a JSON encoder (which may write any character as a
// \uXXXX escape, in either case, "/" as "\/" as PHP does, "<", ">", "&"
// and U+2028 as Go does), and in compositions of those: a JSON document in
// a query parameter, a URL in a JSON string, a JSON document quoted inside
// another. Listing every spelling is impossible (each character may or
// may not be escaped), so String decodes instead: it searches the text as
// is, then views of it with JSON escapes and percent-escapes decoded, and
// maps what it finds in a view back to the bytes of the text it came from.

// viewExpansion bounds how many bytes of text one byte of a secret can
// come from in the deepest view String searches: 6 for a \u escape, 3
// for a percent-escape, 36 for a \u escape written inside another JSON
// string (\u005cu0041 with every byte escaped again).
const viewExpansion = 36

// maxViewText is the longest text whose decoded views String searches;
// offsets are kept as int32. Longer text is only searched as is.
const maxViewText = 1 << 30

// view is a decoded form of a text: byte i of b comes from the bytes
// [start[i], end[i]) of the original text. Both are nil for the text
// itself.
type view struct {
	b          []byte
	start, end []int32
	// cutAt is, for a view of text cut short, where in the original
	// text an escape the cut left incomplete begins; -1 if none.
	cutAt int
}

// span is a range of the original text to hide.
type span struct{ start, end int }

// origin maps the range [i, j) of v back to the original text.
func (v *view) origin(i, j int) span {
	if v.start == nil {
		return span{i, j}
	}
	return span{int(v.start[i]), int(v.end[j-1])}
}

// decoder decodes in, calling emit for every decoded byte with the range
// of in it came from. With cut set, in is the start of a longer text: an
// escape that its end leaves incomplete is not decoded, and its start is
// returned; otherwise the result is -1.
type decoder func(in []byte, cut bool, emit func(b byte, from, to int)) int

// decoded returns the view of v made by dec.
func (v *view) decoded(dec decoder, cut bool) *view {
	w := &view{
		b:     make([]byte, 0, len(v.b)),
		start: make([]int32, 0, len(v.b)),
		end:   make([]int32, 0, len(v.b)),
		cutAt: -1,
	}
	at := dec(v.b, cut, func(b byte, from, to int) {
		s, e := int32(from), int32(to)
		if v.start != nil {
			s, e = v.start[from], v.end[to-1]
		}
		w.b = append(w.b, b)
		w.start = append(w.start, s)
		w.end = append(w.end, e)
	})
	if at >= 0 {
		w.cutAt = at
		if v.start != nil {
			w.cutAt = int(v.start[at])
		}
	}
	return w
}

// unescapeJSON decodes the escapes of JSON strings wherever they appear:
// \" \\ \/ \b \f \n \r \t and \uXXXX (hex in either case), a surrogate
// pair as one character. Anything else, a lone backslash included, is kept.
func unescapeJSON(in []byte, cut bool, emit func(b byte, from, to int)) int {
	var enc [utf8.UTFMax]byte
	for i := 0; i < len(in); {
		if in[i] == '\\' && cut && incompleteJSONEscape(in[i:]) {
			return i
		}
		if in[i] != '\\' || i+1 == len(in) {
			emit(in[i], i, i+1)
			i++
			continue
		}
		var c byte
		switch in[i+1] {
		case '"', '\\', '/':
			c = in[i+1]
		case 'b':
			c = '\b'
		case 'f':
			c = '\f'
		case 'n':
			c = '\n'
		case 'r':
			c = '\r'
		case 't':
			c = '\t'
		case 'u':
			r, ok := hex4(in[i+2:])
			if !ok {
				emit('\\', i, i+1)
				i++
				continue
			}
			n := 6
			if utf16.IsSurrogate(r) {
				hi := r
				r = utf8.RuneError
				if len(in) >= i+12 && in[i+6] == '\\' && in[i+7] == 'u' {
					if lo, ok := hex4(in[i+8:]); ok {
						if pair := utf16.DecodeRune(hi, lo); pair != utf8.RuneError {
							r, n = pair, 12
						}
					}
				}
			}
			for _, b := range enc[:utf8.EncodeRune(enc[:], r)] {
				emit(b, i, i+n)
			}
			i += n
			continue
		default:
			emit('\\', i, i+1)
			i++
			continue
		}
		emit(c, i, i+2)
		i += 2
	}
	return -1
}

// incompleteJSONEscape reports whether rest, which starts with a
// backslash and ends the text, may be an escape cut short: "\", "\u12",
// or a high surrogate that a low one may follow ("\ud83d", "\ud83d\ude").
func incompleteJSONEscape(rest []byte) bool {
	if len(rest) == 1 {
		return true
	}
	if rest[1] != 'u' {
		return false
	}
	if len(rest) < 6 {
		return allHex(rest[2:])
	}
	r, ok := hex4(rest[2:])
	if !ok || !utf16.IsSurrogate(r) || r >= 0xdc00 || len(rest) >= 12 {
		return false
	}
	tail := rest[6:]
	return len(tail) == 0 || tail[0] == '\\' && (len(tail) == 1 || tail[1] == 'u' && allHex(tail[2:]))
}

func allHex(b []byte) bool {
	for _, c := range b {
		if !isHex(c) {
			return false
		}
	}
	return true
}

// unescapePercent decodes %XX escapes (hex in either case) and, when plus
// is true, '+' as a space, as query strings write it.
func unescapePercent(plus bool) decoder {
	return func(in []byte, cut bool, emit func(b byte, from, to int)) int {
		for i := 0; i < len(in); {
			switch {
			case cut && in[i] == '%' && len(in)-i <= 2 && allHex(in[i+1:]):
				return i
			case in[i] == '%' && i+2 < len(in) && isHex(in[i+1]) && isHex(in[i+2]):
				emit(unhex(in[i+1])<<4|unhex(in[i+2]), i, i+3)
				i += 3
			case in[i] == '+' && plus:
				emit(' ', i, i+1)
				i++
			default:
				emit(in[i], i, i+1)
				i++
			}
		}
		return -1
	}
}

// hex4 reads four hex digits at the start of b.
func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		if !isHex(c) {
			return 0, false
		}
		r = r<<4 | rune(unhex(c))
	}
	return r, true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// find returns the ranges of s that hold a secret in any spelling String
// knows, sorted and merged. With cut set, s is the start of a longer text,
// and tail is where a secret its end may have cut short begins (len(s) if
// none could).
func (st *redactState) find(s string, cut bool) (spans []span, tail int) {
	tail = len(s)
	// partial lowers tail to the start of the longest end of v that is
	// the beginning of a pattern.
	partial := func(v *view, patterns []string) {
		if v.cutAt >= 0 {
			tail = min(tail, v.cutAt)
		}
		for _, p := range patterns {
			for k := min(len(p)-1, len(v.b)); k > 0; k-- {
				if bytes.HasSuffix(v.b, []byte(p[:k])) {
					tail = min(tail, v.origin(len(v.b)-k, len(v.b)).start)
					break
				}
			}
		}
	}
	search := func(v *view, patterns []string) {
		for _, p := range patterns {
			pb := []byte(p)
			for from := 0; ; {
				i := bytes.Index(v.b[from:], pb)
				if i < 0 {
					break
				}
				i += from
				spans = append(spans, v.origin(i, i+len(pb)))
				// Occurrences may overlap ("abab" in "ababab"); the next
				// one starts at least one byte later.
				from = i + 1
			}
		}
		if cut {
			partial(v, patterns)
		}
	}
	for _, p := range st.urlForms {
		for from := 0; ; {
			i := strings.Index(s[from:], p)
			if i < 0 {
				break
			}
			i += from
			spans = append(spans, span{i, i + len(p)})
			from = i + 1
		}
	}
	if cut {
		for _, p := range st.urlForms {
			for k := min(len(p)-1, len(s)); k > 0; k-- {
				if strings.HasSuffix(s, p[:k]) {
					tail = min(tail, len(s)-k)
					break
				}
			}
		}
	}
	if len(s) <= maxViewText && strings.ContainsAny(s, `\%+`) {
		raw := &view{b: []byte(s), cutAt: -1}
		percent, plus := unescapePercent(false), unescapePercent(true)
		hasJSON := func(v *view) bool { return bytes.IndexByte(v.b, '\\') >= 0 }
		hasPercent := func(v *view) bool { return bytes.IndexByte(v.b, '%') >= 0 }
		hasPlus := func(v *view) bool { return bytes.IndexByte(v.b, '+') >= 0 }
		if hasJSON(raw) {
			j := raw.decoded(unescapeJSON, cut)
			// A URL in a JSON string: its secrets are percent-encoded.
			search(j, st.urlForms)
			if hasJSON(j) { // a JSON document in a JSON string
				search(j.decoded(unescapeJSON, cut), st.secrets)
			}
			if hasPercent(j) {
				search(j.decoded(percent, cut), st.secrets)
				if hasPlus(j) {
					search(j.decoded(plus, cut), st.secrets)
				}
			}
		}
		if hasPercent(raw) || hasPlus(raw) {
			decs := []decoder{percent}
			if hasPlus(raw) {
				decs = append(decs, plus)
			}
			for _, dec := range decs {
				p := raw.decoded(dec, cut)
				search(p, st.secrets)
				if hasJSON(p) { // a JSON document in a URL
					search(p.decoded(unescapeJSON, cut), st.secrets)
				}
			}
		}
	}
	if len(spans) == 0 {
		return nil, tail
	}
	slices.SortFunc(spans, func(a, b span) int { return a.start - b.start })
	merged := spans[:1]
	for _, sp := range spans[1:] {
		last := &merged[len(merged)-1]
		if sp.start < last.end {
			last.end = max(last.end, sp.end)
			continue
		}
		merged = append(merged, sp)
	}
	return merged, tail
}
