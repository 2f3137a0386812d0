package sqlquery

import (
	"slices"

	"github.com/ferry-dev/ferry/internal/spec"
)

// Config is the sql source's part of a connector file: the database to
// read and the tables or queries it offers as streams.
type Config struct {
	// URL names the database: postgres://…, mysql://… (or mariadb://…),
	// or sqlite:PATH (a path relative to the connector file). Template
	// over config, so that the password comes from a secret parameter.
	URL string `yaml:"url" required:"true" min:"1" def:"template" doc:"The database: postgres://…, mysql://… (mariadb://…) or sqlite:PATH. Template over config: take the password from a secret parameter."`
	// BatchSize is how many rows one query reads (default 5000).
	BatchSize int `yaml:"batch_size,omitempty" min:"1" max:"1000000" doc:"Rows one query reads; each batch is one page (default 5000)."`
	// Streams are the tables or queries, by stream name.
	Streams map[string]*Stream `yaml:"streams" required:"true" min:"1" keys:"^[A-Za-z_][A-Za-z0-9_]*$" doc:"The tables or queries to read, by stream name."`

	// StreamOrder lists stream names in file order (set by Provision).
	StreamOrder []string `yaml:"-"`
}

// Stream is one table or query.
type Stream struct {
	// Table names a table or view (schema.table allowed).
	Table string `yaml:"table,omitempty" min:"1" doc:"A table or view to read (schema.table allowed); or give query."`
	// Query is a SELECT whose rows are the stream's records.
	Query string `yaml:"query,omitempty" min:"1" doc:"A SELECT whose rows are the records; Ferry wraps it to filter and page it."`
	// PrimaryKey lists the columns that identify a row; they also order
	// the reads, so that an interrupted pass resumes after the last row
	// committed.
	PrimaryKey spec.StringList `yaml:"primary_key" required:"true" doc:"The columns that identify a row (unique together); they order and resume the reads."`
	// Cursor is the column that orders changes for incremental syncs
	// (updated_at, an increasing id).
	Cursor string `yaml:"cursor,omitempty" min:"1" doc:"Column for incremental syncs (updated_at, an increasing id): the next run reads rows at or after the saved value."`

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

// Validate checks that each stream reads exactly one table or query and
// that the URL template reads only config.
func (c *Config) Validate(chk *spec.Checker) {
	chk.Template([]string{"url"}, c.URL, spec.VarConfig)
	for _, name := range c.StreamOrder {
		s := c.Streams[name]
		if s == nil {
			chk.At([]string{"streams", name}, "stream is empty: give table: or query:, and primary_key:")
			continue
		}
		switch {
		case s.Table == "" && s.Query == "":
			chk.At([]string{"streams", name}, "give table: (a table or view) or query: (a SELECT)")
		case s.Table != "" && s.Query != "":
			chk.At([]string{"streams", name, "query"}, "give table: or query:, not both")
		}
	}
}

// StreamDecls declares the streams to pipelines.
func (c *Config) StreamDecls() []spec.StreamDecl {
	var out []spec.StreamDecl
	for _, name := range c.StreamOrder {
		if s := c.Streams[name]; s != nil {
			out = append(out, spec.StreamDecl{Name: name, PrimaryKey: slices.Clone([]string(s.PrimaryKey)), Cursor: s.Cursor, Path: s.yamlPath})
		}
	}
	return out
}
