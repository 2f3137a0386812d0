package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDemoServeTables: ferry demo --serve syncs the shop, then serves its
// tables at /api/ until interrupted.
func TestDemoServeTables(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo waits out the sample API's rate limits")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb bytes.Buffer
	dir := t.TempDir()
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"demo", "--quiet", "--serve", "--listen", addr, "--db", filepath.Join(dir, "demo.db"), "--serve-dir", filepath.Join(dir, "serve")}, &out, &errb)
	}()
	deadline := time.Now().Add(3 * time.Minute)
	var rows []map[string]any
	for {
		resp, err := http.Get("http://" + addr + "/api/orders?limit=3&select=id,status&order=updated_at.desc")
		if err == nil {
			if resp.StatusCode == http.StatusOK {
				err = json.NewDecoder(resp.Body).Decode(&rows)
				resp.Body.Close()
				if err != nil {
					t.Fatalf("orders: %v", err)
				}
				break
			}
			resp.Body.Close()
		}
		select {
		case code := <-done:
			t.Fatalf("demo --serve ended (%d) before serving:\n%s\n%s", code, out.String(), errb.String())
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("demo --serve did not serve /api/orders within 3 minutes")
		}
	}
	if len(rows) != 3 || len(rows[0]) != 2 || rows[0]["id"] == nil {
		t.Fatalf("/api/orders: %v", rows)
	}
	resp, err := http.Get("http://" + addr + "/api/openapi.json")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("openapi.json: %v %v", resp, err)
	}
	resp.Body.Close()
	cancel()
	select {
	case code := <-done:
		if code != 0 && code != 130 {
			t.Fatalf("demo --serve exited %d:\n%s", code, errb.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("demo --serve did not stop within a minute of the interrupt")
	}
	if !strings.Contains(out.String(), "/api/orders") || !strings.Contains(errb.String(), "tables customers, orders, products") {
		t.Errorf("demo --serve output:\n%s\n%s", out.String(), errb.String())
	}
}
