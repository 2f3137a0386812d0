package postgres

import (
	"os"
	"strings"
	"syscall"

	"context"
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/dest/sqldest"
	"github.com/jackc/pgx/v5"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/schema"
)

// benchTable is the 12-field shape of the end-to-end benchmark (ints,
// strings, timestamps, a float, a bool, a nested object) plus Ferry's two
// metadata columns.
func benchTable(name string) *schema.Table {
	col := func(name string, t schema.Type) schema.Column {
		return schema.Column{Name: name, Type: t, Path: []string{name}}
	}
	return &schema.Table{Name: name, Version: 1, PrimaryKey: []string{"id"}, Cursor: "updated_at", Columns: []schema.Column{
		col("id", schema.Int), col("account_id", schema.Int), col("name", schema.Text), col("email", schema.Text),
		col("status", schema.Text), col("amount", schema.Float), col("quantity", schema.Int), col("active", schema.Bool),
		col("created_at", schema.Timestamp), col("updated_at", schema.Timestamp), col("meta", schema.JSON), col("note", schema.Text),
		{Name: schema.ColExtractedAt, Type: schema.Timestamp, Origin: schema.FromMeta},
		{Name: schema.ColRunID, Type: schema.Text, Origin: schema.FromMeta},
	}}
}

// benchChunks builds n rows in chunks of 1000, ids from 1, cursors from
// version (a later version is newer).
func benchChunks(tb *schema.Table, n, version int) []*record.Chunk {
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()
	statuses := [][]byte{[]byte("new"), []byte("paid"), []byte("shipped"), []byte("delivered")}
	run := []byte("run-bench")
	var out []*record.Chunk
	for start := 0; start < n; start += 1000 {
		c := record.NewChunk(tb, 1000)
		a := c.Arena()
		for i := start; i < min(n, start+1000); i++ {
			v := c.Cols
			v[0].AppendInt(int64(i+1), nil)
			v[1].AppendInt(int64(i%977), nil)
			v[2].AppendBytes(a.Copy(fmt.Appendf(nil, "Customer number %d", i)))
			v[3].AppendBytes(a.Copy(fmt.Appendf(nil, "customer.%d@example.com", i)))
			v[4].AppendBytes(statuses[i%4])
			v[5].AppendFloat(float64(i%100000)/7, nil)
			v[6].AppendInt(int64(i%17), nil)
			v[7].AppendInt(int64(i%2), nil)
			v[8].AppendInt(base+int64(i)*1e6, nil)
			v[9].AppendInt(base+int64(version)*1e12+int64(i)*1e6, nil)
			v[10].AppendBytes(a.Copy(fmt.Appendf(nil, `{"source":"web","tags":["a","b%d"],"score":%d,"ref":{"id":%d,"ok":true}}`, i%5, i%100, i)))
			if i%3 == 0 {
				v[11].AppendNull(schema.Text)
			} else {
				v[11].AppendBytes(a.Copy(fmt.Appendf(nil, "a note about order %d", i)))
			}
			v[12].AppendInt(base+int64(version)*1e12, nil)
			v[13].AppendBytes(run)
			c.Ops = append(c.Ops, record.Upsert)
			c.Raw = append(c.Raw, nil)
			c.Len++
		}
		out = append(out, c)
	}
	return out
}

