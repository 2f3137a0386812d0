package postgres

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// errPasswordEncoding is the error for a url whose user info holds
// characters a url must percent-encode. url.Parse would otherwise report
// part of the password: it reads postgres://u:S3cr/t@host as host "u"
// with port "S3cr", and a password starting with digits before the / even
// parses, into a host, port and database made of the password.
var errPasswordEncoding = errors.New("postgres: url is not valid: the password (or user name) in it contains characters that must be percent-encoded: / # ? @ : % or a space; " +
	"encode them (/ as %2F, # as %23, ? as %3F, @ as %40, : as %3A, % as %25, a space as %20), or leave the password out of the url and set PGPASSWORD")

// parseURL parses a postgres:// url. Its errors never quote the url's user
// info, and it refuses urls that parse but not as meant: one with a #
// (connection urls have no fragment: a # there is part of a value that was
// not encoded), or with an @ after the host and no user info (a password
// whose /, ? or # ended the user info early).
func parseURL(raw string) (*url.URL, error) {
	userinfo := rawUserinfo(raw)
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
		if needsEncoding(userinfo) {
			return nil, errPasswordEncoding
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the URL, password included
		}
		return nil, redact(fmt.Errorf("postgres: url is not valid: %v", err), secretsOf(raw, "")...)
	}
	if key, ok := badQueryValue(u.RawQuery); !ok {
		// u.Query would drop the parameter silently.
		return nil, fmt.Errorf("postgres: url parameter %s is not percent-encoded correctly: encode %% as %%25, # as %%23, & as %%26, + as %%2B and a space as %%20", key)
	}
	return u, nil
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
		if _, err := url.QueryUnescape(v); err != nil {
			if dk, err := url.QueryUnescape(k); err == nil {
				return dk, false
			}
			return "(a parameter name)", false
		}
		if _, err := url.QueryUnescape(k); err != nil {
			return "(a parameter name)", false
		}
	}
	return "", true
}

// secretsOf returns every form in which a password given in raw (a url or
// a keyword/value string) or as password could appear in a message: as
// written, decoded, and encoded as url user info or a query value.
func secretsOf(raw, password string) []string {
	var found []string
	if info := rawUserinfo(raw); info != "" {
		if _, p, ok := strings.Cut(info, ":"); ok {
			found = append(found, p)
		}
	}
	if u, err := url.Parse(raw); err == nil {
		if u.User != nil {
			p, _ := u.User.Password()
			found = append(found, p)
		}
		for _, kv := range strings.Split(u.RawQuery, "&") {
			if k, v, _ := strings.Cut(kv, "="); strings.EqualFold(k, "password") {
				found = append(found, v)
			}
		}
	}
	if p := keywordValues(raw)["password"]; p != "" {
		found = append(found, p)
	}
	found = append(found, password)
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
