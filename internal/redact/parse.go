package redact

import (
	"errors"
	"net/url"
	"strings"
)

// URLError is the error of ParseURL: why a URL does not parse, without the
// URL's secrets. Go's own url.Parse error quotes the input, and the part
// it quotes may be a piece of a password: "https://u:S3cr/et@h" fails
// with `invalid port ":S3cr" after host`.
type URLError struct {
	// URL is the URL as Redactor.URL shows it: for a URL with an '@'
	// after its host, everything between "://" and the last '@' is hidden.
	URL string
	// Reason says why it does not parse, quoting nothing of it, with a
	// hint when a user name or password may hold a character that must be
	// percent-encoded.
	Reason string
}

func (e *URLError) Error() string { return "invalid URL " + e.URL + ": " + e.Reason }

// userinfoHint ends the reason of a URL that looks like it has a user name
// or password.
const userinfoHint = " (percent-encode / ? # @ : and % in a user name or password: %2F %3F %23 %40 %3A %25)"

// ParseURL is url.Parse with an error fit for messages: a *URLError that
// shows the URL redacted and quotes none of it.
func (r *Redactor) ParseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err == nil {
		return u, nil
	}
	reason := "invalid URL"
	var (
		ue     *url.Error
		escape url.EscapeError
		host   url.InvalidHostError
	)
	switch {
	case errors.As(err, &escape):
		reason = `invalid percent-escape (a "%" not followed by two hex digits)`
	case errors.As(err, &host):
		reason = "invalid character in host name"
	case errors.As(err, &ue):
		reason = unquote(ue.Err.Error())
	}
	if brokenUserinfo(raw) >= 0 {
		reason += userinfoHint
	}
	return nil, &URLError{URL: r.URL(raw), Reason: reason}
}

// unquote removes the quoted parts of an error message ("invalid port
// \":x\" after host" → "invalid port after host").
func unquote(msg string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(msg, '"')
		if i < 0 {
			b.WriteString(msg)
			break
		}
		b.WriteString(strings.TrimRight(msg[:i], " "))
		rest := msg[i+1:]
		j := 0
		for j < len(rest) && rest[j] != '"' {
			if rest[j] == '\\' {
				j++
			}
			j++
		}
		msg = rest[min(j+1, len(rest)):]
	}
	return strings.TrimPrefix(b.String(), "net/url: ")
}

// brokenUserinfo returns, for a URL that does not parse and whose last
// '@' comes after the end of what url.Parse takes for its host (a
// password holding '/', '?' or '#' ends the host early), the index of
// that '@'; -1 otherwise. Such a URL is meant to have userinfo up to it.
func brokenUserinfo(raw string) int {
	i := strings.Index(raw, "://")
	if i < 0 {
		return -1
	}
	rest := raw[i+3:]
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		return -1
	}
	at := strings.LastIndexByte(rest, '@')
	if at < end {
		return -1
	}
	if _, err := url.Parse(raw); err == nil {
		return -1
	}
	return i + 3 + at
}

// redactor is what PrefixWith and ParseURLWith need: a *Redactor, or
// another implementation of the Redactor interfaces httpx and source
// declare.
type redactor interface {
	String(s string) string
	URL(raw string) string
	MaxLen() int
}

// PrefixWith is r.Prefix when r is a *Redactor; for another redactor it is
// r.String of s without its last r.MaxLen()-1 bytes, which is as safe but
// drops more.
func PrefixWith(r redactor, s string) string {
	if rr, ok := r.(*Redactor); ok || r == nil {
		return rr.Prefix(s)
	}
	return r.String(s[:max(0, len(s)-max(0, r.MaxLen()-1))])
}

// ParseURLWith is r.ParseURL when r is a *Redactor; for another redactor
// the URL in the error is what a Redactor knowing no secret shows,
// passed through r.String.
func ParseURLWith(r redactor, raw string) (*url.URL, error) {
	if rr, ok := r.(*Redactor); ok || r == nil {
		return rr.ParseURL(raw)
	}
	u, err := New().ParseURL(raw)
	if ue, ok := err.(*URLError); ok {
		ue.URL = r.String(ue.URL)
	}
	return u, err
}
