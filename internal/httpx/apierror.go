package httpx

import (
	"bytes"
	"encoding/json"
	"errors"
	"html"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/ferry-dev/ferry/internal/redact"
)

// messageLimit bounds the API message a StatusError keeps, in bytes.
const messageLimit = 2 << 10

// cutMark ends a string that repairJSON found cut short by the end of
// the text. U+FFFF is a noncharacter: no API message holds it.
const cutMark = "\uffff"

// apiMessage returns the API's own message from a JSON error body, in
// the shapes APIs use: message, error (a string, or an object with a
// message), error_description (OAuth), errors[] (GraphQL, JSON:API, each
// with message, detail or title; Rails' field map), detail and title
// (RFC 7807); and in note what some add to it: the parameter at fault,
// a documentation link. Nothing is redacted, collapsed or bounded. cut
// says body is only the start of the body; a message the cut cut short
// then ends with cutMark. ok is false when body is not JSON.
func apiMessage(body []byte, cut bool) (msg, note string, ok bool) {
	if cut {
		var ok bool
		if body, ok = repairJSON(body); !ok {
			return "", "", false
		}
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	var doc any
	if err := d.Decode(&doc); err != nil {
		return "", "", false
	}
	if _, err := d.Token(); err != io.EOF {
		return "", "", false // more after the document
	}
	msg, note = messageOf(doc, 0)
	return msg, note, true
}

// messageOf finds the message in a decoded JSON document.
func messageOf(v any, depth int) (msg, note string) {
	if depth > 4 {
		return "", ""
	}
	switch doc := v.(type) {
	case string:
		return doc, ""
	case []any:
		return listMessage(doc, depth), ""
	case map[string]any:
		str := func(k string) string { s, _ := doc[k].(string); return s }
		switch e := doc["error"].(type) {
		case string:
			msg = join(e, first(str("error_description"), str("message")))
		case map[string]any:
			msg, note = messageOf(e, depth+1)
		case []any:
			msg = listMessage(e, depth)
		}
		if msg == "" {
			msg = first(str("message"), str("error_message"), str("errorMessage"), str("error_description"))
			switch errs := doc["errors"].(type) {
			case []any:
				msg = join(msg, listMessage(errs, depth))
			case map[string]any: // Rails: {"errors": {"email": ["is invalid"]}}
				msg = join(msg, fieldsMessage(errs))
			}
		}
		if msg == "" {
			msg = join(str("title"), str("detail"))
		}
		if msg == "" {
			return "", ""
		}
		var extra []string
		if p := str("param"); p != "" {
			extra = append(extra, "param "+p)
		}
		if u := first(str("doc_url"), str("documentation_url")); u != "" {
			extra = append(extra, "see "+u)
		}
		if note == "" {
			note = strings.Join(extra, "; ")
		}
		return msg, note
	}
	return "", ""
}

// listMessage joins the messages of a list of errors, up to a little more
// than messageLimit bytes.
func listMessage(list []any, depth int) string {
	var parts []string
	size := 0
	for _, e := range list {
		m := ""
		switch e := e.(type) {
		case string:
			m = e
		case map[string]any:
			if m, _ = messageOf(e, depth+1); m == "" {
				b, _ := json.Marshal(e)
				m = string(b)
			}
		}
		if m != "" {
			parts = append(parts, m)
			if size += len(m) + 2; size > messageLimit {
				break
			}
		}
	}
	return strings.Join(parts, "; ")
}

// fieldsMessage renders {"field": ["problem", …]} as "field problem; …".
func fieldsMessage(fields map[string]any) string {
	var parts []string
	for k, v := range fields {
		switch v := v.(type) {
		case string:
			parts = append(parts, k+" "+v)
		case []any:
			for _, p := range v {
				if s, ok := p.(string); ok {
					parts = append(parts, k+" "+s)
				}
			}
		}
	}
	slices.Sort(parts)
	return strings.Join(parts, "; ")
}

// join puts a detail after a title: "Conflict: Resource exists", or with
// a space when the title ends a sentence.
func join(title, detail string) string {
	switch {
	case title == "":
		return detail
	case detail == "" || detail == title:
		return title
	case strings.HasSuffix(title, ".") || strings.HasSuffix(title, "!") || strings.HasSuffix(title, "?"):
		return title + " " + detail
	}
	return title + ": " + detail
}

// first returns the first non-empty string.
func first(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// collapse turns runs of whitespace into one space, and characters that
// do not print into '?', keeping cutMark.
func collapse(s string) string {
	var b strings.Builder
	space := false
	for _, r := range strings.TrimSpace(s) {
		switch {
		case unicode.IsSpace(r):
			space = true
			continue
		case r == '\uffff':
		case r == utf8.RuneError, !unicode.IsPrint(r):
			r = '?'
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(r)
	}
	return b.String()
}

// bound cuts s to messageLimit bytes at a character boundary, ending it
// with "…", and reports whether it did.
func bound(s string) (string, bool) {
	if len(s) <= messageLimit {
		return s, false
	}
	end := messageLimit
	for end > 0 && !utf8.RuneStart(s[end]) {
		end--
	}
	return s[:end] + "…", true
}

// statusMessage sets se's Message from a JSON error body, or its
// BodyInfo from any other.
func statusMessage(se *StatusError, red Redactor, h http.Header, body []byte, cut bool) {
	red = orNone(red)
	msg, note, ok := apiMessage(body, cut)
	if !ok || strings.TrimSpace(msg) == "" {
		se.BodyInfo = describeBody(red, h, body, cut)
		return
	}
	// Redact before collapsing and cutting, so that neither shows a part
	// of a secret; and again after collapsing, which may assemble one.
	// The cut is where the message stops (after it comes at most what
	// closes an element rendered as JSON).
	msg, _, partial := strings.Cut(msg, cutMark)
	if partial {
		msg = redact.PrefixWith(red, msg)
	} else {
		msg = red.String(msg)
	}
	msg, se.MessageCut = bound(red.String(collapse(msg)))
	if partial && !se.MessageCut {
		msg, se.MessageCut = strings.TrimRight(msg, " ")+"…", true
	}
	se.Message = msg
	if note, _, partial = strings.Cut(note, cutMark); partial {
		note = redact.PrefixWith(red, note) + "…"
	}
	se.MessageNote, _ = bound(red.String(collapse(red.String(note))))
}

// repairJSON returns a JSON document holding what the start of a JSON
// document has: every value it holds whole, the start of a string it
// cuts (marked with cutMark), and its open objects and arrays closed. A
// value cut elsewhere (a number, true) is dropped, and a key whose value
// is cut gets null; a prefix holding no value is null. ok is false when
// prefix is not the start of a JSON document.
func repairJSON(prefix []byte) (doc []byte, ok bool) {
	d := json.NewDecoder(bytes.NewReader(prefix))
	d.UseNumber()
	var out bytes.Buffer
	type open struct {
		close byte
		n     int  // values (for objects, keys) so far
		key   bool // an object whose last token was a key
	}
	var stack []open
	// value writes what goes before a value or a key.
	value := func() {
		if len(stack) == 0 {
			return
		}
		top := &stack[len(stack)-1]
		switch {
		case top.close == '}' && top.key:
			out.WriteByte(':')
			top.key = false
			return
		case top.n > 0:
			out.WriteByte(',')
		}
		top.n++
		if top.close == '}' {
			top.key = true
		}
	}
	for {
		tok, err := d.Token()
		if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return prefix, false
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				value()
				out.WriteByte(byte(t))
				close := byte('}')
				if t == '[' {
					close = ']'
				}
				stack = append(stack, open{close: close})
			default:
				out.WriteByte(byte(t))
				stack = stack[:len(stack)-1]
			}
		default:
			value()
			b, _ := json.Marshal(t)
			out.Write(b)
		}
		if len(stack) == 0 {
			// The whole document: nothing but space may follow.
			if len(bytes.TrimSpace(prefix[d.InputOffset():])) > 0 {
				return prefix, false
			}
			return out.Bytes(), true
		}
	}
	// The cut: the start of a string, a number or a literal may be left.
	rest := bytes.TrimLeft(prefix[d.InputOffset():], " \t\r\n,:")
	if len(rest) > 0 && rest[0] == '"' {
		s, ok := partialString(rest[1:])
		if !ok {
			return prefix, false
		}
		if len(stack) == 0 || stack[len(stack)-1].close == ']' || stack[len(stack)-1].key { // a value, not a key
			value()
			b, _ := json.Marshal(s + cutMark)
			out.Write(b)
		}
	}
	if out.Len() == 0 && len(stack) == 0 {
		return []byte("null"), true
	}
	for i := len(stack) - 1; i >= 0; i-- {
		if stack[i].close == '}' && stack[i].key {
			out.WriteString(":null")
		}
		out.WriteByte(stack[i].close)
	}
	return out.Bytes(), true
}

// partialString decodes the start of a JSON string's body cut short: it
// drops an escape the cut left incomplete.
func partialString(raw []byte) (string, bool) {
	for i := 0; i < len(raw); i++ {
		switch raw[i] {
		case '\\':
			i++
		case '"':
			return "", false // not cut: something else is wrong
		}
	}
	// Drop an incomplete escape at the end: "\", "\u12", or a high
	// surrogate whose low half is missing.
	if i := bytes.LastIndexByte(raw, '\\'); i >= 0 && len(raw)-i < 12 {
		// Count the backslashes before it: an even run is escaped ones.
		j := i
		for j > 0 && raw[j-1] == '\\' {
			j--
		}
		if (i-j)%2 == 0 {
			esc := raw[i:]
			if len(esc) < 2 || esc[1] == 'u' && len(esc) < 6 {
				raw = raw[:i]
			} else if esc[1] == 'u' {
				if r, err := strconv.ParseUint(string(esc[2:6]), 16, 32); err == nil && r >= 0xd800 && r < 0xdc00 {
					raw = raw[:i]
				}
			}
		}
	}
	var s string
	if err := json.Unmarshal(append(append([]byte{'"'}, raw...), '"'), &s); err != nil {
		return "", false
	}
	return s, true
}

// describeBody summarises a body that holds no API message, for an error:
// `body is not JSON: (HTML page) text/html, 12 KiB: "502 Bad Gateway"`,
// `body is not JSON: text/plain, 35 bytes: "first line"`, or for JSON the
// start of it, `body: "{…}"`. Secrets are redacted; "" for an empty body.
func describeBody(red Redactor, h http.Header, body []byte, cut bool) string {
	if len(bytes.TrimSpace(body)) == 0 {
		return ""
	}
	if _, ok := repairJSON(body); !looksHTML(h, body) && (json.Valid(body) || cut && ok) {
		return `body: "` + excerpt(red, body, cut) + `"`
	}
	ct := "no Content-Type"
	if mt, _, err := mime.ParseMediaType(h.Get("Content-Type")); err == nil {
		ct = mt
	}
	size := formatSize(int64(len(body)))
	if n, err := strconv.ParseInt(h.Get("Content-Length"), 10, 64); err == nil && n > int64(len(body)) {
		size = formatSize(n)
	} else if cut {
		size = "more than " + size
	}
	var b strings.Builder
	b.WriteString("body is not JSON: ")
	text := firstLine(body)
	if looksHTML(h, body) {
		b.WriteString("(HTML page) ")
		text = htmlText(body)
	}
	b.WriteString(ct + ", " + size)
	if shown := excerpt(red, []byte(text), cut && text != "" && bytes.HasSuffix(body, []byte(text))); shown != "" {
		b.WriteString(`: "` + shown + `"`)
	}
	return b.String()
}

// formatSize renders a body size: "226 bytes", "12.5 KiB", "3.5 MiB".
func formatSize(n int64) string {
	unit, div := " bytes", 1.0
	switch {
	case n >= 10<<20:
		unit, div = " MiB", 1<<20
	case n >= 10<<10:
		unit, div = " KiB", 1<<10
	default:
		return strconv.FormatInt(n, 10) + unit
	}
	return strings.TrimSuffix(strconv.FormatFloat(float64(n)/div, 'f', 1, 64), ".0") + unit
}

// firstLine returns the first line of body with text on it.
func firstLine(body []byte) string {
	for _, line := range bytes.Split(body, []byte("\n")) {
		if line = bytes.TrimSpace(line); len(line) > 0 {
			return string(line)
		}
	}
	return ""
}

// htmlText returns what an HTML page says first: its <title>, else its
// first <h1>, else the start of its text.
func htmlText(body []byte) string {
	lower := asciiLower(body)
	for _, tag := range []string{"title", "h1"} {
		i := bytes.Index(lower, []byte("<"+tag))
		if i < 0 {
			continue
		}
		j := bytes.IndexByte(lower[i:], '>')
		if j < 0 {
			continue
		}
		start := i + j + 1
		end := bytes.Index(lower[start:], []byte("</"+tag))
		if end < 0 {
			end = len(body) - start
		}
		if t := strings.TrimSpace(html.UnescapeString(stripTags(body[start : start+end]))); t != "" {
			return t
		}
	}
	return strings.TrimSpace(html.UnescapeString(stripTags(body)))
}

// stripTags drops <…> tags, <!-- comments --> and the insides of <script>
// and <style>, leaving spaces between what remains.
func stripTags(b []byte) string {
	var out strings.Builder
	lower := asciiLower(b)
	for i := 0; i < len(b); {
		switch {
		case bytes.HasPrefix(b[i:], []byte("<!--")):
			end := bytes.Index(b[i:], []byte("-->"))
			if end < 0 {
				return out.String()
			}
			i += end + 3
		case bytes.HasPrefix(lower[i:], []byte("<script")), bytes.HasPrefix(lower[i:], []byte("<style")):
			name := "</script"
			if bytes.HasPrefix(lower[i:], []byte("<style")) {
				name = "</style"
			}
			end := bytes.Index(lower[i:], []byte(name))
			if end < 0 {
				return out.String()
			}
			i += end + 1
		case b[i] == '<':
			end := bytes.IndexByte(b[i:], '>')
			if end < 0 {
				return out.String()
			}
			out.WriteByte(' ')
			i += end + 1
		default:
			out.WriteByte(b[i])
			i++
		}
	}
	return out.String()
}

// asciiLower lower-cases the ASCII letters of b, keeping every offset
// (bytes.ToLower does not for invalid UTF-8).
func asciiLower(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return out
}

// Message says what a response's body holds, for an error message: the
// API's own message (`the API says "…"`, whole up to 2 KiB, on one line),
// else a description of the body; secrets are redacted.
func Message(red Redactor, resp *Response) string {
	var se StatusError
	statusMessage(&se, red, resp.Header, resp.Body, resp.cut)
	return se.detail()
}
