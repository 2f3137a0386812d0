package spec

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// measure runs fn and returns the bytes it allocated and how long it took.
// The compiled schemas are cached weakly: measure holds them, so the
// collection before fn does not make fn compile them again.
func measure(fn func()) (alloc uint64, took time.Duration) {
	schemas, _ := loadSchemas()
	defer runtime.KeepAlive(schemas)
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	start := time.Now()
	fn()
	took = time.Since(start)
	runtime.ReadMemStats(&m1)
	return m1.TotalAlloc - m0.TotalAlloc, took
}

const connectorHead = "name: shop\nbase_url: https://api.example.com\n"

// streamsWith returns a connector whose only stream, a POST, has extra
// appended to its definition (indented by four spaces).
func streamsWith(extra string) string {
	return connectorHead + "streams:\n  orders:\n    path: /orders\n    method: POST\n" + extra
}

func repeatLines(format string, n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, format, i)
	}
	return b.String()
}

// nested returns depth block mappings indented by indent spaces, each
// under a key of keyLen bytes, with value at the bottom.
func nested(indent, depth, keyLen int, value string) string {
	var b strings.Builder
	for i := range depth {
		b.WriteString(strings.Repeat(" ", indent) + strings.Repeat("  ", i))
		fmt.Fprintf(&b, "%s%d:\n", strings.Repeat("k", keyLen), i)
	}
	b.WriteString(strings.Repeat(" ", indent) + strings.Repeat("  ", depth) + value + "\n")
	return b.String()
}

