//go:build unix

package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ferry-dev/ferry/internal/cli"
)

// Environment variables the pipeline reads; they are set for ferry only.
const (
	apiURLEnv   = "FERRY_BENCH_API_URL"
	apiTokenEnv = "FERRY_BENCH_API_TOKEN"
)

// connectorYAML describes the benchmark API the way a user would: bearer
// auth, cursor pagination with has_more, and an updated_since filter.
const connectorYAML = `# The benchmark's API (bench/api.go): accounts in pages of 1000.
name: benchapi
base_url: "{{ config.base_url }}"
config:
  base_url: {description: Where the benchmark API listens.}
  token: {description: Bearer token., secret: true}
auth: {type: bearer, token: "{{ config.token }}"}
streams:
  accounts:
    path: /accounts
    records: data
    primary_key: id
    cursor: updated_at
    incremental:
      param: updated_since
      start: "2024-01-01T00:00:00Z"
    paginate:
      type: cursor
      cursor_path: next_cursor
      param: cursor
      has_more_path: has_more
      size: 1000
      size_param: limit
`

// pipelineYAML binds the connector to a destination; checkpointing keeps
// its defaults (50000 rows or 5s).
const pipelineYAML = `name: bench
connector: bench.connector.yaml
config:
  base_url: ${%s}
  token: ${%s}
destination: %s
streams:
  accounts: {mode: %s}
`

// scenario is one benchmark case: a destination, a sync mode, a size.
type scenario struct {
	dest string // sqlite, postgres or mysql
	mode string // append or dedup
	n    int
}

// syncMode returns the pipeline's name for the mode.
func (s scenario) syncMode() string {
	if s.mode == "append" {
		return "incremental_append"
	}
	return "incremental_dedup"
}

func (s scenario) String() string { return fmt.Sprintf("%s/%s/%d", s.dest, s.mode, s.n) }

// result is one run of a scenario.
type result struct {
	scenario
	run   int
	wall  time.Duration // start of ferry to its exit
	cpu   time.Duration // ferry's user + system CPU time
	rssKB int64         // ferry's peak resident set (ru_maxrss), KiB
	calib time.Duration // the CPU calibration loop just before the run

	// apiCores, dbCores and otherCores are the CPU (cores) the benchmark's
	// API, the local database server and the rest of the machine used
	// during the run; -1 when unknown.
	apiCores, dbCores, otherCores float64
	// settled reports that the machine was quiet when the run started.
	settled bool

	tally tally
	dir   string // the run's directory (kept with -keep)
	err   error  // ferry failed or the rows are wrong
	// inProcess marks profiling runs: ferry ran inside this process, so
	// rssKB is this process's peak.
	inProcess bool
}

// rate returns records per second.
func (r *result) rate() float64 {
	if r.wall <= 0 {
		return 0
	}
	return float64(r.n) / r.wall.Seconds()
}

// runner holds what every run needs.
type runner struct {
	ferry      string   // the binary under test
	data       *dataset // nil in profiling mode
	keep       bool
	verbose    bool
	profileDir string // non-empty: run ferry in-process under pprof
	trace      bool   // with profileDir: also write an execution trace
	// settle is how long to wait for a quiet machine before each run, and
	// settleCores the CPU other processes may use for it to count as quiet.
	settle      time.Duration
	settleCores float64
}

func randomToken() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// buildFerry builds ./cmd/ferry as a static binary into dir.
func buildFerry(dir string) (string, error) {
	bin := filepath.Join(dir, "ferry")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/ferry-dev/ferry/cmd/ferry")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/ferry: %w", err)
	}
	return bin, nil
}

