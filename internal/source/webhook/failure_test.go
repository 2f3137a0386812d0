package webhook_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/engine"
	"github.com/ferry-dev/ferry/internal/enginetest"
	"github.com/ferry-dev/ferry/internal/source/webhook"
	"github.com/ferry-dev/ferry/internal/source/webhook/webhooktest"
	"github.com/ferry-dev/ferry/internal/spec"
)

// proxy forwards TCP connections to a server and can be taken down (every
// connection cut, new ones refused) and brought back on the same port.
type proxy struct {
	target string
	addr   string
	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]bool
}

func newProxy(t *testing.T, target string) *proxy {
	p := &proxy{target: target, conns: map[net.Conn]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(p.down)
	return p
}

func (p *proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns[c], p.conns[up] = true, true
			p.mu.Unlock()
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
}

func (p *proxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	p.conns = map[net.Conn]bool{}
}

func (p *proxy) up(t *testing.T) {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	p.serve(ln)
}

// burst posts n signed events from several senders at once and returns
// the ids answered 200.
func burst(base string, from, n int) []string { return burstCounting(base, from, n, &atomic.Int64{}) }

// burstCounting is burst, counting the acknowledged deliveries in ok as
// they come.
func burstCounting(base string, from, n int, ok *atomic.Int64) []string {
	var mu sync.Mutex
	var acked []string
	var wg sync.WaitGroup
	next := atomic.Int64{}
	next.Store(int64(from))
	client := &http.Client{Timeout: 30 * time.Second}
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= from+n {
					return
				}
				id := fmt.Sprintf("evt_%06d", i)
				body := []byte(fmt.Sprintf(`{"id":%q,"type":"payment.succeeded","data":{"object":{"id":"pay_%d","amount":%d}}}`, id, i, i))
				req, err := http.NewRequest("POST", base+"/hooks/pay", strings.NewReader(string(body)))
				if err != nil {
					return
				}
				req.Header = webhooktest.Stripe(time.Now(), body, secret)
				resp, err := client.Do(req)
				if err != nil {
					continue // cut off: not acknowledged
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					mu.Lock()
					acked = append(acked, id)
					mu.Unlock()
					ok.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return acked
}

const payConnector = "name: pay\ntype: webhook\nconfig:\n  secret: {secret: true}\npath: /hooks/pay\nqueue: {dir: queue, batch_size: 50}\nverify: {preset: stripe, secrets: [\"{{ config.secret }}\"]}\nstreams:\n  payments: {}\n"

// exactlyOnce checks that every acknowledged event is a row, once.
func exactlyOnce(t *testing.T, p *enginetest.Pipeline, acked []string) {
	t.Helper()
	rows := p.Rows("payments", webhook.ColID)
	count := map[string]int{}
	for _, r := range rows {
		count[r]++
	}
	for id, n := range count {
		if n != 1 {
			t.Errorf("event %s is %d rows", id, n)
		}
	}
	for _, id := range acked {
		if count[id] != 1 {
			t.Errorf("acknowledged event %s is %d rows", id, count[id])
		}
	}
}

// TestDestinationDown: PostgreSQL goes away in the middle of a burst;
// deliveries keep being accepted into the queue, the engine retries for
// longer than RetryFor (the stream is unbounded), and once PostgreSQL is
// back every acknowledged event lands exactly once (append mode, so a
// double would show).
func TestDestinationDown(t *testing.T) {
	p := enginetest.New(t, enginetest.Config{Connector: payConnector, Dest: enginetest.Postgres,
		Pipeline: "connector: connector.yaml\nmode: incremental_append\nconfig: {secret: \"${S}\"}\nsync: {checkpoint_interval: 20ms}\n", Env: map[string]string{"S": secret}})
	u, _ := url.Parse(p.Target().URL)
	px := newProxy(t, u.Host)
	real := p.Target().URL
	u.Host = px.addr
	p.SetEnv(enginetest.URLEnv, u.String())
	// An unbounded stream retries past RetryFor: it never gives up while
	// its run goes on.
	rc := start(t, p, enginetest.Options{Engine: engine.Options{RetryFor: 500 * time.Millisecond}})
	acked := burst(rc.srv.URL, 0, 300)
	rc.applied(int64(len(acked)))
	px.down()
	more := burst(rc.srv.URL, 300, 600)
	if len(more) != 600 {
		t.Fatalf("%d of 600 deliveries were acknowledged while the destination was down", len(more))
	}
	// The engine notices and retries the stream from its last commit.
	deadline := time.Now().Add(60 * time.Second)
	for rc.run.Engine().Progress()[0].Retries.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the engine never retried; logs:\n%s", p.Logs())
		}
		time.Sleep(10 * time.Millisecond) // polling the run's progress
	}
	if st := rc.src.Stats(); st.QueueDepth == 0 || st.Applied >= int64(len(acked)+len(more)) {
		t.Fatalf("nothing waits in the queue while the destination is down: %+v", st)
	}
	px.up(t)
	acked = append(acked, more...)
	rc.applied(int64(len(acked)))
	rc.stop()
	p.SetEnv(enginetest.URLEnv, real)
	exactlyOnce(t, p, acked)
	if n := len(p.Rows("payments", webhook.ColID)); n != len(acked) {
		t.Fatalf("%d rows, %d acknowledged", n, len(acked))
	}
}

