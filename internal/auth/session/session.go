// Package session is the session-login auth scheme: a login request
// (a JSON body or a form, from templates) whose response yields a token,
// taken from the body by path, from a header or from a cookie, and sent
// on later requests in a header, a cookie or the query. The session is
// renewed after expires_in (or what the login response says), and when
// the API refuses it (a 401, or a response rule's refresh_auth). Many
// older and self-hosted APIs work so: Tableau's sign-in, ServiceNow's
// and Jira Server's sessions, Zabbix's user.login.
package session

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ferry-dev/ferry/internal/auth"
	"github.com/ferry-dev/ferry/internal/httpx"
	"github.com/ferry-dev/ferry/internal/jsonpath"
	"github.com/ferry-dev/ferry/internal/spec"
)

func init() {
	auth.Register("session", "A login request whose response yields a session token, sent on later requests and renewed on expiry or refusal.", New)
}

// Config is the session scheme's auth section.
type Config struct {
	Login Login     `yaml:"login" required:"true" doc:"The login request."`
	Token TokenFrom `yaml:"token" required:"true" doc:"Where the token is in the login response: path, header or cookie."`
	Send  Send      `yaml:"send,omitempty" doc:"How later requests carry the token (default: Authorization: Bearer)."`
	// ExpiresIn renews the session after this long.
	ExpiresIn string `yaml:"expires_in,omitempty" def:"duration" doc:"Log in again after this long (default: when the API refuses the session)."`
	// ExpiresPath reads the session's lifetime, in seconds, from the
	// login response.
	ExpiresPath string `yaml:"expires_path,omitempty" def:"path" doc:"Where the login response says how many seconds the session lasts."`
}

// Login is the login request.
type Login struct {
	Method  string         `yaml:"method,omitempty" enum:"POST,GET,PUT" default:"POST" doc:"The method."`
	URL     string         `yaml:"url" required:"true" min:"1" def:"template" doc:"The login URL, absolute or a path on base_url. Template (config)."`
	Body    any            `yaml:"body,omitempty" doc:"A JSON body; strings are templates (config)."`
	Form    spec.Templates `yaml:"form,omitempty" doc:"A form body (application/x-www-form-urlencoded). Templates (config)."`
	Headers spec.Templates `yaml:"headers,omitempty" doc:"Headers of the login request. Templates (config)."`
}

// TokenFrom says where the token is.
type TokenFrom struct {
	Path   string `yaml:"path,omitempty" def:"path" doc:"A path in the JSON body, such as credentials.token."`
	Header string `yaml:"header,omitempty" min:"1" doc:"A response header, such as X-Subject-Token."`
	Cookie string `yaml:"cookie,omitempty" min:"1" doc:"A cookie the response sets, such as JSESSIONID."`
}

// Send says how the token is sent.
type Send struct {
	Header string  `yaml:"header,omitempty" min:"1" doc:"The header carrying the token (default Authorization)."`
	Prefix *string `yaml:"prefix,omitempty" doc:"Put before the token in the header (default 'Bearer ' for Authorization)."`
	Cookie string  `yaml:"cookie,omitempty" min:"1" doc:"Send the token as this cookie instead."`
	Query  string  `yaml:"query,omitempty" min:"1" doc:"Send the token as this query parameter instead."`
}

// Validate checks the templates and that exactly one source and one way
// are given.
func (c *Config) Validate(chk *spec.Checker) {
	chk.Template([]string{"login", "url"}, c.Login.URL, spec.VarConfig)
	for _, k := range slices.Sorted(maps.Keys(c.Login.Form)) {
		chk.Template([]string{"login", "form", k}, c.Login.Form[k], spec.VarConfig)
	}
	for _, k := range slices.Sorted(maps.Keys(c.Login.Headers)) {
		chk.Template([]string{"login", "headers", k}, c.Login.Headers[k], spec.VarConfig)
	}
	walk(c.Login.Body, []string{"login", "body"}, func(p []string, s string) { chk.Template(p, s, spec.VarConfig) })
	if c.Login.Body != nil && c.Login.Form != nil {
		chk.At([]string{"login"}, "give body or form, not both")
	}
	n := 0
	for _, s := range []string{c.Token.Path, c.Token.Header, c.Token.Cookie} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		chk.At([]string{"token"}, "give one of path, header or cookie")
	}
	if c.Token.Path != "" {
		if _, err := jsonpath.Compile(c.Token.Path); err != nil {
			chk.AtValue([]string{"token", "path"}, "%v", err)
		}
	}
	ways := 0
	for _, s := range []string{c.Send.Cookie, c.Send.Query} {
		if s != "" {
			ways++
		}
	}
	if ways > 1 || ways == 1 && (c.Send.Header != "" || c.Send.Prefix != nil) {
		chk.At([]string{"send"}, "give one of header (with prefix), cookie or query")
	}
	if c.ExpiresIn != "" {
		if _, err := spec.ParseDuration(c.ExpiresIn); err != nil {
			chk.AtValue([]string{"expires_in"}, "%v", err)
		}
	}
	if c.ExpiresPath != "" && c.Token.Path == "" {
		chk.At([]string{"expires_path"}, "expires_path reads the login body: take the token from it too (token.path)")
	}
}

