package jsonl_test

// The conformance suite runs its type, name, widening, flattening and
// rejection behaviours in incremental_dedup mode only, which this
// destination refuses. These are the same behaviours in an append mode,
// written through the normalizer as a run writes them.

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

func TestAppendTypes(t *testing.T) {
	d := open(t, t.TempDir(), jsonl.Config{})
	s := nopen(t, d, "types", source.Stream{Hints: map[string]schema.Type{"money": schema.Decimal}}, spec.SchemaSettings{})
	s.write(`[
	 {"id":1,"b":true,"i":9223372036854775807,"f":1.5,"big":123456789012345678901234567890,"money":"12.50",
	  "ts":"2024-02-29T23:59:59.123456Z","txt":"héllo 🚀 'q' \"dq\" \\ back","j":{"a":[1,"x",null],"b":{"c":true}},"empty":""},
	 {"id":2,"b":false,"i":-9223372036854775808,"f":-0.000001,"big":-1,"money":"0.000000001",
	  "ts":"1969-07-20T20:17:40Z","txt":"line1\nline2\ttab","j":[],"empty":""},
	 {"id":3,"b":null,"i":0,"f":1e300,"big":0.1000000000000000055511151231257827,"money":"-99999999999999999999.99",
	  "ts":"2999-12-31T23:59:59.999999+05:30","txt":"中文","j":{"nested":{"deep":[{"x":1}]}},"empty":null}
	]`)
	s.finish()
	same(t, values(t, d, s.table, "id", "b", "i", "f", "big", "money", "ts", "txt", "j", "empty"), []string{
		`1|true|9223372036854775807|1.5|123456789012345678901234567890|12.50|2024-02-29T23:59:59.123456Z|héllo 🚀 'q' "dq" \ back|{"a":[1,"x",null],"b":{"c":true}}|`,
		"2|false|-9223372036854775808|-1e-06|-1|0.000000001|1969-07-20T20:17:40Z|line1\nline2\ttab|[]|",
		`3|NULL|0|1e+300|0.1000000000000000055511151231257827|-99999999999999999999.99|2999-12-31T18:29:59.999999Z|中文|{"nested":{"deep":[{"x":1}]}}|NULL`,
	})
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
	if n, _ := d.Count(context.Background(), dest.RejectedTable); n != -1 {
		t.Fatalf("%d rejected", n)
	}
}

func TestAppendHostileNames(t *testing.T) {
	d := open(t, t.TempDir(), jsonl.Config{})
	long := strings.Repeat("a", 300)
	s := nopen(t, d, `../select"; DROP TABLE x;--/`+long, source.Stream{}, spec.SchemaSettings{})
	s.write(`[{"order":1,"\"; DROP TABLE x;--":"inj","it's":"q","Name":"upper","name":"lower","日本語":"jp","` + long + `":"l1","` + long + `b":"l2","a.b":"dot","_ferry_run_id":"mine","_ferry_op":"op"}]`)
	s.finish()
	if strings.ContainsAny(s.table, `/\.`) || len(s.table) > d.MaxIdentLen() {
		t.Fatalf("table name %q", s.table)
	}
	var cols []string
	seen := map[string]bool{}
	for _, c := range s.n.Table().Columns {
		if seen[strings.ToLower(c.Name)] || len(c.Name) > d.MaxIdentLen() {
			t.Fatalf("column %q", c.Name)
		}
		seen[strings.ToLower(c.Name)] = true
		if c.Origin == schema.FromData {
			cols = append(cols, c.Name)
		}
	}
	same(t, values(t, d, s.table, cols...), []string{"1|inj|q|upper|lower|jp|l1|l2|dot|mine|op"})
	same(t, values(t, d, s.table, jsonl.OpColumn), []string{"NULL"}) // a data key _ferry_op is not a delete
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

func TestAppendFlatten(t *testing.T) {
	d := open(t, t.TempDir(), jsonl.Config{})
	s := nopen(t, d, "flat", source.Stream{}, spec.SchemaSettings{Nested: schema.Flatten})
	s.write(`[{"id":1,"addr":{"city":"Oslo","geo":{"lat":59.9,"deep":{"x":1}}},"tags":["a"]}]`)
	s.finish()
	same(t, values(t, d, s.table, "id", "addr__city", "addr__geo__lat", "addr__geo__deep", "tags"), []string{`1|Oslo|59.9|{"x":1}|["a"]`})
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

// TestAppendRejected: records the normalizer rejects land in
// _ferry_rejected.jsonl with the stream, table and reason.
func TestAppendRejected(t *testing.T) {
	d := open(t, t.TempDir(), jsonl.Config{})
	s := nopen(t, d, "rej", source.Stream{PrimaryKey: []string{"id"}}, spec.SchemaSettings{})
	s.write(`[{"id":1},{"no_id":true},"not an object"]`)
	s.finish()
	same(t, values(t, d, s.table, "id"), []string{"1"})
	same(t, values(t, d, dest.RejectedTable, "stream", "table_name", "reason", "record"), []string{
		`rej|rej|missing primary key field "id"|{"no_id":true}`,
		`rej|rej|record is a JSON string, not an object|"not an object"`,
	})
}
