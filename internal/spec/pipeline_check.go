package spec

import (
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/schedule"
	"github.com/ferry-dev/ferry/internal/schema"
)

// check validates the pipeline against its connector.
func (p *Pipeline) check(ps *problems) {
	conn := p.Connector.Inline
	if p.Name == "" {
		p.Name = conn.Name
	}
	// Config: every key declared, secrets never inline, required ones given.
	for _, k := range slices.Sorted(maps.Keys(p.Config)) {
		param, ok := conn.Config[k]
		if !ok {
			msg := fmt.Sprintf("unknown config parameter %q", k)
			if hint := didYouMean(k, slices.Sorted(maps.Keys(conn.Config))); hint != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", hint)
			} else if len(conn.Config) > 0 {
				msg += fmt.Sprintf(" (the connector declares: %s)", strings.Join(slices.Sorted(maps.Keys(conn.Config)), ", "))
			} else {
				msg += " (the connector declares none)"
			}
			ps.at([]string{"config", k}, "%s", msg)
			continue
		}
		v := p.Config[k]
		if param.Secret && v.Env == "" && v.File == "" {
			if s, ok := v.Literal.(string); !ok || !strings.Contains(s, "${") {
				ps.atValue([]string{"config", k}, "%s is a secret: take it from the environment (%s: ${%s}) or a file (%s: {file: /run/secrets/%s}), never inline",
					k, k, strings.ToUpper(k), k, k)
			}
		}
		if v.Literal != nil {
			if s, ok := v.Literal.(string); ok {
				if _, err := expandEnv(s, func(string) (string, bool) { return "x", true }); err != nil {
					ps.atValue([]string{"config", k}, "%v", err)
				}
			} else if _, err := convertParam(param, v.Literal); err != nil {
				ps.atValue([]string{"config", k}, "%v", err)
			}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(conn.Config)) {
		param := conn.Config[k]
		if param == nil {
			continue
		}
		required := param.Default == nil
		if param.Required != nil {
			required = *param.Required
		}
		if _, given := p.Config[k]; required && !given {
			hint := ""
			if param.Secret {
				hint = fmt.Sprintf(" (for example %s: ${%s})", k, strings.ToUpper(k))
			}
			ps.at([]string{"config"}, "missing required config parameter %q%s", k, hint)
		}
	}
	p.checkSection(ps, "destination", p.Destination)
	p.checkSection(ps, "state", p.State)
	p.checkStores(ps)
	// Streams.
	if p.Streams == nil {
		p.StreamOrder = conn.StreamNames()
	} else {
		p.StreamOrder = p.Source.Keys([]string{"streams"})
		for _, name := range p.StreamOrder {
			if _, ok := conn.Stream(name); !ok {
				msg := fmt.Sprintf("the connector has no stream %q", name)
				if hint := didYouMean(name, conn.StreamNames()); hint != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", hint)
				} else {
					msg += fmt.Sprintf(" (it has: %s)", strings.Join(conn.StreamNames(), ", "))
				}
				ps.at([]string{"streams", name}, "%s", msg)
			}
		}
	}
	for _, name := range p.StreamOrder {
		s, ok := conn.Stream(name)
		if !ok {
			continue
		}
		if st := p.Streams[name]; st != nil && st.MaxRejected != "" {
			if _, err := ParseRejectLimit(string(st.MaxRejected)); err != nil {
				ps.atValue([]string{"streams", name, "max_rejected"}, "%v", err)
			}
		}
		mode := p.ModeOf(name)
		if d := p.declaration(); !d.Supports(mode) {
			at := []string{"streams", name, "mode"}
			if st := p.Streams[name]; st == nil || st.Mode == "" {
				at = []string{"destination", "type"}
			}
			ps.atValue(at, "the %s destination does not support mode %s (stream %s); it supports %s", p.Destination.Type, mode, name, modeList(d.Modes))
		}
		at := []string{"streams", name, "mode"}
		if st := p.Streams[name]; st == nil || st.Mode == "" {
			at = []string{"mode"}
		}
		switch mode {
		case dest.IncrementalAppend, dest.IncrementalDedup:
			if s.Cursor == "" {
				ps.atValue(at, "stream %s has no cursor, so it cannot sync in %s mode (use full_refresh_overwrite, or set cursor: in the connector)", name, mode)
			}
		}
		if mode == dest.IncrementalDedup && len(s.PrimaryKey) == 0 {
			ps.atValue(at, "stream %s has no primary_key, so it cannot sync in incremental_dedup mode", name)
		}
	}
	if sy := p.Sync; sy != nil && sy.CheckpointInterval != "" {
		if _, err := ParseDuration(sy.CheckpointInterval); err != nil {
			ps.atValue([]string{"sync", "checkpoint_interval"}, "%v", err)
		}
	}
	if sc := p.Schedule; sc != nil {
		if _, err := schedule.Parse(sc.Cron); err != nil {
			ps.atValue([]string{"schedule", "cron"}, "%v", err)
		}
		if sc.Jitter != "" {
			if _, err := ParseDuration(sc.Jitter); err != nil {
				ps.atValue([]string{"schedule", "jitter"}, "%v", err)
			}
		}
	}
	p.checkTables(ps)
}

