package spec

import (
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/ferry-dev/ferry/internal/template"
)

// Provisioner is implemented by configuration types that complete
// themselves after decoding and before validation: defaults that depend
// on other fields, the file order of a mapping's keys. Provision is the
// only step that may change the configuration.
type Provisioner interface {
	Provision(c *Checker)
}

// Validator is implemented by configuration types with rules beyond what
// their JSON Schema says. Validate reports every problem through c, at
// paths relative to the configuration's own section, and must not change
// the configuration.
type Validator interface {
	Validate(c *Checker)
}

// Checker records the problems of one section of a file (a component's
// configuration), each at the position of a path relative to the section.
// Provision and Validate methods receive one.
type Checker struct {
	ps   *problems
	base []string
	conn *Connector // the connector whose config parameters templates may read
}

// At records a problem located at the key of path (relative to the section).
func (c *Checker) At(rel []string, format string, args ...any) {
	c.ps.at(path(c.base, rel...), format, args...)
}

// AtValue records a problem located at the value of path.
func (c *Checker) AtValue(rel []string, format string, args ...any) {
	c.ps.atValue(path(c.base, rel...), format, args...)
}

// AtOffset records a problem inside the string value at path, offset bytes
// into it.
func (c *Checker) AtOffset(rel []string, offset int, format string, args ...any) {
	c.ps.atOffset(path(c.base, rel...), offset, format, args...)
}

// Path returns the YAML path of rel within the file, for messages.
func (c *Checker) Path(rel ...string) []string { return path(c.base, rel...) }

// Keys returns the keys of the mapping at rel in file order.
func (c *Checker) Keys(rel ...string) []string { return c.ps.file.Keys(path(c.base, rel...)) }

// Sub returns a Checker for the section at rel.
func (c *Checker) Sub(rel ...string) *Checker {
	return &Checker{ps: c.ps, base: path(c.base, rel...), conn: c.conn}
}

// Abs returns a Checker for the section at the absolute YAML path p (as
// Path returned it).
func (c *Checker) Abs(p []string) *Checker {
	return &Checker{ps: c.ps, base: path(p), conn: c.conn}
}

// Has reports whether any problem was recorded in the file so far.
func (c *Checker) Has() bool { return len(c.ps.list) > 0 }

// DidYouMean returns the name among known closest to got, "" if none is
// close.
func DidYouMean(got string, known []string) string { return didYouMean(got, known) }

// Vars says which template variables a setting may read.
type Vars uint8

// Template variables.
const (
	VarConfig      Vars = 1 << iota // config.<param>: the pipeline's config values
	VarParent                       // parent.<field>: the parent record (child streams)
	VarPage                         // page.number, page.offset, page.size, page.cursor
	VarIncremental                  // incremental.since, incremental.start, incremental.until
	VarStream                       // stream: the stream's name
	VarJob                          // job.id, job.status: an export job (async streams)
)

// Template compiles the template src at rel and checks every variable it
// reads: it must be allowed there, and config parameters must be declared
// by the connector.
func (c *Checker) Template(rel []string, src string, allow Vars) {
	p := path(c.base, rel...)
	if c.ps.templateTooLong(p, src) {
		return
	}
	t, err := template.Parse(src)
	if err != nil {
		te, _ := err.(*template.Error)
		off := 0
		if te != nil {
			off = te.Offset
		}
		c.ps.atOffset(p, off, "%v", err)
		return
	}
	var params map[string]*ConfigParam
	if c.conn != nil {
		params = c.conn.Config
	}
	for _, r := range t.Refs() {
		var need Vars
		switch r.Var {
		case "config":
			need = VarConfig
			if r.Member != "" {
				if _, ok := params[r.Member]; !ok {
					msg := fmt.Sprintf("unknown config parameter %q", r.Member)
					if hint := didYouMean(r.Member, slices.Sorted(maps.Keys(params))); hint != "" {
						msg += fmt.Sprintf(" (did you mean %q?)", hint)
					} else {
						msg += " (declare it under config:)"
					}
					c.ps.atOffset(p, r.Offset, "%s", msg)
				}
			}
		case "parent":
			need = VarParent
		case "page":
			need = VarPage
			if r.Member != "" && !slices.Contains([]string{"number", "offset", "size", "cursor"}, r.Member) {
				c.ps.atOffset(p, r.Offset, "unknown page variable %q (want number, offset, size or cursor)", r.Member)
			}
		case "incremental":
			need = VarIncremental
			if r.Member != "" && !slices.Contains([]string{"since", "start", "until"}, r.Member) {
				c.ps.atOffset(p, r.Offset, "unknown incremental variable %q (want since, start or until)", r.Member)
			}
		case "stream":
			need = VarStream
		case "job":
			need = VarJob
			if r.Member != "" && !slices.Contains([]string{"id", "status"}, r.Member) {
				c.ps.atOffset(p, r.Offset, "unknown job variable %q (want id or status)", r.Member)
			}
		}
		if allow&need == 0 {
			var why string
			switch need {
			case VarParent:
				why = "parent is only available in child streams (set parent:)"
			case VarJob:
				why = "job is only available in async.poll and async.download"
			default:
				why = fmt.Sprintf("%s is not available here", r.Var)
			}
			c.ps.atOffset(p, r.Offset, "%s", why)
		}
	}
}

// SecretTemplate checks a template that yields a credential (a client
// secret, a private key): like Template with VarConfig, and every config
// parameter it reads must be declared secret, so that the value comes
// from the environment or a file and is redacted everywhere; a template
// that reads none is refused.
func (c *Checker) SecretTemplate(rel []string, src string) {
	c.Template(rel, src, VarConfig)
	t, err := template.Parse(src)
	if err != nil {
		return // Template reported it
	}
	p := path(c.base, rel...)
	refs := 0
	for _, r := range t.Refs() {
		if r.Var != "config" || r.Member == "" {
			continue
		}
		refs++
		if c.conn == nil {
			continue
		}
		if param, ok := c.conn.Config[r.Member]; ok && param != nil && !param.Secret {
			c.ps.atOffset(p, r.Offset, "config parameter %q holds a credential here: declare it with secret: true, so that it comes from the environment or a file and is redacted", r.Member)
		}
	}
	if refs == 0 {
		name := rel[len(rel)-1]
		if _, err := strconv.Atoi(name); err == nil && len(rel) > 1 {
			name = rel[len(rel)-2] // an item of a list of credentials
		}
		c.ps.atValue(p, "a credential cannot be written in the connector: use a secret config parameter, such as {{ config.%s }}", name)
	}
}
