//go:build linux

// Command webhook measures the webhook source end to end: signed Stripe
// deliveries posted at a fixed rate by vegeta (as a library, in this
// process) to a receiver in another process (this program re-executed
// with -role serve: the webhook source's Routes on net/http, the pipeline
// running in the engine, as ferry serve runs them), which verifies each
// signature, stores it durably (group commit) before answering 200, and
// applies the events to PostgreSQL or SQLite. After the attack it counts
// the rows: every acknowledged event must be there exactly once (append
// mode, so a double would show). The ceiling is a plain net/http handler
// in the same kind of subprocess that only verifies the signature and
// answers 200.
//
//	go run ./bench/webhook                       # ceiling, PostgreSQL, SQLite: 10,000/s for 60 s each
//	go run ./bench/webhook -only postgres -rate 12000 -for 30s
//	go run ./bench/webhook -only ceiling -rate 0  # as fast as it goes
//
// PostgreSQL is FERRY_TEST_POSTGRES_URL (default
// postgres://postgres@127.0.0.1:5432/test), in a schema made for the run
// and dropped after. See bench/README.md.
package main

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	vegeta "github.com/tsenart/vegeta/v12/lib"
	_ "modernc.org/sqlite"

	_ "github.com/ferry-dev/ferry/internal/components/all"
	"github.com/ferry-dev/ferry/internal/engine"
	"github.com/ferry-dev/ferry/internal/source/webhook"
	"github.com/ferry-dev/ferry/internal/source/webhook/verify"
	"github.com/ferry-dev/ferry/internal/spec"
)

var (
	only     = flag.String("only", "", "one of: ceiling, postgres, sqlite (default all three)")
	rate     = flag.Int("rate", 10000, "requests per second (0: as fast as the workers go)")
	dur      = flag.Duration("for", 60*time.Second, "length of each attack")
	workers  = flag.Uint64("workers", 256, "vegeta's workers (connections)")
	role     = flag.String("role", "", "internal: serve or ceiling, in the receiver subprocess")
	dir      = flag.String("dir", "", "internal: the receiver's pipeline directory")
	profile  = flag.String("cpuprofile", "", "write the receiver's CPU profile here (serve role)")
	pageSize = flag.Int("batch", 2000, "the queue's batch_size (events per page applied)")
)

const secret = "whsec-bench-signing-secret"

func main() {
	flag.Parse()
	var err error
	switch *role {
	case "serve":
		err = serve(*dir, false)
	case "ceiling":
		err = serve(*dir, true)
	default:
		err = bench()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "webhook bench:", err)
		os.Exit(1)
	}
}

const connector = `name: pay
type: webhook
config:
  secret: {secret: true}
path: /hooks/pay
verify: {preset: stripe, secrets: ["{{ config.secret }}"]}
queue: {dir: queue, batch_size: %d}
streams:
  payments: {}
`

// serve is the receiver subprocess: it prints its address, then serves
// until SIGTERM.
func serve(dir string, ceiling bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if *profile != "" {
		f, err := os.Create(*profile)
		if err != nil {
			return err
		}
		startProfile(f)
		defer stopProfile(f)
	}
	var h http.Handler
	var run *engine.Run
	if ceiling {
		v, err := verify.New(verify.Config{Preset: "stripe", Secrets: []string{secret}})
		if err != nil {
			return err
		}
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body := make([]byte, 0, r.ContentLength+1)
			buf := make([]byte, 4096)
			for {
				n, err := r.Body.Read(buf)
				body = append(body, buf[:n]...)
				if err != nil {
					break
				}
			}
			if v.Verify(r.Header, body, time.Now()) != nil {
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			w.Write([]byte(`{"status":"accepted"}`))
		})
	} else {
		sp, err := spec.LoadPipeline(filepath.Join(dir, "pipeline.yaml"))
		if err != nil {
			return err
		}
		res, err := sp.Resolve(engine.Env)
		if err != nil {
			return err
		}
		run, err = engine.New(context.Background(), engine.Options{Pipeline: sp, Resolved: res, RetryFor: time.Hour})
		if err != nil {
			return err
		}
		mux := http.NewServeMux()
		for p, hh := range run.Source().(*webhook.Source).Routes() {
			mux.Handle(p, hh)
		}
		h = mux
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	go srv.Serve(ln)
	fmt.Println(ln.Addr().String())
	if run != nil {
		done := make(chan error, 1)
		go func() { _, err := run.Execute(ctx); done <- err }()
		<-ctx.Done()
		srv.Close()
		err := <-done
		run.Close()
		if err != nil && ctx.Err() == nil {
			return err
		}
		return nil
	}
	<-ctx.Done()
	return srv.Close()
}

// receiver is a running receiver subprocess.
type receiver struct {
	cmd  *exec.Cmd
	addr string
	rss  []int64 // KB, sampled every second
	stop chan struct{}
	done chan struct{}
}

