// Package oauth2 is the OAuth2 auth scheme: an access token from a token
// endpoint (RFC 6749), by the client credentials grant (machine-to-machine
// APIs: Auth0, Okta, Microsoft Graph) or the refresh token grant (APIs a
// user authorised once: HubSpot, Salesforce, Xero, QuickBooks), sent as
// a bearer token or a query parameter. The token is fetched on first
// use, kept, fetched again before it expires and once when the API
// refuses it (a 401), and the request is then made again.
//
// Some APIs rotate refresh tokens: each refresh answers with a new one
// and the old one stops working. With a store, every refresh token is
// kept in a file sealed with a key from the environment, so that the
// next run refreshes with the newest one.
package oauth2

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/ferry-dev/ferry/internal/auth"
	"github.com/ferry-dev/ferry/internal/httpx"
	"github.com/ferry-dev/ferry/internal/spec"
)

func init() {
	auth.Register("oauth2", "OAuth2 access tokens from a token endpoint: client credentials or a refresh token (rotated ones kept encrypted), refreshed before they expire and when refused.", New)
}

// Config is the oauth2 scheme's auth section.
type Config struct {
	// Grant is client_credentials or refresh_token.
	Grant string `yaml:"grant" required:"true" enum:"client_credentials,refresh_token" doc:"client_credentials (the client's own access) or refresh_token (access a user granted once)."`
	// TokenURL is the token endpoint. Template (config).
	TokenURL string `yaml:"token_url" required:"true" min:"1" def:"template" doc:"The token endpoint. Template (config)."`
	// ClientID and ClientSecret identify the client. Templates; the
	// secret must come from a secret config parameter.
	ClientID     string `yaml:"client_id" required:"true" def:"template" doc:"The client id. Template (config)."`
	ClientSecret string `yaml:"client_secret,omitempty" def:"template" doc:"The client secret: a secret config parameter ({{ config.client_secret }})."`
	// RefreshToken is the refresh token of the refresh_token grant.
	RefreshToken string `yaml:"refresh_token,omitempty" def:"template" doc:"The refresh token (refresh_token grant): a secret config parameter. With store, only the first run uses it."`
	// Scopes are requested with the token (space-separated on the wire).
	Scopes []string `yaml:"scopes,omitempty" doc:"Scopes to request."`
	// Audience is sent as the audience parameter (Auth0).
	Audience string `yaml:"audience,omitempty" def:"template" doc:"Sent as the audience parameter (Auth0 and others). Template (config)."`
	// Params are more parameters of the token request.
	Params spec.Templates `yaml:"params,omitempty" doc:"More parameters of the token request (resource, tenant…). Templates (config)."`
	// ClientAuth is how the client authenticates to the token endpoint.
	ClientAuth string `yaml:"client_auth,omitempty" enum:"auto,header,body" default:"auto" doc:"How the client id and secret reach the token endpoint: header (HTTP basic), body (form parameters), or auto (header, then body once if refused)."`
	// TokenIn is where the access token goes: header or query.
	TokenIn string `yaml:"token_in,omitempty" enum:"header,query" default:"header" doc:"Where the access token goes."`
	// Header and Prefix place the token in a header.
	Header string  `yaml:"header,omitempty" default:"Authorization" doc:"The header carrying the token (token_in: header)."`
	Prefix *string `yaml:"prefix,omitempty" doc:"Put before the token in the header (default 'Bearer ' for Authorization, none for another header)."`
	// QueryParam names the query parameter of token_in: query.
	QueryParam string `yaml:"query_param,omitempty" default:"access_token" doc:"The query parameter carrying the token (token_in: query)."`
	// ExpiryMargin renews a token this long before it expires.
	ExpiryMargin string `yaml:"expiry_margin,omitempty" def:"duration" default:"1m" doc:"Fetch a new token this long before the current one expires."`
	// Store keeps rotated refresh tokens.
	Store *Store `yaml:"store,omitempty" doc:"Keeps the refresh tokens an API rotates, sealed with a key (refresh_token grant)."`
}

