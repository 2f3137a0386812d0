// Package jwt is the JWT bearer auth scheme: a JSON Web Token signed
// with a private key (github.com/golang-jwt/jwt/v5), either sent as the
// bearer token itself (GitHub Apps, Apple's App Store Connect API, Zoom)
// or exchanged at a token endpoint for an access token by the JWT bearer
// grant of RFC 7523 (Google service accounts, Salesforce's JWT flow).
// The JWT is signed again before it expires; an access token is fetched
// again before it expires and once when the API refuses it.
package jwt

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	gojwt "github.com/golang-jwt/jwt/v5"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/ferry-dev/ferry/internal/auth"
	"github.com/ferry-dev/ferry/internal/httpx"
	"github.com/ferry-dev/ferry/internal/spec"
)

func init() {
	auth.Register("jwt", "A JWT signed with a private key (service accounts, app keys): sent as the bearer token, or exchanged at a token endpoint (RFC 7523).", New)
}

// jwtBearer is RFC 7523's grant type.
const jwtBearer = "urn:ietf:params:oauth:grant-type:jwt-bearer"

// Config is the jwt scheme's auth section.
type Config struct {
	Algorithm  string         `yaml:"algorithm,omitempty" enum:"RS256,RS384,RS512,PS256,PS384,PS512,ES256,ES384,ES512,EdDSA,HS256,HS384,HS512" default:"RS256" doc:"The signing algorithm."`
	PrivateKey string         `yaml:"private_key" required:"true" def:"template" doc:"The PEM private key (for HS*, the shared secret): a secret config parameter, such as one read from a file."`
	KeyID      string         `yaml:"key_id,omitempty" def:"template" doc:"Sent as the kid header. Template (config)."`
	Issuer     string         `yaml:"issuer,omitempty" def:"template" doc:"The iss claim (a service account's e-mail, an app id). Template (config)."`
	Subject    string         `yaml:"subject,omitempty" def:"template" doc:"The sub claim. Template (config)."`
	Audience   string         `yaml:"audience,omitempty" def:"template" doc:"The aud claim (default: token_url, when set). Template (config)."`
	Scope      string         `yaml:"scope,omitempty" doc:"The scope claim (Google: space-separated scopes)."`
	Claims     map[string]any `yaml:"claims,omitempty" doc:"More claims; strings are templates (config)."`
	Lifetime   string         `yaml:"lifetime,omitempty" def:"duration" default:"1h" doc:"How long a signed JWT is valid (exp - iat); it is signed again a minute before."`
	TokenURL   string         `yaml:"token_url,omitempty" def:"template" doc:"Exchange the JWT here for an access token (RFC 7523); without it, the JWT is the bearer token."`
	Header     string         `yaml:"header,omitempty" default:"Authorization" doc:"The header carrying the token."`
	Prefix     *string        `yaml:"prefix,omitempty" doc:"Put before the token (default 'Bearer ')."`
}

// Validate checks templates and the key's source.
func (c *Config) Validate(chk *spec.Checker) {
	chk.SecretTemplate([]string{"private_key"}, c.PrivateKey)
	for _, f := range []struct{ name, v string }{{"key_id", c.KeyID}, {"issuer", c.Issuer}, {"subject", c.Subject}, {"audience", c.Audience}, {"token_url", c.TokenURL}} {
		if f.v != "" {
			chk.Template([]string{f.name}, f.v, spec.VarConfig)
		}
	}
	if c.Lifetime != "" {
		if d, err := spec.ParseDuration(c.Lifetime); err != nil {
			chk.AtValue([]string{"lifetime"}, "%v", err)
		} else if d < 2*time.Minute {
			chk.AtValue([]string{"lifetime"}, "a lifetime under 2m leaves no time to use the token")
		}
	}
	for _, k := range slices.Sorted(maps.Keys(c.Claims)) {
		switch k {
		case "iss", "sub", "aud", "exp", "iat", "nbf", "scope":
			chk.At([]string{"claims", k}, "%s is set by the scheme; give it with its own field", k)
		}
		if s, ok := c.Claims[k].(string); ok {
			chk.Template([]string{"claims", k}, s, spec.VarConfig)
		}
	}
}

// authenticator is the scheme at run time.
type authenticator struct {
	method   gojwt.SigningMethod
	key      any
	kid      string
	claims   gojwt.MapClaims // fixed claims
	lifetime time.Duration
	tokenURL string
	header   string
	prefix   string
	hc       *http.Client
	env      auth.Env
	now      func() time.Time

	mu      sync.Mutex
	tok     string
	expiry  time.Time
	refused string
	fatal   error
}

var _ httpx.Renewer = (*authenticator)(nil)

