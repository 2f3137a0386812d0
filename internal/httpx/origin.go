package httpx

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// Credentials go only to the origins a client may send them to
// (Config.CredentialOrigins): an API that names a next page, or redirects,
// to another scheme, host or port gets the request without them. A
// request to another origin is sent without calling the Authenticator,
// and without every header and query parameter whose value holds a
// secret the Redactor knows (a value redaction changes), nor
// Authorization, Proxy-Authorization, Cookie and the URL's userinfo. A
// secret that cannot be dropped (in the path, in the body) makes the
// client refuse the request.

// Origin returns the origin of an absolute URL, scheme://host:port, with
// the scheme and host lower-cased and the port written even when it is
// the scheme's default: "https://API.example.com/v1" has the origin
// "https://api.example.com:443". It returns "" for a URL without a
// scheme and host.
func Origin(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return originOf(u)
}

func originOf(u *url.URL) string {
	if u.Scheme == "" || u.Host == "" {
		return ""
	}
	scheme := strings.ToLower(u.Scheme)
	host := strings.ToLower(u.Hostname())
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	port := u.Port()
	if port == "" {
		switch scheme {
		case "http":
			port = "80"
		case "https":
			port = "443"
		}
	}
	if port == "" {
		return scheme + "://" + host
	}
	return scheme + "://" + host + ":" + port
}

// credState is what an attempt's redirects need to know about its
// credentials; it travels in the request's context.
type credState struct {
	authKeys []string // headers the Authenticator set
	body     []byte   // the request body, sent again on a 307 or 308
	left     bool     // a redirect went to an origin credentials may not go to
}

type credKey struct{}

// refusedError is the error of a request the client would not send: it
// would carry a secret it cannot drop to another origin. It is not
// retried.
type refusedError struct{ msg string }

func (e *refusedError) Error() string { return e.msg }

// mayCredential reports whether credentials may go to u. first is the
// attempt's first request when u is a redirect's target, nil otherwise.
func (c *Client) mayCredential(u *url.URL, first *url.URL) bool {
	o := originOf(u)
	if len(c.origins) == 0 {
		return first == nil || o == originOf(first)
	}
	return c.origins[o]
}

// secret reports whether s holds a secret the Redactor knows.
func (c *Client) secret(s string) bool {
	return s != "" && c.cfg.Redactor.String(s) != s
}

// withhold strips req, bound for an origin credentials may not go to, of
// every credential it carries, and logs what it dropped. body is what
// req sends (nil for none). It fails, with a *refusedError, when a secret
// is where it cannot be dropped.
func (c *Client) withhold(ctx context.Context, req *http.Request, body []byte) error {
	origin := originOf(req.URL)
	refuse := func(where string) error {
		return &refusedError{msg: "refusing to send the request to " + origin + ": " + where +
			" holds a secret, and credentials only go to " + c.originList()}
	}
	if c.secret(req.URL.EscapedPath()) || c.secret(req.URL.Path) {
		return refuse("its URL path")
	}
	if len(body) > 0 && c.secret(string(body)) {
		return refuse("the request body")
	}
	var headers, params []string
	for k, vs := range req.Header {
		drop := k == "Authorization" || k == "Proxy-Authorization" || k == "Cookie"
		for _, v := range vs {
			drop = drop || c.secret(v)
		}
		if drop {
			headers = append(headers, k)
			req.Header.Del(k)
		}
	}
	if req.URL.User != nil {
		headers = append(headers, "(URL userinfo)")
		req.URL.User = nil
	}
	if q := req.URL.RawQuery; q != "" {
		var kept []string
		for _, part := range strings.Split(q, "&") {
			name, value, _ := strings.Cut(part, "=")
			if dn, err := url.QueryUnescape(name); err == nil {
				name = dn
			}
			if dv, err := url.QueryUnescape(value); err == nil {
				value = dv
			}
			if c.secret(part) || c.secret(name) || c.secret(value) {
				params = append(params, name)
				continue
			}
			kept = append(kept, part)
		}
		req.URL.RawQuery = strings.Join(kept, "&")
	}
	if len(headers)+len(params) > 0 || c.cfg.Auth != nil {
		slices.Sort(headers)
		c.log.LogAttrs(ctx, slog.LevelDebug, "withheld credentials from a request to another origin",
			slog.String("url", c.cfg.Redactor.URL(req.URL.String())),
			slog.String("credential_origins", c.originList()),
			slog.String("headers", c.cfg.Redactor.String(strings.Join(headers, ","))),
			slog.String("params", c.cfg.Redactor.String(strings.Join(params, ","))),
			slog.Bool("authenticator_skipped", c.cfg.Auth != nil))
	}
	return nil
}

// originList names the origins credentials go to, for messages.
func (c *Client) originList() string {
	if len(c.origins) == 0 {
		return "the request's own origin"
	}
	list := make([]string, 0, len(c.origins))
	for o := range c.origins {
		list = append(list, o)
	}
	slices.Sort(list)
	return strings.Join(list, ", ")
}

// checkRedirect stops redirect loops and keeps credentials on their
// origins: once a redirect goes to an origin credentials may not go to,
// that request and every later one of the attempt lose the headers the
// Authenticator set and every other credential withhold drops (net/http
// itself only drops Authorization and cookies, and only for another
// domain). A 307 or 308 that would send a body holding a secret there is
// refused.
func (c *Client) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errTooManyRedirects
	}
	if t, ok := req.Context().Value(triesKey{}).(*tries); ok {
		t.redirected()
	}
	st, ok := req.Context().Value(credKey{}).(*credState)
	if !ok {
		return nil
	}
	st.left = st.left || !c.mayCredential(req.URL, via[0].URL)
	if !st.left {
		return nil
	}
	for _, k := range st.authKeys {
		req.Header.Del(k)
	}
	var body []byte
	if req.Body != nil && req.Body != http.NoBody {
		body = st.body
	}
	return c.withhold(req.Context(), req, body)
}

// isRefused reports whether err is a refusal to send a request.
func isRefused(err error) bool {
	var r *refusedError
	return errors.As(err, &r)
}
