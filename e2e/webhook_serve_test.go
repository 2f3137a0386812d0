package e2e_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-dev/ferry/internal/dest/dbtest"
	"github.com/ferry-dev/ferry/internal/source/webhook/webhooktest"
)

const hookSecret = "whsec-e2e-signing-secret"

// ferryServe is `ferry serve` running as a subprocess.
type ferryServe struct {
	cmd  *exec.Cmd
	base string
}

var listening = regexp.MustCompile(`on (http://127\.0\.0\.1:\d+)`)

func startServe(t *testing.T, pipeline string) *ferryServe {
	t.Helper()
	cmd := exec.Command(os.Args[0], "serve", "--listen", "127.0.0.1:0", pipeline)
	cmd.Env = append(os.Environ(), "FERRY_TEST_AS_CLI=1", "HOOK_SECRET="+hookSecret)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	found := make(chan string, 1)
	var logs strings.Builder
	var mu sync.Mutex
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			mu.Lock()
			logs.WriteString(sc.Text() + "\n")
			mu.Unlock()
			if m := listening.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
	}()
	fs := &ferryServe{cmd: cmd}
	select {
	case fs.base = <-found:
	case <-time.After(60 * time.Second):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("ferry serve did not start:\n%s", logs.String())
	}
	// The webhook paths are mounted once the pipeline's continuous run
	// has started.
	deadline := time.Now().Add(60 * time.Second)
	for {
		var got struct {
			Endpoints []struct{ Path string } `json:"endpoints"`
		}
		if getJSON(fs.base+"/v1/webhooks", &got) == nil && len(got.Endpoints) > 0 {
			return fs
		}
		if time.Now().After(deadline) {
			mu.Lock()
			defer mu.Unlock()
			t.Fatalf("the webhook endpoint was never mounted:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond) // polling the server's API
	}
}

func getJSON(url string, out any) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func postHook(base string, typ, id, obj string, secret string) (int, error) {
	body := []byte(fmt.Sprintf(`{"id":%q,"object":"event","type":%q,"data":{"object":%s}}`, id, typ, obj))
	req, _ := http.NewRequest("POST", base+"/hooks/stripe", strings.NewReader(string(body)))
	req.Header = webhooktest.Stripe(time.Now(), body, secret)
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestWebhooksThroughServe: the real command line, `ferry serve`, mounts
// a webhook pipeline's endpoint; signed Stripe deliveries land typed in
// PostgreSQL (a delete event deletes the row), a forged one is refused
// and counted in /v1/webhooks and /metrics; then ferry serve is killed
// with SIGKILL in the middle of a burst and started again, and every
// delivery it acknowledged is in the table exactly once.
func TestWebhooksThroughServe(t *testing.T) {
	base, schema := dbtest.Postgres(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "stripe.connector.yaml"), []byte(`name: stripe_hooks
type: webhook
config:
  secret: {secret: true}
path: /hooks/stripe
verify: {preset: stripe, secrets: ["{{ config.secret }}"]}
streams:
  customers: {events: ["customer.*"]}
  payments: {events: ["payment_intent.*"]}
`), 0o644)
	pipeline := filepath.Join(dir, "stripe.pipeline.yaml")
	os.WriteFile(pipeline, []byte(fmt.Sprintf(`name: %s
connector: stripe.connector.yaml
config: {secret: "${HOOK_SECRET}"}
destination: {type: postgres, url: %q, schema: %s}
streams:
  customers: {mode: incremental_dedup}
  payments: {mode: incremental_append}
sync: {checkpoint_interval: 50ms}
`, schema, base, schema)), 0o644)
	conn, err := pgx.Connect(context.Background(), base)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	query := func(q string) []string {
		rows, err := conn.Query(context.Background(), q)
		if err != nil {
			return nil // the table does not exist yet
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var s string
			rows.Scan(&s)
			out = append(out, s)
		}
		return out
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond) // polling the database
		}
	}

	fs := startServe(t, pipeline)
	for _, d := range []struct{ typ, id, obj string }{
		{"customer.created", "evt_c1", `{"id":"cus_1","email":"ada@example.com","balance":0}`},
		{"customer.created", "evt_c2", `{"id":"cus_2","email":"bob@example.com","balance":250}`},
		{"customer.deleted", "evt_c3", `{"id":"cus_1","deleted":true}`},
	} {
		if code, err := postHook(fs.base, d.typ, d.id, d.obj, hookSecret); code != 200 {
			t.Fatalf("%s: %d %v", d.id, code, err)
		}
	}
	if code, _ := postHook(fs.base, "customer.created", "evt_x", `{"id":"cus_9"}`, "forged"); code != 401 {
		t.Fatalf("a forged delivery: %d", code)
	}
	waitFor("the customers", func() bool {
		got := query("SELECT id || ':' || balance FROM " + schema + ".customers ORDER BY id")
		return fmt.Sprint(got) == "[cus_2:250]"
	})
	var hooks struct {
		Endpoints []struct {
			Path     string `json:"path"`
			Verify   string `json:"verify"`
			Received int64  `json:"received"`
			Rejected int64  `json:"rejected"`
			Applied  int64  `json:"applied"`
			Recent   []struct {
				Verified bool    `json:"verified"`
				Status   int     `json:"status"`
				EventID  *string `json:"event_id"`
			} `json:"recent"`
		} `json:"endpoints"`
	}
	waitFor("the counters", func() bool {
		return getJSON(fs.base+"/v1/webhooks", &hooks) == nil && len(hooks.Endpoints) == 1 && hooks.Endpoints[0].Applied == 3
	})
	ep := hooks.Endpoints[0]
	if ep.Path != "/hooks/stripe" || ep.Verify != "stripe" || ep.Received != 4 || ep.Rejected != 1 || len(ep.Recent) != 4 || ep.Recent[0].Status != 401 || ep.Recent[0].Verified {
		t.Fatalf("/v1/webhooks: %+v", hooks)
	}
	resp, err := http.Get(fs.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{`ferry_webhooks_received_total{pipeline="` + schema + `"} 4`, `ferry_webhooks_rejected_total{pipeline="` + schema + `"} 1`, `ferry_webhook_queue_depth{pipeline="` + schema + `"} 0`} {
		if !strings.Contains(string(metrics), m) {
			t.Errorf("/metrics has no %s", m)
		}
	}

	// A burst, and SIGKILL in the middle of it.
	var okCount atomic.Int64
	var mu sync.Mutex
	var acked []string
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > 3000 {
					return
				}
				id := fmt.Sprintf("evt_p%05d", i)
				code, err := postHook(fs.base, "payment_intent.succeeded", id, fmt.Sprintf(`{"id":"pi_%d","amount":%d}`, i, i), hookSecret)
				if err == nil && code == 200 {
					mu.Lock()
					acked = append(acked, id)
					mu.Unlock()
					okCount.Add(1)
				}
			}
		}()
	}
	deadline := time.Now().Add(60 * time.Second)
	for okCount.Load() < 300 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // polling the burst's progress
	}
	fs.cmd.Process.Signal(syscall.SIGKILL)
	fs.cmd.Wait()
	wg.Wait()
	if len(acked) == 0 || len(acked) >= 3000 {
		t.Fatalf("%d of 3000 acknowledged: the kill did not land mid-burst", len(acked))
	}
	fs = startServe(t, pipeline)
	count := func() map[string]int {
		m := map[string]int{}
		for _, id := range query("SELECT _webhook_id FROM " + schema + ".payments") {
			m[id]++
		}
		return m
	}
	waitFor("every acknowledged payment", func() bool {
		m := count()
		for _, id := range acked {
			if m[id] == 0 {
				return false
			}
		}
		return true
	})
	for id, n := range count() {
		if n != 1 {
			t.Errorf("event %s is %d rows", id, n)
		}
	}
	fs.cmd.Process.Signal(syscall.SIGTERM)
	if err := fs.cmd.Wait(); err != nil {
		t.Errorf("ferry serve after SIGTERM: %v", err)
	}
}