// New parses the key and returns the authenticator; it sends nothing.
func New(c *Config, env auth.Env) (auth.Authenticator, []string, error) {
	a := &authenticator{hc: env.HTTPClient, env: env, now: time.Now, lifetime: time.Hour, header: c.Header, claims: gojwt.MapClaims{}}
	alg := c.Algorithm
	if alg == "" {
		alg = "RS256"
	}
	if a.method = gojwt.GetSigningMethod(alg); a.method == nil {
		return nil, nil, fmt.Errorf("auth.algorithm %q is not known", alg)
	}
	pemKey, err := env.Eval(c.PrivateKey)
	if err != nil {
		return nil, nil, fmt.Errorf("auth.private_key: %w", err)
	}
	if a.key, err = parseKey(alg, []byte(pemKey)); err != nil {
		return nil, nil, err
	}
	fields := []struct {
		name, tpl string
		dst       *string
	}{{"key_id", c.KeyID, &a.kid}, {"token_url", c.TokenURL, &a.tokenURL}}
	for _, f := range fields {
		if *f.dst, err = env.Eval(f.tpl); err != nil {
			return nil, nil, fmt.Errorf("auth.%s: %w", f.name, err)
		}
	}
	for _, f := range []struct{ claim, name, tpl string }{{"iss", "issuer", c.Issuer}, {"sub", "subject", c.Subject}, {"aud", "audience", c.Audience}} {
		v, err := env.Eval(f.tpl)
		if err != nil {
			return nil, nil, fmt.Errorf("auth.%s: %w", f.name, err)
		}
		if v != "" {
			a.claims[f.claim] = v
		}
	}
	if _, ok := a.claims["aud"]; !ok && a.tokenURL != "" {
		a.claims["aud"] = a.tokenURL
	}
	if c.Scope != "" {
		a.claims["scope"] = c.Scope
	}
	for k, v := range c.Claims {
		if s, ok := v.(string); ok {
			if v, err = env.Eval(s); err != nil {
				return nil, nil, fmt.Errorf("auth.claims.%s: %w", k, err)
			}
		}
		a.claims[k] = v
	}
	if c.Lifetime != "" {
		if a.lifetime, err = spec.ParseDuration(c.Lifetime); err != nil {
			return nil, nil, fmt.Errorf("auth.lifetime: %w", err)
		}
	}
	if a.header == "" {
		a.header = "Authorization"
	}
	a.prefix = "Bearer "
	if c.Prefix != nil {
		a.prefix = *c.Prefix
	}
	return a, []string{pemKey}, nil
}

// parseKey reads the signing key for alg.
func parseKey(alg string, pem []byte) (any, error) {
	var key any
	var err error
	switch {
	case strings.HasPrefix(alg, "RS"), strings.HasPrefix(alg, "PS"):
		key, err = gojwt.ParseRSAPrivateKeyFromPEM(pem)
	case strings.HasPrefix(alg, "ES"):
		key, err = gojwt.ParseECPrivateKeyFromPEM(pem)
	case alg == "EdDSA":
		key, err = gojwt.ParseEdPrivateKeyFromPEM(pem)
	default: // HS*
		if len(pem) == 0 {
			return nil, errors.New("auth.private_key is empty")
		}
		return pem, nil
	}
	if err != nil {
		// Its message says what is wrong with the PEM, never its content.
		return nil, fmt.Errorf("auth.private_key is not a %s private key: %w", alg, err)
	}
	return key, nil
}

// sign makes a JWT valid from now for the lifetime.
func (a *authenticator) sign(now time.Time) (string, error) {
	claims := maps.Clone(a.claims)
	claims["iat"] = now.Unix()
	claims["exp"] = now.Add(a.lifetime).Unix()
	t := gojwt.NewWithClaims(a.method, claims)
	if a.kid != "" {
		t.Header["kid"] = a.kid
	}
	s, err := t.SignedString(a.key)
	if err != nil {
		return "", fmt.Errorf("auth: sign the JWT: %w", err)
	}
	return s, nil
}

// Apply puts a valid token on the request.
func (a *authenticator) Apply(ctx context.Context, req *http.Request) error {
	tok, err := a.token(ctx)
	if err != nil {
		return err
	}
	req.Header.Set(a.header, a.prefix+tok)
	return nil
}

// Renew drops a refused token.
func (a *authenticator) Renew(_ context.Context, sent *http.Request) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fatal != nil {
		return a.fatal
	}
	if sent == nil || auth.SameSecret(strings.TrimPrefix(sent.Header.Get(a.header), a.prefix), a.tok) {
		a.refused, a.tok = a.tok, ""
	}
	return nil
}

func (a *authenticator) token(ctx context.Context) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fatal != nil {
		return "", a.fatal
	}
	now := a.now()
	if a.tok != "" && !auth.SameSecret(a.tok, a.refused) && (a.expiry.IsZero() || now.Add(time.Minute).Before(a.expiry)) {
		return a.tok, nil
	}
	assertion, err := a.sign(now)
	if err != nil {
		a.fatal = err
		return "", err
	}
	if a.tokenURL == "" {
		a.env.AddSecret(assertion)
		a.tok, a.expiry = assertion, now.Add(a.lifetime)
		return a.tok, nil
	}
	cfg := clientcredentials.Config{TokenURL: a.tokenURL, AuthStyle: oauth2.AuthStyleInParams,
		EndpointParams: url.Values{"grant_type": {jwtBearer}, "assertion": {assertion}}}
	tok, err := cfg.Token(context.WithValue(ctx, oauth2.HTTPClient, a.hc))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil && (re.Response.StatusCode >= 500 || re.Response.StatusCode == 429) {
			return "", httpx.Retryable(fmt.Errorf("auth: the token endpoint %s: %d", a.tokenURL, re.Response.StatusCode))
		}
		if errors.As(err, &re) {
			msg := re.ErrorCode
			if re.ErrorDescription != "" {
				msg += fmt.Sprintf(" (the API says %q)", re.ErrorDescription)
			}
			a.fatal = fmt.Errorf("auth: the token endpoint %s refused the JWT: %s; check issuer, audience, scope and that the key is the account's", a.tokenURL, msg)
			return "", a.fatal
		}
		return "", httpx.Retryable(fmt.Errorf("auth: the token endpoint %s: %w", a.tokenURL, err))
	}
	a.env.AddSecret(tok.AccessToken)
	a.tok, a.expiry = tok.AccessToken, time.Time{}
	if !tok.Expiry.IsZero() {
		a.expiry = now.Add(time.Until(tok.Expiry))
	}
	return a.tok, nil
}
