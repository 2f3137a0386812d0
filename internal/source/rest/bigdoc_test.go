package rest

import (
	"context"
	"net/http/httptest"
	"runtime"
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/apitest"
	"github.com/ferry-dev/ferry/internal/jsonpath"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/source"
)

// readBigDoc reads a generated document of size bytes through a stream
// with response: {stream: true} and returns the records, their qty sum
// and the peak of live heap seen while reading (sampled every 5 ms).
func readBigDoc(t *testing.T, size int64) (records, qty int64, peak uint64) {
	t.Helper()
	srv := httptest.NewServer(apitest.BigDoc(size))
	defer srv.Close()
	src, err := newSource(t, `name: big
base_url: `+srv.URL+`
http: {timeout: 10s}
streams:
  items: {path: /export, records: items, primary_key: id, response: {stream: true}}
`, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	var max atomic.Uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(sample)
			if v := sample[0].Value.Uint64(); v > max.Load() {
				max.Store(v)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	qtyPath := jsonpath.MustCompile("qty")
	err = src.Read(context.Background(), source.ReadRequest{
		Stream: "items",
		Start:  func(context.Context, *record.Partition) (source.Start, error) { return source.Start{}, nil },
		Emit: func(_ context.Context, p *record.Page) error {
			for _, r := range p.Records {
				records++
				v, _, _ := jsonpath.Lookup(r, qtyPath)
				var n int64
				for _, c := range v {
					n = n*10 + int64(c-'0')
				}
				qty += n
			}
			return nil
		},
	})
	close(stop)
	<-done
	if err != nil {
		t.Fatal(err)
	}
	return records, qty, max.Load()
}

// TestHugeDocumentFlatMemory streams generated documents of 8 MB and
// 128 MB: every record arrives, and the heap stays flat — the larger
// document takes no more memory than the smaller one (a document read
// whole would need 16 times as much). bench/bigdoc runs the same read
// on 5 GB.
func TestHugeDocumentFlatMemory(t *testing.T) {
	sizes := []int64{8 << 20, 128 << 20}
	if testing.Short() {
		sizes[1] = 32 << 20
	}
	var peaks []uint64
	for _, size := range sizes {
		began := time.Now()
		n, qty, peak := readBigDoc(t, size)
		if n != apitest.BigDocCount(size) || qty != apitest.BigDocQtySum(size) {
			t.Fatalf("%d MB: %d records with qty sum %d, want %d and %d", size>>20, n, qty, apitest.BigDocCount(size), apitest.BigDocQtySum(size))
		}
		t.Logf("%d MB: %d records in %s, peak live heap %.1f MB", size>>20, n, time.Since(began).Round(time.Millisecond), float64(peak)/(1<<20))
		peaks = append(peaks, peak)
	}
	if limit := peaks[0] + 16<<20; peaks[1] > limit || peaks[1] > 48<<20 {
		t.Errorf("peak heap %.1f MB for %d MB, %.1f MB for %d MB: memory grows with the document", float64(peaks[1])/(1<<20), sizes[1]>>20, float64(peaks[0])/(1<<20), sizes[0]>>20)
	}
}
