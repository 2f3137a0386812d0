package jsonl_test

// The conformance suite runs its widening and mid-transaction migration
// behaviours in incremental_dedup mode only, which this destination
// refuses. These are the same behaviours in an append mode, written
// through the normalizer as a run writes them, with what only a file
// can promise (every hard value stored, nothing rejected).

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/dest/jsonl"
	"github.com/ferry-dev/ferry/internal/engine"
	"github.com/ferry-dev/ferry/internal/jsonpath"
	"github.com/ferry-dev/ferry/internal/normalize"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/schema"
	"github.com/ferry-dev/ferry/internal/source"
	"github.com/ferry-dev/ferry/internal/spec"
)

// nstream writes pages of JSON records through a normalizer.
type nstream struct {
	t     *testing.T
	name  string
	table string
	w     dest.StreamWriter
	n     *normalize.Normalizer
}

func nopen(t *testing.T, d *jsonl.Destination, name string, info source.Stream, sch spec.SchemaSettings) *nstream {
	t.Helper()
	table := engine.TableName(d, name)
	w, err := d.OpenStream(context.Background(), dest.StreamConfig{Pipeline: "p", Stream: name, Table: table, Mode: dest.IncrementalAppend, RunID: "run"})
	if err != nil {
		t.Fatal(err)
	}
	info.Name = name
	if sch.MaxDepth == 0 {
		sch.MaxDepth = 2
	}
	n, err := engine.NewNormalizer(table, info, sch, d, w, "run")
	if err != nil {
		t.Fatal(err)
	}
	return &nstream{t: t, name: name, table: table, w: w, n: n}
}