// Store says where rotated refresh tokens are kept.
type Store struct {
	// File is the token file, relative to the pipeline's directory.
	File string `yaml:"file" required:"true" min:"1" doc:"The token file, relative to the pipeline's directory; written with mode 0600, sealed (AES-256-GCM)."`
	// Key seals the file: a secret config parameter from the environment.
	Key string `yaml:"key" required:"true" def:"template" doc:"The key that seals the file: a secret config parameter from the environment, 32 random bytes (openssl rand -base64 32)."`
}

// Validate checks templates, that credentials come from secret config
// parameters, and that each grant has what it needs.
func (c *Config) Validate(chk *spec.Checker) {
	chk.Template([]string{"token_url"}, c.TokenURL, spec.VarConfig)
	chk.Template([]string{"client_id"}, c.ClientID, spec.VarConfig)
	if c.ClientSecret != "" {
		chk.SecretTemplate([]string{"client_secret"}, c.ClientSecret)
	}
	if c.Audience != "" {
		chk.Template([]string{"audience"}, c.Audience, spec.VarConfig)
	}
	for _, k := range slices.Sorted(maps.Keys(c.Params)) {
		chk.Template([]string{"params", k}, c.Params[k], spec.VarConfig)
		switch k {
		case "grant_type", "refresh_token", "client_id", "client_secret", "scope", "audience":
			chk.At([]string{"params", k}, "%s is set by the scheme; give it with its own field", k)
		}
	}
	if c.ExpiryMargin != "" {
		if _, err := spec.ParseDuration(c.ExpiryMargin); err != nil {
			chk.AtValue([]string{"expiry_margin"}, "%v", err)
		}
	}
	switch c.Grant {
	case "client_credentials":
		if c.ClientSecret == "" {
			chk.At(nil, "the client_credentials grant needs client_secret")
		}
		if c.RefreshToken != "" {
			chk.At([]string{"refresh_token"}, "refresh_token is for grant: refresh_token")
		}
		if c.Store != nil {
			chk.At([]string{"store"}, "store keeps refresh tokens: it is for grant: refresh_token")
		}
	case "refresh_token":
		if c.RefreshToken == "" {
			chk.At(nil, "the refresh_token grant needs refresh_token")
		} else {
			chk.SecretTemplate([]string{"refresh_token"}, c.RefreshToken)
		}
	}
	if c.TokenIn == "query" && (c.Header != "" || c.Prefix != nil) {
		chk.At(nil, "header and prefix apply to token_in: header")
	}
	if c.TokenIn != "query" && c.QueryParam != "" {
		chk.At([]string{"query_param"}, "query_param applies to token_in: query")
	}
	if s := c.Store; s != nil {
		chk.SecretTemplate([]string{"store", "key"}, s.Key)
	}
}

// authenticator is the scheme at run time.
type authenticator struct {
	cfg     clientcredentials.Config // the token request (grant_type and all)
	grant   string
	hc      *http.Client
	env     auth.Env
	store   *store
	origin  string // the configured refresh token's identity in the store
	query   string // query parameter of token_in: query, "" for a header
	header  string
	prefix  string
	margin  time.Duration
	tokenAt string // the token URL, redacted, for messages
	now     func() time.Time

	mu      sync.Mutex
	refresh string        // the newest refresh token
	tok     *oauth2.Token // the access token in use, nil before the first
	refused string        // an access token the API refused
	fatal   error         // the token endpoint refused the credentials for good
	fetches int           // token requests made, for tests
}

var (
	_ httpx.Renewer = (*authenticator)(nil)
	_ auth.QueryKey = (*authenticator)(nil)
)

