package rest

import (
	"strings"
)

// linkNext returns the target of the first link with relation "next" in
// the Link header values, as RFC 8288 writes them:
//
//	<https://api.example.com/items?page=2>; rel="next", <…?page=9>; rel="last"
//
// Relation types are compared case-insensitively and a rel may list
// several ("next last"). Malformed links are skipped.
func linkNext(values []string) string {
	for _, v := range values {
		for v != "" {
			v = strings.TrimLeft(v, " \t,")
			if !strings.HasPrefix(v, "<") {
				// Skip to the next link.
				i := strings.IndexByte(v, ',')
				if i < 0 {
					break
				}
				v = v[i+1:]
				continue
			}
			end := strings.IndexByte(v, '>')
			if end < 0 {
				break
			}
			target := v[1:end]
			v = v[end+1:]
			if strings.ContainsRune(target, '<') {
				continue // malformed: a URI cannot hold '<'
			}
			// Parameters up to the next top-level comma (commas inside
			// quoted strings do not count).
			params, rest := splitParams(v)
			v = rest
			if hasRel(params, "next") {
				return strings.TrimSpace(target)
			}
		}
	}
	return ""
}

// splitParams returns the parameter text of one link and what follows it.
func splitParams(s string) (params, rest string) {
	inQuote := false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if inQuote {
				i++
			}
		case '"':
			inQuote = !inQuote
		case ',':
			if !inQuote {
				return s[:i], s[i+1:]
			}
		}
	}
	return s, ""
}

// hasRel reports whether link parameters include rel with relation want.
func hasRel(params, want string) bool {
	for _, p := range strings.Split(params, ";") {
		name, val, ok := strings.Cut(p, "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(name), "rel") {
			continue
		}
		val = strings.Trim(strings.TrimSpace(val), `"`)
		for _, r := range strings.Fields(val) {
			if strings.EqualFold(r, want) {
				return true
			}
		}
	}
	return false
}