func (s *nstream) write(records string) {
	s.t.Helper()
	p := &record.Page{Stream: s.name, Body: []byte(records), Request: "test", FetchedAt: time.Now().UnixMicro()}
	path := jsonpath.MustCompile("")
	path.Spread = true
	if err := jsonpath.Scan(p.Body, []*jsonpath.Path{path}, func(_ int, v []byte) error {
		p.Records = append(p.Records, v)
		return nil
	}); err != nil {
		s.t.Fatal(err)
	}
	c, _, err := s.n.Page(p, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	if err := s.w.Write(context.Background(), c); err != nil {
		s.t.Fatal(err)
	}
}

func (s *nstream) commit() { commit(s.t, s.w) }

func (s *nstream) finish() {
	s.t.Helper()
	if err := s.w.Finish(context.Background(), nil); err != nil {
		s.t.Fatal(err)
	}
}

// values reads a table back, each row rendered as cols joined with "|"
// (NULL for nil), in file order.
func values(t *testing.T, d dest.Reader, table string, cols ...string) []string {
	t.Helper()
	var out []string
	err := d.ReadRows(context.Background(), table, nil, func(names []string, row []any) error {
		parts := make([]string, len(cols))
		for i, c := range cols {
			j := slices.Index(names, c)
			if j < 0 {
				return fmt.Errorf("no column %s in %v", c, names)
			}
			switch v := row[j].(type) {
			case nil:
				parts[i] = "NULL"
			case time.Time:
				parts[i] = v.Format(time.RFC3339Nano)
			case float64:
				parts[i] = strconv.FormatFloat(v, 'g', -1, 64)
			default:
				parts[i] = fmt.Sprint(v)
			}
		}
		out = append(out, strings.Join(parts, "|"))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func same(t *testing.T, got, want []string) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("rows:\n got %q\nwant %q", got, want)
	}
}

func TestAppendHardValues(t *testing.T) {
	d := open(t, t.TempDir(), jsonl.Config{})
	s := nopen(t, d, "hard", source.Stream{Hints: map[string]schema.Type{"n": schema.Decimal, "ts": schema.Timestamp}}, spec.SchemaSettings{})
	long := strings.Repeat("x", 70000)
	s.write(`[{"id":1,"txt":"nul \u0000 byte"},{"id":2,"ts":"0001-01-01T00:00:00Z"},{"id":3,"ts":"9999-12-31T23:59:59.999999Z"},
	 {"id":4,"n":1e400},{"id":5,"n":123456789012345678901234567890123456789012345678901234567890.123456789},{"id":6,"txt":"` + long + `"}]`)
	s.finish()
	// A file holds every value exactly: nothing is rejected.
	same(t, values(t, d, s.table, "id", "txt", "ts", "n"), []string{
		"1|nul \x00 byte|NULL|NULL", "2|NULL|0001-01-01T00:00:00Z|NULL", "3|NULL|9999-12-31T23:59:59.999999Z|NULL",
		"4|NULL|NULL|1e400", "5|NULL|NULL|123456789012345678901234567890123456789012345678901234567890.123456789", "6|" + long + "|NULL|NULL",
	})
	if n, _ := d.Count(context.Background(), dest.RejectedTable); n != 0 {
		t.Fatalf("%d rejected", n)
	}
}

func TestAppendWidenAcrossCommits(t *testing.T) {
	d := open(t, t.TempDir(), jsonl.Config{})
	s := nopen(t, d, "wide", source.Stream{}, spec.SchemaSettings{})
	s.write(`[{"id":1,"v":1,"w":true}]`)
	s.commit()
	s.write(`[{"id":2,"v":2.5}]`)
	s.commit()
	s.write(`[{"id":3,"v":"three","w":"maybe"}]`)
	s.finish()
	if l := s.n.Table(); l.Column("v").Type != schema.Text || l.Column("w").Type != schema.Text {
		t.Fatalf("types %v %v", l.Column("v").Type, l.Column("w").Type)
	}
	same(t, values(t, d, s.table, "id", "v", "w"), []string{"1|1|true", "2|2.5|NULL", "3|three|maybe"})
	// The next run starts from the widened layout.
	s = nopen(t, d, "wide", source.Stream{}, spec.SchemaSettings{})
	if c := s.w.Existing().Column("v"); c == nil || c.Type != schema.Text {
		t.Fatalf("recorded layout: %+v", s.w.Existing())
	}
	s.w.Abort(context.Background())
}

func TestAppendMigrateMidTransaction(t *testing.T) {
	d := open(t, t.TempDir(), jsonl.Config{})
	s := nopen(t, d, "mid", source.Stream{}, spec.SchemaSettings{})
	s.write(`[{"id":1,"a":"x"}]`)
	s.write(`[{"id":2,"a":"y","b":"z"},{"id":1,"a":"w"}]`)
	s.finish()
	same(t, values(t, d, s.table, "id", "a", "b"), []string{"1|x|NULL", "2|y|z", "1|w|NULL"})
}

// TestAppendUnnestGrandchildren: child tables of unnested arrays each go
// to their own file, and a later run reopens them with their layouts.
func TestAppendUnnestGrandchildren(t *testing.T) {
	d := open(t, t.TempDir(), jsonl.Config{})
	info := source.Stream{PrimaryKey: []string{"id"}}
	sch := spec.SchemaSettings{Nested: schema.Unnest}
	s := nopen(t, d, "ord", info, sch)
	s.write(`[{"id":1,"items":[{"sku":"a","opts":[{"k":"x"},{"k":"y"}]},{"sku":"b"}]}]`)
	s.finish()
	items := s.table + "__items"
	same(t, values(t, d, items, schema.ColRootPrefix+"id", schema.ColListIndex, "sku"), []string{"1|0|a", "1|1|b"})
	same(t, values(t, d, items+"__opts", schema.ColRootPrefix+"id", schema.ColListIndex, "k"), []string{"1|0|x", "1|1|y"})
	s = nopen(t, d, "ord", info, sch)
	if l := s.w.ExistingChild(items + "__opts"); l == nil || l.Column("k") == nil || l.Parent != items {
		t.Fatalf("ExistingChild = %+v", l)
	}
	s.write(`[{"id":2,"items":[{"sku":"c","opts":[{"k":"z","extra":true}]}]}]`)
	s.finish()
	same(t, values(t, d, items+"__opts", schema.ColRootPrefix+"id", "k", "extra"), []string{"1|x|NULL", "1|y|NULL", "2|z|true"})
}
