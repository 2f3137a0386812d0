package schema

import (
	"fmt"
	"hash/fnv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MetaPrefix starts the name of every column and table Ferry adds itself.
// Keys from the data that would start with it get an extra leading
// underscore so they can never shadow a Ferry column.
const MetaPrefix = "_ferry_"

// Normalize turns a JSON key into an identifier that every supported
// database accepts once quoted: lower case, camelCase split into snake_case,
// every run of characters other than letters, digits and underscores
// replaced by one underscore, and a leading underscore added when the result
// would start with a digit. Letters outside ASCII are kept.
//
// Normalize does not limit the length; Namer does, per destination.
func Normalize(key string) string {
	var b strings.Builder
	b.Grow(len(key) + 4)
	var prev rune = -1 // previous rune of the key
	pendingSep := false
	for i, r := range key {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(key[i:]); size <= 1 {
				r = '_' // invalid UTF-8 byte
			}
		}
		switch {
		case r == '_':
			if pendingSep {
				pendingSep = false
			}
			b.WriteByte('_')
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			if pendingSep && b.Len() > 0 {
				b.WriteByte('_')
			}
			pendingSep = false
			// camelCase → camel_case, HTTPCode → http_code, for ASCII letters.
			if r >= 'A' && r <= 'Z' && b.Len() > 0 && !strings.HasSuffix(b.String(), "_") {
				next, _ := utf8.DecodeRuneInString(key[i+1:])
				if (prev >= 'a' && prev <= 'z') || (prev >= '0' && prev <= '9') ||
					(prev >= 'A' && prev <= 'Z' && next >= 'a' && next <= 'z') {
					b.WriteByte('_')
				}
			}
			b.WriteRune(unicode.ToLower(r))
		default:
			pendingSep = true
		}
		prev = r
	}
	s := b.String()
	if s == "" {
		return "col_" + shortHash(key)
	}
	if s[0] >= '0' && s[0] <= '9' {
		s = "_" + s
	}
	if strings.HasPrefix(s, MetaPrefix) {
		s = "_" + s
	}
	return s
}

// shortHash returns 8 hex digits identifying key, stable across runs and
// machines.
func shortHash(key string) string {
	h := fnv.New32a()
	h.Write([]byte(key))
	return fmt.Sprintf("%08x", h.Sum32())
}

// Truncate shortens name to at most maxBytes bytes, on a rune boundary,
// replacing the tail with an underscore and a hash of key so that two long
// names sharing a prefix stay distinct. maxBytes <= 0 means no limit.
func Truncate(name, key string, maxBytes int) string {
	if maxBytes <= 0 || len(name) <= maxBytes {
		return name
	}
	suffix := "_" + shortHash(key)
	cut := maxBytes - len(suffix)
	if cut <= 0 { // a limit too small for a prefix: the hash alone, cut to fit
		return shortHash(key)[:min(maxBytes, len(suffix)-1)]
	}
	for cut > 0 && !utf8.RuneStart(name[cut]) {
		cut--
	}
	return name[:cut] + suffix
}

// Namer assigns column names to JSON keys for one table. The same key always
// gets the same name; two keys that normalise to the same name (they differ
// only by case or punctuation) are told apart by a hash suffix on the one
// that arrives second. Seed a Namer with the table's existing columns so
// names stay stable from one run to the next.
//
// A Namer is not safe for concurrent use.
type Namer struct {
	maxBytes int
	byKey    map[string]string // key → name
	byName   map[string]string // lower-cased name → key
}

// NewNamer returns a Namer whose names are at most maxBytes bytes long
// (0 for no limit).
func NewNamer(maxBytes int) *Namer {
	return &Namer{maxBytes: maxBytes, byKey: map[string]string{}, byName: map[string]string{}}
}

// Reserve records that name is taken by key (use "" for columns that no key
// fills, such as Ferry's metadata columns).
func (n *Namer) Reserve(key, name string) {
	if key != "" {
		n.byKey[key] = name
	}
	n.byName[strings.ToLower(name)] = key
}

// Name returns the column name for key, assigning one if needed.
func (n *Namer) Name(key string) string { return n.NameAs(key, Normalize(key)) }

// NameAs is Name with a chosen base name (already normalised) for a new
// key, such as parent__child for a flattened field.
func (n *Namer) NameAs(key, base string) string {
	if name, ok := n.byKey[key]; ok {
		return name
	}
	name := Truncate(base, key, n.maxBytes)
	if n.taken(name, key) {
		suffix := "_" + shortHash(key)
		name = Truncate(base, key, n.maxBytes-len(suffix)) + suffix
		for i := 2; n.taken(name, key); i++ {
			s := fmt.Sprintf("_%s_%d", shortHash(key), i)
			name = Truncate(base, key, n.maxBytes-len(s)) + s
		}
	}
	n.Reserve(key, name)
	return name
}

func (n *Namer) taken(name, key string) bool {
	owner, ok := n.byName[strings.ToLower(name)]
	return ok && (owner != key || owner == "")
}
