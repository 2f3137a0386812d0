package demo_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
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

// TestDemoIncrementalRequests: the demo's second run asks only for what
// changed: the customers touched since the first run, and the orders of
// those customers (orders follow customers with incremental_dependency),
// instead of every customer's orders.
func TestDemoIncrementalRequests(t *testing.T) {
	var now atomic.Int64
	start := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	now.Store(start.UnixNano())
	srv, err := demo.Start(shopapi.Options{Now: func() time.Time { return time.Unix(0, now.Load()).UTC() }, RateLimitEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
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
	if res := p.Run(); res.Err != nil {
		t.Fatal(res.Err)
	}
	first := srv.API.Stats().Requests
	// Three minutes pass: about 3% of the customers, and their newest
	// orders, are touched.
	now.Store(start.Add(3 * time.Minute).UnixNano())
	if res := p.Run(); res.Err != nil {
		t.Fatal(res.Err)
	}
	second := srv.API.Stats().Requests - first
	touched := 0
	for _, c := range srv.API.Customers() {
		if c.UpdatedAt.After(start) {
			touched++
		}
	}
	// customers: 1 page; products: 2 pages (a full refresh); orders: one
	// request per touched customer.
	if want := int64(1 + 2 + touched); second != want || touched == 0 {
		t.Fatalf("second run made %d requests for %d touched customers, want %d (the first made %d)", second, touched, want, first)
	}
	var orders []string
	for _, o := range srv.API.Orders() {
		orders = append(orders, o.ID)
	}
	slices.Sort(orders)
	if got := p.Rows("orders", "id"); !slices.Equal(got, orders) {
		t.Fatalf("orders has %d rows, the API %d", len(got), len(orders))
	}
	// The touched orders were read again: as many rows carry a touch as
	// the API has touched orders.
	var fresh, apiFresh int
	for _, r := range p.Rows("orders", "updated_at") {
		if strings.HasPrefix(r, "2026-11-22") {
			fresh++
		}
	}
	for _, o := range srv.API.Orders() {
		if !o.UpdatedAt.Before(start) {
			apiFresh++
		}
	}
	if fresh != apiFresh || fresh == 0 {
		t.Fatalf("%d rows of orders carry a touch, the API has %d touched orders", fresh, apiFresh)
	}
}
