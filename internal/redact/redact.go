// Package redact is Ferry's secret service: a Redactor knows the secrets
// of a process (tokens, passwords, keys) and hides them, in every form they
// take in URLs and JSON, from messages, logs and stored text. Handler wraps
// a log/slog handler so that no log line shows one.
package redact

import (
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Redacted replaces every secret the Redactor hides.
const Redacted = "REDACTED"

// sensitiveParamWords mark a query parameter whose value URL hides whatever
// it is: a parameter is sensitive when its lower-cased name contains one of
// them. The match is deliberately broad ("sig" hides "signature", "key" hides
// "page_key", "auth" hides "author"): hiding a harmless value costs a little
// debugging, leaking a credential costs a rotation.
var sensitiveParamWords = []string{
	"token", "key", "secret", "password", "passwd", "signature", "sig",
	"auth", "credential", "session",
}

// Redactor replaces known secrets in text, and credentials in URLs, with
// "REDACTED". Every error message, log line and stored message Ferry
// produces goes through one.
//
// Every non-empty secret is kept, however short. A one- or two-byte secret
// makes messages hard to read (every occurrence of those bytes is hidden) but
// dropping it silently would leak it, and a secret is what the configuration
// says it is. Register real credentials only, not ordinary values.
//
// The zero value and a nil *Redactor know no secrets; URL still hides
// passwords and sensitive query parameters. A Redactor is safe for concurrent
// use.
type Redactor struct {
	mu    sync.Mutex // serializes Add
	state atomic.Pointer[redactState]
}

// redactState is immutable once published, so String needs no lock.
type redactState struct {
	secrets []string
	// urlForms are the secrets and their url.QueryEscape and
	// url.PathEscape forms.
	urlForms []string
	maxLen   int // longest text hidden as one secret, in bytes
}

// New returns a Redactor that hides the given secrets. Empty strings
// are ignored.
func New(secrets ...string) *Redactor {
	r := &Redactor{}
	r.Add(secrets...)
	return r
}

// Add registers more secrets, for example a freshly refreshed OAuth2 access
// token. Empty strings and secrets already known are ignored. Add is safe to
// call while other goroutines redact; it panics on a nil Redactor rather
// than silently forgetting a secret.
func (r *Redactor) Add(secrets ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var known []string
	if st := r.state.Load(); st != nil {
		known = st.secrets
	}
	all := slices.Clone(known)
	for _, s := range secrets {
		if s != "" && !slices.Contains(all, s) {
			all = append(all, s)
		}
	}
	if len(all) == len(known) {
		return
	}
	// Hide each secret in the forms it takes inside URLs, too.
	var forms []string
	longest := 0
	for _, s := range all {
		for _, p := range []string{s, url.QueryEscape(s), url.PathEscape(s)} {
			if !slices.Contains(forms, p) {
				forms = append(forms, p)
			}
		}
		longest = max(longest, len(s))
	}
	r.state.Store(&redactState{
		secrets:  all,
		urlForms: forms,
		maxLen:   viewExpansion * longest,
	})
}

// String returns s with every known secret replaced by "REDACTED", in
// every spelling it finds: as is, url.QueryEscape'd and url.PathEscape'd,
// percent-encoded in any other way, escaped as JSON encoders write strings
// (\" \\ \/ \n … and \uXXXX for any character, hex in either case,
// surrogate pairs included), and in a JSON document inside a URL, a URL
// inside a JSON string, or a JSON document inside a JSON string. A nil
// Redactor returns s unchanged.
//
// Its cost is linear in len(s) for a given set of secrets; text without
// a backslash, '%' or '+' is only searched as is.
func (r *Redactor) String(s string) string {
	st := r.load()
	if st == nil {
		return s
	}
	spans, _ := st.find(s, false)
	if spans == nil {
		return s
	}
	return replace(s, spans, len(s))
}

// Prefix is String for text that is only the start of a longer one, such
// as a response body cut at a size limit: it also drops the end of s when
// that end could be the beginning of a secret, in any spelling String
// knows (an escape cut in half included). The caller should mark the cut.
func (r *Redactor) Prefix(s string) string {
	st := r.load()
	if st == nil {
		return s
	}
	spans, tail := st.find(s, true)
	return replace(s, spans, tail)
}

// replace returns s[:end] with the spans replaced by Redacted.
func replace(s string, spans []span, end int) string {
	var b strings.Builder
	b.Grow(end)
	at := 0
	for _, sp := range spans {
		if sp.start >= end {
			break
		}
		b.WriteString(s[at:sp.start])
		b.WriteString(Redacted)
		at = min(sp.end, end)
	}
	if at < end {
		b.WriteString(s[at:end])
	}
	return b.String()
}

// URL returns raw fit for logs and error messages: String applied to it, the
// password of its userinfo replaced, and the value of every query (and
// fragment) parameter whose name looks sensitive (it contains token, key,
// secret, password, passwd, signature, sig, auth, credential or session,
// in any case) replaced. Percent-encoded path segments and parameter values
// that decode to a secret are hidden too.
//
// URL works on the text rather than on url.Parse's result, so a URL that does
// not parse is redacted in the same way instead of falling back to String,
// and the parts it does not touch keep their original spelling. A URL that
// does not parse and has an '@' after its host (a password holding '/',
// '?' or '#' ends the host early) shows nothing between "://" and its last
// '@'.
func (r *Redactor) URL(raw string) string {
	if at := brokenUserinfo(raw); at >= 0 {
		// A password with a '/', '?' or '#' that is not percent-encoded
		// ends the host early, so that the URL does not parse: hide all
		// that may be userinfo.
		scheme := strings.Index(raw, "://") + len("://")
		raw = raw[:scheme] + Redacted + raw[at:]
	}
	rest, frag, hasFrag := strings.Cut(raw, "#")
	rest, query, hasQuery := strings.Cut(rest, "?")
	var b strings.Builder
	b.Grow(len(raw))
	b.WriteString(r.base(rest))
	if hasQuery {
		b.WriteByte('?')
		b.WriteString(r.params(query))
	}
	if hasFrag {
		b.WriteByte('#')
		b.WriteString(r.params(frag))
	}
	return r.String(b.String())
}

// base redacts the part of a URL before its query: the userinfo password and
// path segments whose decoded form holds a secret.
func (r *Redactor) base(s string) string {
	prefix, path := "", s
	if i := strings.Index(s, "://"); i >= 0 {
		authStart := i + len("://")
		authEnd := len(s)
		if j := strings.IndexByte(s[authStart:], '/'); j >= 0 {
			authEnd = authStart + j
		}
		authority := s[authStart:authEnd]
		if at := strings.LastIndexByte(authority, '@'); at >= 0 {
			if user, _, ok := strings.Cut(authority[:at], ":"); ok {
				authority = user + ":" + Redacted + authority[at:]
			}
		}
		prefix, path = s[:authStart]+authority, s[authEnd:]
	}
	if r.load() == nil || !strings.Contains(path, "%") {
		return prefix + path
	}
	segs := strings.Split(path, "/")
	for i, seg := range segs {
		if !strings.Contains(seg, "%") {
			continue
		}
		if dec, err := url.PathUnescape(seg); err == nil {
			if red := r.String(dec); red != dec {
				segs[i] = url.PathEscape(red)
			}
		}
	}
	return prefix + strings.Join(segs, "/")
}

// params redacts a query string or fragment made of name=value pairs
// separated by '&' or ';', keeping the separators and the spelling of
// everything it does not hide.
func (r *Redactor) params(q string) string {
	var b strings.Builder
	b.Grow(len(q))
	for q != "" {
		part := q
		if i := strings.IndexAny(q, "&;"); i >= 0 {
			part, q = q[:i], q[i:]
		} else {
			q = ""
		}
		b.WriteString(r.param(part))
		if q != "" {
			b.WriteByte(q[0])
			q = q[1:]
		}
	}
	return b.String()
}

// param redacts one name=value pair.
func (r *Redactor) param(part string) string {
	name, value, ok := strings.Cut(part, "=")
	if !ok || value == "" {
		return part
	}
	decName, err := url.QueryUnescape(name)
	if err != nil {
		decName = name
	}
	if sensitiveParam(decName) {
		return name + "=" + Redacted
	}
	if r.load() != nil && strings.ContainsAny(value, "%+") {
		if dec, err := url.QueryUnescape(value); err == nil {
			if red := r.String(dec); red != dec {
				return name + "=" + url.QueryEscape(red)
			}
		}
	}
	return part
}

// sensitiveParam reports whether a query parameter's name suggests its value
// is a credential.
func sensitiveParam(name string) bool {
	name = strings.ToLower(name)
	for _, w := range sensitiveParamWords {
		if strings.Contains(name, w) {
			return true
		}
	}
	return false
}

// load returns the current secrets, or nil if there are none.
func (r *Redactor) load() *redactState {
	if r == nil {
		return nil
	}
	return r.state.Load()
}

// MaxLen returns a bound on the length of the text String hides as one
// occurrence of a secret (a secret escaped as JSON takes up to 36 bytes
// per byte of the secret), 0 if it knows none: a secret cut at the end
// of an excerpt starts less than that many bytes before the cut.
func (r *Redactor) MaxLen() int {
	if st := r.load(); st != nil {
		return st.maxLen
	}
	return 0
}
