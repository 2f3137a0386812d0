package mysql

import (
	"net"
	"net/url"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/internal/dest"
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
	admin(t)
	c, err := ParseURL(baseURL())
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(c.Addr)
	addr := net.JoinHostPort(host, port)
	old := connectFor
	connectFor = 0
	defer func() { connectFor = old }()
	for _, sep := range []string{"/", "#", "?", "@", ":", "%", " ", "://"} {
		for _, head := range []string{"S3cr3tHead", "4711", ""} {
			// A password starting with digits (or nothing) before the / or #
			// parses: the digits become a port, the rest a database.
			pw := head + sep + "T4ilSecret"
			urls := map[string]string{
				"user info":        "mysql://root:" + pw + "@" + addr + "/test",
				"user info, no db": "mariadb://root:" + pw + "@" + addr,
				"password= param":  "mysql://root@" + addr + "/test?password=" + pw,
				"driver DSN":       "root:" + pw + "@tcp(" + addr + ")/test",
				"DSN password=":    "root@tcp(" + addr + ")/test?password=" + pw,
			}
			for form, u := range urls {
				_, err := Open(t.Context(), cfgWith(&Config{}, u), dest.Options{})
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
				if form == "user info" && strings.ContainsAny(sep, "/#? %") && head == "S3cr3tHead" && !strings.Contains(msg, "percent-encoded") {
					t.Errorf("%s, password %q: error does not say to percent-encode: %s", form, pw, msg)
				}
			}
		}
	}
}

// The same password, percent-encoded in the url or as the url's
// password= parameter, or as written in the driver's DSN, reaches the
// driver intact; a password= parameter is never sent to the server as a
// session variable.
func TestURLPasswordEncoded(t *testing.T) {
	for _, sep := range []string{"/", "#", "?", "@", ":", "%", " ", "+", "&", "://"} {
		pw := "S3cr3t" + sep + "Tail"
		u := (&url.URL{Scheme: "mysql", User: url.UserPassword("ferry", pw), Host: "db.example:3306", Path: "/app"}).String()
		q := url.Values{"password": {pw}, "timeout": {"5s"}}
		for _, raw := range []string{u, "mysql://ferry@db.example:3306/app?" + q.Encode(), "ferry:" + pw + "@tcp(db.example:3306)/app"} {
			c, err := ParseURL(raw)
			if err != nil {
				t.Errorf("%s: %v", raw, err)
				continue
			}
			if c.User != "ferry" || c.Passwd != pw || c.Addr != "db.example:3306" || c.DBName != "app" {
				t.Errorf("%s: user %q password %q addr %q database %q", raw, c.User, c.Passwd, c.Addr, c.DBName)
			}
			if _, ok := c.Params["password"]; ok {
				t.Errorf("%s: password= would be sent as a session variable", raw)
			}
		}
	}
	if _, err := ParseURL("mysql://ferry:Pw0ne@db.example/app?password=Pw7wo"); err == nil || !strings.Contains(err.Error(), "password") || strings.Contains(err.Error(), "Pw0ne") || strings.Contains(err.Error(), "Pw7wo") {
		t.Errorf("two passwords: %v", err)
	}
}
