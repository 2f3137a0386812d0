// Package auth is the contract of auth schemes: how a connector's auth
// section becomes an Authenticator that adds credentials to requests.
// Each scheme is one package under internal/auth that calls Register with
// its configuration type, plus one blank import in
// internal/components/all.
package auth

import (
	"context"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/ferry-dev/ferry/internal/component"
)

// Authenticator adds credentials to an outgoing request. Apply is called
// on every attempt, so a scheme can refresh tokens; it must be safe for
// concurrent use.
type Authenticator interface {
	Apply(ctx context.Context, req *http.Request) error
}

// Env is what a scheme gets besides its configuration.
type Env struct {
	// Eval renders a template string of the configuration (such as
	// "{{ config.token }}") with the pipeline's config values.
	Eval func(tpl string) (string, error)
	// AddSecret registers secrets the scheme derives at run time (tokens it
	// obtains), so that no message shows them.
	AddSecret func(secrets ...string)
	// Logger receives the scheme's logs.
	Logger *slog.Logger
	// BaseURL is the connector's base_url, for schemes whose own requests
	// (a login) may be written relative to it.
	BaseURL string
	// Dir is the directory relative paths are resolved against (the
	// pipeline's), for files a scheme keeps (a rotated refresh token).
	Dir string
	// HTTPClient sends the scheme's own requests (token endpoints, logins)
	// with the connector's TLS settings and timeout, without retries: a
	// scheme whose request failed for a passing reason returns an error
	// wrapped with httpx.Retryable, and the request it serves is retried.
	// nil: a client with the defaults.
	HTTPClient *http.Client
}

// The optional interfaces an Authenticator may implement are httpx's:
// httpx.Renewer (renew a credential the API refused, once, then retry),
// httpx.QuotaKeeper (rate limits per credential, for token pools), and
// QueryKey below.

// Factory builds an Authenticator from a scheme's configuration. It
// returns the secret values it will send, so they can be redacted.
type Factory func(cfg any, env Env) (Authenticator, []string, error)

// Register makes a scheme available under name (the auth section's
// type), with the type its section decodes into. It panics on a
// duplicate or nil factory.
func Register[C any](name, summary string, f func(cfg *C, env Env) (Authenticator, []string, error)) {
	if f == nil {
		panic("auth: Register " + name + " with a nil factory")
	}
	component.Register(component.Info{
		Kind:    component.Auth,
		Name:    name,
		Summary: summary,
		Config:  func() any { return new(C) },
		Factory: Factory(func(cfg any, env Env) (Authenticator, []string, error) {
			c, ok := cfg.(*C)
			if !ok {
				return nil, nil, fmt.Errorf("auth %s: configuration is %T, want %T", name, cfg, c)
			}
			return f(c, env)
		}),
	})
}

// New builds the Authenticator of scheme typ with its configuration, or
// nil for none.
func New(typ string, cfg any, env Env) (Authenticator, []string, error) {
	if typ == "" {
		return nil, nil, nil
	}
	info, err := component.Lookup(component.Auth, typ)
	if err != nil {
		return nil, nil, err
	}
	if env.Logger == nil {
		env.Logger = slog.New(slog.DiscardHandler)
	}
	if env.AddSecret == nil {
		env.AddSecret = func(...string) {}
	}
	if env.HTTPClient == nil {
		env.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	return info.Factory.(Factory)(cfg, env)
}

// QueryKey is implemented by authenticators that put a secret in the query
// string, so that URLs kept in state can be stripped of it.
type QueryKey interface {
	QueryParam() string
}

// Header sets one header on every request; schemes that send a fixed
// credential use it.
type Header struct{ Name, Value string }

// Apply sets the header.
func (h Header) Apply(_ context.Context, req *http.Request) error {
	req.Header.Set(h.Name, h.Value)
	return nil
}

// NoneConfig is the configuration of auth type none: nothing.
type NoneConfig struct{}

func init() {
	Register("none", "No credentials.", func(*NoneConfig, Env) (Authenticator, []string, error) { return nil, nil, nil })
}

// SameSecret reports whether two credentials are equal, in time that
// does not depend on where they differ.
func SameSecret(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