// declaration is what the pipeline's destination says it can do.
func (p *Pipeline) declaration() dest.Declaration {
	if p.Destination == nil {
		return dest.Declaration{}
	}
	if d, ok := p.Destination.Config.(dest.Declarer); ok {
		return d.Declare()
	}
	return dest.Declaration{}
}

func modeList(ms []dest.Mode) string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = string(m)
	}
	return strings.Join(out, ", ")
}

// checkStores checks that the state has somewhere to live: a destination
// that keeps none needs a state: section, which must keep state itself.
func (p *Pipeline) checkStores(ps *problems) {
	if p.declaration().NoState && p.State == nil {
		ps.at([]string{"destination"}, "the %s destination keeps no sync state: add a state: section (for example state: {type: sqlite, path: state.db}); delivery is then at-least-once", p.Destination.Type)
	}
	if p.State != nil {
		if d, ok := p.State.Config.(dest.Declarer); ok && d.Declare().NoState {
			ps.atValue([]string{"state", "type"}, "the %s destination keeps no sync state and cannot be the state: store; use a database such as sqlite or postgres", p.State.Type)
		}
	}
}

// checkSection validates a component section of the pipeline: the
// component's own rules, and the ${VAR} references of its strings.
func (p *Pipeline) checkSection(ps *problems, name string, s *DestinationSection) {
	if s == nil || s.Config == nil {
		return
	}
	base := []string{name}
	provisionAll(ps, nil, s.Config, base)
	for _, sf := range stringsOf(s.Config, base) {
		if _, err := expandEnv(sf.value, func(string) (string, bool) { return "x", true }); err != nil {
			ps.atValue(sf.path, "%v", err)
		}
	}
}

// ModeOf returns the sync mode of a stream: the pipeline's setting for it,
// the pipeline's default, or what fits the stream.
func (p *Pipeline) ModeOf(stream string) dest.Mode {
	if st := p.Streams[stream]; st != nil && st.Mode != "" {
		return st.Mode
	}
	if p.Mode != "" {
		return p.Mode
	}
	s, ok := p.Connector.Inline.Stream(stream)
	switch {
	case !ok:
		return dest.FullRefreshOverwrite
	case s.Cursor != "" && len(s.PrimaryKey) > 0:
		return dest.IncrementalDedup
	case s.Cursor != "":
		return dest.IncrementalAppend
	}
	return dest.FullRefreshOverwrite
}

// SchemaOf returns the schema settings of a stream with defaults applied.
func (p *Pipeline) SchemaOf(stream string) SchemaSettings {
	out := SchemaSettings{Policy: schema.Evolve, Nested: schema.NestJSON, MaxDepth: 2}
	apply := func(s *SchemaSettings) {
		if s == nil {
			return
		}
		if s.Policy != "" {
			out.Policy = s.Policy
		}
		if s.Nested != "" {
			out.Nested = s.Nested
		}
		if s.MaxDepth != 0 {
			out.MaxDepth = s.MaxDepth
		}
	}
	apply(p.Schema)
	if st := p.Streams[stream]; st != nil {
		apply(st.Schema)
	}
	return out
}

// TableOf returns the destination table name of a stream as configured
// (before the destination normalises it).
func (p *Pipeline) TableOf(stream string) string {
	if st := p.Streams[stream]; st != nil && st.Table != "" {
		return st.Table
	}
	return stream
}

// Resolved is a pipeline's runtime values: config with environment
// variables and secret files read, and the secrets to redact.
type Resolved struct {
	// Config holds each parameter's value, typed as the connector declares.
	Config map[string]any
	// Secrets are values that must never appear in output.
	Secrets []string
	// Destination is the destination's configuration (a copy of the
	// pipeline's) with every ${VAR} expanded; State likewise, nil when the
	// pipeline keeps state in the destination.
	Destination any
	State       any
}

// ResolveStores reads only what a command that never calls the API
// needs (ferry query, ferry state): the destination and state sections.
// Config parameters, secrets among them, are left alone.
func (p *Pipeline) ResolveStores(lookup func(string) (string, bool)) (*Resolved, error) {
	ps := &problems{file: p.Source}
	r := &Resolved{Config: map[string]any{}}
	r.Destination = resolveSection(ps, "destination", p.Destination, lookup, &r.Secrets)
	if p.State != nil {
		r.State = resolveSection(ps, "state", p.State, lookup, &r.Secrets)
	}
	if err := ps.err(); err != nil {
		return nil, err
	}
	return r, nil
}

// Resolve reads environment variables (through lookup) and secret files.
// Every missing variable or unreadable file is reported, with its
// position, before any request is made.
func (p *Pipeline) Resolve(lookup func(string) (string, bool)) (*Resolved, error) {
	conn := p.Connector.Inline
	ps := &problems{file: p.Source}
	r := &Resolved{Config: map[string]any{}}
	for _, k := range slices.Sorted(maps.Keys(conn.Config)) {
		param := conn.Config[k]
		v, given := p.Config[k]
		if !given {
			if param.Default != nil {
				val, _ := convertParam(param, param.Default)
				r.Config[k] = val
			}
			continue
		}
		var raw string
		switch {
		case v.Env != "":
			s, ok := lookup(v.Env)
			if !ok {
				ps.atValue([]string{"config", k}, "environment variable %s is not set", v.Env)
				continue
			}
			raw = s
		case v.File != "":
			name := v.File
			if !filepath.IsAbs(name) {
				name = filepath.Join(p.Dir, name)
			}
			data, err := os.ReadFile(name)
			if err != nil {
				ps.atValue([]string{"config", k}, "read secret file: %v", err)
				continue
			}
			raw = strings.TrimRight(string(data), "\r\n")
		default:
			s, isString := v.Literal.(string)
			if !isString {
				val, err := convertParam(param, v.Literal)
				if err != nil {
					ps.atValue([]string{"config", k}, "%v", err)
					continue
				}
				r.Config[k] = val
				continue
			}
			exp, err := expandEnv(s, lookup)
			if err != nil {
				ps.atValue([]string{"config", k}, "%v", err)
				continue
			}
			raw = exp
		}
		val, err := convertParam(param, raw)
		if err != nil {
			ps.atValue([]string{"config", k}, "%v", err)
			continue
		}
		r.Config[k] = val
		if param.Secret && raw != "" {
			r.Secrets = append(r.Secrets, raw)
		}
	}
	r.Destination = resolveSection(ps, "destination", p.Destination, lookup, &r.Secrets)
	if p.State != nil {
		r.State = resolveSection(ps, "state", p.State, lookup, &r.Secrets)
	}
	if err := ps.err(); err != nil {
		return nil, err
	}
	return r, nil
}

// resolveSection returns a copy of a section's configuration with every
// ${VAR} of its strings expanded, and adds the values its secret fields
// hold to secrets.
func resolveSection(ps *problems, name string, s *DestinationSection, lookup func(string) (string, bool), secrets *[]string) any {
	if s == nil || s.Config == nil {
		return nil
	}
	cfg := deepCopy(s.Config)
	for _, sf := range stringsOf(cfg, []string{name}) {
		v, err := expandEnv(sf.value, lookup)
		if err != nil {
			ps.atValue(sf.path, "%v", err)
			continue
		}
		if v != sf.value {
			sf.set(v)
		}
		switch sf.secret {
		case "true":
			if v != "" {
				*secrets = append(*secrets, v)
			}
		case "url":
			*secrets = append(*secrets, URLPassword(v)...)
		}
	}
	return cfg
}

// URLPassword returns the password of a connection URL (a URL's userinfo,
// or password= in a key=value connection string), if any. It never fails:
// a URL that does not parse is searched by hand.
func URLPassword(raw string) []string {
	if u, err := url.Parse(raw); err == nil && u.User != nil {
		if p, ok := u.User.Password(); ok && p != "" {
			return []string{p}
		}
		return nil
	}
	// A password with unencoded /, # or ? does not parse: take what is
	// between the scheme's user: and the last @ before the host.
	if i := strings.Index(raw, "://"); i >= 0 {
		rest := raw[i+3:]
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			if _, pass, ok := strings.Cut(rest[:at], ":"); ok && pass != "" {
				return []string{pass}
			}
		}
	}
	for _, f := range strings.Fields(raw) {
		if v, ok := strings.CutPrefix(f, "password="); ok && v != "" {
			return []string{strings.Trim(v, "'")}
		}
	}
	return nil
}

// expandEnv replaces ${NAME} and ${NAME:-default} with environment values;
// $$ is a literal $. A variable that is unset and has no default is an
// error naming it.
func expandEnv(s string, lookup func(string) (string, bool)) (string, error) {
	if !strings.Contains(s, "$") {
		return s, nil
	}
	var b strings.Builder
	var missing []string
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '$' {
			b.WriteByte(c)
			continue
		}
		if i+1 < len(s) && s[i+1] == '$' {
			b.WriteByte('$')
			i++
			continue
		}
		if i+1 >= len(s) || s[i+1] != '{' {
			b.WriteByte('$')
			continue
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return "", fmt.Errorf("unclosed ${ in %q", s)
		}
		body := s[i+2 : i+end]
		name, def, hasDef := strings.Cut(body, ":-")
		if !validEnvName(name) {
			return "", fmt.Errorf("invalid environment variable name %q in ${%s}", name, body)
		}
		if v, ok := lookup(name); ok && (v != "" || !hasDef) {
			b.WriteString(v)
		} else if hasDef {
			b.WriteString(def)
		} else {
			missing = append(missing, name)
		}
		i += end
	}
	if len(missing) > 0 {
		if len(missing) == 1 {
			return "", fmt.Errorf("environment variable %s is not set", missing[0])
		}
		return "", fmt.Errorf("environment variables %s are not set", strings.Join(missing, ", "))
	}
	return b.String(), nil
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		if c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (i > 0 && c >= '0' && c <= '9') {
			continue
		}
		return false
	}
	return true
}