// TestLimits checks that files beyond each limit are refused with the
// limit's message at the place that crossed it, cheaply: the memory a
// refused file costs is bounded whatever its size.
func TestLimits(t *testing.T) {
	big := strings.Repeat("x", MaxFileSize)
	tests := []struct {
		name, data string
		pipeline   bool
		want       string
		maxAlloc   uint64 // bytes
	}{{
		name:     "file size",
		data:     "description: " + big + "\n",
		want:     "x.yaml:1:1: the file is larger than 4 MiB, the limit for connector and pipeline files: split it (one connector per API, one pipeline per connector)",
		maxAlloc: 1 << 20,
	}, {
		name:     "lines and indicators",
		data:     strings.Repeat("# a comment\n", maxMarks+1),
		want:     "x.yaml:200001:1: the file has more than 200,000 lines and YAML indicators (- : , [ ] { } # and the like) by here, more than a file within the limit of 100,000 values can have: split it",
		maxAlloc: 192 << 20,
	}, {
		name:     "streams, among many lines",
		data:     connectorHead + "streams:\n" + repeatLines("  s%d: {path: /s}\n", 110_000),
		want:     "x.yaml:1004:3: streams: more than 1000 streams, the limit: split the connector into several, each with its own pipeline",
		maxAlloc: 16 << 20,
	}, {
		name:     "values",
		data:     streamsWith("    body: [" + strings.Repeat("1, ", MaxValues) + "1]\n"),
		want:     "x.yaml:7:299967: streams.orders.body.99985: the file holds more than 100,000 values (keys, scalars, mappings and sequences), the limit: split it",
		maxAlloc: 96 << 20,
	}, {
		name:     "streams",
		data:     connectorHead + "streams:\n" + repeatLines("  s%d: {path: /s}\n", MaxStreams+1),
		want:     "x.yaml:1004:3: streams: more than 1000 streams, the limit: split the connector into several, each with its own pipeline",
		maxAlloc: 8 << 20,
	}, {
		name:     "streams of an inline connector",
		pipeline: true,
		data:     "connector:\n  name: shop\n  base_url: https://api.example.com\n  streams:\n" + repeatLines("    s%d: {path: /s}\n", MaxStreams+1) + "destination: {type: sqlite, path: x.db}\n",
		want:     "x.yaml:1005:5: connector.streams: more than 1000 streams, the limit: split the connector into several, each with its own pipeline",
		maxAlloc: 8 << 20,
	}, {
		name:     "keys of a block mapping",
		data:     streamsWith("    columns:\n" + repeatLines("      c%d: int\n", MaxKeys+1)),
		want:     "x.yaml:1008:7: streams.orders.columns: more than 1000 keys in one mapping, the limit",
		maxAlloc: 8 << 20,
	}, {
		name:     "keys of a flow mapping",
		data:     streamsWith("    params: {" + repeatLines("p%d: x, ", MaxKeys+1) + "}\n"),
		want:     "x.yaml:7:8904: streams.orders.params: more than 1000 keys in one mapping, the limit",
		maxAlloc: 8 << 20,
	}, {
		name:     "depth of flow collections",
		data:     streamsWith("    body: " + strings.Repeat("[", 100_000) + "\n"),
		want:     "x.yaml:7:72: streams.orders.body" + strings.Repeat(".0", 61) + ": mappings and sequences nest more than 64 levels deep here, the limit",
		maxAlloc: 64 << 20,
	}, {
		name:     "depth of block mappings",
		data:     streamsWith("    body:\n" + nested(6, 70, 1, "x")),
		want:     "x.yaml:69:129: streams.orders.body.k0.k1.k2.k3.k4.k5.k6.k7.k8.k9.k10.k11.k12.k13.k14.k15.k16.k17.k18.k19.k20.k21.k22.k23.k24.k25.k26.k27.k28.k29.k30.k31.k32.k33.k34.k35.k36.k37.k38.k39.k40.k41.k42.k43.k44.k45.k46.k47.k48.k49.k50.k51.k52.k53.k54.k55.k56.k57.k58.k59.k60: mappings and sequences nest more than 64 levels deep here, the limit",
		maxAlloc: 8 << 20,
	}, {
		name:     "paths",
		data:     streamsWith("    body:\n" + nested(6, 60, 1000, "["+strings.Repeat("1, ", 1000)+"1]")),
		want:     "x.yaml:68:872: streams.orders.body." + strings.TrimSuffix(nestedPath(60, 1000), ".") + ".248: the YAML paths of the file's values add up to more than 16 MiB, the limit (long keys above many values): shorten the keys",
		maxAlloc: 32 << 20,
	}, {
		name:     "aliases",
		data:     streamsWith("    body:\n      a: &a 1\n      b: [" + strings.Repeat("*a, ", MaxAliases) + "*a]\n"),
		want:     "x.yaml:9:40011: streams.orders.body.b.10000: more than 10,000 aliases once expanded (an alias inside an anchor counts each time the anchor is used), the limit",
		maxAlloc: 32 << 20,
	}, {
		name:     "values aliases add",
		data:     streamsWith("    body:\n      a: &a [" + strings.Repeat("1, ", 999) + "1]\n      b: [" + strings.Repeat("*a, ", 100) + "*a]\n"),
		want:     "x.yaml:9:407: streams.orders.body.b.99: aliases expand to more than 100,000 values, the limit: write the values out, or use fewer aliases",
		maxAlloc: 16 << 20,
	}, {
		name:     "text aliases add",
		data:     streamsWith("    body:\n      a: &a " + strings.Repeat("x", 64<<10) + "\n      b: [" + strings.Repeat("*a, ", 64) + "*a]\n"),
		want:     "x.yaml:9:267: streams.orders.body.b.64: aliases expand to more than 4 MiB of text, the limit: write the values out, or use fewer aliases",
		maxAlloc: 16 << 20,
	}, {
		name:     "depth aliases add",
		data:     streamsWith("    body:\n      a: &a " + strings.Repeat("[", 40) + strings.Repeat("]", 40) + "\n      b: " + strings.Repeat("[", 30) + "*a" + strings.Repeat("]", 30) + "\n"),
		want:     "x.yaml:9:40: streams.orders.body.b" + strings.Repeat(".0", 30) + ": the alias *a makes mappings and sequences nest more than 64 levels deep, the limit",
		maxAlloc: 8 << 20,
	}, {
		name:     "template expressions",
		data:     streamsWith("    body: [" + strings.Repeat(`"{{ page.size }}", `, MaxExpressions) + `"{{ page.size }}"]` + "\n"),
		want:     "x.yaml:7:380012: streams.orders.body.20000: the file holds more than 20,000 {{ }} template expressions, the limit",
		maxAlloc: 32 << 20,
	}, {
		name:     "template expressions aliases add",
		data:     streamsWith("    body:\n      a: &a \"{{ page.size }}{{ page.size }}{{ page.size }}\"\n      b: [" + strings.Repeat("*a, ", 7000) + "*a]\n"),
		want:     "x.yaml:9:26671: streams.orders.body.b.6665: aliases make the file hold more than 20,000 {{ }} template expressions, the limit",
		maxAlloc: 32 << 20,
	}, {
		name:     "template length",
		data:     connectorHead + "streams:\n  orders:\n    path: /orders/" + strings.Repeat("x", MaxTemplateLength) + "\n",
		want:     "x.yaml:5:11: streams.orders.path: the template is 65,544 bytes long, more than the limit of 64 KiB",
		maxAlloc: 16 << 20,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			data := []byte(tt.data)
			alloc, took := measure(func() {
				if tt.pipeline {
					_, err = ParsePipeline("x.yaml", data)
				} else {
					_, err = ParseConnector("x.yaml", data)
				}
			})
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("error = %v, want Problems", err)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("problems:\n%.600s\nwant:\n%s", got, tt.want)
			}
			t.Logf("%d bytes refused in %v, %.1f MiB allocated", len(tt.data), took, float64(alloc)/(1<<20))
			if alloc > tt.maxAlloc {
				t.Errorf("allocated %d MiB, want at most %d", alloc>>20, tt.maxAlloc>>20)
			}
		})
	}
}