// New returns the authenticator; it sends nothing.
func New(c *Config, env auth.Env) (auth.Authenticator, []string, error) {
	eval := func(field, tpl string) (string, error) {
		v, err := env.Eval(tpl)
		if err != nil {
			return "", fmt.Errorf("auth.%s: %w", field, err)
		}
		return v, nil
	}
	a := &authenticator{grant: c.Grant, hc: env.HTTPClient, env: env, now: time.Now, margin: time.Minute}
	var err error
	if a.cfg.TokenURL, err = eval("token_url", c.TokenURL); err != nil {
		return nil, nil, err
	}
	if u, err := url.Parse(a.cfg.TokenURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, nil, errors.New("auth.token_url is not an http or https URL")
	}
	a.tokenAt = strings.SplitN(a.cfg.TokenURL, "?", 2)[0]
	if a.cfg.ClientID, err = eval("client_id", c.ClientID); err != nil {
		return nil, nil, err
	}
	if a.cfg.ClientSecret, err = eval("client_secret", c.ClientSecret); err != nil {
		return nil, nil, err
	}
	a.cfg.Scopes = c.Scopes
	a.cfg.EndpointParams = url.Values{}
	if c.Audience != "" {
		aud, err := eval("audience", c.Audience)
		if err != nil {
			return nil, nil, err
		}
		a.cfg.EndpointParams.Set("audience", aud)
	}
	for _, k := range slices.Sorted(maps.Keys(c.Params)) {
		v, err := eval("params."+k, c.Params[k])
		if err != nil {
			return nil, nil, err
		}
		a.cfg.EndpointParams.Set(k, v)
	}
	switch c.ClientAuth {
	case "header":
		a.cfg.AuthStyle = oauth2.AuthStyleInHeader
	case "body":
		a.cfg.AuthStyle = oauth2.AuthStyleInParams
	}
	if c.ExpiryMargin != "" {
		if a.margin, err = spec.ParseDuration(c.ExpiryMargin); err != nil {
			return nil, nil, fmt.Errorf("auth.expiry_margin: %w", err)
		}
	}
	if c.TokenIn == "query" {
		a.query = c.QueryParam
		if a.query == "" {
			a.query = "access_token"
		}
	} else {
		a.header = c.Header
		if a.header == "" {
			a.header = "Authorization"
		}
		if c.Prefix != nil {
			a.prefix = *c.Prefix
		} else if strings.EqualFold(a.header, "Authorization") {
			a.prefix = "Bearer "
		}
	}
	secrets := []string{a.cfg.ClientSecret}
	if c.Grant == "refresh_token" {
		if a.refresh, err = eval("refresh_token", c.RefreshToken); err != nil {
			return nil, nil, err
		}
		if a.refresh == "" {
			return nil, nil, errors.New("auth.refresh_token is empty")
		}
		secrets = append(secrets, a.refresh)
		a.cfg.EndpointParams.Set("grant_type", "refresh_token")
	}
	if s := c.Store; s != nil {
		key, err := eval("store.key", s.Key)
		if err != nil {
			return nil, nil, err
		}
		path := s.File
		if !filepath.IsAbs(path) {
			path = filepath.Join(env.Dir, path)
		}
		if a.store, err = newStore(path, key, a.cfg.TokenURL, a.cfg.ClientID); err != nil {
			return nil, nil, err
		}
		a.origin = a.store.origin(a.refresh)
		secrets = append(secrets, key)
	}
	return a, secrets, nil
}

// QueryParam names the query parameter carrying the token, so that URLs
// kept in state can be stripped of it.
func (a *authenticator) QueryParam() string { return a.query }

// Apply puts a valid access token on the request, fetching one first if
// there is none or it expires within the margin.
func (a *authenticator) Apply(ctx context.Context, req *http.Request) error {
	tok, err := a.token(ctx)
	if err != nil {
		return err
	}
	if a.query != "" {
		q := req.URL.Query()
		q.Set(a.query, tok)
		req.URL.RawQuery = q.Encode()
		return nil
	}
	req.Header.Set(a.header, a.prefix+tok)
	return nil
}