// run performs one run of a scenario on a fresh target and verifies what
// landed.
func (rn *runner) run(ctx context.Context, sc scenario, run int) (res result) {
	res = result{scenario: sc, run: run}
	dir, err := os.MkdirTemp("", "ferry-bench-"+sc.dest+"-")
	if err != nil {
		res.err = err
		return res
	}
	res.dir = dir
	if !rn.keep {
		defer os.RemoveAll(dir)
	}
	tgt, err := newTarget(ctx, sc.dest, dir)
	if err != nil {
		res.err = err
		return res
	}
	if !rn.keep {
		defer func() {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			if err := tgt.drop(dctx); err != nil && res.err == nil {
				res.err = fmt.Errorf("cleaning up: %w", err)
			}
		}()
	}
	pipeline := filepath.Join(dir, "bench.pipeline.yaml")
	if err := os.WriteFile(filepath.Join(dir, "bench.connector.yaml"), []byte(connectorYAML), 0o644); err != nil {
		res.err = err
		return res
	}
	p := fmt.Sprintf(pipelineYAML, apiURLEnv, apiTokenEnv, tgt.destination(), sc.syncMode())
	if err := os.WriteFile(pipeline, []byte(p), 0o644); err != nil {
		res.err = err
		return res
	}

	token := randomToken()
	var apiURL string
	if rn.profileDir == "" {
		u, stop, err := startAPI(rn.data, sc.n, token)
		if err != nil {
			res.err = err
			return res
		}
		defer stop()
		apiURL = u
	} else {
		// Out of process, so that the profile holds ferry alone.
		u, stop, err := startAPIProcess(sc.n, token)
		if err != nil {
			res.err = err
			return res
		}
		defer stop()
		apiURL = u
	}
	env := map[string]string{apiURLEnv: apiURL, apiTokenEnv: token, destURLEnv: tgt.url()}

	res.settled = true
	if rn.settle > 0 {
		waited, ok := settle(ctx, rn.settle, rn.settleCores)
		res.settled = ok
		if rn.verbose {
			fmt.Fprintf(os.Stderr, "waited %s for a quiet machine (quiet: %v)\n", waited.Round(time.Second), ok)
		}
	}
	res.calib = calibrate()
	var out []byte
	probe := startProbe()
	if rn.profileDir == "" {
		out, err = rn.runFerry(ctx, pipeline, env, &res)
		u := probe.stop(res.cpu)
		res.apiCores, res.dbCores, res.otherCores = u.self, u.db, u.others
	} else {
		out, err = rn.runInProcess(pipeline, env, sc, run, &res)
		// ferry's CPU is this process's; the API's is in "others" here.
		u := probe.stop(0)
		res.apiCores, res.dbCores, res.otherCores = -1, u.db, u.others
	}
	if sc.dest == "sqlite" {
		res.dbCores = -1 // SQLite runs inside ferry
	}
	if rn.verbose || err != nil {
		os.Stderr.Write(out)
	}
	if err != nil {
		res.err = fmt.Errorf("ferry run: %w", err)
		return res
	}
	if res.tally, err = tgt.count(ctx); err != nil {
		res.err = fmt.Errorf("counting rows: %w", err)
		return res
	}
	if err := res.tally.check(sc.n); err != nil {
		res.err = err
	}
	return res
}

// runFerry runs `ferry run --quiet` as a subprocess, through this
// program in launcher mode (see launch), and records ferry's wall time,
// CPU time and peak RSS. It returns ferry's output.
func (rn *runner) runFerry(ctx context.Context, pipeline string, env map[string]string, res *result) ([]byte, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	report := filepath.Join(filepath.Dir(pipeline), "launch.json")
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, self, "-launch", report, "--", rn.ferry, "run", "--quiet", pipeline)
	cmd.Dir = filepath.Dir(pipeline)
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = childAttr()
	runErr := cmd.Run()
	raw, err := os.ReadFile(report)
	if err != nil {
		return out.Bytes(), errors.Join(runErr, fmt.Errorf("the launcher wrote no report: %w", err))
	}
	var m measurement
	if err := json.Unmarshal(raw, &m); err != nil {
		return out.Bytes(), err
	}
	res.wall, res.cpu, res.rssKB = m.Wall, m.CPU, m.MaxRSSKB
	if rn.verbose {
		fmt.Fprintf(&out, "launcher: ferry exit %d, ferry maxrss %d KiB, launcher's own VmHWM %d KiB (the floor of the measurement)\n", m.ExitCode, m.MaxRSSKB, m.LauncherRSSKB)
	}
	if m.ExitCode != 0 {
		return out.Bytes(), fmt.Errorf("exit status %d", m.ExitCode)
	}
	return out.Bytes(), runErr
}

// measurement is what the launcher reports about one ferry process.
type measurement struct {
	Wall          time.Duration `json:"wall"`
	CPU           time.Duration `json:"cpu"` // user + system
	MaxRSSKB      int64         `json:"maxrss_kib"`
	LauncherRSSKB int64         `json:"launcher_vmhwm_kib"`
	ExitCode      int           `json:"exit_code"`
}

