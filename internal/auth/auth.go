// Package auth turns a connector's auth section into an
// httpx.Authenticator. Each scheme registers itself by name; OAuth2,
// session logins and request signing are new files here, nothing else.
package auth

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"

	"github.com/ferry-dev/ferry/internal/httpx"
	"github.com/ferry-dev/ferry/internal/registry"
	"github.com/ferry-dev/ferry/internal/spec"
)

// Eval renders one of the auth section's template strings with the
// pipeline's config.
type Eval func(tpl string) (string, error)

// Factory builds an Authenticator from a connector's auth section. It
// returns the secret values it will send, so they can be redacted.
type Factory func(a *spec.Auth, eval Eval) (httpx.Authenticator, []string, error)

var schemes = registry.New[Factory]("auth type")

// Register makes a scheme available under name; it panics on a duplicate
// or nil factory.
func Register(name string, f Factory) { schemes.Register(name, f) }

// New builds the Authenticator for a, or nil for no auth.
func New(a *spec.Auth, eval Eval) (httpx.Authenticator, []string, error) {
	if a == nil || a.Type == "" || a.Type == "none" {
		return nil, nil, nil
	}
	f, err := schemes.Get(a.Type)
	if err != nil {
		return nil, nil, err
	}
	return f(a, eval)
}

// Schemes lists the registered schemes.
func Schemes() []string { return schemes.Names() }

func init() {
	Register("bearer", newBearer)
	Register("basic", newBasic)
	Register("api_key", newAPIKey)
}

// header sets one header on every request.
type header struct{ name, value string }

func (h header) Apply(_ context.Context, req *http.Request) error {
	req.Header.Set(h.name, h.value)
	return nil
}

func newBearer(a *spec.Auth, eval Eval) (httpx.Authenticator, []string, error) {
	tok, err := eval(a.Token)
	if err != nil {
		return nil, nil, fmt.Errorf("auth.token: %w", err)
	}
	if tok == "" {
		return nil, nil, fmt.Errorf("auth.token is empty")
	}
	return header{"Authorization", "Bearer " + tok}, []string{tok}, nil
}

func newBasic(a *spec.Auth, eval Eval) (httpx.Authenticator, []string, error) {
	user, err := eval(a.Username)
	if err != nil {
		return nil, nil, fmt.Errorf("auth.username: %w", err)
	}
	pass, err := eval(a.Password)
	if err != nil {
		return nil, nil, fmt.Errorf("auth.password: %w", err)
	}
	cred := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	secrets := []string{cred}
	if pass != "" {
		secrets = append(secrets, pass)
	}
	return header{"Authorization", "Basic " + cred}, secrets, nil
}

// QueryKey is implemented by authenticators that put a secret in the query
// string, so that URLs kept in state can be stripped of it.
type QueryKey interface {
	QueryParam() string
}

type queryKey struct{ name, value string }

func (q queryKey) Apply(_ context.Context, req *http.Request) error {
	v := req.URL.Query()
	v.Set(q.name, q.value)
	req.URL.RawQuery = v.Encode()
	return nil
}

// QueryParam names the query parameter carrying the key.
func (q queryKey) QueryParam() string { return q.name }

func newAPIKey(a *spec.Auth, eval Eval) (httpx.Authenticator, []string, error) {
	key, err := eval(a.Value)
	if err != nil {
		return nil, nil, fmt.Errorf("auth.value: %w", err)
	}
	if key == "" {
		return nil, nil, fmt.Errorf("auth.value is empty")
	}
	if a.In == "query" {
		return queryKey{a.Name, key}, []string{key}, nil
	}
	return header{a.Name, a.Prefix + key}, []string{key}, nil
}
