package normalize

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	"github.com/ferry-dev/ferry/internal/jsonpath"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/schema"
)

// unnest is the part of a Normalizer that turns arrays into rows of child
// tables. Every row of a table with unnested children gets a row id; each
// child row carries its parent's row id, its position in the array, and
// the root row's primary key, so a destination can replace the children
// of a row that changed.
type unnest struct {
	level     int // 0 for the root table, 1 for its children, …
	rowIDIdx  int // _ferry_row_id column, -1 when not unnesting
	listIdx   int // _ferry_list_index column (child tables)
	rowBase   uint64
	rowSeq    uint64
	children  map[string]*Normalizer // by array path key
	childList []*Normalizer          // in creation order
	arrays    []pendingArray         // arrays of the record being scanned
	rootKeys  []string               // root key columns (child tables: their names here)
}

type pendingArray struct {
	child *Normalizer
	raw   []byte
}

func (n *Normalizer) initUnnest() {
	n.rowIDIdx = n.ensureColumn(schema.Column{Name: schema.ColRowID, Type: schema.Text, Origin: schema.FromMeta})
	var b [8]byte
	_, _ = rand.Read(b[:])
	n.rowBase = binary.LittleEndian.Uint64(b[:])
	n.children = map[string]*Normalizer{}
}

// nextRowID returns a new row id, unique across runs (a random base and a
// counter), held in the chunk's arena.
func (n *Normalizer) nextRowID(c *record.Chunk) cell {
	n.rowSeq++
	b := c.Arena().Alloc(16)
	v := n.rowBase + n.rowSeq
	const hex = "0123456789abcdef"
	for i := 15; i >= 0; i-- {
		b = b[:16]
		b[i] = hex[v&15]
		v >>= 4
	}
	return cell{t: schema.Text, b: b[:16]}
}

// rootValues returns the values child rows copy from the current row: the
// root key (for the root table, its primary key) and the row id.
func (n *Normalizer) rootValues() []cell {
	if n.rowIDIdx < 0 {
		return nil
	}
	var out []cell
	if n.level == 0 {
		for _, i := range n.pk {
			if i >= 0 {
				out = append(out, n.cells[i])
			}
		}
	} else {
		for _, i := range n.parentIdx[:len(n.parentIdx)-1] {
			out = append(out, n.cells[i])
		}
	}
	return append(out, n.cells[n.rowIDIdx])
}

// pendArray notes an array of the record being scanned; its elements
// become child rows once the record is accepted.
func (n *Normalizer) pendArray(path []string, raw []byte) error {
	child, err := n.child(path)
	if err != nil {
		return err
	}
	n.arrays = append(n.arrays, pendingArray{child: child, raw: raw})
	return nil
}

// child returns the normalizer of the child table for an array path.
func (n *Normalizer) child(path []string) (*Normalizer, error) {
	key := pathKey(path)
	if c, ok := n.children[key]; ok {
		return c, nil
	}
	name := schema.Truncate(n.table.Name+"__"+joinNormalized(path), n.table.Name+"\x00"+key, n.opts.MaxIdentLen)
	var rootKeys []string
	if n.level == 0 {
		for _, i := range n.pk {
			if i >= 0 {
				rootKeys = append(rootKeys, schema.Truncate(schema.ColRootPrefix+n.table.Columns[i].Name, n.table.Columns[i].Name, n.opts.MaxIdentLen))
			}
		}
	} else {
		rootKeys = n.rootKeys
	}
	var existing *schema.Table
	if n.opts.ChildExisting != nil {
		existing = n.opts.ChildExisting(name)
	}
	// Hints for the elements' fields: items.sku for the array items.
	var hints map[string]schema.Type
	for h, t := range n.opts.Hints {
		if rest, ok := strings.CutPrefix(h, strings.Join(path, ".")+"."); ok {
			if hints == nil {
				hints = map[string]schema.Type{}
			}
			hints[rest] = t
		}
	}
	c, err := New(Options{
		Table:           name,
		Hints:           hints,
		Policy:          n.opts.Policy,
		MaxIdentLen:     n.opts.MaxIdentLen,
		ReservedColumns: n.opts.ReservedColumns,
		ParentFields:    append(append([]string(nil), rootKeys...), schema.ColParentRowID),
		RunID:           n.opts.RunID,
		Existing:        existing,
		Nested:          schema.Unnest,
		MaxDepth:        n.opts.MaxDepth,
		MaxColumns:      n.opts.MaxColumns,
		ChildExisting:   n.opts.ChildExisting,
		level:           n.level + 1,
	})
	if err != nil {
		return nil, fmt.Errorf("child table %s: %w", name, err)
	}
	c.rootKeys = rootKeys
	c.table.Parent = n.table.Name
	c.table.RootKey = rootKeys
	c.listIdx = c.ensureColumn(schema.Column{Name: schema.ColListIndex, Type: schema.Int, Origin: schema.FromMeta})
	c.changes = nil
	n.children[key] = c
	n.childList = append(n.childList, c)
	return c, nil
}

