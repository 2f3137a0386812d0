package demo_test

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/redact"

	_ "github.com/ferry-dev/ferry/internal/components/all"
	"github.com/ferry-dev/ferry/internal/demo"
	"github.com/ferry-dev/ferry/internal/demo/shopapi"
	"github.com/ferry-dev/ferry/internal/engine"
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
	dir := t.TempDir()
	p, err := demo.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := p.Resolve(srv.Lookup(""))
	if err != nil {
		t.Fatal(err)
	}
	for run := 1; run <= 2; run++ {
		e, err := engine.New(context.Background(), engine.Options{Pipeline: p, Resolved: r, Redactor: redact.New()})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.Execute(context.Background()); err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		check := func(table string, want []string) {
			t.Helper()
			_, rows, err := e.Destination().(dest.Querier).Query(context.Background(), "SELECT id FROM "+table)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, row := range rows {
				got = append(got, row[0])
			}
			slices.Sort(got)
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
		e.Close()
	}
	if calls.Load() < 100 {
		t.Fatalf("the clock moved only %d times: no change happened during the sync", calls.Load())
	}
}
