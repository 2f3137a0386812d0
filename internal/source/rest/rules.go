package rest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"

	"github.com/ferry-dev/ferry/internal/httpx"
	"github.com/ferry-dev/ferry/internal/source"
	"github.com/ferry-dev/ferry/internal/spec"
)

// Rule decides what a response means, by its status, its headers or an
// expression over its body, instead of the client's defaults. A stream's
// rules are tried in order, then the connector's (defaults.rules); the
// first that matches decides.
type Rule struct {
	// Name names the rule in messages (default: its place in the file).
	Name string `yaml:"name,omitempty" min:"1" doc:"Names the rule in messages (default: its place in the file)."`
	// Status lists the statuses the rule is about (any, when empty).
	Status []RuleStatus `yaml:"status,omitempty" doc:"The statuses the rule applies to (default: any)."`
	// Headers maps header names to regular expressions their values must
	// match.
	Headers map[string]string `yaml:"headers,omitempty" doc:"Header name → regular expression its value must match."`
	// When is an expression (expr) over status, headers and body.
	When string `yaml:"when,omitempty" min:"1" doc:"An expression over status, headers (lower-case names) and body (the JSON, null when not JSON) that must be true."`
	// Action is what a match means.
	Action string `yaml:"action" required:"true" enum:"retry,ignore,end,accept,refresh_auth,fail,stop" doc:"retry (after wait or the backoff), ignore (no records; the partition ends), end (keep this page's records, read no more), accept (take a 2xx as it is, GraphQL errors included), refresh_auth (renew the credential, try again once), fail (with message), stop (end the stream early; the next run resumes)."`
	// Wait is how long retry waits (or when stop's limit resets).
	Wait string `yaml:"wait,omitempty" def:"duration" doc:"retry: how long to wait (default: the backoff); stop: when the limit resets."`
	// WaitFrom is an expression giving the wait from the response: a
	// number of seconds, a duration ("30s") or a time (RFC 3339, epoch
	// seconds above 10^9).
	WaitFrom string `yaml:"wait_from,omitempty" min:"1" doc:"An expression giving the wait from the response: seconds, a duration such as '30s', or the time it resets (RFC 3339 or epoch seconds)."`
	// Message is what a fail or stop says, before the API's own message.
	Message string `yaml:"message,omitempty" min:"1" doc:"What fail or stop says (the API's own message follows)."`
}

// RuleStatus is an HTTP status in a rule.
type RuleStatus int

// JSONSchema bounds it to HTTP statuses.
func (RuleStatus) JSONSchema() map[string]any {
	return map[string]any{"type": "integer", "minimum": 100, "maximum": 599}
}

// ruleVars are the variables of rule expressions.
type ruleVars struct {
	Status  int               `expr:"status"`
	Headers map[string]string `expr:"headers"`
	Body    any               `expr:"body"`
}

// ruleEnv declares the variables of rule expressions.
var ruleEnv = ruleVars{}

// checkRules checks the rules at p.
func checkRules(chk *spec.Checker, p []string, rules []*Rule) {
	for i, r := range rules {
		rp := join(p, strconv.Itoa(i))
		if r == nil {
			chk.Abs(rp).At(nil, "empty rule: give at least an action")
			continue
		}
		rc := chk.Abs(rp)
		for _, k := range slices.Sorted(maps.Keys(r.Headers)) {
			if _, err := regexp.Compile(r.Headers[k]); err != nil {
				rc.AtValue([]string{"headers", k}, "%v", err)
			}
		}
		if r.When != "" {
			if _, err := expr.Compile(r.When, expr.Env(ruleEnv), expr.AsBool()); err != nil {
				rc.AtValue([]string{"when"}, "%s", exprMessage(err))
			}
		}
		if r.WaitFrom != "" {
			if _, err := expr.Compile(r.WaitFrom, expr.Env(ruleEnv)); err != nil {
				rc.AtValue([]string{"wait_from"}, "%s", exprMessage(err))
			}
		}
		if r.Wait != "" {
			if _, err := spec.ParseDuration(r.Wait); err != nil {
				rc.AtValue([]string{"wait"}, "%v", err)
			}
		}
		if r.Wait != "" && r.WaitFrom != "" {
			rc.At([]string{"wait_from"}, "give wait or wait_from, not both")
		}
		if (r.Wait != "" || r.WaitFrom != "") && r.Action != "retry" && r.Action != "stop" {
			rc.At([]string{"wait"}, "wait applies to retry and stop")
		}
		if r.Message != "" && r.Action != "fail" && r.Action != "stop" {
			rc.At([]string{"message"}, "message applies to fail and stop")
		}
		if len(r.Status) == 0 && len(r.Headers) == 0 && r.When == "" {
			rc.At(nil, "the rule matches every response: give status, headers or when")
		}
	}
}

