package e2e_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/dest/sqlite"
	"github.com/ferry-dev/ferry/internal/metastore"
)

// TestServeSIGTERM starts the real `ferry serve`, triggers a run whose API
// stalls after the first page, and sends SIGTERM: the server exits within
// its shutdown timeout, the rows written before are committed, and the
// run is recorded as cancelled with them.
func TestServeSIGTERM(t *testing.T) {
	var stalled atomic.Int64
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		page, _ := strconv.Atoi(r.URL.Query().Get("page"))
		if page > 1 {
			stalled.Add(1)
			<-r.Context().Done() // stalls until the run gives up on it
			return
		}
		var data []map[string]any
		for i := 1; i <= 10; i++ {
			data = append(data, map[string]any{"id": i})
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"data": data, "meta": map[string]any{"total_pages": 5}})
	}))
	defer api.Close()
	dir := t.TempDir()
	conn := "name: stall\nbase_url: " + api.URL + "\nstreams:\n  items:\n    path: /items\n    records: data\n    primary_key: id\n" +
		"    paginate: {type: page_number, size: 10, size_param: per_page, total_pages_path: meta.total_pages}\n"
	pipe := "connector: stall.connector.yaml\ndestination: {type: sqlite, path: out.db}\nstreams:\n  items: {mode: full_refresh_append}\nsync: {checkpoint_rows: 10}\n"
	for name, body := range map[string]string{"stall.connector.yaml": conn, "stall.pipeline.yaml": pipe} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "serve", filepath.Join(dir, "stall.pipeline.yaml"), "--listen", "127.0.0.1:0", "--shutdown-timeout", "15s", "--log-format", "json")
	cmd.Env = append(os.Environ(), "FERRY_TEST_AS_CLI=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	var logs strings.Builder
	logsDone := make(chan struct{})
	go func() {
		defer close(logsDone)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			logs.WriteString(line + "\n")
			if _, rest, ok := strings.Cut(line, " on http://"); ok && strings.HasPrefix(line, "ferry serve:") {
				a, _, _ := strings.Cut(rest, " ")
				addr <- a
			}
		}
	}()
	var base string
	select {
	case a := <-addr:
		base = "http://" + a
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-logsDone
		t.Fatalf("ferry serve did not say where it listens:\n%s", logs.String())
	}
	resp, err := http.Post(base+"/v1/pipelines/stall/runs", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	var run metastore.Run
	json.NewDecoder(resp.Body).Decode(&run)
	resp.Body.Close()
	if resp.StatusCode != 202 {
		t.Fatalf("trigger = %d", resp.StatusCode)
	}
	// Wait until the first page is committed and the second stalls.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var live metastore.Run
		if r, err := http.Get(base + "/v1/runs/" + run.ID); err == nil {
			json.NewDecoder(r.Body).Decode(&live)
			r.Body.Close()
		}
		if stalled.Load() > 0 && len(live.Streams) == 1 && live.Streams[0].Records == 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the run did not commit its first page: %+v", live)
		}
		time.Sleep(20 * time.Millisecond)
	}
	sent := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	took := time.Since(sent)
	<-logsDone
	if err != nil {
		t.Fatalf("ferry serve after SIGTERM: %v\n%s", err, logs.String())
	}
	if took > 15*time.Second {
		t.Fatalf("ferry serve took %s to stop (shutdown timeout 15s)", took)
	}
	// The run is recorded as cancelled, with its committed rows.
	store, err := metastore.Open(context.Background(), "sqlite:"+filepath.Join(dir, "ferry-serve.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	rec, err := store.GetRun(context.Background(), run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Status != "cancelled" || rec.Ended == nil || rec.Streams[0].Records != 10 {
		t.Fatalf("recorded run = %+v", rec)
	}
	d, err := dest.Open(context.Background(), "sqlite", &sqlite.Config{Path: filepath.Join(dir, "out.db")}, dest.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if n, err := d.(dest.Reader).Count(context.Background(), "items"); err != nil || n != 10 {
		t.Fatalf("rows committed = %d, %v; want the first page's 10", n, err)
	}
	// Every log line of the run names it and the pipeline.
	n := 0
	for _, line := range strings.Split(logs.String(), "\n") {
		if !strings.Contains(line, run.ID) {
			continue
		}
		n++
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("a log line is not JSON: %q", line)
		}
		if m["run_id"] != run.ID || m["pipeline"] != "stall" {
			t.Fatalf("log line without run_id and pipeline: %s", line)
		}
	}
	if n == 0 {
		t.Fatalf("no log line names the run:\n%s", logs.String())
	}
}