// Renew drops the access token a refused request carried, so that the
// next Apply fetches another (once for all the requests that carried
// it).
func (a *authenticator) Renew(_ context.Context, sent *http.Request) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fatal != nil {
		return a.fatal
	}
	used := ""
	if sent != nil {
		if a.query != "" {
			used = sent.URL.Query().Get(a.query)
		} else {
			used = strings.TrimPrefix(sent.Header.Get(a.header), a.prefix)
		}
	}
	if a.tok != nil && (used == "" || auth.SameSecret(used, a.tok.AccessToken)) {
		a.refused = a.tok.AccessToken
		a.tok = nil
		a.env.Logger.Info("the API refused the access token; fetching a new one", "token_url", a.tokenAt)
	}
	return nil
}

// fresh reports whether t is good for another request.
func (a *authenticator) fresh(t *oauth2.Token) bool {
	return t != nil && t.AccessToken != "" && !auth.SameSecret(t.AccessToken, a.refused) &&
		(t.Expiry.IsZero() || a.now().Add(a.margin).Before(t.Expiry))
}

// token returns the access token to send, fetching a new one when
// needed; concurrent callers wait for one fetch.
func (a *authenticator) token(ctx context.Context) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fatal != nil {
		return "", a.fatal
	}
	if a.fresh(a.tok) {
		return a.tok.AccessToken, nil
	}
	if a.store == nil {
		tok, err := a.fetch(ctx, a.refresh)
		if err != nil {
			return "", err
		}
		if a.grant == "refresh_token" && !auth.SameSecret(tok.RefreshToken, a.refresh) {
			a.env.Logger.Warn("the token endpoint rotated the refresh token; without auth.store the next run starts from the configured one, which the API may no longer take", "token_url", a.tokenAt)
			a.refresh = tok.RefreshToken
		}
		a.tok = tok
		return tok.AccessToken, nil
	}
	return a.fromStore(ctx)
}

// fromStore fetches a token under the store's lock: a token another run
// stored meanwhile is used as it is, and a rotated refresh token is
// saved before the new access token is used.
func (a *authenticator) fromStore(ctx context.Context) (string, error) {
	unlock, err := a.store.lock(ctx)
	if err != nil {
		return "", err
	}
	defer unlock()
	st, err := a.store.load()
	if err != nil {
		a.fatal = err
		return "", err
	}
	refresh := a.refresh
	if st != nil && auth.SameSecret(st.Origin, a.origin) && st.RefreshToken != "" {
		a.env.AddSecret(st.RefreshToken, st.AccessToken)
		refresh = st.RefreshToken
		if t := (&oauth2.Token{AccessToken: st.AccessToken, Expiry: st.Expiry}); a.fresh(t) {
			a.refresh, a.tok = refresh, t
			return t.AccessToken, nil
		}
	}
	tok, err := a.fetch(ctx, refresh)
	if err != nil {
		return "", err
	}
	if err := a.store.save(&stored{RefreshToken: tok.RefreshToken, AccessToken: tok.AccessToken, Expiry: tok.Expiry, Origin: a.origin}); err != nil {
		// The API may have spent the old refresh token already: without
		// the new one kept, the next run would fail. Say so now.
		a.fatal = fmt.Errorf("%w (a new refresh token was issued and could not be kept: the next run may need a new one)", err)
		return "", a.fatal
	}
	a.refresh, a.tok = tok.RefreshToken, tok
	return tok.AccessToken, nil
}

