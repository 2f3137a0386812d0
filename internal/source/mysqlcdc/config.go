package mysqlcdc

import (
	"regexp"
	"slices"

	"github.com/ferry-dev/ferry/internal/change"
	"github.com/ferry-dev/ferry/internal/spec"
)

// Config is the mysql_cdc source's part of a connector file.
type Config struct {
	// URL names the server and database (mysql://user:pass@host:3306/db).
	// Template over config. The user needs REPLICATION SLAVE, REPLICATION
	// CLIENT and SELECT (and, on MySQL, RELOAD for the snapshot's brief
	// table lock).
	URL string `yaml:"url" required:"true" min:"1" def:"template" doc:"The server, mysql://user:pass@host:3306/db (mariadb:// too). Template over config. The user needs REPLICATION SLAVE, REPLICATION CLIENT, SELECT (MySQL: also RELOAD, for the snapshot)."`
	// ServerID is the replica id Ferry uses; unique among the server's
	// replicas (default: derived from the connector and stream).
	ServerID uint32 `yaml:"server_id,omitempty" min:"1" doc:"Replica server id, unique among the server's replicas (default: derived from the connector and stream names)."`
	// Snapshot is initial (default) or never.
	Snapshot string `yaml:"snapshot,omitempty" enum:"initial,never" default:"initial" doc:"initial: the rows as of a consistent binlog position first, then the changes; never: changes only, from the server's current position."`
	// BatchSize bounds the changes of one page.
	BatchSize int `yaml:"batch_size,omitempty" min:"1" max:"1000000" default:"5000" doc:"Changes per page at most."`
	// MaxWait bounds how long a change waits for others to share its page.
	MaxWait string `yaml:"max_wait,omitempty" def:"duration" default:"10ms" doc:"How long a change waits for more to fill its page."`
	// Streams are the tables, by stream name.
	Streams map[string]*Stream `yaml:"streams" required:"true" min:"1" keys:"^[A-Za-z_][A-Za-z0-9_]*$" doc:"The tables to capture, by stream name."`

	// StreamOrder lists stream names in file order (set by Provision).
	StreamOrder []string `yaml:"-"`
}

// Stream is one captured table.
type Stream struct {
	// Table is the table, database.table (default: the URL's database).
	Table string `yaml:"table" required:"true" min:"1" doc:"The table, database.table (default database: the URL's)."`
	// PrimaryKey lists the table's key columns.
	PrimaryKey spec.StringList `yaml:"primary_key" required:"true" doc:"The table's key columns: changes are ordered and delivered per key."`

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

var ident = regexp.MustCompile(`^[A-Za-z0-9_$]+(\.[A-Za-z0-9_$]+)?$`)

// Validate checks the URL template, the durations and the table names.
func (c *Config) Validate(chk *spec.Checker) {
	chk.Template([]string{"url"}, c.URL, spec.VarConfig)
	if c.MaxWait != "" {
		if _, err := spec.ParseDuration(c.MaxWait); err != nil {
			chk.AtValue([]string{"max_wait"}, "%v", err)
		}
	}
	for _, name := range c.StreamOrder {
		s := c.Streams[name]
		if s == nil {
			chk.At([]string{"streams", name}, "stream is empty: give table: and primary_key:")
			continue
		}
		if !ident.MatchString(s.Table) {
			chk.AtValue([]string{"streams", name, "table"}, "table must be name or database.name, got %q", s.Table)
		}
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