func exprMessage(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", " ")
}

// rule is a compiled Rule.
type rule struct {
	label    string // `rule "name"` or `rule streams.x.rules[0]`
	status   map[int]bool
	headers  []headerMatch
	when     *vm.Program
	action   string
	wait     time.Duration
	waitFrom *vm.Program
	message  string
	warned   sync.Once
}

type headerMatch struct {
	name string
	re   *regexp.Regexp
}

// compileRules compiles the rules written at p.
func compileRules(p []string, rules []*Rule) ([]*rule, error) {
	var out []*rule
	for i, r := range rules {
		if r == nil {
			continue
		}
		c := &rule{action: r.Action, message: r.Message, status: map[int]bool{}}
		c.label = fmt.Sprintf("rule %s", strings.Join(join(p, strconv.Itoa(i)), "."))
		if r.Name != "" {
			c.label = fmt.Sprintf("rule %q (%s)", r.Name, strings.Join(join(p, strconv.Itoa(i)), "."))
		}
		for _, s := range r.Status {
			c.status[int(s)] = true
		}
		for _, k := range slices.Sorted(maps.Keys(r.Headers)) {
			re, err := regexp.Compile(r.Headers[k])
			if err != nil {
				return nil, fmt.Errorf("%s: headers.%s: %w", c.label, k, err)
			}
			c.headers = append(c.headers, headerMatch{http.CanonicalHeaderKey(k), re})
		}
		var err error
		if r.When != "" {
			if c.when, err = expr.Compile(r.When, expr.Env(ruleEnv), expr.AsBool()); err != nil {
				return nil, fmt.Errorf("%s: when: %s", c.label, exprMessage(err))
			}
		}
		if r.WaitFrom != "" {
			if c.waitFrom, err = expr.Compile(r.WaitFrom, expr.Env(ruleEnv)); err != nil {
				return nil, fmt.Errorf("%s: wait_from: %s", c.label, exprMessage(err))
			}
		}
		if r.Wait != "" {
			if c.wait, err = spec.ParseDuration(r.Wait); err != nil {
				return nil, fmt.Errorf("%s: wait: %w", c.label, err)
			}
		}
		out = append(out, c)
	}
	return out, nil
}

// ruleInput is what rule expressions see of a response, built once per
// response.
type ruleInput struct {
	resp *httpx.Response
	env  *ruleVars
}

func (in *ruleInput) vars() *ruleVars {
	if in.env != nil {
		return in.env
	}
	headers := make(map[string]string, len(in.resp.Header))
	for k, v := range in.resp.Header {
		if len(v) > 0 {
			headers[strings.ToLower(k)] = v[0]
		}
	}
	var body any
	d := json.NewDecoder(bytes.NewReader(in.resp.Body))
	d.UseNumber()
	if d.Decode(&body) != nil {
		body = nil
	}
	in.env = &ruleVars{Status: in.resp.Status, Headers: headers, Body: numbers(body)}
	return in.env
}

// numbers turns json.Number values into int or float64, as expressions
// compare them.
func numbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return int(n)
		}
		f, _ := x.Float64()
		return f
	case map[string]any:
		for k, e := range x {
			x[k] = numbers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = numbers(e)
		}
	}
	return v
}

// matches reports whether the rule applies to a response.
func (r *rule) matches(in *ruleInput, log func(msg string, args ...any)) bool {
	if len(r.status) > 0 && !r.status[in.resp.Status] {
		return false
	}
	for _, h := range r.headers {
		if !h.re.MatchString(in.resp.Header.Get(h.name)) {
			return false
		}
	}
	if r.when == nil {
		return true
	}
	v, err := expr.Run(r.when, in.vars())
	if err != nil {
		r.warned.Do(func() {
			log("a response rule's when failed; the rule is taken as not matching", "rule", r.label, "error", exprMessage(err))
		})
		return false
	}
	ok, _ := v.(bool)
	return ok
}

// waitFor returns how long the response asks to wait: wait, or what
// wait_from says.
func (r *rule) waitFor(in *ruleInput, now time.Time) time.Duration {
	if r.waitFrom == nil {
		return r.wait
	}
	v, err := expr.Run(r.waitFrom, in.vars())
	if err != nil {
		return 0
	}
	return waitValue(v, now)
}