const helperEnv = "FERRY_WEBHOOK_TEST_HELPER"

// TestHelperProcess is the receiver the SIGKILL test runs as a
// subprocess: the pipeline in $FERRY_WEBHOOK_TEST_HELPER, its routes
// served on a loopback port written to addr.txt.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv(helperEnv)
	if dir == "" {
		t.Skip("run by TestKilledReceiver")
	}
	sp, err := spec.LoadPipeline(filepath.Join(dir, "pipeline.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := sp.Resolve(engine.Env)
	if err != nil {
		t.Fatal(err)
	}
	run, err := engine.New(context.Background(), engine.Options{Pipeline: sp, Resolved: r})
	if err != nil {
		t.Fatal(err)
	}
	src := run.Source().(*webhook.Source)
	mux := http.NewServeMux()
	for path, h := range src.Routes() {
		mux.Handle(path, h)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go http.Serve(ln, mux)
	os.WriteFile(filepath.Join(dir, "addr.tmp"), []byte(ln.Addr().String()), 0o644)
	os.Rename(filepath.Join(dir, "addr.tmp"), filepath.Join(dir, "addr.txt"))
	_, err = run.Execute(context.Background())
	t.Fatalf("the run ended: %v", err)
}

func startHelper(t *testing.T, dir string) (*exec.Cmd, string) {
	t.Helper()
	os.Remove(filepath.Join(dir, "addr.txt"))
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.v")
	cmd.Env = append(os.Environ(), helperEnv+"="+dir, "S="+secret)
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	var logMu sync.Mutex
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			logMu.Lock()
			logs.WriteString(sc.Text() + "\n")
			logMu.Unlock()
		}
	}()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(60 * time.Second)
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "addr.txt")); err == nil {
			return cmd, "http://" + string(b)
		}
		if time.Now().After(deadline) {
			logMu.Lock()
			defer logMu.Unlock()
			t.Fatalf("the receiver did not start:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond) // polling for the file the child writes
	}
}

// TestKilledReceiver: the receiver is killed with SIGKILL in the middle
// of a burst; after a restart, every event it acknowledged is in the
// table exactly once (append mode into SQLite), the ones cut off at most
// once.
func TestKilledReceiver(t *testing.T) {
	if os.Getenv(helperEnv) != "" {
		t.Skip("in the helper")
	}
	p := enginetest.New(t, enginetest.Config{Connector: payConnector,
		Pipeline: "connector: connector.yaml\nmode: incremental_append\nconfig: {secret: \"${S}\"}\nsync: {checkpoint_interval: 50ms}\n", Env: map[string]string{"S": secret}})
	cmd, base := startHelper(t, p.Dir())
	var acked []string
	done := make(chan []string)
	var ok atomic.Int64
	go func() { done <- burstCounting(base, 0, 3000, &ok) }()
	// Kill it once some deliveries are acknowledged, while others are in
	// flight.
	deadline := time.Now().Add(60 * time.Second)
	for {
		if ok.Load() >= 300 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond) // polling the queue the child writes
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	acked = <-done
	if len(acked) == 0 || len(acked) >= 3000 {
		t.Fatalf("%d deliveries acknowledged before the kill: the kill did not land mid-burst", len(acked))
	}
	_, base = startHelper(t, p.Dir())
	// The table may also hold events stored but cut off before their
	// answer: wait for each acknowledged one.
	landed := func(ids []string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			have := map[string]bool{}
			for _, r := range p.Rows("payments", webhook.ColID) {
				have[r] = true
			}
			missing := 0
			for _, id := range ids {
				if !have[id] {
					missing++
				}
			}
			if missing == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d acknowledged events are not in the table", missing, len(ids))
			}
			time.Sleep(20 * time.Millisecond) // polling the child's table
		}
	}
	landed(acked)
	// New deliveries are taken too.
	more := burst(base, 5000, 50)
	acked = append(acked, more...)
	landed(acked)
	exactlyOnce(t, p, acked)
}
