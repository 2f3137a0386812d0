package mysql

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// errPasswordEncoding is the error for a mysql:// url whose user info
// holds characters a url must percent-encode. url.Parse would otherwise
// read mysql://u:S3cr/t@host as host "u" with port "S3cr", or, for a
// password starting with digits, as a host, port and database made of the
// password, which the connection error would then show.
var errPasswordEncoding = errors.New("mysql: url is not valid: the password (or user name) in it contains characters that must be percent-encoded: / # ? @ : % or a space; " +
	"encode them (/ as %2F, # as %23, ? as %3F, @ as %40, : as %3A, % as %25, a space as %20), " +
	"or write the url in the driver's form user:password@tcp(host:3306)/database, which takes the password as it is")

// isScheme reports whether s is a url scheme (RFC 3986: a letter, then
// letters, digits, + - .), so that a driver DSN whose password holds ://
// is not read as a url.
func isScheme(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return s != ""
}

// parseURL parses a mysql:// url. Its errors never quote the url's user
// info, and it refuses urls that parse but not as meant: one with a #
// (connection urls have no fragment: a # there is part of a value that was
// not encoded), or with an @ after the host and no user info (a password
// whose /, ? or # ended the user info early).
func parseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err == nil {
		switch {
		case strings.Contains(raw, "#"):
			err = errors.New("it holds a #, and connection urls have no fragment: percent-encode a # that is part of a value as %23")
		case u.User == nil && (strings.Contains(u.Path, "@") || queryKeyHasAt(u.RawQuery)):
			err = errors.New("it has an @ after the host: percent-encode an @ that is part of a value as %40")
		}
	}
	if err != nil {
		if needsEncoding(rawUserinfo(raw)) {
			return nil, errPasswordEncoding
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the URL, password included
		}
		return nil, redact(fmt.Errorf("mysql: url is not a valid mysql://user:password@host:port/database url: %v", err), secretsOf(raw, "")...)
	}
	if key, ok := badQueryValue(u.RawQuery); !ok {
		return nil, fmt.Errorf("mysql: url parameter %s is not percent-encoded correctly: encode %% as %%25, # as %%23, & as %%26, + as %%2B and a space as %%20", key)
	}
	return u, nil
}

// takePassword removes the password= parameters from a url's raw query
// and returns the password they give, decoded: the driver would otherwise
// send it to the server as a session variable (SET password=…), whose
// syntax error quotes it.
func takePassword(rawQuery string) (rest, password string, found bool) {
	var keep []string
	for _, kv := range strings.Split(rawQuery, "&") {
		k, v, _ := strings.Cut(kv, "=")
		if dk, err := url.QueryUnescape(k); err == nil && strings.EqualFold(dk, "password") {
			password, _ = url.QueryUnescape(v)
			found = true
			continue
		}
		if kv != "" {
			keep = append(keep, kv)
		}
	}
	return strings.Join(keep, "&"), password, found
}

// rawUserinfo returns what a url's user info is, read the way a person
// writes it: everything between :// and the last @ ("" when there is no
// @). It is only a guess, for messages and redaction, when the url does
// not parse as meant.
func rawUserinfo(raw string) string {
	i := strings.Index(raw, "://")
	if i < 0 {
		return ""
	}
	rest := raw[i+3:]
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return ""
	}
	return rest[:at]
}

// needsEncoding reports whether s, a url's user info as written, holds a
// character that url syntax requires percent-encoding there (an @ is
// accepted, as by url.Parse).
func needsEncoding(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-._:~!$&'()*+,;=@", c) >= 0:
		case c == '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return true
			}
		default:
			return true
		}
	}
	return false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// queryKeyHasAt reports whether a parameter's name (not its value) holds
// an @: what follows a password's ? read as a query.
func queryKeyHasAt(q string) bool {
	for _, kv := range strings.Split(q, "&") {
		k, _, _ := strings.Cut(kv, "=")
		if strings.Contains(k, "@") {
			return true
		}
	}
	return false
}

// badQueryValue returns the name of the first parameter whose name or
// value is not valid percent-encoding; ok is true when all are.
func badQueryValue(q string) (key string, ok bool) {
	for _, kv := range strings.Split(q, "&") {
		k, v, _ := strings.Cut(kv, "=")
		dk, kerr := url.QueryUnescape(k)
		if kerr != nil {
			return "(a parameter name)", false
		}
		if _, err := url.QueryUnescape(v); err != nil {
			return dk, false
		}
	}
	return "", true
}

// dsnPassword returns the password of a driver DSN as the driver reads
// it: between the first : and the last @ before the last /.
func dsnPassword(raw string) string {
	if i := strings.LastIndex(raw, "/"); i >= 0 {
		raw = raw[:i]
	}
	at := strings.LastIndex(raw, "@")
	if at < 0 {
		return ""
	}
	_, p, _ := strings.Cut(raw[:at], ":")
	return p
}

// secretsOf returns every form in which a password given in raw (a url or
// a DSN) or as password could appear in a message: as written, decoded,
// and encoded as url user info or a query value.
func secretsOf(raw, password string) []string {
	found := []string{password}
	if i := strings.Index(raw, "://"); i <= 0 || !isScheme(raw[:i]) {
		found = append(found, dsnPassword(raw))
	}
	if info := rawUserinfo(raw); info != "" {
		if _, p, ok := strings.Cut(info, ":"); ok {
			found = append(found, p)
		}
	}
	if i := strings.Index(raw, "?"); i >= 0 {
		for _, kv := range strings.Split(raw[i+1:], "&") {
			if k, v, _ := strings.Cut(kv, "="); strings.EqualFold(k, "password") {
				found = append(found, v)
			}
		}
	}
	if u, err := url.Parse(raw); err == nil && u.User != nil {
		p, _ := u.User.Password()
		found = append(found, p)
	}
	var out []string
	for _, p := range found {
		if p == "" {
			continue
		}
		out = append(out, p, url.QueryEscape(p), url.PathEscape(p), strings.TrimPrefix(url.UserPassword("", p).String(), ":"))
		if d, err := url.QueryUnescape(p); err == nil {
			out = append(out, d)
		}
		if d, err := url.PathUnescape(p); err == nil {
			out = append(out, d)
		}
	}
	return out
}

// redact removes secrets from an error's message (case-insensitively:
// the driver lower-cases some of what it quotes), keeping the error chain
// for errors.Is and errors.As. Longer secrets go first, so none leaves a
// part of itself behind; secrets shorter than 3 bytes are left, as
// replacing them would garble the message without hiding much.
func redact(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	secrets = slices.Clone(secrets)
	slices.SortFunc(secrets, func(a, b string) int { return len(b) - len(a) })
	msg := err.Error()
	for _, s := range secrets {
		if len(s) >= 3 {
			msg = replaceFold(msg, s, "xxxxx")
		}
	}
	if msg == err.Error() {
		return err
	}
	return &redactedError{msg: msg, err: err}
}

// replaceFold replaces every match of old in s, compared without regard
// to case, with repl.
func replaceFold(s, old, repl string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		if i+len(old) <= len(s) && strings.EqualFold(s[i:i+len(old)], old) {
			b.WriteString(repl)
			i += len(old)
			continue
		}
		b.WriteByte(s[i])
		i++
	}
	return b.String()
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }
