package spec

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
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
	p.checkDestination(ps)
	// Streams.
	if p.Streams == nil {
		p.StreamOrder = slices.Clone(conn.StreamOrder)
	} else {
		p.StreamOrder = p.Source.Keys([]string{"streams"})
		for _, name := range p.StreamOrder {
			if _, ok := conn.Streams[name]; !ok {
				msg := fmt.Sprintf("the connector has no stream %q", name)
				if hint := didYouMean(name, conn.StreamOrder); hint != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", hint)
				} else {
					msg += fmt.Sprintf(" (it has: %s)", strings.Join(conn.StreamOrder, ", "))
				}
				ps.at([]string{"streams", name}, "%s", msg)
			}
		}
	}
	for _, name := range p.StreamOrder {
		s := conn.Streams[name]
		if s == nil {
			continue
		}
		mode := p.ModeOf(name)
		at := []string{"streams", name, "mode"}
		if st := p.Streams[name]; st == nil || st.Mode == "" {
			at = []string{"mode"}
		}
		switch mode {
		case IncrementalAppend, IncrementalDedup:
			if s.Cursor == "" {
				ps.atValue(at, "stream %s has no cursor, so it cannot sync in %s mode (use full_refresh_overwrite, or set cursor: in the connector)", name, mode)
			}
		}
		if mode == IncrementalDedup && len(s.PrimaryKey) == 0 {
			ps.atValue(at, "stream %s has no primary_key, so it cannot sync in incremental_dedup mode", name)
		}
	}
	if sy := p.Sync; sy != nil && sy.CheckpointInterval != "" {
		if _, err := ParseDuration(sy.CheckpointInterval); err != nil {
			ps.atValue([]string{"sync", "checkpoint_interval"}, "%v", err)
		}
	}
}

// destinationFields lists the fields each destination type uses.
var destinationFields = map[string][]string{
	"sqlite":   {"path", "table_prefix"},
	"postgres": {"url", "schema", "table_prefix", "sslmode", "sslrootcert"},
	"mysql":    {"url", "table_prefix", "sslmode", "sslrootcert"},
}

func (p *Pipeline) checkDestination(ps *problems) {
	d := p.Destination
	used := map[string]bool{"path": d.Path != "", "url": d.URL != "", "schema": d.Schema != "", "table_prefix": d.TablePrefix != "", "sslmode": d.SSLMode != "", "sslrootcert": d.SSLRootCert != ""}
	allowed := destinationFields[d.Type]
	for _, k := range slices.Sorted(maps.Keys(used)) {
		if used[k] && !slices.Contains(allowed, k) {
			ps.at([]string{"destination", k}, "%s is not used by the %s destination", k, d.Type)
		}
	}
	for _, k := range []string{"path", "url"} {
		v := map[string]string{"path": d.Path, "url": d.URL}[k]
		if _, err := expandEnv(v, func(string) (string, bool) { return "x", true }); err != nil {
			ps.atValue([]string{"destination", k}, "%v", err)
		}
	}
}

// ModeOf returns the sync mode of a stream: the pipeline's setting for it,
// the pipeline's default, or what fits the stream.
func (p *Pipeline) ModeOf(stream string) string {
	if st := p.Streams[stream]; st != nil && st.Mode != "" {
		return st.Mode
	}
	if p.Mode != "" {
		return p.Mode
	}
	s := p.Connector.Inline.Streams[stream]
	switch {
	case s == nil:
		return FullRefreshOverwrite
	case s.Cursor != "" && len(s.PrimaryKey) > 0:
		return IncrementalDedup
	case s.Cursor != "":
		return IncrementalAppend
	}
	return FullRefreshOverwrite
}

// SchemaOf returns the schema settings of a stream with defaults applied.
func (p *Pipeline) SchemaOf(stream string) SchemaSettings {
	out := SchemaSettings{Policy: PolicyEvolve, Nested: NestedJSON, MaxDepth: 2}
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
	// DestinationURL and DestinationPath are expanded.
	DestinationURL  string
	DestinationPath string
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
	var err error
	if r.DestinationURL, err = expandEnv(p.Destination.URL, lookup); err != nil {
		ps.atValue([]string{"destination", "url"}, "%v", err)
	}
	if r.DestinationPath, err = expandEnv(p.Destination.Path, lookup); err != nil {
		ps.atValue([]string{"destination", "path"}, "%v", err)
	}
	if r.DestinationPath != "" && !filepath.IsAbs(r.DestinationPath) {
		r.DestinationPath = filepath.Join(p.Dir, r.DestinationPath)
	}
	if err := ps.err(); err != nil {
		return nil, err
	}
	return r, nil
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
