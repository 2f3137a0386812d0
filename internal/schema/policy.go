package schema

// Policy says how a table that exists follows data that no longer fits
// it.
type Policy string

// Schema policies.
const (
	// Evolve adds columns and widens types as the data needs (the default).
	Evolve Policy = "evolve"
	// Freeze fails the stream on a new column or a type change.
	Freeze Policy = "freeze"
	// DiscardRow sends a record that does not fit to the rejected table.
	DiscardRow Policy = "discard_row"
	// DiscardValue drops the value that does not fit (and records it as
	// rejected); the rest of the record becomes a row.
	DiscardValue Policy = "discard_value"
)

// Policies lists the schema policies.
var Policies = []Policy{Evolve, Freeze, DiscardRow, DiscardValue}

// Nesting says how objects and arrays in records are stored.
type Nesting string

// Nested-data shapes.
const (
	// NestJSON keeps objects and arrays in JSON columns (the default).
	NestJSON Nesting = "json"
	// Flatten turns objects into parent__child columns, down to a depth.
	Flatten Nesting = "flatten"
	// Unnest flattens objects and turns arrays into rows of child tables.
	Unnest Nesting = "unnest"
)

// Nestings lists the nested-data shapes.
var Nestings = []Nesting{NestJSON, Flatten, Unnest}