// nestedPath is the YAML path of the value at the bottom of nested(depth,
// keyLen, ...), with a trailing dot.
func nestedPath(depth, keyLen int) string {
	var b strings.Builder
	for i := range depth {
		fmt.Fprintf(&b, "%s%d.", strings.Repeat("k", keyLen), i)
	}
	return b.String()
}

// TestJustUnderLimits loads files just under the limits: they are
// accepted.
func TestJustUnderLimits(t *testing.T) {
	tests := []struct{ name, data string }{
		{"file size", connectorHead + "description: " + strings.Repeat("x", MaxFileSize-100) + "\nstreams:\n  orders: {path: /orders}\n"},
		{"streams", connectorHead + "streams:\n" + repeatLines("  s%d: {path: /s}\n", MaxStreams)},
		{"keys", streamsWith("    columns:\n" + repeatLines("      c%d: int\n", MaxKeys))},
		{"depth", streamsWith("    body: " + strings.Repeat("[", MaxDepth-3) + strings.Repeat("]", MaxDepth-3) + "\n")},
		{"aliases", streamsWith("    body:\n      a: &a 1\n      b: [" + strings.Repeat("*a, ", MaxAliases-1) + "*a]\n")},
		{"template length", connectorHead + "streams:\n  orders:\n    path: /" + strings.Repeat("x", MaxTemplateLength-1) + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			data := []byte(tt.data)
			alloc, took := measure(func() { _, err = ParseConnector("x.yaml", data) })
			if err != nil {
				t.Fatalf("%.600v", err)
			}
			t.Logf("%d bytes loaded in %v, %.1f MiB allocated", len(tt.data), took, float64(alloc)/(1<<20))
		})
	}
}

// TestReadFile checks that a huge file is not read in full.
func TestReadFile(t *testing.T) {
	name := filepath.Join(t.TempDir(), "huge.connector.yaml")
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	// A sparse 1 GiB file: reading it in full would allocate 1 GiB.
	if err := f.Truncate(1 << 30); err != nil {
		t.Fatal(err)
	}
	f.Close()
	var data []byte
	alloc, _ := measure(func() { data, err = ReadFile(name) })
	if err != nil || len(data) != MaxFileSize+1 {
		t.Fatalf("ReadFile = %d bytes, %v; want %d", len(data), err, MaxFileSize+1)
	}
	if alloc > 32<<20 {
		t.Errorf("ReadFile allocated %d MiB", alloc>>20)
	}
	alloc, _ = measure(func() { _, err = LoadConnector(name) })
	if alloc > 32<<20 {
		t.Errorf("LoadConnector allocated %d MiB", alloc>>20)
	}
	if err == nil || !strings.Contains(err.Error(), "huge.connector.yaml: the connector file is 1073741824 bytes; Ferry reads files of at most 4194304 bytes") {
		t.Fatalf("LoadConnector = %v", err)
	}
}

// TestHintsForLongNames checks that "did you mean" hints do not compare
// long names: the comparison costs the product of the lengths, and a
// pipeline naming 1000 unknown streams of a connector with 1000 long names
// would take hours.
func TestHintsForLongNames(t *testing.T) {
	var names []string
	for i := range 1000 {
		names = append(names, fmt.Sprintf("%s%d", strings.Repeat("s", 1000), i))
	}
	long := strings.Repeat("s", 1000)
	if allocs := testing.AllocsPerRun(1, func() { didYouMean(long, names) }); allocs > 10 {
		t.Errorf("didYouMean of a long name: %v allocations, want none per candidate", allocs)
	}
	if got := didYouMean("strems", []string{"streams", strings.Repeat("x", 1<<20)}); got != "streams" {
		t.Errorf("didYouMean(strems) = %q", got)
	}
}

// TestProblemsListBounded: a file with thousands of problems lists the
// first MaxShown, in order, and says how many more there are.
func TestProblemsListBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString(connectorHead + "streams:\n")
	for i := range 500 {
		fmt.Fprintf(&b, "  s%d: {path: /x, pagnate: {}}\n", i)
	}
	_, err := ParseConnector("many.yaml", []byte(b.String()))
	var ps Problems
	if !errors.As(err, &ps) || len(ps) < 500 {
		t.Fatalf("error = %v", err)
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != MaxShown+1 || !strings.HasPrefix(lines[0], "many.yaml:4:") {
		t.Fatalf("%d lines, first %q", len(lines), lines[0])
	}
	if want := fmt.Sprintf("… and %d more problems (%d in all); fix these first", len(ps)-MaxShown, len(ps)); lines[MaxShown] != want {
		t.Fatalf("last line %q, want %q", lines[MaxShown], want)
	}
}
