// Package tokenpool is the token_pool auth scheme: several tokens for
// one API whose rate limit is per token (GitHub's 5,000 requests an hour
// per token), each request sent with the token that has the most quota
// left, as the responses' rate-limit headers report it. When every token
// is spent, requests wait for the first reset (or the stream stops early
// when that is later than http.max_wait).
package tokenpool

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/ferry-dev/ferry/internal/auth"
	"github.com/ferry-dev/ferry/internal/httpx"
	"github.com/ferry-dev/ferry/internal/spec"
)

func init() {
	auth.Register("token_pool", "Several bearer tokens for one API with per-token rate limits: each request takes the token with the most quota left.", New)
}

// Config is the token_pool scheme's auth section.
type Config struct {
	Tokens []string `yaml:"tokens" required:"true" min:"1" doc:"The tokens, each a secret config parameter ({{ config.token_a }})."`
	Header string   `yaml:"header,omitempty" default:"Authorization" doc:"The header carrying the token."`
	Prefix *string  `yaml:"prefix,omitempty" doc:"Put before the token (default 'Bearer ' for Authorization)."`
}

// Validate checks that every token is a secret.
func (c *Config) Validate(chk *spec.Checker) {
	for i, t := range c.Tokens {
		chk.SecretTemplate([]string{"tokens", fmt.Sprint(i)}, t)
	}
}

// token is one token and what the API said of its quota.
type token struct {
	value     string
	known     bool // the API told its quota
	remaining int64
	reset     time.Time
	header    string
}

// Pool is the scheme at run time.
type Pool struct {
	header, prefix string
	now            func() time.Time

	mu     sync.Mutex
	tokens []*token
	next   int // round-robin among equals
}

var _ httpx.QuotaKeeper = (*Pool)(nil)

// New returns the pool.
func New(c *Config, env auth.Env) (auth.Authenticator, []string, error) {
	p := &Pool{header: c.Header, now: time.Now}
	if p.header == "" {
		p.header = "Authorization"
	}
	if c.Prefix != nil {
		p.prefix = *c.Prefix
	} else if strings.EqualFold(p.header, "Authorization") {
		p.prefix = "Bearer "
	}
	var secrets []string
	for i, tpl := range c.Tokens {
		v, err := env.Eval(tpl)
		if err != nil {
			return nil, nil, fmt.Errorf("auth.tokens[%d]: %w", i, err)
		}
		if v == "" {
			return nil, nil, fmt.Errorf("auth.tokens[%d] is empty", i)
		}
		for _, t := range p.tokens {
			if auth.SameSecret(t.value, v) {
				return nil, nil, fmt.Errorf("auth.tokens[%d] is the same token as an earlier one", i)
			}
		}
		p.tokens = append(p.tokens, &token{value: v})
		secrets = append(secrets, v)
	}
	return p, secrets, nil
}

// Apply sends the token with the most quota left; a token the API has
// said nothing about yet counts as full. When every token is spent, it
// returns a *httpx.LimitError with the first reset.
func (p *Pool) Apply(_ context.Context, req *http.Request) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	var best *token
	bestLeft := int64(-1)
	n := len(p.tokens)
	for i := range n {
		t := p.tokens[(p.next+i)%n]
		left := int64(1) << 62
		if t.known && now.Before(t.reset) {
			left = t.remaining
		}
		if left > bestLeft {
			best, bestLeft = t, left
		}
	}
	p.next = (p.next + 1) % n
	if bestLeft <= 0 {
		first := p.tokens[0]
		for _, t := range p.tokens {
			if t.reset.Before(first.reset) {
				first = t
			}
		}
		return &httpx.LimitError{Rule: fmt.Sprintf("auth token_pool: all %d tokens spent (%s: 0)", n, first.header), Reset: first.reset, Wait: first.reset.Sub(now)}
	}
	if best.known && now.Before(best.reset) {
		best.remaining-- // the requests in flight count too
	}
	req.Header.Set(p.header, p.prefix+best.value)
	return nil
}

// Observe records what a response said of its token's quota.
func (p *Pool) Observe(sent *http.Request, _ int, l httpx.Limits) {
	if sent == nil || !l.Known || l.Reset.IsZero() {
		return
	}
	used := strings.TrimPrefix(sent.Header.Get(p.header), p.prefix)
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, t := range p.tokens {
		if !auth.SameSecret(t.value, used) {
			continue
		}
		now := p.now()
		if !t.known || !now.Before(t.reset) || l.Reset.After(t.reset.Add(time.Second)) {
			t.known, t.remaining, t.reset, t.header = true, l.Remaining, l.Reset, l.Header
		} else {
			t.remaining = min(t.remaining, l.Remaining)
		}
		return
	}
}
