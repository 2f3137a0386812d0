package spec

import (
	"fmt"
	"reflect"
	"time"

	"github.com/goccy/go-yaml/ast"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/schema"
)

// Pipeline binds a connector to config values, a destination and the sync
// mode of each stream.
type Pipeline struct {
	// Name keys the pipeline's state in the destination. Default: the
	// connector's name. Two pipelines writing to one database need
	// different names.
	Name string `yaml:"name,omitempty" pattern:"^[A-Za-z0-9_.-]+$" doc:"Keys the pipeline's state in the destination (default: the connector's name)."`
	// Connector is a path to a connector file, relative to the pipeline
	// file, or the connector itself inline.
	Connector ConnectorRef `yaml:"connector" required:"true" doc:"A connector file, relative to this file, or the connector inline."`
	// Config gives the connector's parameters. A value may be a string with
	// ${VAR} references to environment variables, {env: VAR}, or
	// {file: path}; secret parameters must use one of those.
	Config map[string]ConfigValue `yaml:"config,omitempty" doc:"The connector's parameters."`
	// Destination says where the rows go.
	Destination *DestinationSection `yaml:"destination" required:"true"`
	// State, when set, keeps sync state in another database than the
	// destination (shared by several processes, or because the destination
	// keeps none); delivery is then at-least-once.
	State *DestinationSection `yaml:"state,omitempty"`
	// Mode is the default sync mode of streams that do not set one.
	// Default: incremental_dedup for streams with a cursor and a primary
	// key, incremental_append for a cursor alone, full_refresh_overwrite
	// otherwise.
	Mode dest.Mode `yaml:"mode,omitempty" doc:"Default sync mode of the streams."`
	// Streams selects streams and sets their options; when absent, every
	// stream of the connector is synced.
	Streams map[string]*StreamSettings `yaml:"streams,omitempty" doc:"Selects streams and sets their options; absent means every stream."`
	// Sync tunes checkpointing and parallelism.
	Sync *Sync `yaml:"sync,omitempty" doc:"Tunes checkpointing and parallelism."`
	// Schema sets how the tables follow the data.
	Schema *SchemaSettings `yaml:"schema,omitempty" doc:"How the tables follow the data."`
	// API says which tables the table API of ferry serve serves.
	API *APISettings `yaml:"api,omitempty" doc:"Which tables ferry serve serves as a REST API (docs/table-api.md)."`
	// Schedule says when ferry serve runs the pipeline.
	Schedule *Schedule `yaml:"schedule,omitempty" doc:"When ferry serve runs the pipeline (a cron expression, evaluated in UTC)."`

	// StreamOrder lists the selected streams in file order.
	StreamOrder []string `yaml:"-"`
	// Source locates the pipeline file.
	Source *File `yaml:"-"`
	// Dir is the directory relative paths are resolved against.
	Dir string `yaml:"-"`
}

// ConnectorRef is a path to a connector file or an inline connector.
type ConnectorRef struct {
	Path   string
	Inline *Connector
	node   ast.Node // the inline connector, decoded once the file is known
}

// UnmarshalYAML accepts a path string or a mapping (decoded later, with
// the pipeline file's positions).
func (r *ConnectorRef) UnmarshalYAML(n ast.Node) error {
	if s, ok := unwrap(n).(*ast.StringNode); ok {
		r.Path = s.Value
		return nil
	}
	if mapping(n) == nil {
		return fmt.Errorf("connector must be a file name or a connector mapping")
	}
	r.node = n
	return nil
}