func startReceiver(role, dir string, env []string) (*receiver, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := []string{"-role", role, "-dir", dir}
	if *profile != "" && role == "serve" {
		args = append(args, "-cpuprofile", *profile+"."+filepath.Base(dir))
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("the receiver did not start: %v", err)
	}
	r := &receiver{cmd: cmd, addr: strings.TrimSpace(line), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-r.stop:
				return
			case <-t.C:
				r.rss = append(r.rss, rssKB(cmd.Process.Pid))
			}
		}
	}()
	return r, nil
}

func (r *receiver) close() error {
	close(r.stop)
	<-r.done
	r.cmd.Process.Signal(syscall.SIGTERM)
	return r.cmd.Wait()
}

// cpuTime is a process's user + system CPU time so far.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+k) * 10 * time.Millisecond // USER_HZ is 100
}

func rssKB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// targeter makes signed Stripe deliveries with ids evt_0, evt_1, … in
// the order vegeta asks for them.
func targeter(url string, next *atomic.Int64) vegeta.Targeter {
	return func(t *vegeta.Target) error {
		i := next.Add(1) - 1
		body := fmt.Appendf(nil, `{"id":"evt_%d","object":"event","type":"payment_intent.succeeded","created":%d,"data":{"object":{"id":"pi_%d","object":"payment_intent","amount":%d,"currency":"eur","status":"succeeded","customer":"cus_%d","livemode":false,"metadata":{"order":"%d"}}}}`,
			i, time.Now().Unix(), i, 100+i%9000, i%5000, i)
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		m := hmac.New(sha256.New, []byte(secret))
		m.Write([]byte(ts))
		m.Write([]byte("."))
		m.Write(body)
		t.Method, t.URL, t.Body = "POST", url, body
		t.Header = http.Header{"Stripe-Signature": {"t=" + ts + ",v1=" + hex.EncodeToString(m.Sum(nil))}, "Content-Type": {"application/json"}}
		return nil
	}
}

// attackResult is what one attack measured.
type attackResult struct {
	sent, ok    int64
	codes       map[string]int
	rate        float64 // successful responses per second
	p50, p99    time.Duration
	p999, max   time.Duration
	elapsed     time.Duration
	cpuLoadAvg  string
	errorSample string
}

func attack(url string) attackResult {
	var next atomic.Int64
	r := vegeta.Rate{Freq: *rate, Per: time.Second}
	opts := []func(*vegeta.Attacker){vegeta.Workers(*workers), vegeta.MaxWorkers(*workers), vegeta.KeepAlive(true), vegeta.Connections(int(*workers)), vegeta.Timeout(30 * time.Second), vegeta.MaxBody(256)}
	if *rate == 0 {
		r = vegeta.Rate{}
	}
	atk := vegeta.NewAttacker(opts...)
	var m vegeta.Metrics
	res := attackResult{codes: map[string]int{}}
	start := time.Now()
	for x := range atk.Attack(targeter(url, &next), r, *dur, "webhooks") {
		m.Add(x)
		res.sent++
		if x.Code == 200 {
			res.ok++
		} else if res.errorSample == "" {
			res.errorSample = fmt.Sprintf("%d %s", x.Code, x.Error)
		}
	}
	m.Close()
	res.elapsed = time.Since(start)
	for c, n := range m.StatusCodes {
		res.codes[c] = n
	}
	res.rate = m.Throughput
	res.p50, res.p99, res.max = m.Latencies.P50, m.Latencies.P99, m.Latencies.Max
	res.p999 = m.Latencies.Quantile(0.999)
	b, _ := os.ReadFile("/proc/loadavg")
	res.cpuLoadAvg = strings.Join(strings.Fields(string(b))[:3], " ")
	return res
}

func (a attackResult) String() string {
	codes := make([]string, 0, len(a.codes))
	for c, n := range a.codes {
		codes = append(codes, fmt.Sprintf("%s×%d", c, n))
	}
	sort.Strings(codes)
	s := fmt.Sprintf("sent %d in %s, 200 for %d (%.0f/s); latency p50 %s, p99 %s, p99.9 %s, max %s; codes %s; load average %s",
		a.sent, a.elapsed.Round(time.Millisecond), a.ok, a.rate, a.p50.Round(10*time.Microsecond), a.p99.Round(10*time.Microsecond), a.p999.Round(10*time.Microsecond), a.max.Round(time.Millisecond), strings.Join(codes, " "), a.cpuLoadAvg)
	if a.errorSample != "" {
		s += "; first failure: " + a.errorSample
	}
	return s
}

func rssSummary(rss []int64) string {
	if len(rss) < 4 {
		return fmt.Sprint(rss)
	}
	q := len(rss) / 4
	avg := func(x []int64) int64 {
		var s int64
		for _, v := range x {
			s += v
		}
		return s / int64(len(x))
	}
	lo, hi := rss[0], rss[0]
	for _, v := range rss {
		lo, hi = min(lo, v), max(hi, v)
	}
	return fmt.Sprintf("RSS %d–%d MB; second quarter avg %d MB, last quarter avg %d MB", lo>>10, hi>>10, avg(rss[q:2*q])>>10, avg(rss[3*q:])>>10)
}