// flushArrays turns the accepted record's arrays into child rows.
func (n *Normalizer) flushArrays(p *record.Page, parent []cell) error {
	for _, a := range n.arrays {
		if err := a.child.addArray(p, a.raw, parent); err != nil {
			return err
		}
	}
	n.arrays = n.arrays[:0]
	return nil
}

// addArray appends one row per element of raw, an array.
func (n *Normalizer) addArray(p *record.Page, raw []byte, parent []cell) error {
	if n.chunk == nil {
		n.chunk = record.NewChunk(n.handOut(), 8)
		n.chunk.Source = p.Request
	}
	c := n.chunk
	part := ""
	if p.Partition != nil {
		part = p.Partition.Key
	}
	var elems [][]byte
	path := jsonpath.MustCompile("")
	path.Spread, path.Skim = true, true // validated with the record
	if err := jsonpath.Scan(raw, []*jsonpath.Path{path}, func(_ int, v []byte) error {
		elems = append(elems, v)
		return nil
	}); err != nil {
		return nil // the record was validated as a whole; unreachable
	}
	for idx, elem := range elems {
		n.nextGen()
		n.reject, n.rejCol, n.drops = "", "", n.drops[:0]
		n.arrays = n.arrays[:0]
		var err error
		if len(elem) > 0 && elem[0] == '{' {
			err = n.scan(elem)
		} else {
			n.begin(elem)
			err = n.field(nil, []byte("value"), elem)
		}
		if err != nil {
			if _, ok := err.(*SchemaError); ok {
				return err
			}
			n.reject = err.Error()
		}
		for j, i := range n.parentIdx {
			if j < len(parent) && parent[j].t != schema.Unknown {
				if ct := n.table.Columns[i].Type; !ct.Contains(parent[j].t) {
					n.widen(i, schema.Widen(ct, parent[j].t))
				}
				n.set(i, parent[j])
			}
		}
		if n.reject != "" {
			c.Rejects = append(c.Rejects, record.Reject{Stream: p.Stream, Partition: part, Reason: reason(fmt.Sprintf("%s element %d: %s", excerpt([]byte(n.table.Name)), idx, n.reject)), Record: elem, Column: n.rejCol})
			continue
		}
		for _, d := range n.drops {
			c.Rejects = append(c.Rejects, record.Reject{Stream: p.Stream, Partition: part, Reason: d.reason, Record: elem, Column: d.column})
		}
		n.set(n.listIdx, cell{t: schema.Int, i: int64(idx), b: strconv.AppendInt(nil, int64(idx), 10)})
		n.set(n.metaAt, cell{t: schema.Timestamp, i: p.FetchedAt})
		n.set(n.metaRun, cell{t: schema.Text, b: n.runID})
		n.set(n.rowIDIdx, n.nextRowID(c))
		n.appendRow(c, record.Upsert)
		c.Raw = append(c.Raw, elem)
		if err := n.flushArrays(p, n.rootValues()); err != nil {
			return err
		}
	}
	return nil
}

// nextGen starts a new row: cells of earlier rows become unset.
func (n *Normalizer) nextGen() {
	n.gen++
	if n.gen == 0 {
		n.gen = 1
		for i := range n.cells {
			n.cells[i].gen = 0
		}
	}
}

// collectChildren attaches the child tables' chunks of this page to c
// (every descendant, parents before children) and resets them.
func (n *Normalizer) collectChildren(c *record.Chunk, res *Result) {
	n.shared = true // the page's chunk, handed out now, holds the table
	for _, ch := range n.childList {
		if ch.chunk != nil {
			if ch.chunk.Len > 0 || len(ch.chunk.Rejects) > 0 {
				c.Children = append(c.Children, ch.chunk)
				res.Rejected += len(ch.chunk.Rejects)
			}
			ch.chunk = nil
		}
		for _, chg := range ch.changes {
			chg.Column = ch.table.Name + "." + chg.Column
			res.Changes = append(res.Changes, chg)
		}
		ch.changes = ch.changes[:0]
		ch.collectChildren(c, res)
	}
}

// Children returns the layouts of the child tables seen so far, parents
// before children.
func (n *Normalizer) Children() []*schema.Table {
	var out []*schema.Table
	for _, ch := range n.childList {
		out = append(out, ch.handOut())
		out = append(out, ch.Children()...)
	}
	return out
}