// fetch makes one token request. A refusal (a 4xx from the token
// endpoint) is kept: every later call fails with it at once, with no
// request, so a wrong secret does not make every stream hammer the
// endpoint. A passing failure is Retryable.
func (a *authenticator) fetch(ctx context.Context, refresh string) (*oauth2.Token, error) {
	cfg := a.cfg
	cfg.EndpointParams = maps.Clone(a.cfg.EndpointParams)
	if a.grant == "refresh_token" {
		cfg.EndpointParams.Set("refresh_token", refresh)
	}
	a.fetches++
	tok, err := cfg.Token(context.WithValue(ctx, oauth2.HTTPClient, a.hc))
	if err != nil {
		return nil, a.classify(err)
	}
	if tok.AccessToken == "" {
		a.fatal = fmt.Errorf("auth: the token endpoint %s answered without an access_token", a.tokenAt)
		return nil, a.fatal
	}
	if tok.RefreshToken == "" {
		tok.RefreshToken = refresh // not rotated
	}
	if !tok.Expiry.IsZero() {
		// x/oauth2 counts expires_in from the wall clock; keep it on ours.
		tok.Expiry = a.now().Add(time.Until(tok.Expiry))
	}
	a.env.AddSecret(tok.AccessToken, tok.RefreshToken)
	a.refused = ""
	a.env.Logger.Debug("fetched an access token", "token_url", a.tokenAt, "expires", tok.Expiry)
	return tok, nil
}

// classify turns a token request's failure into the error Apply returns.
func (a *authenticator) classify(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		status := 0
		if re.Response != nil {
			status = re.Response.StatusCode
		}
		msg := describe(re, status)
		if status == http.StatusTooManyRequests || status >= 500 {
			return httpx.Retryable(fmt.Errorf("auth: the token endpoint %s: %s", a.tokenAt, msg))
		}
		a.fatal = fmt.Errorf("auth: the token endpoint %s refused the %s grant: %s%s", a.tokenAt, a.grant, msg, hint(re.ErrorCode, a.grant, a.store != nil))
		return a.fatal
	}
	var ne net.Error
	var ue *url.Error
	if errors.As(err, &ne) || errors.As(err, &ue) {
		return httpx.Retryable(fmt.Errorf("auth: the token endpoint %s: %w", a.tokenAt, unwrapURL(err)))
	}
	// A response that is not a token (no JSON, no access_token).
	a.fatal = fmt.Errorf("auth: the token endpoint %s: %w", a.tokenAt, err)
	return a.fatal
}

// describe renders a token endpoint's error: its status, error code and
// description, or the start of its body.
func describe(re *oauth2.RetrieveError, status int) string {
	s := ""
	if status > 0 {
		s = fmt.Sprintf("%d %s", status, http.StatusText(status))
	}
	if re.ErrorCode != "" {
		s += ": " + re.ErrorCode
		if re.ErrorDescription != "" {
			s += fmt.Sprintf(" (the API says %q)", bound(re.ErrorDescription))
		}
		return s
	}
	h := http.Header{}
	if re.Response != nil {
		h = re.Response.Header
	}
	if d := httpx.Describe(nil, h, re.Body); d != `""` {
		s += ": body " + d
	}
	return s
}

// bound cuts an API's message at 2 KiB.
func bound(s string) string {
	if len(s) > 2048 {
		return s[:2048] + "…"
	}
	return s
}

// hint says what to check for an RFC 6749 error code.
func hint(code, grant string, stored bool) string {
	switch code {
	case "invalid_client", "unauthorized_client":
		return "; check client_id and client_secret (no more token requests are made in this run)"
	case "invalid_grant":
		if grant == "refresh_token" && !stored {
			return "; the refresh token is invalid, expired or was already used: if the API rotates refresh tokens, set auth.store to keep each new one"
		}
		if grant == "refresh_token" {
			return "; the refresh token is invalid, expired or was revoked: authorise again and give the new one (delete auth.store's file to start from it)"
		}
	case "invalid_scope":
		return "; check scopes"
	}
	return ""
}

// unwrapURL drops url.Error's wrapping, whose message holds the whole
// URL of the request.
func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
