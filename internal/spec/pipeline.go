package spec

import (
	"fmt"
	"time"
)

// Pipeline binds a connector to config values, a destination and the sync
// mode of each stream.
type Pipeline struct {
	// Name keys the pipeline's state in the destination. Default: the
	// connector's name. Two pipelines writing to one database need
	// different names.
	Name string `yaml:"name,omitempty" json:"name,omitempty"`
	// Connector is a path to a connector file, relative to the pipeline
	// file, or the connector itself inline.
	Connector ConnectorRef `yaml:"connector" json:"connector"`
	// Config gives the connector's parameters. A value may be a string with
	// ${VAR} references to environment variables, {env: VAR}, or
	// {file: path}; secret parameters must use one of those.
	Config map[string]ConfigValue `yaml:"config,omitempty" json:"config,omitempty"`
	// Destination says where the rows go.
	Destination *Destination `yaml:"destination" json:"destination"`
	// Mode is the default sync mode of streams that do not set one.
	// Default: incremental_dedup for streams with a cursor and a primary
	// key, incremental_append for a cursor alone, full_refresh_overwrite
	// otherwise.
	Mode string `yaml:"mode,omitempty" json:"mode,omitempty"`
	// Streams selects streams and sets their options; when absent, every
	// stream of the connector is synced.
	Streams map[string]*StreamSettings `yaml:"streams,omitempty" json:"streams,omitempty"`
	// Sync tunes checkpointing and parallelism.
	Sync *Sync `yaml:"sync,omitempty" json:"sync,omitempty"`
	// Schema sets how the tables follow the data.
	Schema *SchemaSettings `yaml:"schema,omitempty" json:"schema,omitempty"`

	// StreamOrder lists the selected streams in file order.
	StreamOrder []string `yaml:"-" json:"-"`
	// Source locates the pipeline file.
	Source *File `yaml:"-" json:"-"`
	// Dir is the directory relative paths are resolved against.
	Dir string `yaml:"-" json:"-"`
}

// ConnectorRef is a path to a connector file or an inline connector.
type ConnectorRef struct {
	Path   string
	Inline *Connector
}

// UnmarshalYAML accepts a path string or a mapping.
func (r *ConnectorRef) UnmarshalYAML(unmarshal func(any) error) error {
	var path string
	if err := unmarshal(&path); err == nil {
		r.Path = path
		return nil
	}
	var c Connector
	if err := unmarshal(&c); err != nil {
		return err
	}
	r.Inline = &c
	return nil
}

// ConfigValue is a config value as written: a literal (possibly with
// ${VAR} references) or a reference to an environment variable or file.
type ConfigValue struct {
	Literal any    // a scalar from the file
	Env     string // {env: VAR}
	File    string // {file: path}
}

// UnmarshalYAML accepts a scalar, {env: VAR} or {file: path}.
func (v *ConfigValue) UnmarshalYAML(unmarshal func(any) error) error {
	var ref struct {
		Env  string `yaml:"env"`
		File string `yaml:"file"`
	}
	if err := unmarshal(&ref); err == nil && (ref.Env != "" || ref.File != "") {
		v.Env, v.File = ref.Env, ref.File
		return nil
	}
	var lit any
	if err := unmarshal(&lit); err != nil {
		return err
	}
	switch lit.(type) {
	case map[string]any, []any:
		return fmt.Errorf("config value must be a scalar, {env: VAR} or {file: path}")
	}
	v.Literal = lit
	return nil
}

// Destination is where rows go. Type selects the destination; the other
// keys belong to it.
type Destination struct {
	// Type is sqlite, postgres or mysql.
	Type string `yaml:"type" json:"type"`
	// Path is the database file (sqlite), relative to the pipeline file.
	Path string `yaml:"path,omitempty" json:"path,omitempty"`
	// URL is the connection URL (postgres, mysql). ${VAR} references are
	// expanded; the password in it is redacted from messages.
	URL string `yaml:"url,omitempty" json:"url,omitempty"`
	// Schema is the database schema for tables (postgres; default public).
	Schema string `yaml:"schema,omitempty" json:"schema,omitempty"`
	// TablePrefix is put before every table name.
	TablePrefix string `yaml:"table_prefix,omitempty" json:"table_prefix,omitempty"`
	// SSLMode and SSLRootCert set TLS (postgres: disable, require,
	// verify-ca, verify-full; mysql: disable, require, verify-ca,
	// verify-full, with a CA file).
	SSLMode     string `yaml:"sslmode,omitempty" json:"sslmode,omitempty"`
	SSLRootCert string `yaml:"sslrootcert,omitempty" json:"sslrootcert,omitempty"`
}

// StreamSettings are a pipeline's options for one stream.
type StreamSettings struct {
	// Mode is full_refresh_overwrite, full_refresh_append,
	// incremental_append or incremental_dedup.
	Mode string `yaml:"mode,omitempty" json:"mode,omitempty"`
	// Table names the destination table (default: the stream's name).
	Table string `yaml:"table,omitempty" json:"table,omitempty"`
	// Schema overrides the pipeline's schema settings for this stream.
	Schema *SchemaSettings `yaml:"schema,omitempty" json:"schema,omitempty"`
}

// Sync tunes how a run commits and how much runs at once.
type Sync struct {
	// CheckpointRows commits once this many rows are pending (default 50000).
	CheckpointRows int `yaml:"checkpoint_rows,omitempty" json:"checkpoint_rows,omitempty"`
	// CheckpointInterval commits at least this often (default 5s).
	CheckpointInterval string `yaml:"checkpoint_interval,omitempty" json:"checkpoint_interval,omitempty"`
	// Parallelism is how many streams sync at once (default 4).
	Parallelism int `yaml:"parallelism,omitempty" json:"parallelism,omitempty"`
}

// SchemaSettings say how tables follow the data.
type SchemaSettings struct {
	// Policy is evolve (default: add columns, widen types), freeze (new
	// columns or incompatible types fail the stream), discard_row or
	// discard_value (the offending record or value goes to the rejected
	// table).
	Policy string `yaml:"policy,omitempty" json:"policy,omitempty"`
	// Nested is json (default: objects and arrays in a JSON column),
	// flatten (objects become parent__child columns, up to MaxDepth) or
	// unnest (flatten, and arrays of objects become child tables).
	Nested string `yaml:"nested,omitempty" json:"nested,omitempty"`
	// MaxDepth bounds flattening (default 2).
	MaxDepth int `yaml:"max_depth,omitempty" json:"max_depth,omitempty"`
}

// Sync modes.
const (
	FullRefreshOverwrite = "full_refresh_overwrite"
	FullRefreshAppend    = "full_refresh_append"
	IncrementalAppend    = "incremental_append"
	IncrementalDedup     = "incremental_dedup"
)

// Modes lists the sync modes.
var Modes = []string{FullRefreshOverwrite, FullRefreshAppend, IncrementalAppend, IncrementalDedup}

// Schema policies and nested-data shapes.
const (
	PolicyEvolve       = "evolve"
	PolicyFreeze       = "freeze"
	PolicyDiscardRow   = "discard_row"
	PolicyDiscardValue = "discard_value"

	NestedJSON    = "json"
	NestedFlatten = "flatten"
	NestedUnnest  = "unnest"
)

// Defaults for Sync.
const (
	DefaultCheckpointRows     = 50000
	DefaultCheckpointInterval = 5 * time.Second
	DefaultParallelism        = 4
)
