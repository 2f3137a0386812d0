package demo_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/ferry-dev/ferry/internal/components/all"
	"github.com/ferry-dev/ferry/internal/demo"
	"github.com/ferry-dev/ferry/internal/demo/shopapi"
	"github.com/ferry-dev/ferry/internal/enginetest"
)

// TestDemoWhileDataChanges syncs the demo while the shop's clock runs fast,
// so customers and orders are touched in the middle of the sync, and
// checks that every customer and every order landed, once.
func TestDemoWhileDataChanges(t *testing.T) {
	var calls atomic.Int64
	start := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time {
		// A minute passes every 25 reads of the clock.
		return start.Add(time.Duration(calls.Add(1)/25) * time.Minute)
	}
	srv, err := demo.Start(shopapi.Options{Now: clock, RateLimitEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	// The demo's own files, run as `ferry demo` runs them.
	files := t.TempDir()
	if err := demo.Export(files); err != nil {
		t.Fatal(err)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(files, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	p := enginetest.New(t, enginetest.Config{
		Connector:     read(demo.ConnectorFile),
		ConnectorFile: demo.ConnectorFile,
		Pipeline:      read(demo.PipelineFile),
		Env:           map[string]string{demo.EnvURL: srv.URL, demo.EnvToken: srv.Token},
	})
	for run := 1; run <= 2; run++ {
		if res := p.Run(); res.Err != nil {
			t.Fatalf("run %d: %v", run, res.Err)
		}
		check := func(table string, want []string) {
			t.Helper()
			got := p.Rows(table, "id")
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("run %d: %s has %d rows, the API %d", run, table, len(got), len(want))
			}
		}
		var customers, orders []string
		for _, c := range srv.API.Customers() {
			customers = append(customers, fmt.Sprint(c.ID))
		}
		for _, o := range srv.API.Orders() {
			orders = append(orders, o.ID)
		}
		check("customers", customers)
		check("orders", orders)
	}
	if calls.Load() < 100 {
		t.Fatalf("the clock moved only %d times: no change happened during the sync", calls.Load())
	}
}
