package jsonpath

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/ferry-dev/ferry/internal/jsonscan"
)

// NotFoundError says where a path stopped matching a document.
type NotFoundError struct {
	// Path is the path as written.
	Path string
	// At is the deepest place the path reached, as a path with its "*"
	// segments resolved (such as data.items.0); "" for the top level.
	At string
	// Found is what the document has there, such as "has keys products,
	// pageInfo", "is an array of 3 elements, not an object" or "is null".
	Found string
}

func (e *NotFoundError) Error() string {
	at := "the top level"
	if e.At != "" {
		at = strconv.Quote(string(jsonscan.Excerpt([]byte(e.At), shownPathLen)))
	}
	return fmt.Sprintf("path %q not found: %s %s", jsonscan.Excerpt([]byte(e.Path), shownPathLen), at, e.Found)
}

// Limits of a NotFoundError's text.
const (
	shownKeys    = 10  // keys listed in Found
	shownKeyLen  = 40  // bytes of each key or segment shown
	shownPathLen = 200 // bytes of Path and At shown
)

// Missing explains why p selects nothing in doc, a document Scan accepts:
// it returns a *NotFoundError naming the deepest place the path reached
// (over every branch of its "*" segments) and what the document has
// there. It returns nil when p does match, which includes a "*" meeting an
// empty array or object, and when doc is not valid JSON. It reads doc once
// per segment at most, and is meant for error paths.
func Missing(doc []byte, p *Path) error {
	var s jsonscan.Scanner
	s.LaxUTF8 = true
	s.Reset(doc)
	v, err := s.Value()
	if err != nil || s.End() != nil {
		return nil
	}
	var m miss
	if explore(v, p.segs, nil, &m) {
		return nil
	}
	return &NotFoundError{Path: p.raw, At: strings.Join(m.at, "."), Found: m.found}
}

// miss is the deepest place a path reached.
type miss struct {
	set   bool
	at    []string // the segments matched, resolved
	found string
}

// explore matches segs against v, a valid JSON value reached by the path
// segments at. It reports whether the path matches; otherwise it updates
// m when it got deeper than m.
func explore(v []byte, segs []segment, at []string, m *miss) bool {
	if len(segs) == 0 {
		return true
	}
	seg := segs[0]
	var s jsonscan.Scanner
	s.LaxUTF8, s.AllowDuplicateNames = true, true
	s.Reset(v)
	var found string
	switch v[0] {
	case '{':
		_ = s.Begin()
		var keys []string
		n := 0
		for first := true; ; first = false {
			raw, ok, err := s.Name(first)
			if err != nil || !ok {
				break
			}
			val, err := s.Value()
			if err != nil {
				break
			}
			name := unquoteName(raw)
			if len(keys) < shownKeys {
				keys = append(keys, showKey(name))
			}
			n++
			if seg.any || name == seg.name {
				if explore(val, segs[1:], append(at[:len(at):len(at)], showSegment(name)), m) {
					return true
				}
			}
		}
		switch {
		case n == 0 && seg.any:
			return true // an empty object: nothing to select
		case n == 0:
			found = "is an empty object"
		case seg.any:
			return false // every member was explored
		case n > len(keys):
			found = fmt.Sprintf("has %d keys: %s, …", n, strings.Join(keys, ", "))
		default:
			found = "has keys " + strings.Join(keys, ", ")
		}
	case '[':
		_ = s.BeginArray()
		n := 0
		for first := true; ; first = false {
			ok, err := s.Next(first)
			if err != nil || !ok {
				break
			}
			val, err := s.Value()
			if err != nil {
				break
			}
			if seg.any || seg.index == n {
				if explore(val, segs[1:], append(at[:len(at):len(at)], strconv.Itoa(n)), m) {
					return true
				}
			}
			n++
		}
		switch {
		case n == 0 && seg.any:
			return true // an empty array: nothing to select
		case seg.any:
			return false
		case seg.index >= 0 && n == 0:
			found = fmt.Sprintf("is an empty array, with no element %d", seg.index)
		case seg.index >= 0:
			found = fmt.Sprintf("has %d elements, no element %d", n, seg.index)
		default:
			found = fmt.Sprintf("is an array of %d elements, not an object", n)
		}
	default:
		found = "is " + kind(v[0])
		if v[0] != 'n' {
			if seg.index >= 0 {
				found += ", not an array or object"
			} else {
				found += ", not an object"
			}
		}
	}
	if !m.set || len(at) > len(m.at) {
		*m = miss{set: true, at: at, found: found}
	}
	return false
}

func kind(c byte) string {
	switch c {
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

func unquoteName(raw []byte) string {
	u, err := jsontext.AppendUnquote(nil, raw)
	if err != nil {
		return string(raw)
	}
	return string(u)
}

// showKey renders a key for a list of keys: as it is when it reads
// plainly, else quoted; cut to shownKeyLen bytes.
func showKey(name string) string {
	short := string(jsonscan.Excerpt([]byte(name), shownKeyLen))
	for _, r := range name {
		if !(r == '_' || r == '-' || r == '$' || r == '@' || r == '.' || r == '/' || r == ':' ||
			r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r > 0x7f && strconv.IsPrint(r)) {
			return strconv.Quote(short)
		}
	}
	if name == "" {
		return `""`
	}
	return short
}

// showSegment renders a matched key as a path segment, cut to shownKeyLen
// bytes.
func showSegment(name string) string {
	name = string(jsonscan.Excerpt([]byte(name), shownKeyLen))
	return strings.NewReplacer(`\`, `\\`, `.`, `\.`).Replace(name)
}
