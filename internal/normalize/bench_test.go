package normalize

import (
	"fmt"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/cursor"
	"github.com/ferry-dev/ferry/internal/record"
)

// benchPage builds a page of n records of the 12-field shape bench/ uses.
func benchPage(b *testing.B, n, start int) *record.Page {
	var body []byte
	body = append(body, '[')
	t0 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := start; i < start+n; i++ {
		if i > start {
			body = append(body, ',')
		}
		at := t0.Add(time.Duration(i) * time.Second).Format(time.RFC3339)
		body = fmt.Appendf(body, `{"id":%d,"uuid":"0c3fB8aZ1kQ9%010d","email":"a.person%d@example.io","name":"Ann Person","status":"active","amount":%d.%02d,"quantity":%d,"active":%t,"created_at":"%s","updated_at":"%s","country":"NO","meta":{"source":"web","tags":["a","b"],"score":%d}}`,
			i+1, i, i, i%1000, i%100, i%50, i%2 == 0, at, at, i%10)
	}
	body = append(body, ']')
	return page(b, string(body))
}

// BenchmarkPage measures the normalizer on pages of 1000 records, as an
// incremental dedup sync runs it (cursor tracking and boundary hashes on).
func BenchmarkPage(b *testing.B) {
	pages := make([]*record.Page, 20)
	for i := range pages {
		pages[i] = benchPage(b, 1000, i*1000)
	}
	n, err := New(Options{Table: "t", PrimaryKey: []string{"id"}, Cursor: "updated_at", RunID: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	f := &cursor.Filter{Dedupe: false}
	b.ReportAllocs()
	b.ResetTimer()
	rows := 0
	for i := 0; i < b.N; i++ {
		c, _, err := n.Page(pages[i%len(pages)], f)
		if err != nil {
			b.Fatal(err)
		}
		rows += c.Len
	}
	b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(rows), "ns/row")
}
