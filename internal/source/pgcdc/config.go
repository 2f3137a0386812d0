package pgcdc

import (
	"regexp"
	"slices"

	"github.com/ferry-dev/ferry/internal/change"
	"github.com/ferry-dev/ferry/internal/spec"
)

// Config is the postgres_cdc source's part of a connector file.
type Config struct {
	// URL names the database (postgres://user:pass@host:5432/db). Template
	// over config. The user needs the REPLICATION attribute (or to be a
	// superuser), and to own the tables unless the publications exist.
	URL string `yaml:"url" required:"true" min:"1" def:"template" doc:"The database, postgres://user:pass@host:5432/db. Template over config (the password from a secret parameter). The user needs REPLICATION and, to create publications, ownership of the tables."`
	// Snapshot is initial (default: the table's rows first, consistent
	// with the slot, then the changes) or never (changes only, from the
	// slot's creation).
	Snapshot string `yaml:"snapshot,omitempty" enum:"initial,never" default:"initial" doc:"initial: the rows as of the slot's creation first (an exported snapshot), then the changes; never: changes only."`
	// BatchSize bounds the changes of one page.
	BatchSize int `yaml:"batch_size,omitempty" min:"1" max:"1000000" default:"5000" doc:"Changes per page at most."`
	// MaxWait bounds how long a change waits for others to share its page.
	MaxWait string `yaml:"max_wait,omitempty" def:"duration" default:"10ms" doc:"How long a change waits for more to fill its page (latency against throughput)."`
	// OnTruncate says what a TRUNCATE does: fail (default: the stream stops
	// at it, naming it) or skip (the destination keeps its rows).
	OnTruncate string `yaml:"on_truncate,omitempty" enum:"fail,skip" default:"fail" doc:"What a TRUNCATE of the table does: fail (the stream stops there, saying so) or skip (logged; the destination keeps its rows)."`
	// Streams are the tables, by stream name.
	Streams map[string]*Stream `yaml:"streams" required:"true" min:"1" keys:"^[A-Za-z_][A-Za-z0-9_]*$" doc:"The tables to capture, by stream name."`

	// StreamOrder lists stream names in file order (set by Provision).
	StreamOrder []string `yaml:"-"`
}

// Stream is one captured table.
type Stream struct {
	// Table is the table, schema.table (default schema public).
	Table string `yaml:"table" required:"true" min:"1" doc:"The table, schema.table (default schema public)."`
	// PrimaryKey lists the table's key columns.
	PrimaryKey spec.StringList `yaml:"primary_key" required:"true" doc:"The table's key columns: changes are ordered and delivered per key."`
	// Slot is the replication slot (default ferry_<connector>_<stream>).
	Slot string `yaml:"slot,omitempty" pattern:"^[a-z0-9_]{1,63}$" doc:"Replication slot (default ferry_<connector>_<stream>); one per stream."`
	// Publication is the publication (default: the slot's name); created
	// for the table if missing.
	Publication string `yaml:"publication,omitempty" pattern:"^[A-Za-z0-9_]{1,63}$" doc:"Publication (default: the slot's name), created FOR TABLE the table if missing."`

	yamlPath []string
}

var (
	_ spec.Provisioner  = (*Config)(nil)
	_ spec.Validator    = (*Config)(nil)
	_ spec.StreamLister = (*Config)(nil)
)

// Provision records the streams' file order.
func (c *Config) Provision(chk *spec.Checker) {
	c.StreamOrder = chk.Keys("streams")
	for _, name := range c.StreamOrder {
		if s := c.Streams[name]; s != nil {
			s.yamlPath = chk.Path("streams", name)
		}
	}
}

var ident = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$`)

// Validate checks the URL template, the durations and that no two streams
// share a slot.
func (c *Config) Validate(chk *spec.Checker) {
	chk.Template([]string{"url"}, c.URL, spec.VarConfig)
	if c.MaxWait != "" {
		if _, err := spec.ParseDuration(c.MaxWait); err != nil {
			chk.AtValue([]string{"max_wait"}, "%v", err)
		}
	}
	slots := map[string]string{}
	for _, name := range c.StreamOrder {
		s := c.Streams[name]
		if s == nil {
			chk.At([]string{"streams", name}, "stream is empty: give table: and primary_key:")
			continue
		}
		if !ident.MatchString(s.Table) {
			chk.AtValue([]string{"streams", name, "table"}, "table must be name or schema.name (letters, digits, _), got %q", s.Table)
		}
		slot := SlotName(s.Slot, "", name)
		if other, ok := slots[slot]; ok && s.Slot != "" {
			chk.AtValue([]string{"streams", name, "slot"}, "streams %s and %s share the slot %s: each stream needs its own", other, name, slot)
		}
		slots[slot] = name
	}
}

// StreamDecls declares the streams to pipelines.
func (c *Config) StreamDecls() []spec.StreamDecl {
	var out []spec.StreamDecl
	for _, name := range c.StreamOrder {
		if s := c.Streams[name]; s != nil {
			out = append(out, spec.StreamDecl{Name: name, PrimaryKey: slices.Clone([]string(s.PrimaryKey)), Cursor: change.ColPosition, Path: s.yamlPath})
		}
	}
	return out
}
