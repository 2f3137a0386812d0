package httpx

import (
	"bytes"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/ferry-dev/ferry/internal/redact"
)

var (
	_ error = (*StatusError)(nil)
	_ error = (*RequestError)(nil)
)

// ErrBodyTooLarge is wrapped by the error of a response whose body is larger
// than Config.MaxBodyBytes. Such a request is not retried.
var ErrBodyTooLarge = errors.New("response body too large")

// ErrAttemptTimeout is wrapped by the error of an attempt that ran out of
// Config.Timeout. It is deliberately not context.DeadlineExceeded: only the
// caller's own context ending makes Do's error match that.
var ErrAttemptTimeout = errors.New("attempt timed out")

// errTooManyRedirects stops a redirect loop; it is not retried.
var errTooManyRedirects = errors.New("stopped after 10 redirects")

// StatusError is returned by Client.Do for a response outside 2xx: one that
// is not retried, the last one when attempts run out, or one whose
// Retry-After is longer than Config.MaxRetryAfter. Every field is already
// redacted.
type StatusError struct {
	Method     string
	URL        string // redacted
	Status     int
	StatusText string // http.StatusText(Status)
	// Message is the API's own error message, taken from the usual fields
	// of a JSON error body (message, error, error_description, errors[],
	// detail, title), on one line, whole up to 2 KiB; "" when the body
	// had none.
	Message string
	// MessageCut reports that Message is only the start of the API's
	// message (it ends with "…").
	MessageCut bool
	// MessageNote is what the API added to its message: the parameter at
	// fault, a documentation link ("param limit; see https://…").
	MessageNote string
	// BodyInfo describes a body without a Message: for one that is not
	// JSON, its type, size and first words (`body is not JSON: (HTML page)
	// text/html, 12.5 KiB: "502 Bad Gateway"`), for JSON its start.
	BodyInfo string
	// Excerpt is the start of the response body, at most about 200 bytes,
	// on one line, with non-printable bytes replaced and secrets redacted.
	Excerpt string
	// HTML reports whether the body looked like an HTML page (an error page
	// from a proxy or a login wall rather than the API).
	HTML     bool
	Attempts int
	// RetryAfter is how long the server asked to wait (its Retry-After
	// header), 0 if it did not say.
	RetryAfter time.Duration
	// RetryAfterLimit is Config.MaxRetryAfter when the request failed
	// because RetryAfter exceeded it, 0 otherwise.
	RetryAfterLimit time.Duration
	// RateLimit names the rate-limit header that set RetryAfter when
	// Retry-After did not ("X-RateLimit-Remaining: 0"), "" otherwise.
	RateLimit string
}

// Error reads as one sentence: the request, the status, what the client
// did, and what the API said, like
//
//	GET https://api.example.com/v1/charges?limit=500: 400 Bad Request (not retried): the API says "This value must be less than or equal to 100." (param limit)
//	GET https://api.example.com/v1/orders?api_key=REDACTED: 502 Bad Gateway (gave up after 6 attempts): body is not JSON: (HTML page) text/html, 552 bytes: "502 Bad Gateway"
func (e *StatusError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: %d", e.Method, e.URL, e.Status)
	if e.StatusText != "" {
		b.WriteString(" " + e.StatusText)
	}
	b.WriteString(" (" + e.action() + ")")
	if d := e.detail(); d != "" {
		b.WriteString(": " + d)
	}
	return b.String()
}

// action says what the client did about the response.
func (e *StatusError) action() string {
	s := "not retried"
	if e.Attempts > 1 {
		s = fmt.Sprintf("gave up after %d attempts", e.Attempts)
	}
	switch {
	case e.RetryAfterLimit > 0 && e.RateLimit != "":
		s += fmt.Sprintf(": the rate limit (%s) resets in %s, later than max_wait (%s) allows waiting", e.RateLimit, e.RetryAfter.Round(time.Second), e.RetryAfterLimit)
	case e.RetryAfterLimit > 0:
		s += fmt.Sprintf(": the server asked to wait %s before retrying, more than max_retry_after (%s)", e.RetryAfter, e.RetryAfterLimit)
	}
	return s
}

// detail says what the body said.
func (e *StatusError) detail() string {
	switch {
	case e.Message != "":
		s := `the API says "` + e.Message + `"`
		var notes []string
		if e.MessageCut {
			notes = append(notes, "message cut at 2 KiB")
		}
		if e.MessageNote != "" {
			notes = append(notes, e.MessageNote)
		}
		if len(notes) > 0 {
			s += " (" + strings.Join(notes, "; ") + ")"
		}
		return s
	case e.BodyInfo != "":
		return e.BodyInfo
	case e.Excerpt != "":
		s := "body: "
		if e.HTML {
			s += "(HTML page) "
		}
		return s + `"` + e.Excerpt + `"`
	}
	return ""
}

// RenewError is returned by Client.Do when a response refused the
// credential (a 401) and renewing it failed: Status is the response, Err
// why no new credential could be had (the token endpoint's own answer).
type RenewError struct {
	Status *StatusError
	Err    error

	red Redactor
}

