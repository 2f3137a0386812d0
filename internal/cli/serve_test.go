package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a bytes.Buffer safe for a writer and a reader at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func getJSON(t *testing.T, url string, out any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode
}

// TestDemoServe runs `ferry demo --serve`: after a first sync, the shop
// pipeline is on a schedule of every minute, a triggered run syncs the
// shop, its tables are served at /api/, a webhook
// delivery signed with the printed secret lands in its table, the web UI
// is served, and cancelling the command shuts the server down.
func TestDemoServe(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errs lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"demo", "--serve", "--listen", "127.0.0.1:0", "--db", filepath.Join(dir, "shop.db"), "--serve-dir", filepath.Join(dir, "serve")}, &out, &errs)
	}()
	re := regexp.MustCompile(`Web UI: +(http://[^/\s]+)/ui/`)
	deadline := time.Now().Add(30 * time.Second)
	var base string
	for {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			base = m[1]
			break
		}
		select {
		case code := <-done:
			t.Fatalf("demo --serve exited with %d:\n%s\n%s", code, out.String(), errs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("demo --serve printed no address:\n%s\n%s", out.String(), errs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	secret := regexp.MustCompile(`X-Shop-Token: (\S+)'`).FindStringSubmatch(out.String())
	if secret == nil {
		t.Fatalf("no webhook secret in:\n%s", out.String())
	}
	type stream struct {
		Name         string `json:"name"`
		Kind         string `json:"kind"`
		RecordsTotal *int64 `json:"records_total"`
	}
	type pipeline struct {
		Name     string   `json:"name"`
		Schedule *string  `json:"schedule"`
		NextRun  *string  `json:"next_run_at"`
		Streams  []stream `json:"streams"`
	}
	var list struct{ Pipelines []pipeline }
	eventually := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s\n%s", what, errs.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	eventually("the schedule", func() bool {
		getJSON(t, base+"/v1/pipelines", &list)
		return len(list.Pipelines) == 2 && list.Pipelines[0].NextRun != nil
	})
	if p := list.Pipelines[0]; p.Name != "shop-demo" || p.Schedule == nil || *p.Schedule != "* * * * *" {
		t.Fatalf("shop pipeline = %+v", p)
	}
	if p := list.Pipelines[1]; p.Name != "shop-hooks" || p.Streams[0].Kind != "webhook" {
		t.Fatalf("hooks pipeline = %+v", p)
	}
	// A run of the shop, as the schedule would start it.
	resp, err := http.Post(base+"/v1/pipelines/shop-demo/runs", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	var run struct {
		ID     string  `json:"id"`
		Status string  `json:"status"`
		Ended  *string `json:"ended_at"`
	}
	json.NewDecoder(resp.Body).Decode(&run)
	resp.Body.Close()
	if resp.StatusCode != 202 && resp.StatusCode != 409 { // 409: the schedule fired first
		t.Fatalf("trigger = %d", resp.StatusCode)
	}
	eventually("the shop's orders", func() bool {
		var p pipeline
		getJSON(t, base+"/v1/pipelines/shop-demo", &p)
		for _, s := range p.Streams {
			if s.Name == "orders" && s.RecordsTotal != nil && *s.RecordsTotal > 0 {
				return true
			}
		}
		return false
	})
	// A webhook delivery with the printed secret lands; a wrong one is refused.
	body := `{"id":"evt_1","type":"order.paid","data":{"id":1,"status":"paid"}}`
	hook := func(token string) int {
		req, _ := http.NewRequest("POST", base+"/hooks/shop", strings.NewReader(body))
		req.Header.Set("X-Shop-Token", token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	eventually("the webhook endpoint", func() bool { return hook(secret[1]) == 200 })
	if st := hook("wrong"); st != 401 {
		t.Fatalf("a delivery with a wrong secret = %d", st)
	}
	eventually("the order event", func() bool {
		var p pipeline
		getJSON(t, base+"/v1/pipelines/shop-hooks", &p)
		return p.Streams[0].RecordsTotal != nil && *p.Streams[0].RecordsTotal == 1
	})
	if st := getJSON(t, base+"/ui/", nil); st != 200 {
		t.Fatalf("/ui/ = %d", st)
	}
	// The synced tables are served as a REST API too.
	var orders any
	if st := getJSON(t, base+"/api/orders?limit=2", &orders); st != 200 {
		t.Fatalf("/api/orders = %d %v", st, orders)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("demo --serve exited with %d after cancel:\n%s", code, errs.String())
		}
	case <-time.After(40 * time.Second):
		t.Fatal("demo --serve did not stop")
	}
}
