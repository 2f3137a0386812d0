// Package bearer is the bearer-token auth scheme: Authorization: Bearer
// <token> on every request, as most REST APIs take a personal access token
// or API key (GitHub: auth: {type: bearer, token: "{{ config.token }}"}).
package bearer

import (
	"fmt"

	"github.com/ferry-dev/ferry/internal/auth"
	"github.com/ferry-dev/ferry/internal/spec"
)

func init() {
	auth.Register("bearer", "Authorization: Bearer <token> on every request.", New)
}

// Config is the bearer scheme's auth section.
type Config struct {
	// Token is the bearer token. Template.
	Token string `yaml:"token" required:"true" def:"template" doc:"The bearer token, usually {{ config.token }} with a secret config parameter."`
}

// Validate checks the token's template.
func (c *Config) Validate(chk *spec.Checker) {
	chk.Template([]string{"token"}, c.Token, spec.VarConfig)
}

// New returns the authenticator.
func New(c *Config, env auth.Env) (auth.Authenticator, []string, error) {
	tok, err := env.Eval(c.Token)
	if err != nil {
		return nil, nil, fmt.Errorf("auth.token: %w", err)
	}
	if tok == "" {
		return nil, nil, fmt.Errorf("auth.token is empty")
	}
	return auth.Header{Name: "Authorization", Value: "Bearer " + tok}, []string{tok}, nil
}