// launch runs args as a child process, passing its output through, and
// writes a measurement of it as JSON to report. It exists because Linux
// charges a child's ru_maxrss with the memory of the process it was
// forked from: os/exec forks with CLONE_VM|CLONE_VFORK and exec records the
// parent's resident high-water mark into the child's maxrss. Measured
// from the benchmark itself, which holds every page of the API in memory,
// ferry would seem to use hundreds of megabytes; started from this small
// launcher, the floor is the launcher's own VmHWM (printed with -v), a few
// megabytes. (/usr/bin/time -v agrees with the result.)
func launch(report string, args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "bench -launch: no command")
		return 2
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = childAttr()
	floor := vmHWM("/proc/self/status")
	start := time.Now()
	err := cmd.Run()
	m := measurement{Wall: time.Since(start), LauncherRSSKB: floor}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		fmt.Fprintf(os.Stderr, "bench -launch: %v\n", err)
		return 1
	}
	ps := cmd.ProcessState
	m.ExitCode = ps.ExitCode()
	m.CPU = ps.UserTime() + ps.SystemTime()
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		m.MaxRSSKB = maxrssKB(ru)
	}
	raw, _ := json.Marshal(m)
	if err := os.WriteFile(report, raw, 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "bench -launch: %v\n", err)
		return 1
	}
	return 0
}

// runInProcess runs ferry's command line inside this process with a CPU
// profile (and with -trace an execution trace) around it, and writes an
// allocation profile after. Files are named DEST-MODE-N-runR.{cpu.pprof,
// allocs.pprof,trace} in the profile directory.
func (rn *runner) runInProcess(pipeline string, env map[string]string, sc scenario, run int, res *result) ([]byte, error) {
	res.inProcess = true
	for k, v := range env {
		os.Setenv(k, v)
	}
	base := filepath.Join(rn.profileDir, fmt.Sprintf("%s-%s-%d-run%d", sc.dest, sc.mode, sc.n, run))
	f, err := os.Create(base + ".cpu.pprof")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out bytes.Buffer
	wd, _ := os.Getwd()
	if err := os.Chdir(filepath.Dir(pipeline)); err != nil {
		return nil, err
	}
	defer os.Chdir(wd)
	runtime.GC()
	var before syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	if err := pprof.StartCPUProfile(f); err != nil {
		return nil, err
	}
	if rn.trace {
		tf, err := os.Create(base + ".trace")
		if err != nil {
			return nil, err
		}
		defer tf.Close()
		if err := trace.Start(tf); err != nil {
			return nil, err
		}
	}
	start := time.Now()
	code := cli.Main([]string{"run", "--quiet", pipeline}, &out, &out)
	res.wall = time.Since(start)
	pprof.StopCPUProfile()
	if rn.trace {
		trace.Stop()
	}
	var after syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	res.cpu = time.Duration(after.Utime.Nano()+after.Stime.Nano()-before.Utime.Nano()-before.Stime.Nano()) * time.Nanosecond
	res.rssKB = maxrssKB(&after)
	if err := f.Close(); err != nil {
		return out.Bytes(), err
	}
	mf, err := os.Create(base + ".allocs.pprof")
	if err != nil {
		return out.Bytes(), err
	}
	defer mf.Close()
	if err := pprof.Lookup("allocs").WriteTo(mf, 0); err != nil {
		return out.Bytes(), err
	}
	if code != 0 {
		return out.Bytes(), fmt.Errorf("exit status %d", code)
	}
	return out.Bytes(), mf.Close()
}

// startAPIProcess starts this program with -serve-only and returns the
// URL it serves.
func startAPIProcess(n int, token string) (string, func(), error) {
	self, err := os.Executable()
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command(self, "-serve-only", "-n", strconv.Itoa(n), "-token", token)
	cmd.Stderr = io.Discard
	cmd.SysProcAttr = childAttr()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		stop()
		return "", nil, fmt.Errorf("the API process did not start: %w", err)
	}
	url, _, _ := strings.Cut(strings.TrimSpace(line), " ")
	if !strings.HasPrefix(url, "http://") {
		stop()
		return "", nil, errors.New("the API process printed no URL")
	}
	return url, stop, nil
}

// vmHWM reads the VmHWM line (peak RSS of the current address space,
// KiB) of a /proc/PID/status file; 0 when unknown.
func vmHWM(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		var kb int64
		if _, err := fmt.Sscanf(l, "VmHWM: %d kB", &kb); err == nil {
			return kb
		}
	}
	return 0
}

// maxrssKB converts ru_maxrss to KiB: Linux reports KiB, macOS bytes.
func maxrssKB(ru *syscall.Rusage) int64 {
	if runtime.GOOS == "darwin" {
		return int64(ru.Maxrss) / 1024
	}
	return int64(ru.Maxrss)
}

// calibrate times a fixed CPU-bound loop (best of three), to show which
// speed phase the machine was in when a run started: compare runs only
// when their calibration times are close.
func calibrate() time.Duration {
	best := time.Duration(1<<63 - 1)
	for range 3 {
		start := time.Now()
		x := uint64(0)
		for i := range uint64(1 << 22) {
			x += mix(i)
		}
		runtime.KeepAlive(x)
		best = min(best, time.Since(start))
	}
	return best
}
