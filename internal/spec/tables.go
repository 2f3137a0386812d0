package spec

import (
	"fmt"
	"strings"

	"github.com/ferry-dev/ferry/internal/schema"
)

// tableOwner is a selected stream and the table it writes.
type tableOwner struct {
	stream string
	table  string // as configured
	norm   string // normalised, as the destination names it
	unnest bool   // writes child tables norm__<field>
	at     Problem
}

// where renders the owner's position as file:line:col.
func (o *tableOwner) where() string {
	return fmt.Sprintf("%s:%d:%d", o.at.File, o.at.Line, o.at.Col)
}

// checkTables refuses two selected streams that would write one table: the
// same table: value, a stream's default table (its name) equal to another
// stream's table:, two names that normalise to one identifier (Contacts
// and contacts), or a table named like the child tables that nested:
// unnest makes for another stream (a__items next to a). Names are
// compared as the destination makes them, its table_prefix included:
// normalising the whole name can join what the parts kept apart (prefix
// "p-" makes one table of "x" and "_x") and keep apart what they joined
// (prefix "p" makes two of "A" and "a").
func (p *Pipeline) checkTables(ps *problems) {
	conn := p.Connector.Inline
	prefix := p.declaration().TablePrefix
	if strings.Contains(prefix, "${") {
		prefix = "" // known only when the run resolves it
	}
	var owners []tableOwner
	for _, name := range p.StreamOrder {
		decl, ok := conn.Stream(name)
		if !ok {
			continue
		}
		t := p.TableOf(name)
		owners = append(owners, tableOwner{stream: name, table: t, norm: schema.Normalize(prefix + t),
			unnest: p.SchemaOf(name).Nested == schema.Unnest, at: p.tableAt(decl)})
	}
	first := map[string]*tableOwner{}
	for i := range owners {
		o := &owners[i]
		prev, ok := first[o.norm]
		if !ok {
			first[o.norm] = o
			continue
		}
		same := ""
		if prev.table != o.table {
			same = fmt.Sprintf("; %q and %q are one name once normalised", prev.table, o.table)
		}
		o.report(ps, "streams %s and %s both write table %q (%s at %s%s): set another table: for one of them",
			prev.stream, o.stream, o.norm, prev.stream, prev.where(), same)
	}
	for i := range owners {
		o := &owners[i]
		if first[o.norm] != o {
			continue // reported above
		}
		for j := range owners {
			parent := &owners[j]
			if !parent.unnest || first[parent.norm] != parent || !strings.HasPrefix(o.norm, parent.norm+"__") {
				continue
			}
			o.report(ps, "stream %s writes table %q, a name among the child tables of stream %s (at %s), which unnests the arrays of its records into %s__<field> tables: set another table: for one of them",
				o.stream, o.norm, parent.stream, parent.where(), parent.norm)
			break
		}
	}
}

func (o *tableOwner) report(ps *problems, format string, args ...any) {
	pr := o.at
	pr.Message = fmt.Sprintf(format, args...)
	ps.list = append(ps.list, pr)
}

// tableAt locates where a stream's table is decided: its table: in the
// pipeline, else its entry under the pipeline's streams:, else the
// stream in the connector (its name is the table).
func (p *Pipeline) tableAt(decl StreamDecl) Problem {
	stream := decl.Name
	if st := p.Streams[stream]; st != nil && st.Table != "" {
		at := []string{"streams", stream, "table"}
		line, col := p.Source.ValuePos(at)
		return Problem{File: p.Source.Name, Line: line, Col: col, Path: joinPath(at)}
	}
	if _, listed := p.Streams[stream]; listed {
		at := []string{"streams", stream}
		line, col := p.Source.KeyPos(at)
		return Problem{File: p.Source.Name, Line: line, Col: col, Path: joinPath(at)}
	}
	conn := p.Connector.Inline
	at := decl.Path
	if conn.Source == nil || len(at) == 0 {
		return Problem{File: p.Source.Name, Path: stream}
	}
	line, col := conn.Source.KeyPos(at)
	return Problem{File: conn.Source.Name, Line: line, Col: col, Path: joinPath(at)}
}
