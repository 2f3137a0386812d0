// Package apikey is the API-key auth scheme: a key in a header (X-Api-Key:
// <key>, or Authorization: Token <key> with a prefix) or in a query
// parameter (?api_key=<key>).
package apikey

import (
	"context"
	"fmt"
	"net/http"

	"github.com/ferry-dev/ferry/internal/auth"
	"github.com/ferry-dev/ferry/internal/spec"
)

func init() {
	auth.Register("api_key", "An API key in a header or a query parameter.", New)
}

// Config is the api_key scheme's auth section.
type Config struct {
	// Name is the header or query parameter carrying the key.
	Name string `yaml:"name" required:"true" min:"1" doc:"Header or query parameter carrying the key."`
	// In is where the key goes: header (default) or query.
	In string `yaml:"in,omitempty" enum:"header,query" default:"header" doc:"Where the key goes."`
	// Value is the key. Template.
	Value string `yaml:"value" required:"true" def:"template" doc:"The key, usually {{ config.api_key }} with a secret config parameter."`
	// Prefix is put before the key in a header, e.g. "Token ".
	Prefix string `yaml:"prefix,omitempty" doc:"Put before the key in a header, e.g. 'Token '."`
}

// Validate checks the template, and that a prefix goes with a header.
func (c *Config) Validate(chk *spec.Checker) {
	chk.Template([]string{"value"}, c.Value, spec.VarConfig)
	if c.Prefix != "" && c.In == "query" {
		chk.At([]string{"prefix"}, "prefix applies to header keys only")
	}
}

// New returns the authenticator.
func New(c *Config, env auth.Env) (auth.Authenticator, []string, error) {
	key, err := env.Eval(c.Value)
	if err != nil {
		return nil, nil, fmt.Errorf("auth.value: %w", err)
	}
	if key == "" {
		return nil, nil, fmt.Errorf("auth.value is empty")
	}
	if c.In == "query" {
		return queryKey{c.Name, key}, []string{key}, nil
	}
	return auth.Header{Name: c.Name, Value: c.Prefix + key}, []string{key}, nil
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
