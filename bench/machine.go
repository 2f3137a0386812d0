//go:build unix

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTick is the unit of /proc/stat (USER_HZ, 100 on every Linux
// platform Go supports).
const clockTick = 10 * time.Millisecond

// cpuTimes are the machine-wide CPU counters of /proc/stat.
type cpuTimes struct {
	busy  time.Duration // user, nice, system, irq, softirq
	steal time.Duration // taken by the hypervisor for other guests
	ok    bool
}

func readCPUTimes() cpuTimes {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return cpuTimes{}
	}
	v := make([]int64, 8)
	for i := range v {
		v[i], _ = strconv.ParseInt(f[i+1], 10, 64)
	}
	// user nice system idle iowait irq softirq steal
	busy := v[0] + v[1] + v[2] + v[5] + v[6]
	return cpuTimes{busy: time.Duration(busy) * clockTick, steal: time.Duration(v[7]) * clockTick, ok: true}
}

// selfCPU returns this process's user + system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// dbProcesses are the command names of local database servers, whose CPU
// the benchmark reports apart from other load.
var dbProcesses = map[string]bool{"postgres": true, "postmaster": true, "mariadbd": true, "mysqld": true}

// dbCPU returns the CPU time that local database server processes used so
// far, children that exited included (PostgreSQL runs a process per
// connection; its postmaster collects their time when they exit).
func dbCPU() time.Duration {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	var ticks int64
	for _, e := range ents {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid … utime(14) stime(15) cutime(16) cstime(17)
		s := string(b)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open || !dbProcesses[s[open+1:end]] {
			continue
		}
		f := strings.Fields(s[end+1:])
		if len(f) < 15 {
			continue
		}
		for _, i := range []int{11, 12, 13, 14} { // fields 14–17, counted from 3
			v, _ := strconv.ParseInt(f[i], 10, 64)
			ticks += v
		}
	}
	return time.Duration(ticks) * clockTick
}

// loadProbe measures, over an interval, the CPU that this process, the
// local database server, and all other processes (plus hypervisor steal)
// used: on a shared 2-core machine other load is the main source of noise.
type loadProbe struct {
	start time.Time
	cpu   cpuTimes
	self  time.Duration
	db    time.Duration
}

func startProbe() loadProbe {
	return loadProbe{start: time.Now(), cpu: readCPUTimes(), self: selfCPU(), db: dbCPU()}
}

// usage is CPU in cores (CPU seconds per second of wall time); negative
// when unknown.
type usage struct {
	self, db, others float64
}

// stop returns the cores that this process, the local database server and
// everything else except ferry (ferryCPU) used since the start.
func (p loadProbe) stop(ferryCPU time.Duration) usage {
	wall := time.Since(p.start).Seconds()
	now := readCPUTimes()
	selfUsed := selfCPU() - p.self
	dbUsed := max(0, dbCPU()-p.db)
	u := usage{self: selfUsed.Seconds() / wall, db: dbUsed.Seconds() / wall, others: -1}
	if p.cpu.ok && now.ok {
		o := (now.busy - p.cpu.busy) + (now.steal - p.cpu.steal) - selfUsed - ferryCPU - dbUsed
		u.others = max(0, o.Seconds()/wall)
	}
	return u
}

// settle waits up to limit for other processes to use less than
// maxOthers cores over a one-second window. It reports how long it waited
// and whether the machine became quiet.
func settle(ctx context.Context, limit time.Duration, maxOthers float64) (time.Duration, bool) {
	start := time.Now()
	for {
		p := startProbe()
		select {
		case <-ctx.Done():
			return time.Since(start), false
		case <-time.After(time.Second):
		}
		if u := p.stop(0); u.others >= 0 && u.others+u.db < maxOthers {
			return time.Since(start), true
		}
		if time.Since(start) >= limit {
			return time.Since(start), false
		}
	}
}

// printMachine prints what the numbers were measured on.
func printMachine(ctx context.Context, scenarios []scenario) {
	fmt.Printf("date       %s\n", time.Now().Format(time.RFC1123Z))
	fmt.Printf("machine    %s, %d CPUs (GOMAXPROCS %d), %s RAM, %s/%s, kernel %s\n",
		cpuModel(), runtime.NumCPU(), runtime.GOMAXPROCS(0), memTotal(), runtime.GOOS, runtime.GOARCH, readTrim("/proc/sys/kernel/osrelease"))
	fmt.Printf("go         %s\n", runtime.Version())
	for _, k := range []string{"GOGC", "GOMEMLIMIT", "GOMAXPROCS", "GODEBUG"} {
		if v, ok := os.LookupEnv(k); ok {
			fmt.Printf("env        %s=%s (ferry inherits it)\n", k, v)
		}
	}
	seen := map[string]bool{}
	for _, sc := range scenarios {
		if seen[sc.dest] {
			continue
		}
		seen[sc.dest] = true
		v, err := dbVersion(ctx, sc.dest)
		if err != nil {
			v = "unavailable: " + err.Error()
		}
		fmt.Printf("%-10s %s\n", sc.dest, v)
	}
}

func dbVersion(ctx context.Context, kind string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	dir, err := os.MkdirTemp("", "ferry-bench-version-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	t, err := newTarget(ctx, kind, dir)
	if err != nil {
		return "", err
	}
	defer t.drop(context.WithoutCancel(ctx))
	return t.version(ctx)
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func memTotal() string {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(b), "\n") {
		var kb int64
		if _, err := fmt.Sscanf(l, "MemTotal: %d kB", &kb); err == nil {
			return fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	return "?"
}

// gitDescribe names the commit ferry was built from, and whether the
// working tree had changes.
func gitDescribe() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "the working tree"
	}
	s := "commit " + strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(strings.TrimSpace(string(st))) > 0 {
		s += fmt.Sprintf(" + uncommitted changes in %d files", len(strings.Split(strings.TrimSpace(string(st)), "\n")))
	}
	return s
}
