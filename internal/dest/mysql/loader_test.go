package mysql

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/dest/desttest"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/schema"
)

// benchTable is a 12-field record plus Ferry's two metadata columns.
func benchTable() *schema.Table {
	col := func(name string, t schema.Type) schema.Column {
		return schema.Column{Name: name, Type: t, Path: []string{name}}
	}
	return &schema.Table{Name: "orders", Version: 1, PrimaryKey: []string{"id"}, Cursor: "updated_at", Columns: []schema.Column{
		col("id", schema.Int), col("updated_at", schema.Timestamp), col("customer", schema.Text), col("email", schema.Text),
		col("status", schema.Text), col("amount", schema.Float), col("quantity", schema.Int), col("paid", schema.Bool),
		col("price", schema.Decimal), col("tags", schema.JSON), col("created_at", schema.Timestamp), col("note", schema.Text),
		{Name: schema.ColExtractedAt, Type: schema.Timestamp, Origin: schema.FromMeta},
		{Name: schema.ColRunID, Type: schema.Text, Origin: schema.FromMeta},
	}}
}

// benchChunks builds n rows in chunks of 1000, ids from 1, with cursor
// values from version.
func benchChunks(tb *schema.Table, n, version int) []*record.Chunk {
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	var out []*record.Chunk
	for start := 0; start < n; start += 1000 {
		var rows [][]any
		for i := start; i < min(n, start+1000); i++ {
			rows = append(rows, []any{
				i + 1, base.Add(time.Duration(version*1000000+i) * time.Second), fmt.Sprintf("Customer %d", i), fmt.Sprintf("user%d@example.com", i),
				[]string{"new", "paid", "shipped", "delivered"}[i%4], float64(i%10000) / 7, i % 17, i%3 == 0,
				fmt.Sprintf("%d.%02d", i%1000, i%100), fmt.Sprintf(`{"tags":["a","b%d"],"n":%d}`, i%5, i), base.Add(time.Duration(i) * time.Minute),
				strings.Repeat("note ", i%8), base, "run-bench",
			})
		}
		out = append(out, desttest.Chunk(tb, rows...))
	}
	return out
}

// BenchmarkLoadDedup loads 100,000 pre-built rows of 14 columns in
// incremental_dedup mode through the writer and its loader, committing
// every 50,000 rows as the engine does by default: first into an empty
// table (inserts), then again with newer cursors (every row an update).
func BenchmarkLoadDedup(b *testing.B) {
	const n = 100_000
	tb := benchTable()
	inserts := benchChunks(tb, n, 1)
	updates := benchChunks(tb, n, 2)
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		before []*record.Chunk
		chunks []*record.Chunk
	}{{"insert", nil, inserts}, {"update", inserts, updates}} {
		b.Run(tc.name, func(b *testing.B) {
			var elapsed time.Duration
			for b.Loop() {
				b.StopTimer()
				d := openFresh(b, nil)
				load := func(chunks []*record.Chunk) {
					w, err := d.OpenStream(ctx, dest.StreamConfig{Pipeline: "p", Stream: "orders", Table: "orders", Mode: dest.IncrementalDedup, RunID: "r"})
					if err != nil {
						b.Fatal(err)
					}
					for i, c := range chunks {
						if err := w.Write(ctx, c); err != nil {
							b.Fatal(err)
						}
						if (i+1)%50 == 0 {
							if err := w.Commit(ctx); err != nil {
								b.Fatal(err)
							}
						}
					}
					if err := w.Finish(ctx, nil); err != nil {
						b.Fatal(err)
					}
				}
				if tc.before != nil {
					load(tc.before)
				}
				b.StartTimer()
				start := time.Now()
				load(tc.chunks)
				elapsed += time.Since(start)
				b.StopTimer()
				if got, _ := d.Count(ctx, "orders"); got != n {
					b.Fatalf("count = %d, want %d", got, n)
				}
				d.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(n*b.N)/elapsed.Seconds(), "rows/s")
		})
	}
}

// TestLoaderSplitsLargeBatches writes rows whose values exceed one
// statement's budget and checks that every row arrives.
func TestLoaderSplitsLargeBatches(t *testing.T) {
	t.Parallel()
	d := openFresh(t, nil)
	f := newFixture(t, d, dest.IncrementalAppend, textTable("big"))
	big := strings.Repeat("x", 1<<20)
	var rows [][]any
	for i := range 10 {
		rows = append(rows, []any{fmt.Sprint(i), big})
	}
	f.write(desttest.Chunk(f.tb, rows...))
	f.finish()
	same(t, query(t, d, "SELECT COUNT(*), SUM(LENGTH(v)) FROM big"), []string{fmt.Sprintf("10|%d", 10<<20)})
}

// TestRowLargerThanPacketRefused refuses a row the server could not take
// in one packet, naming its largest column.
func TestRowLargerThanPacketRefused(t *testing.T) {
	t.Parallel()
	d := openFresh(t, func(x *Dialect) { x.MaxPacket = 1 << 20 })
	f := newFixture(t, d, dest.IncrementalAppend, textTable("huge"))
	f.write(desttest.Chunk(f.tb, []any{"a", "small"}, []any{"b", strings.Repeat("y", 2<<20)}, []any{"c", "small"}))
	f.finish()
	same(t, query(t, d, "SELECT k FROM huge"), []string{"a", "c"})
	rej := rejections(t, d, "huge")
	if len(rej) != 1 || !strings.HasPrefix(rej[0], "v|") || !strings.Contains(rej[0], "max_allowed_packet") {
		t.Fatalf("rejections = %q", rej)
	}
}

func TestAppendString(t *testing.T) {
	in := "a'b\"c\\d\x00e\nf\rg\x1ah 🚀"
	want := `'a\'b\"c\\d\0e\nf\rg\Zh 🚀'`
	if got := string(appendString(nil, []byte(in))); got != want {
		t.Fatalf("appendString = %s, want %s", got, want)
	}
	// Through the server: every byte comes back.
	d := openFresh(t, nil)
	var all []byte
	for c := 1; c < 128; c++ {
		all = append(all, byte(c))
	}
	all = append(all, 0)
	same(t, query(t, d, "SELECT HEX("+string(appendString(nil, all))+")"), []string{strings.ToUpper(fmt.Sprintf("%x", all))})
}