// walk calls fn with every string of a JSON body and its path.
func walk(v any, p []string, fn func([]string, string)) {
	switch x := v.(type) {
	case string:
		fn(p, x)
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(x)) {
			walk(x[k], append(slices.Clone(p), k), fn)
		}
	case []any:
		for i, e := range x {
			walk(e, append(slices.Clone(p), fmt.Sprint(i)), fn)
		}
	}
}

// authenticator is the scheme at run time.
type authenticator struct {
	cfg     *Config
	method  string
	url     string
	body    []byte
	ctype   string
	headers map[string]string
	ttl     time.Duration
	expires *jsonpath.Path
	path    *jsonpath.Path
	send    Send
	prefix  string
	hc      *http.Client
	env     auth.Env
	now     func() time.Time

	mu      sync.Mutex
	tok     string
	expiry  time.Time
	refused string
	fatal   error
	logins  int
}

var (
	_ httpx.Renewer = (*authenticator)(nil)
	_ auth.QueryKey = (*authenticator)(nil)
)

// New renders the login request; it sends nothing.
func New(c *Config, env auth.Env) (auth.Authenticator, []string, error) {
	a := &authenticator{cfg: c, method: c.Login.Method, headers: map[string]string{}, send: c.Send, hc: env.HTTPClient, env: env, now: time.Now}
	if a.method == "" {
		a.method = http.MethodPost
	}
	u, err := env.Eval(c.Login.URL)
	if err != nil {
		return nil, nil, fmt.Errorf("auth.login.url: %w", err)
	}
	if strings.HasPrefix(u, "/") && env.BaseURL != "" {
		u = strings.TrimRight(env.BaseURL, "/") + u
	}
	if pu, err := url.Parse(u); err != nil || (pu.Scheme != "https" && pu.Scheme != "http") || pu.Host == "" {
		return nil, nil, errors.New("auth.login.url is not an http or https URL, nor a path on base_url")
	}
	a.url = u
	var secrets []string
	switch {
	case c.Login.Body != nil:
		rendered, err := render(c.Login.Body, env.Eval)
		if err != nil {
			return nil, nil, fmt.Errorf("auth.login.body: %w", err)
		}
		if a.body, err = json.Marshal(rendered); err != nil {
			return nil, nil, fmt.Errorf("auth.login.body: %w", err)
		}
		a.ctype = "application/json"
	case c.Login.Form != nil:
		form := url.Values{}
		for k, tpl := range c.Login.Form {
			v, err := env.Eval(tpl)
			if err != nil {
				return nil, nil, fmt.Errorf("auth.login.form.%s: %w", k, err)
			}
			form.Set(k, v)
		}
		a.body, a.ctype = []byte(form.Encode()), "application/x-www-form-urlencoded"
	}
	for k, tpl := range c.Login.Headers {
		if a.headers[k], err = env.Eval(tpl); err != nil {
			return nil, nil, fmt.Errorf("auth.login.headers.%s: %w", k, err)
		}
	}
	if c.ExpiresIn != "" {
		if a.ttl, err = spec.ParseDuration(c.ExpiresIn); err != nil {
			return nil, nil, fmt.Errorf("auth.expires_in: %w", err)
		}
	}
	if c.ExpiresPath != "" {
		if a.expires, err = jsonpath.Compile(c.ExpiresPath); err != nil {
			return nil, nil, fmt.Errorf("auth.expires_path: %w", err)
		}
	}
	if c.Token.Path != "" {
		if a.path, err = jsonpath.Compile(c.Token.Path); err != nil {
			return nil, nil, fmt.Errorf("auth.token.path: %w", err)
		}
	}
	if a.send.Cookie == "" && a.send.Query == "" {
		if a.send.Header == "" {
			a.send.Header = "Authorization"
		}
		if c.Send.Prefix != nil {
			a.prefix = *c.Send.Prefix
		} else if strings.EqualFold(a.send.Header, "Authorization") {
			a.prefix = "Bearer "
		}
	}
	return a, secrets, nil
}

// render evaluates the string templates of a JSON body.
func render(v any, eval func(string) (string, error)) (any, error) {
	switch x := v.(type) {
	case string:
		return eval(x)
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			r, err := render(e, eval)
			if err != nil {
				return nil, err
			}
			out[k] = r
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			r, err := render(e, eval)
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	}
	return v, nil
}

// QueryParam names the query parameter carrying the token, if any.
func (a *authenticator) QueryParam() string { return a.send.Query }

