package postgres

import (
	"net/url"
	"strings"
	"testing"
)

// passwordForms are the ways a password could show in a message: as
// written, and encoded for a url's user info, path or query.
func passwordForms(pw string) []string {
	return []string{pw, url.QueryEscape(pw), url.PathEscape(pw), strings.TrimPrefix(url.UserPassword("", pw).String(), ":")}
}

// A password holding a character that urls reserve, written into the url
// without percent-encoding it (as ${VAR} expansion does), never shows in
// an error, whole or in part, however the url is read: the error says
// what to encode instead.
func TestURLPasswordNeverShown(t *testing.T) {
	adminConn(t).Close(t.Context())
	t.Setenv(ConnectTimeoutEnv, "0s")
	server, err := url.Parse(testURL())
	if err != nil {
		t.Fatal(err)
	}
	host := server.Host
	for _, c := range []string{"/", "#", "?", "@", ":", "%", " "} {
		for _, digitsFirst := range []bool{false, true} {
			// A password starting with digits before the / or # parses: the
			// digits become a port, the rest a database.
			head := "S3cr3tHead"
			if digitsFirst {
				head = "4711"
			}
			pw := head + c + "T4ilSecret"
			urls := map[string]string{
				"user info":         "postgres://ferry_no_such_role:" + pw + "@" + host + "/ferry_no_such_db?sslmode=disable",
				"user info, no db":  "postgresql://ferry_no_such_role:" + pw + "@" + host,
				"password= param":   "postgres://ferry_no_such_role@" + host + "/ferry_no_such_db?sslmode=disable&password=" + pw,
				"keyword/value":     "host=" + server.Hostname() + " port=" + server.Port() + " user=ferry_no_such_role dbname=ferry_no_such_db sslmode=disable password=" + quoteSetting(pw),
				"password first":    "postgres://ferry_no_such_role:" + pw + "@" + host + "/ferry_no_such_db?password=x" + pw,
				"leading delimiter": "postgres://ferry_no_such_role:" + c + pw + "@" + host + "/ferry_no_such_db",
			}
			for form, u := range urls {
				err := openErr(&Config{}, u)
				if err == nil {
					t.Errorf("%s %q: Open succeeded", form, pw)
					continue
				}
				msg := err.Error()
				for _, s := range append(passwordForms(pw), "S3cr3tHead", "T4ilSecret") {
					if strings.Contains(strings.ToLower(msg), strings.ToLower(s)) {
						t.Errorf("%s, password %q: error shows %q: %s", form, pw, s, msg)
					}
				}
				if form == "user info" && strings.ContainsAny(c, "/#? %") && !digitsFirst && !strings.Contains(msg, "percent-encoded") {
					t.Errorf("%s, password %q: error does not say to percent-encode: %s", form, pw, msg)
				}
			}
		}
	}
}

// The same password, percent-encoded in the url, reaches the driver
// intact.
func TestURLPasswordEncoded(t *testing.T) {
	for _, c := range []string{"/", "#", "?", "@", ":", "%", " ", "+", "&"} {
		pw := "S3cr3t" + c + "Tail"
		u := (&url.URL{Scheme: "postgres", User: url.UserPassword("ferry", pw), Host: "db.example:5432", Path: "/app"}).String()
		cc, _, err := connConfig(&Config{URL: u})
		if err != nil {
			t.Errorf("%s: %v", u, err)
			continue
		}
		if cc.Password != pw || cc.Host != "db.example" || cc.Database != "app" {
			t.Errorf("%s: password %q host %q database %q", u, cc.Password, cc.Host, cc.Database)
		}
		q := url.Values{"password": {pw}}
		cc, _, err = connConfig(&Config{URL: "postgres://ferry@db.example/app?" + q.Encode()})
		if err != nil || cc.Password != pw {
			t.Errorf("password= parameter %q: %v, got %q", q.Encode(), err, cc.Password)
		}
	}
}