// BenchmarkLoad writes 200,000 pre-built rows through a stream writer as
// the engine does (chunks of 1000, a commit every 50,000 rows) and reports
// rows/s and allocations per row. dedup/insert writes new keys, dedup/update
// replaces every row with a newer version.
func BenchmarkLoad(b *testing.B) {
	const n = 200_000
	ctx := context.Background()
	app := fmt.Sprintf("ferry_bench_%d", os.Getpid())
	sp := &Config{Schema: freshSchema(b)}
	dd, err := Open(ctx, cfgWith(sp, testURL()+"&application_name="+app), dest.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { dd.Close() })
	d := dd.(*sqldest.Destination)
	for _, tc := range []struct {
		name   string
		mode   dest.Mode
		update bool
	}{
		{"append", dest.IncrementalAppend, false},
		{"dedup/insert", dest.IncrementalDedup, false},
		{"dedup/update", dest.IncrementalDedup, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var elapsed, serverCPU, clientCPU time.Duration
			var allocs uint64
			iter := 0
			for b.Loop() {
				b.StopTimer()
				iter++
				table := "bench_" + strconv.Itoa(iter)
				tb := benchTable(table)
				var lastServer, lastClient time.Duration
				load := func(chunks []*record.Chunk) (time.Duration, uint64) {
					w, err := d.OpenStream(ctx, dest.StreamConfig{Pipeline: "p", Stream: table, Table: table, Mode: tc.mode, RunID: "r"})
					if err != nil {
						b.Fatal(err)
					}
					var m0, m1 runtime.MemStats
					runtime.ReadMemStats(&m0)
					s0, c0 := backendCPU(b, app), processCPU()
					start := time.Now()
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
					took := time.Since(start)
					lastServer, lastClient = backendCPU(b, app)-s0, processCPU()-c0
					runtime.ReadMemStats(&m1)
					return took, m1.Mallocs - m0.Mallocs
				}
				if tc.update {
					load(benchChunks(tb, n, 1))
				}
				chunks := benchChunks(tb, n, 2)
				runtime.GC()
				b.StartTimer()
				took, a := load(chunks)
				elapsed += took
				allocs += a
				serverCPU += lastServer
				clientCPU += lastClient
				b.StopTimer()
				if err := d.DB().Exec(ctx, d.Dialect().DropTable(table)); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			rows := float64(n * iter)
			b.ReportMetric(rows/elapsed.Seconds(), "rows/s")
			b.ReportMetric(float64(allocs)/rows, "allocs/row")
			b.ReportMetric(float64(serverCPU.Nanoseconds())/rows/1000, "server-µs/row")
			b.ReportMetric(float64(clientCPU.Nanoseconds())/rows/1000, "client-µs/row")
		})
	}
}

// backendCPU sums the CPU time of the server processes serving
// connections named app (this machine's PostgreSQL only).
func backendCPU(tb testing.TB, app string) time.Duration {
	c := adminConn(tb)
	defer c.Close(context.Background())
	rows, err := c.Query(context.Background(), "SELECT pid FROM pg_stat_activity WHERE application_name = $1", app)
	if err != nil {
		tb.Fatal(err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		tb.Fatal(err)
	}
	var total time.Duration
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue // not local, or gone
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		utime, _ := strconv.ParseInt(f[11], 10, 64)
		stime, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(utime+stime) * 10 * time.Millisecond // USER_HZ is 100
	}
	return total
}

// processCPU returns this process's CPU time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
func BenchmarkEncodeRows(b *testing.B) {
	tb := benchTable("t")
	chunks := benchChunks(tb, 10000, 1)
	enc := rowEncoder{wires: []wire{wireInt8, wireInt8, wireText, wireText, wireText, wireFloat8, wireInt8, wireBool, wireTimestamp, wireTimestamp, wireJSONB, wireText, wireTimestamp, wireText}, keys: []int{0}, index: true, ordinal: true}
	buf := make([]byte, 0, 4<<20)
	b.ReportAllocs()
	for b.Loop() {
		buf = buf[:0]
		for _, c := range chunks {
			for r := 0; r < c.Len; r++ {
				buf, _, _ = enc.appendRow(buf, c, r, int64(r))
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*10000), "ns/row")
}

func BenchmarkCheckJSONB(b *testing.B) {
	s := []byte(`{"source":"web","tags":["a","b1"],"score":5,"ref":{"id":12345,"ok":true}}`)
	for b.Loop() {
		checkJSONB(s)
	}
}