// Apply puts the session token on the request, logging in first when
// there is no live session.
func (a *authenticator) Apply(ctx context.Context, req *http.Request) error {
	tok, err := a.token(ctx)
	if err != nil {
		return err
	}
	switch {
	case a.send.Query != "":
		q := req.URL.Query()
		q.Set(a.send.Query, tok)
		req.URL.RawQuery = q.Encode()
	case a.send.Cookie != "":
		req.AddCookie(&http.Cookie{Name: a.send.Cookie, Value: tok})
	default:
		req.Header.Set(a.send.Header, a.prefix+tok)
	}
	return nil
}

// sentToken returns the token a request carried.
func (a *authenticator) sentToken(req *http.Request) string {
	switch {
	case req == nil:
		return ""
	case a.send.Query != "":
		return req.URL.Query().Get(a.send.Query)
	case a.send.Cookie != "":
		if c, err := req.Cookie(a.send.Cookie); err == nil {
			return c.Value
		}
		return ""
	}
	return strings.TrimPrefix(req.Header.Get(a.send.Header), a.prefix)
}

// Renew ends the session a refused request carried.
func (a *authenticator) Renew(_ context.Context, sent *http.Request) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fatal != nil {
		return a.fatal
	}
	if used := a.sentToken(sent); used == "" || auth.SameSecret(used, a.tok) {
		a.refused, a.tok = a.tok, ""
		a.env.Logger.Info("the API refused the session; logging in again")
	}
	return nil
}

func (a *authenticator) token(ctx context.Context) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fatal != nil {
		return "", a.fatal
	}
	if a.tok != "" && !auth.SameSecret(a.tok, a.refused) && (a.expiry.IsZero() || a.now().Before(a.expiry)) {
		return a.tok, nil
	}
	return a.login(ctx)
}

// login makes the login request and takes the token from its response.
// A refusal (4xx) is kept: later calls fail at once; a passing failure
// is Retryable.
func (a *authenticator) login(ctx context.Context) (string, error) {
	a.logins++
	var body io.Reader
	if a.body != nil {
		body = bytes.NewReader(a.body)
	}
	req, err := http.NewRequestWithContext(ctx, a.method, a.url, body)
	if err != nil {
		a.fatal = errors.New("auth: the login request cannot be built")
		return "", a.fatal
	}
	for k, v := range a.headers {
		req.Header.Set(k, v)
	}
	if a.ctype != "" {
		req.Header.Set("Content-Type", a.ctype)
	}
	req.Header.Set("Accept", "application/json")
	where := strings.SplitN(a.url, "?", 2)[0]
	resp, err := a.hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return "", httpx.Retryable(fmt.Errorf("auth: login at %s: %w", where, err))
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		msg := httpx.Message(nil, &httpx.Response{Status: resp.StatusCode, Header: resp.Header, Body: data})
		err := fmt.Errorf("auth: login at %s: %d %s: %s", where, resp.StatusCode, http.StatusText(resp.StatusCode), msg)
		if resp.StatusCode >= 500 || resp.StatusCode == 429 {
			return "", httpx.Retryable(err)
		}
		a.fatal = fmt.Errorf("%w (check the login's credentials; no more logins are tried in this run)", err)
		return "", a.fatal
	}
	var tok string
	switch {
	case a.path != nil:
		raw, found, err := jsonpath.Lookup(data, a.path)
		if err == nil && found {
			if err := json.Unmarshal(raw, &tok); err != nil {
				tok = strings.Trim(string(raw), `"`)
			}
		}
	case a.cfg.Token.Header != "":
		tok = resp.Header.Get(a.cfg.Token.Header)
	default:
		for _, c := range resp.Cookies() {
			if c.Name == a.cfg.Token.Cookie {
				tok = c.Value
			}
		}
	}
	if tok == "" || tok == "null" {
		a.fatal = fmt.Errorf("auth: login at %s: the response has no token at %s", where, a.source())
		return "", a.fatal
	}
	a.env.AddSecret(tok)
	a.tok, a.expiry = tok, time.Time{}
	if a.ttl > 0 {
		a.expiry = a.now().Add(a.ttl)
	}
	if a.expires != nil {
		if raw, found, err := jsonpath.Lookup(data, a.expires); err == nil && found {
			var secs float64
			if json.Unmarshal(raw, &secs) == nil && secs > 0 {
				a.expiry = a.now().Add(time.Duration(secs * float64(time.Second)))
			}
		}
	}
	return tok, nil
}

// source names where the token should have been, for messages.
func (a *authenticator) source() string {
	switch {
	case a.cfg.Token.Path != "":
		return "token.path " + a.cfg.Token.Path
	case a.cfg.Token.Header != "":
		return "token.header " + a.cfg.Token.Header
	}
	return "token.cookie " + a.cfg.Token.Cookie
}