// waitValue reads a wait: seconds, a duration, or a time to wait until.
func waitValue(v any, now time.Time) time.Duration {
	secs := func(f float64) time.Duration {
		if math.IsNaN(f) || f <= 0 {
			return 0
		}
		if f >= 1e9 { // an epoch time
			return time.Until(time.Unix(int64(f), 0))
		}
		return time.Duration(math.Ceil(min(f, 1e9) * float64(time.Second)))
	}
	switch x := v.(type) {
	case int:
		return secs(float64(x))
	case int64:
		return secs(float64(x))
	case float64:
		return secs(x)
	case string:
		if f, err := strconv.ParseFloat(x, 64); err == nil {
			return secs(f)
		}
		if d, err := spec.ParseDuration(x); err == nil {
			return max(d, 0)
		}
		if t, err := time.Parse(time.RFC3339, x); err == nil {
			return max(t.Sub(now), 0)
		}
		if t, err := http.ParseTime(x); err == nil {
			return max(t.Sub(now), 0)
		}
	}
	return 0
}

// RuleError is the error of a response a rule (or a built-in rule, such
// as GraphQL's errors in a 200) failed: it names the rule and keeps the
// API's own message.
type RuleError struct {
	Rule    string
	Method  string
	URL     string // redacted
	Status  int
	Message string // the rule's message
	API     string // what the body says (redacted, bounded)
}

func (e *RuleError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: %d %s: %s", e.Method, e.URL, e.Status, http.StatusText(e.Status), e.Rule)
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.API != "" {
		b.WriteString(": " + e.API)
	}
	return b.String()
}

// decider returns the Decide function of one request of a stream: the
// stream's rules, then the built-in ones (GraphQL). took records the
// action of a rule that accepted the response (ignore, end, accept).
func (s *Source) decider(st *stream, method string, took *string) func(*httpx.Response) httpx.Verdict {
	if len(st.rules) == 0 && !st.graphql {
		return nil
	}
	return func(resp *httpx.Response) httpx.Verdict {
		*took = ""
		in := &ruleInput{resp: resp}
		for _, r := range st.rules {
			if !r.matches(in, s.log.Warn) {
				continue
			}
			v := s.verdict(r, in, method)
			if v.Action == httpx.Accept {
				*took = r.action
			}
			return v
		}
		if st.graphql {
			return s.graphqlVerdict(resp, method)
		}
		return httpx.Verdict{}
	}
}

// verdict is what a matching rule decides.
func (s *Source) verdict(r *rule, in *ruleInput, method string) httpx.Verdict {
	resp := in.resp
	rerr := &RuleError{Rule: r.label, Method: method, URL: resp.URL, Status: resp.Status, Message: r.message, API: httpx.Message(s.red, resp)}
	s.log.Debug("a response rule matched", "rule", r.label, "status", resp.Status, "action", r.action)
	switch r.action {
	case "retry":
		return httpx.Verdict{Action: httpx.Retry, Wait: r.waitFor(in, time.Now()), Err: rerr, Rule: r.label}
	case "fail":
		return httpx.Verdict{Action: httpx.Fail, Err: rerr}
	case "stop":
		stop := &source.StopError{Reason: r.label, Err: rerr}
		if d := r.waitFor(in, time.Now()); d > 0 {
			stop.Until = time.Now().Add(d)
		}
		return httpx.Verdict{Action: httpx.Fail, Err: stop}
	case "refresh_auth":
		return httpx.Verdict{Action: httpx.Renew, Err: rerr}
	}
	return httpx.Verdict{Action: httpx.Accept}
}

// compileRules compiles the stream's rules and the connector's.
func (st *stream) compileRules(sp *Stream) error {
	own, err := compileRules(sp.rulesAt, sp.Rules)
	if err != nil {
		return err
	}
	defaults, err := compileRules(sp.defaultRulesAt, sp.defaultRules)
	if err != nil {
		return err
	}
	st.rules = append(own, defaults...)
	st.graphql = sp.GraphQL != nil
	return nil
}

// taken finishes a response a rule took as it is: ignore gives no
// records and ends the partition; end keeps a 2xx page's records and
// reads no more; accept keeps a 2xx page as it is.
func (s *Source) taken(resp *httpx.Response, parsed **response, took string, check func(*httpx.Response) error) (*httpx.Response, *response, error) {
	ok := resp.Status >= 200 && resp.Status <= 299
	switch {
	case took == "":
		return resp, *parsed, nil
	case took == "ignore" || !ok:
		s.log.Debug("a response rule ignored the response", "status", resp.Status, "url", resp.URL)
		return resp, nil, nil
	}
	if err := check(resp); err != nil {
		return nil, nil, err
	}
	(*parsed).last = took == "end"
	return resp, *parsed, nil
}