func bench() error {
	fmt.Printf("webhook bench: %d requests/s for %s, %d workers; GOMAXPROCS %d; %s\n", *rate, *dur, *workers, runtime.GOMAXPROCS(0), time.Now().UTC().Format(time.RFC3339))
	for _, target := range []string{"ceiling", "postgres", "sqlite"} {
		if *only != "" && *only != target {
			continue
		}
		if err := benchOne(target); err != nil {
			return fmt.Errorf("%s: %w", target, err)
		}
	}
	return nil
}

func benchOne(target string) error {
	dir, err := os.MkdirTemp("", "ferry-webhook-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	env := []string{"BENCH_SECRET=" + secret}
	var count func() (rows, distinct int64, err error)
	role := "serve"
	switch target {
	case "ceiling":
		role = "ceiling"
	case "postgres":
		base := os.Getenv("FERRY_TEST_POSTGRES_URL")
		if base == "" {
			base = "postgres://postgres@127.0.0.1:5432/test"
		}
		schema := fmt.Sprintf("bench_webhook_%d", time.Now().UnixNano())
		conn, err := pgx.Connect(context.Background(), base)
		if err != nil {
			return err
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(), "CREATE SCHEMA "+schema); err != nil {
			return err
		}
		defer conn.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		env = append(env, "BENCH_PG_URL="+base)
		os.WriteFile(filepath.Join(dir, "pipeline.yaml"), []byte("name: webhook_bench\nconnector: connector.yaml\nmode: incremental_append\nconfig: {secret: \"${BENCH_SECRET}\"}\ndestination: {type: postgres, url: \"${BENCH_PG_URL}\", schema: "+schema+"}\nsync: {checkpoint_interval: 200ms}\n"), 0o644)
		count = func() (int64, int64, error) {
			var n, d int64
			err := conn.QueryRow(context.Background(), "SELECT count(*), count(DISTINCT _webhook_id) FROM "+schema+".payments").Scan(&n, &d)
			return n, d, err
		}
	case "sqlite":
		os.WriteFile(filepath.Join(dir, "pipeline.yaml"), []byte("name: webhook_bench\nconnector: connector.yaml\nmode: incremental_append\nconfig: {secret: \"${BENCH_SECRET}\"}\ndestination: {type: sqlite, path: out.db}\nsync: {checkpoint_interval: 200ms}\n"), 0o644)
		count = func() (int64, int64, error) {
			db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "out.db")+"?mode=ro&_pragma=busy_timeout(30000)")
			if err != nil {
				return 0, 0, err
			}
			defer db.Close()
			var n, d int64
			err = db.QueryRow("SELECT count(*), count(DISTINCT _webhook_id) FROM payments").Scan(&n, &d)
			return n, d, err
		}
	}
	os.WriteFile(filepath.Join(dir, "connector.yaml"), fmt.Appendf(nil, connector, *pageSize), 0o644)
	rc, err := startReceiver(role, dir, env)
	if err != nil {
		return err
	}
	cpu0 := cpuTime(rc.cmd.Process.Pid)
	res := attack("http://" + rc.addr + "/hooks/pay")
	attackEnd := time.Now()
	line := fmt.Sprintf("%-8s %s", target, res)
	if count != nil {
		// Wait until every acknowledged event is applied (or nothing moves
		// for 30 s).
		var rows, distinct int64
		last, lastAt := int64(-1), time.Now()
		for {
			rows, distinct, err = count()
			if err == nil && rows >= res.ok {
				break
			}
			if rows != last {
				last, lastAt = rows, time.Now()
			}
			if time.Since(lastAt) > 30*time.Second {
				break
			}
			time.Sleep(100 * time.Millisecond) // polling the table
		}
		lag := time.Since(attackEnd)
		verdict := "every acknowledged event present exactly once"
		if rows < res.ok || distinct != rows || rows > res.sent {
			verdict = fmt.Sprintf("MISMATCH: %d acknowledged, %d rows, %d distinct ids", res.ok, rows, distinct)
		}
		line += fmt.Sprintf("\n         rows %d (distinct ids %d) for %d acknowledged, all applied %s after the attack ended: %s", rows, distinct, res.ok, lag.Round(10*time.Millisecond), verdict)
	}
	cpu := cpuTime(rc.cmd.Process.Pid) - cpu0
	line += fmt.Sprintf("\n         receiver CPU %s (%.1f µs per acknowledged request, %.2f cores over the attack); %s", cpu.Round(10*time.Millisecond), float64(cpu.Microseconds())/float64(max(res.ok, 1)), cpu.Seconds()/res.elapsed.Seconds(), rssSummary(rc.rss))
	if err := rc.close(); err != nil {
		line += fmt.Sprintf(" (receiver exit: %v)", err)
	}
	fmt.Println(line)
	return nil
}

func startProfile(f *os.File) { pprof.StartCPUProfile(f) }

func stopProfile(f *os.File) { pprof.StopCPUProfile(); f.Close() }
