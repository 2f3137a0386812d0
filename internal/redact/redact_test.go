package redact

import (
	"net/url"
	"strings"
	"sync"
	"testing"
)

func TestRedactorString(t *testing.T) {
	tests := []struct {
		name    string
		secrets []string
		in      string
		want    string
	}{
		{"every occurrence", []string{"s3cr3t"}, "a s3cr3t b s3cr3t", "a REDACTED b REDACTED"},
		{"query-escaped", []string{"a b/c+d"}, "q=a+b%2Fc%2Bd", "q=REDACTED"},
		{"path-escaped", []string{"a b/c+d"}, "/x/a%20b%2Fc+d/y", "/x/REDACTED/y"},
		{"longest first", []string{"abc", "abcdef"}, "xabcdefx abc", "xREDACTEDx REDACTED"},
		{"empty ignored", []string{"", "tok9"}, "tok9 and nothing", "REDACTED and nothing"},
		{"short kept", []string{"ab"}, "cab", "cREDACTED"},
		{"no secrets", nil, "plain", "plain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := New(tt.secrets...).String(tt.in); got != tt.want {
				t.Errorf("String(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestRedactorNilAndZero(t *testing.T) {
	var nilR *Redactor
	var zero Redactor
	for name, r := range map[string]*Redactor{"nil": nilR, "zero": &zero} {
		if got := r.String("a secret"); got != "a secret" {
			t.Errorf("%s: String = %q, want it unchanged", name, got)
		}
		// URL still hides what looks like a credential.
		if got, want := r.URL("https://u:pw@h/p?token=t&q=1"), "https://u:REDACTED@h/p?token=REDACTED&q=1"; got != want {
			t.Errorf("%s: URL = %q, want %q", name, got, want)
		}
	}
}

func TestRedactorURL(t *testing.T) {
	r := New("acct-secret-99", "a/b c")
	tests := []struct{ in, want string }{
		{"https://api.example.com/v1/orders?page=3&api_key=tok123", "https://api.example.com/v1/orders?page=3&api_key=REDACTED"},
		{
			"https://h/p?access_token=a&X-Amz-Signature=b&sig=c&Password=d&client_secret=e&sessionid=f&AUTH=g&credentials=h&passwd=i",
			"https://h/p?access_token=REDACTED&X-Amz-Signature=REDACTED&sig=REDACTED&Password=REDACTED&client_secret=REDACTED&sessionid=REDACTED&AUTH=REDACTED&credentials=REDACTED&passwd=REDACTED",
		},
		{"https://h/p?page=2&limit=100&cursor=abc", "https://h/p?page=2&limit=100&cursor=abc"},
		{"https://user:pw@h:8443/p", "https://user:REDACTED@h:8443/p"},
		{"https://user@h/p", "https://user@h/p"},
		{"https://h/accounts/acct-secret-99/orders", "https://h/accounts/REDACTED/orders"},
		{"https://h/accounts/%61cct-secret-99/orders", "https://h/accounts/REDACTED/orders"},
		{"https://h/p?q=a%2fb+c", "https://h/p?q=REDACTED"},
		{"https://h/cb#access_token=xyz&state=1", "https://h/cb#access_token=REDACTED&state=1"},
		{"https://h/cb#section-2", "https://h/cb#section-2"},
		{"https://h/p?a=1;token=x", "https://h/p?a=1;token=REDACTED"},
		{"https://h/p?api%5Fkey=abc", "https://h/p?api%5Fkey=REDACTED"},
		{"https://h/p?token=&flag", "https://h/p?token=&flag"},
		// Unparsable URLs are redacted all the same.
		{"http://h/%zz?api_key=abc", "http://h/%zz?api_key=REDACTED"},
		{"not a url acct-secret-99", "not a url REDACTED"},
	}
	for _, tt := range tests {
		if got := r.URL(tt.in); got != tt.want {
			t.Errorf("URL(%q) =\n%q, want\n%q", tt.in, got, tt.want)
		}
	}
}

func TestRedactorConcurrentAdd(t *testing.T) {
	r := New()
	var wg sync.WaitGroup
	secrets := []string{"first-secret", "second-secret", "third-secret", "fourth-secret"}
	for _, s := range secrets {
		wg.Go(func() { r.Add(s) })
		wg.Go(func() { _ = r.String("reading " + s) })
	}
	wg.Wait()
	got := r.String(strings.Join(secrets, " "))
	if want := "REDACTED REDACTED REDACTED REDACTED"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
}

// FuzzRedactorURL checks that URL never shows a secret of 4 bytes or more,
// in any of the forms String hides, and leaves a URL alone when there is
// nothing to hide.
//
// The property is not "the output does not contain the secret": "REDACTED"
// itself may make one up, with the secret "DACT", or with "ED&x" when
// "?token=v&x" becomes "?token=REDACTED&x". Those are made of the marker,
// not of the input, so what must hold is that no secret survives between
// two markers.
func FuzzRedactorURL(f *testing.F) {
	f.Add("https://user:pass@api.example.com/v1/s3cr3t/orders?api_key=s3cr3t&page=3#frag", "s3cr3t")
	f.Add("https://h/p?q=a+b%2Fc", "a b/c")
	f.Add("https://h/%73ecret/x", "secret")
	f.Add("http://h/%zz?token=abc", "abcd")
	f.Add("https://h/p?token=v&x=1", "ED&x")
	f.Add("REDACTED", "DACT")
	f.Fuzz(func(t *testing.T, raw, secret string) {
		if len(secret) < 4 {
			t.Skip()
		}
		out := New(secret).URL(raw)
		forms := []string{secret, url.QueryEscape(secret), url.PathEscape(secret)}
		for _, piece := range strings.Split(out, Redacted) {
			for _, form := range forms {
				if strings.Contains(piece, form) {
					t.Fatalf("URL(%q) = %q shows the secret %q as %q", raw, out, secret, form)
				}
			}
		}
		if strings.ContainsAny(raw, "?#@%") {
			return
		}
		for _, form := range forms {
			if strings.Contains(raw, form) {
				return
			}
		}
		if out != raw {
			t.Fatalf("URL(%q) = %q, want it unchanged", raw, out)
		}
	})
}
