package schema

import "strings"

// Reserving reserves names that the destination keeps for columns of its
// own, such as PostgreSQL's system columns (xmin, ctid…): no key gets one
// of them. A key that normalises to a reserved name (compared without
// regard to case, as every clash is) is told apart like any other clash,
// by a hash suffix: "xmin" becomes "xmin_" and 8 hex digits, the same on
// every run and every machine. A name the table already has (a column
// created before the name was reserved) keeps its key. It returns n.
func (n *Namer) Reserving(names ...string) *Namer {
	for _, name := range names {
		if _, taken := n.byName[strings.ToLower(name)]; !taken {
			n.Reserve("", name)
		}
	}
	return n
}