func (e *RenewError) Error() string {
	return e.Status.Error() + "; renewing the credential failed: " + orNone(e.red).String(e.Err.Error())
}

// Unwrap returns the response's error and the renewal's.
func (e *RenewError) Unwrap() []error { return []error{e.Status, e.Err} }

// RequestError is returned by Client.Do when a request fails without a
// non-2xx response to blame: a network error, a timeout, a body that could
// not be read or was too large, an error from the check function or the
// Authenticator, or the caller's context ending. Err is the cause of the last
// attempt; Error() is redacted, Err itself is not.
type RequestError struct {
	Method   string
	URL      string // redacted
	Attempts int    // attempts made, 0 if none was
	Err      error

	red Redactor
}

// Error reads like
//
//	GET https://api.example.com/v1/orders: after 6 attempts: read body: unexpected EOF
func (e *RequestError) Error() string {
	msg := e.Method + " " + e.URL + ": "
	if e.Attempts > 1 {
		msg += "after " + strconv.Itoa(e.Attempts) + " attempts: "
	}
	red := orNone(e.red)
	if e.Err == nil {
		return red.String(msg + "unknown error")
	}
	return red.String(msg + e.Err.Error())
}

// orNone returns r, or a Redactor that knows no secret when r is nil.
func orNone(r Redactor) Redactor {
	if r == nil {
		return redact.New()
	}
	return r
}

// Unwrap returns the cause, so errors.Is(err, context.Canceled) and
// errors.Is(err, ErrBodyTooLarge) work.
func (e *RequestError) Unwrap() error { return e.Err }

// redactedError hides secrets in an error's message while keeping it
// matchable with errors.Is and errors.As.
type redactedError struct {
	err error
	red Redactor
}

func (e *redactedError) Error() string { return orNone(e.red).String(e.err.Error()) }
func (e *redactedError) Unwrap() error { return e.err }

// excerptLimit is how many bytes of a body an excerpt shows at most.
const excerptLimit = 200

// excerpt returns the start of body on one line: secrets redacted, runs of
// whitespace collapsed to one space, invalid UTF-8 and non-printable
// characters replaced by '?', and "…" appended when it was shortened. cut
// says body is itself only the start of a longer body.
func excerpt(red Redactor, body []byte, cut bool) string {
	red = orNone(red)
	s := red.String(string(body))
	if cut {
		// A secret may straddle the cut; drop what could be its start.
		s = redact.PrefixWith(red, string(body))
	}
	var b strings.Builder
	// Keep enough past the limit that the second redaction below sees
	// every secret starting inside the limit.
	room := excerptLimit + red.MaxLen()
	space := false
	for i := 0; i < len(s) && b.Len() < room; {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		switch {
		case unicode.IsSpace(r):
			space = true
			continue
		case r == utf8.RuneError && size == 1, !unicode.IsPrint(r):
			r = '?'
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(r)
	}
	stopped := b.Len() >= room
	longer := cut || stopped
	// Collapsing whitespace or replacing a byte could have assembled a
	// secret, so redact again.
	out := red.String(b.String())
	if stopped {
		out = redact.PrefixWith(red, b.String())
	}
	if len(out) > excerptLimit {
		cutAt := excerptLimit
		for cutAt > 0 && !utf8.RuneStart(out[cutAt]) {
			cutAt--
		}
		out, longer = out[:cutAt], true
	}
	if longer {
		out = strings.TrimRight(out, " ") + "…"
	}
	return out
}

// looksHTML reports whether a response is an HTML page, by its Content-Type
// or by how its body starts.
func looksHTML(h http.Header, body []byte) bool {
	if mt, _, err := mime.ParseMediaType(h.Get("Content-Type")); err == nil &&
		(mt == "text/html" || mt == "application/xhtml+xml") {
		return true
	}
	start := bytes.TrimLeft(body[:min(len(body), 512)], " \t\r\n\ufeff")
	start = bytes.ToLower(start[:min(len(start), 14)])
	return bytes.HasPrefix(start, []byte("<!doctype html")) || bytes.HasPrefix(start, []byte("<html"))
}

// formatBytes renders n bytes for a message: "256 MiB", "1500 bytes".
func formatBytes(n int64) string {
	const (
		kib = 1 << 10
		mib = 1 << 20
		gib = 1 << 30
	)
	switch {
	case n >= gib && n%gib == 0:
		return strconv.FormatInt(n/gib, 10) + " GiB"
	case n >= mib && n%mib == 0:
		return strconv.FormatInt(n/mib, 10) + " MiB"
	case n >= kib && n%kib == 0:
		return strconv.FormatInt(n/kib, 10) + " KiB"
	}
	return strconv.FormatInt(n, 10) + " bytes"
}

// Describe summarises a response body for an error message: whether it is
// an HTML page and its start on one line, secrets redacted, e.g.
// `(HTML page) "<html><body>Bad gateway…"`.
func Describe(red Redactor, h http.Header, body []byte) string {
	s := strconv.Quote(excerpt(red, body, false))
	if looksHTML(h, body) {
		return "(HTML page) " + s
	}
	return s
}
