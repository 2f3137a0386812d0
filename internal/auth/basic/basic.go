// Package basic is HTTP basic auth: Authorization: Basic
// base64(user:password) on every request (Jira Cloud with an e-mail and an
// API token, Zendesk's email/token form).
package basic

import (
	"encoding/base64"
	"fmt"

	"github.com/ferry-dev/ferry/internal/auth"
	"github.com/ferry-dev/ferry/internal/spec"
)

func init() {
	auth.Register("basic", "HTTP basic auth: a user name and a password.", New)
}

// Config is the basic scheme's auth section.
type Config struct {
	// Username and Password are the credentials. Templates.
	Username string `yaml:"username" required:"true" def:"template" doc:"User name. Template."`
	Password string `yaml:"password,omitempty" def:"template" doc:"Password. Template, usually {{ config.password }} with a secret config parameter."`
}

// Validate checks the templates.
func (c *Config) Validate(chk *spec.Checker) {
	chk.Template([]string{"username"}, c.Username, spec.VarConfig)
	if c.Password != "" {
		chk.Template([]string{"password"}, c.Password, spec.VarConfig)
	}
}

// New returns the authenticator.
func New(c *Config, env auth.Env) (auth.Authenticator, []string, error) {
	user, err := env.Eval(c.Username)
	if err != nil {
		return nil, nil, fmt.Errorf("auth.username: %w", err)
	}
	pass, err := env.Eval(c.Password)
	if err != nil {
		return nil, nil, fmt.Errorf("auth.password: %w", err)
	}
	cred := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	secrets := []string{cred}
	if pass != "" {
		secrets = append(secrets, pass)
	}
	return auth.Header{Name: "Authorization", Value: "Basic " + cred}, secrets, nil
}
