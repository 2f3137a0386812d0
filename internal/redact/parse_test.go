package redact

import (
	"errors"
	"strings"
	"testing"
)

// passwords hold the characters that break a URL's userinfo when they
// are not percent-encoded.
var passwords = []string{"S3cr3t/Part9", "S3cr3t#Part9", "S3cr3t?Part9", "S3cr3t@Part9", "S3cr3t:Part9", "S3c/r3T#x9Q?k7W@m2Z:v5J"}

// pieces are the parts of a password a broken URL's error could quote.
func pieces(pw string) []string {
	return strings.FieldsFunc(pw, func(r rune) bool { return strings.ContainsRune("/#?@:", r) })
}

func TestParseURLHidesPasswords(t *testing.T) {
	for _, pw := range passwords {
		for _, raw := range []string{
			"https://ferry:" + pw + "@api.example.com:8443/v1/orders?page=2",
			"https://ferry:" + pw + "@api.example.com/v1",
			"http://ferry:" + pw + "@127.0.0.1:9/x#frag",
		} {
			u, err := New().ParseURL(raw)
			for _, text := range []string{errText(err), New().URL(raw)} {
				for _, p := range pieces(pw) {
					if strings.Contains(text, p) {
						t.Errorf("ParseURL(%q): %q shows %q", raw, text, p)
					}
				}
			}
			if err == nil {
				if got, _ := u.User.Password(); got != pw {
					t.Errorf("ParseURL(%q) parsed password %q", raw, got)
				}
				continue
			}
			var ue *URLError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), "percent-encode") {
				t.Errorf("ParseURL(%q) = %v, want a *URLError telling to percent-encode", raw, err)
			}
		}
	}
}

func TestParseURLReasons(t *testing.T) {
	tests := map[string]string{
		"http://h/%zz?token=s3cr":  `invalid URL http://h/%zz?token=REDACTED: invalid percent-escape (a "%" not followed by two hex digits)`,
		"http://ho st/":            "invalid URL http://ho st/: invalid character in host name",
		"http://h:port/":           "invalid URL http://h:port/: invalid port after host",
		"://nothing":               "invalid URL ://nothing: missing protocol scheme",
		"http://u:p/w@h/":          "invalid URL http://REDACTED@h/: invalid port after host (percent-encode / ? # @ : and % in a user name or password: %2F %3F %23 %40 %3A %25)",
		"https://api.example.com/": "",
	}
	for raw, want := range tests {
		_, err := New().ParseURL(raw)
		if got := errText(err); got != want {
			t.Errorf("ParseURL(%q):\n%s\nwant\n%s", raw, got, want)
		}
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestRedactorURLBrokenUserinfo checks URL on URLs whose password holds a
// character that ends the userinfo early, so that they do not parse (or
// parse with the password in the path, query or fragment).
func TestRedactorURLBrokenUserinfo(t *testing.T) {
	for _, pw := range passwords {
		for _, raw := range []string{
			"https://ferry:" + pw + "@api.example.com:8443/v1/orders?page=2",
			"https://ferry:" + pw + "@api.example.com/v1",
			"http://ferry:" + pw + "@127.0.0.1:9/x#frag",
		} {
			got := New().URL(raw)
			for _, p := range pieces(pw) {
				if strings.Contains(got, p) {
					t.Errorf("URL(%q) = %q shows %q", raw, got, p)
				}
			}
			if !strings.Contains(got, "REDACTED") || !strings.Contains(got, "api.example.com") && !strings.Contains(got, "127.0.0.1") {
				t.Errorf("URL(%q) = %q, want the password hidden and the host kept", raw, got)
			}
		}
	}
	// A URL that parses keeps an '@' in its path.
	for _, raw := range []string{"https://discord.com/api/users/@me", "https://h:8443/p?email=a@b.com"} {
		if got := New().URL(raw); got != raw {
			t.Errorf("URL(%q) = %q, want it unchanged", raw, got)
		}
	}
}

// FuzzParseURL puts a password into a URL's userinfo, unescaped, and
// checks that when the URL does not parse, neither ParseURL's error nor
// URL shows a piece of it: the pieces a '/', '?', '#', '@' or ':' cuts it
// into, of 4 bytes or more, that appear nowhere else in the URL.
func FuzzParseURL(f *testing.F) {
	f.Add("ferry", "S3cr3t/Part9", "api.example.com:8443", "/v1?page=2")
	f.Add("u", "a#bcde?fghi", "127.0.0.1:9", "/x#frag")
	f.Add("u", "%zzpass/word", "h", "")
	f.Fuzz(func(t *testing.T, user, password, host, rest string) {
		raw := "https://" + user + ":" + password + "@" + host + rest
		_, err := New().ParseURL(raw)
		if err == nil {
			return // it parsed: the userinfo is what url.Parse says it is
		}
		outside := "https://" + user + ":" + "@" + host + rest
		texts := []string{err.Error(), New().URL(raw)}
		for _, p := range strings.FieldsFunc(password, func(r rune) bool { return strings.ContainsRune("/?#@:", r) }) {
			if len(p) < 4 || strings.Contains(outside, p) || strings.Contains(userinfoHint+"invalid URL REDACTED", p) {
				continue
			}
			for _, text := range texts {
				if strings.Contains(strings.ReplaceAll(text, "REDACTED", "\x00"), p) {
					t.Fatalf("ParseURL(%q): %q shows %q", raw, text, p)
				}
			}
		}
	})
}