// JSONSchema accepts a file name or a connector.
func (ConnectorRef) JSONSchema() map[string]any {
	return map[string]any{
		"oneOf": []any{
			map[string]any{"type": "string", "minLength": 1, "description": "Path to a connector file, relative to this file."},
			map[string]any{"$ref": "connector.schema.json"},
		},
	}
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

// JSONSchema accepts a scalar, {env: VAR} or {file: path}.
func (ConfigValue) JSONSchema() map[string]any {
	return map[string]any{
		"oneOf": []any{
			map[string]any{"type": []any{"string", "number", "boolean"}},
			map[string]any{"type": "object", "additionalProperties": false, "required": []any{"env"}, "properties": map[string]any{"env": map[string]any{"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}}},
			map[string]any{"type": "object", "additionalProperties": false, "required": []any{"file"}, "properties": map[string]any{"file": map[string]any{"type": "string", "minLength": 1}}},
		},
	}
}

// StreamSettings are a pipeline's options for one stream.
type StreamSettings struct {
	// Mode is full_refresh_overwrite, full_refresh_append,
	// incremental_append or incremental_dedup.
	Mode dest.Mode `yaml:"mode,omitempty" doc:"The stream's sync mode."`
	// Table names the destination table (default: the stream's name).
	Table string `yaml:"table,omitempty" min:"1" doc:"Destination table (default: the stream's name)."`
	// Schema overrides the pipeline's schema settings for this stream.
	Schema *SchemaSettings `yaml:"schema,omitempty" doc:"Overrides the pipeline's schema settings for this stream."`
	// MaxRejected is how many records of a run may be rejected before the
	// stream fails: a number, or a percentage of the records read such as
	// "5%" (default: the stream fails only when every record of a
	// non-empty run was rejected; any reject makes the run partial).
	MaxRejected Scalar `yaml:"max_rejected,omitempty" doc:"Rejected records that fail the stream: a number or a percentage such as 5% (default: all of a non-empty run)."`
	// API says whether the table API serves the stream's table, and
	// whether it accepts writes sent through to the source API.
	API *StreamAPI `yaml:"api,omitempty" doc:"Whether ferry serve serves the stream's table, and accepts writes through to the source API."`
}

// APISettings say which of a pipeline's tables the table API serves
// (docs/table-api.md). Nothing is served unless asked.
type APISettings struct {
	// Expose serves the table of every stream of the pipeline (a stream's
	// api.expose overrides it).
	Expose bool `yaml:"expose,omitempty" doc:"Serve the table of every stream (a stream's api.expose overrides it)."`
	// Tables lists other tables or views of the destination to serve,
	// read-only.
	Tables []APITable `yaml:"tables,omitempty" doc:"Other tables or views of the destination to serve, read-only."`
}

// APITable is a table or view the table API serves besides the streams'.
type APITable struct {
	// Name is the table or view, as the database names it.
	Name string `yaml:"name" required:"true" min:"1" doc:"The table or view, as the database names it."`
	// Key lists the columns that identify a row; without one the table is
	// served without GET by key, and pages are ordered by every column.
	Key []string `yaml:"key,omitempty" doc:"Columns identifying a row (needed for GET by key and stable pages)."`
	// Description says what the table holds, for the OpenAPI document.
	Description string `yaml:"description,omitempty" doc:"What the table holds, for the OpenAPI document."`
}

// StreamAPI is a stream's table API settings.
type StreamAPI struct {
	// Expose serves the stream's table (default: the pipeline's
	// api.expose).
	Expose *bool `yaml:"expose,omitempty" doc:"Serve the stream's table (default: the pipeline's api.expose)."`
	// Write accepts POST, PATCH and DELETE on the table, sent to the
	// source API through the operations the connector declares for the
	// stream (writes:), and applies the API's returned record to the table.
	Write bool `yaml:"write,omitempty" doc:"Accept POST, PATCH and DELETE, sent to the source API with the connector's writes: operations."`
	// Description says what the table holds, for the OpenAPI document.
	Description string `yaml:"description,omitempty" doc:"What the table holds, for the OpenAPI document."`
}

// JSONSchema allows a stream listed without settings.
func (StreamSettings) JSONSchema() map[string]any {
	type plain StreamSettings
	return map[string]any{"oneOf": []any{map[string]any{"type": "null"}, StructSchema(reflect.TypeFor[plain]())}}
}

// Sync tunes how a run commits and how much runs at once.
type Sync struct {
	// CheckpointRows commits once this many rows are pending (default 50000).
	CheckpointRows int `yaml:"checkpoint_rows,omitempty" min:"1" doc:"Commit once this many rows are pending (default 50000)."`
	// CheckpointInterval commits at least this often (default 5s).
	CheckpointInterval string `yaml:"checkpoint_interval,omitempty" pattern:"^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$" doc:"Commit at least this often (default 5s)."`
	// Parallelism is how many streams sync at once (default 4).
	Parallelism int `yaml:"parallelism,omitempty" min:"1" max:"64" doc:"Streams synced at once (default 4)."`
}

// SchemaSettings say how tables follow the data.
type SchemaSettings struct {
	// Policy is evolve (default: add columns, widen types), freeze (new
	// columns or incompatible types fail the stream), discard_row or
	// discard_value (the offending record or value goes to the rejected
	// table).
	Policy schema.Policy `yaml:"policy,omitempty" doc:"evolve (default), freeze, discard_row or discard_value."`
	// Nested is json (default: objects and arrays in a JSON column),
	// flatten (objects become parent__child columns, up to MaxDepth) or
	// unnest (flatten, and arrays of objects become child tables).
	Nested schema.Nesting `yaml:"nested,omitempty" doc:"json (default), flatten or unnest."`
	// MaxDepth bounds flattening (default 2).
	MaxDepth int `yaml:"max_depth,omitempty" min:"1" max:"10" doc:"Flattening depth (default 2)."`
}

// Schedule says when ferry serve runs a pipeline.
type Schedule struct {
	// Cron is a cron expression of five fields (minute hour day-of-month
	// month day-of-week), or six with seconds first, or @hourly, @daily…,
	// evaluated in UTC.
	Cron string `yaml:"cron" required:"true" min:"1" doc:"A cron expression: minute hour day-of-month month day-of-week (or six fields, seconds first; or @hourly, @daily, @weekly, @monthly), in UTC."`
	// Jitter delays each run by a random duration up to this, so pipelines
	// on the same schedule do not all call their APIs at once (default 0).
	Jitter string `yaml:"jitter,omitempty" pattern:"^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$" doc:"Delay each run by a random duration up to this (default 0)."`
}

// Defaults for Sync.
const (
	DefaultCheckpointRows     = 50000
	DefaultCheckpointInterval = 5 * time.Second
	DefaultParallelism        = 4
)
