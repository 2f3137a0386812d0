package schema

import (
	"fmt"
	"slices"
	"strings"
)

// Names of the metadata columns Ferry adds to every table it creates.
const (
	ColExtractedAt = MetaPrefix + "extracted_at"  // when the record was fetched (timestamp)
	ColRunID       = MetaPrefix + "run_id"        // the run that wrote the row (text)
	ColListIndex   = MetaPrefix + "list_index"    // position of an unnested array element (int)
	ColRowID       = MetaPrefix + "row_id"        // identifies a row version that has unnested children (text)
	ColParentRowID = MetaPrefix + "parent_row_id" // the row_id of an unnested row's parent (text)
	ColRootPrefix  = MetaPrefix + "root_"         // + a root key column: the root row's key on unnested rows
)

// Origin says where a column's values come from.
type Origin uint8

// Column origins.
const (
	FromData   Origin = iota // a key of the record
	FromParent               // a field of the parent record, copied onto child rows
	FromMeta                 // filled by Ferry (run id, extraction time, list index)
)

// Column is one column of a destination table.
type Column struct {
	// Name is the identifier in the database, unquoted.
	Name string `json:"name"`
	// Path is the chain of JSON keys whose value fills the column: one key
	// for a top-level field, more for a flattened nested field. Empty for
	// metadata columns.
	Path []string `json:"path,omitempty"`
	// Type is the logical type.
	Type Type `json:"type"`
	// Origin says who fills the column.
	Origin Origin `json:"origin,omitempty"`
	// Hinted is true when the connector fixed the type; such a column never
	// widens, and values that do not fit are rejected.
	Hinted bool `json:"hinted,omitempty"`
}

// Key returns the column's JSON path joined with dots, for messages.
func (c Column) Key() string { return strings.Join(c.Path, ".") }

// Table is an immutable snapshot of a table's layout. A new snapshot with a
// higher Version replaces it whenever a column is added or widened, so a
// batch of rows always carries the exact layout it was built for.
type Table struct {
	Name       string   `json:"name"`
	Columns    []Column `json:"columns"`
	PrimaryKey []string `json:"primary_key,omitempty"` // column names
	Cursor     string   `json:"cursor,omitempty"`      // column name of the incremental cursor
	// Parent is set on a table holding unnested array elements: the table
	// of the rows the elements belong to. RootKey lists its columns holding
	// the root table's primary key, in the root key's order.
	Parent  string   `json:"parent,omitempty"`
	RootKey []string `json:"root_key,omitempty"`
	Version int      `json:"version"`
}

// Index returns the position of the named column, or -1.
func (t *Table) Index(name string) int {
	for i := range t.Columns {
		if t.Columns[i].Name == name {
			return i
		}
	}
	return -1
}

// Column returns the named column, or nil.
func (t *Table) Column(name string) *Column {
	if i := t.Index(name); i >= 0 {
		return &t.Columns[i]
	}
	return nil
}

// Clone returns a deep copy that can be changed freely.
func (t *Table) Clone() *Table {
	c := *t
	c.Columns = slices.Clone(t.Columns)
	for i := range c.Columns {
		c.Columns[i].Path = slices.Clone(c.Columns[i].Path)
	}
	c.PrimaryKey = slices.Clone(t.PrimaryKey)
	c.RootKey = slices.Clone(t.RootKey)
	return &c
}

// Change is one difference between two versions of a table.
type Change struct {
	Kind   ChangeKind
	Column string
	From   Type // for Widened and Missing
	To     Type // for Added and Widened
}

// ChangeKind classifies a Change.
type ChangeKind uint8

// Kinds of change between table versions.
const (
	Added   ChangeKind = iota + 1 // a new column
	Widened                       // a column's type widened
	Missing                       // a column of the old version absent from the data of the new run
)

// String renders the change for humans, e.g. "+ amount decimal",
// "~ price int → float".
func (c Change) String() string {
	switch c.Kind {
	case Added:
		return fmt.Sprintf("+ %s %s", c.Column, c.To)
	case Widened:
		return fmt.Sprintf("~ %s %s → %s", c.Column, c.From, c.To)
	case Missing:
		return fmt.Sprintf("- %s %s", c.Column, c.From)
	}
	return "?"
}

// Diff lists the columns that are in next but not in prev (Added), and the
// columns whose type differs (Widened, when next's type contains prev's).
// Columns of prev that next lacks are not reported: tables only grow.
// A type change that is not a widening is reported as Widened with From
// and To set; callers check Compatible.
func Diff(prev, next *Table) []Change {
	var out []Change
	for _, c := range next.Columns {
		var old *Column
		if prev != nil {
			old = prev.Column(c.Name)
		}
		switch {
		case old == nil:
			out = append(out, Change{Kind: Added, Column: c.Name, To: c.Type})
		case old.Type != c.Type && c.Type != Unknown:
			out = append(out, Change{Kind: Widened, Column: c.Name, From: old.Type, To: c.Type})
		}
	}
	return out
}

// Compatible reports whether a column of type to can replace one of type
// from without losing values.
func Compatible(from, to Type) bool { return from == Unknown || to.Contains(from) }
