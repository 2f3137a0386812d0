// Command bigdoc measures Ferry's memory on one huge JSON document: a
// loopback server generates the document as it writes it (about -size
// bytes, records of 1 KiB), and Ferry reads it with response: {stream:
// true}, either through the REST source alone (the default: decoding
// and selection) or end to end into SQLite (-sqlite, ferry run
// in-process). It prints the records, the time, the throughput, the
// peak live heap (sampled every 10 ms) and the peak RSS (VmHWM), and
// exits 1 when a record is missing.
//
//	go run ./bench/bigdoc -size 5GiB
//	go run ./bench/bigdoc -size 1GiB -sqlite
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ferry-dev/ferry/internal/apitest"
	"github.com/ferry-dev/ferry/internal/cli"
	_ "github.com/ferry-dev/ferry/internal/components/all"
	"github.com/ferry-dev/ferry/internal/jsonpath"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/redact"
	"github.com/ferry-dev/ferry/internal/source"
	"github.com/ferry-dev/ferry/internal/spec"
)

func main() {
	sizeFlag := flag.String("size", "5GiB", "document size: bytes, or with KiB, MiB, GiB")
	toSQLite := flag.Bool("sqlite", false, "run ferry end to end into an SQLite file instead of reading through the source alone")
	flag.Parse()
	size, err := parseSize(*sizeFlag)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bigdoc:", err)
		os.Exit(2)
	}
	os.Exit(run(size, *toSQLite))
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.m
			break
		}
	}
	n, err := strconv.ParseFloat(s, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("bad -size %q", s)
	}
	return int64(n * float64(mult)), nil
}

const connector = `name: big
base_url: %s
http: {timeout: 1m}
streams:
  items: {path: /export, records: items, primary_key: id, response: {stream: true}}
`

func run(size int64, toSQLite bool) int {
	srv := httptest.NewServer(apitest.BigDoc(size))
	defer srv.Close()
	runtime.GC()
	var peak atomic.Uint64
	stop := make(chan struct{})
	go func() {
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(s)
			if v := s[0].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	began := time.Now()
	var records, qty int64
	var err error
	if toSQLite {
		records, qty, err = viaSQLite(srv.URL)
	} else {
		records, qty, err = viaSource(srv.URL)
	}
	elapsed := time.Since(began)
	close(stop)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bigdoc:", err)
		return 1
	}
	mode := "source"
	if toSQLite {
		mode = "ferry run → sqlite"
	}
	fmt.Printf("%s: %.2f GiB, %d records in %s (%.0f MB/s); peak live heap %.1f MiB, peak RSS %s\n", mode, float64(size)/(1<<30), records, elapsed.Round(100*time.Millisecond),
		float64(size)/1e6/elapsed.Seconds(), float64(peak.Load())/(1<<20), vmHWM())
	if records != apitest.BigDocCount(size) || qty != apitest.BigDocQtySum(size) {
		fmt.Fprintf(os.Stderr, "bigdoc: %d records (qty sum %d), want %d (%d)\n", records, qty, apitest.BigDocCount(size), apitest.BigDocQtySum(size))
		return 1
	}
	return 0
}

func viaSource(url string) (records, qty int64, err error) {
	c, err := spec.ParseConnector("big.connector.yaml", []byte(fmt.Sprintf(connector, url)))
	if err != nil {
		return 0, 0, err
	}
	src, err := source.New(c.Type, c.Body, source.Options{Name: c.Name, Redactor: redact.New()})
	if err != nil {
		return 0, 0, err
	}
	defer src.Close()
	qp := jsonpath.MustCompile("qty")
	err = src.Read(context.Background(), source.ReadRequest{
		Stream: "items",
		Start:  func(context.Context, *record.Partition) (source.Start, error) { return source.Start{}, nil },
		Emit: func(_ context.Context, p *record.Page) error {
			for _, r := range p.Records {
				records++
				v, _, _ := jsonpath.Lookup(r, qp)
				n, _ := strconv.ParseInt(string(v), 10, 64)
				qty += n
			}
			return nil
		},
	})
	return records, qty, err
}

func viaSQLite(url string) (records, qty int64, err error) {
	dir, err := os.MkdirTemp("", "bigdoc-")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(dir)
	os.WriteFile(filepath.Join(dir, "c.yaml"), []byte(fmt.Sprintf(connector, url)), 0o644)
	os.WriteFile(filepath.Join(dir, "p.yaml"), []byte("connector: c.yaml\ndestination: {type: sqlite, path: out.db}\nstreams: {items: {mode: full_refresh_append}}\n"), 0o644)
	var out strings.Builder
	if code := cli.Main([]string{"run", "--quiet", filepath.Join(dir, "p.yaml")}, &out, os.Stderr); code != 0 {
		return 0, 0, fmt.Errorf("ferry run exited %d:\n%s", code, out.String())
	}
	out.Reset()
	if code := cli.Main([]string{"query", filepath.Join(dir, "out.db"), "SELECT count(*), sum(qty) FROM items"}, &out, os.Stderr); code != 0 {
		return 0, 0, fmt.Errorf("ferry query exited %d", code)
	}
	for _, line := range strings.Split(out.String(), "\n") {
		f := strings.Fields(strings.ReplaceAll(line, "|", " "))
		if len(f) == 2 {
			if a, err1 := strconv.ParseInt(f[0], 10, 64); err1 == nil {
				b, _ := strconv.ParseInt(f[1], 10, 64)
				return a, b, nil
			}
		}
	}
	return 0, 0, fmt.Errorf("unreadable query output:\n%s", out.String())
}

// vmHWM returns the process's peak resident set size.
func vmHWM() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			kb, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			return fmt.Sprintf("%.1f MiB", float64(kb)/1024)
		}
	}
	return "unknown"
}
