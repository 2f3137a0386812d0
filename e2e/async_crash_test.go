package e2e_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ferry-dev/ferry/internal/cli"
)

// TestAsyncJobSurvivesSIGKILL kills a real ferry process while the
// export job it created is still running, then runs again: the second
// run polls the same job (none is created) and loads its result once.
func TestAsyncJobSurvivesSIGKILL(t *testing.T) {
	var created, polls atomic.Int32
	var done atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("POST /jobs", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"id":"job_%d","state":"Queued"}`, created.Add(1))
	})
	mux.HandleFunc("GET /jobs/{id}", func(w http.ResponseWriter, r *http.Request) {
		polls.Add(1)
		id := r.PathValue("id")
		if !done.Load() {
			fmt.Fprintf(w, `{"id":%q,"state":"InProgress"}`, id)
			return
		}
		fmt.Fprintf(w, `{"id":%q,"state":"JobComplete","result":"/results/%s.csv.gz"}`, id, id)
	})
	mux.HandleFunc("GET /results/{name}", func(w http.ResponseWriter, r *http.Request) {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		fmt.Fprintf(zw, "Id,Name,Job\n1,Acme,%s\n2,Globex,%s\n", r.PathValue("name"), r.PathValue("name"))
		zw.Close()
		w.Write(b.Bytes())
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "connector.yaml"), []byte(`name: bulk
base_url: `+srv.URL+`
streams:
  accounts:
    method: POST
    path: /jobs
    body: {query: "SELECT Id, Name FROM Account"}
    primary_key: Id
    response: {format: csv, compression: gzip}
    async:
      id: id
      poll: {path: "/jobs/{{ job.id }}", status: state, completed: [JobComplete], failed: [Failed], interval: 5ms, max_interval: 20ms}
      download: {url: result}
`), 0o644)
	os.WriteFile(filepath.Join(dir, "pipeline.yaml"), []byte("connector: connector.yaml\ndestination: {type: sqlite, path: out.db}\n"), 0o644)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ferry := func(args ...string) *exec.Cmd {
		cmd := exec.Command(self, append(args, filepath.Join(dir, "pipeline.yaml"))...)
		cmd.Env = append(os.Environ(), "FERRY_TEST_AS_CLI=1")
		return cmd
	}

	// First run: killed once the job is committed to the state, while the
	// job still runs.
	cmd := ferry("run", "--quiet", "--log-level", "debug")
	stderr, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	var seen []string
	killed := false
	for sc.Scan() {
		line := sc.Text()
		seen = append(seen, line)
		if strings.Contains(line, "msg=committed") && strings.Contains(line, "stream=accounts") {
			cmd.Process.Kill() // SIGKILL, mid-job
			killed = true
			break
		}
	}
	cmd.Wait()
	if !killed {
		t.Fatalf("the run ended before committing the job:\n%s", strings.Join(seen, "\n"))
	}
	if created.Load() != 1 {
		t.Fatalf("%d jobs created before the kill", created.Load())
	}

	// Second run: the job completes; the same job is polled and loaded.
	done.Store(true)
	out, err := ferry("run", "--quiet", "--log-level", "info").CombinedOutput()
	if err != nil {
		t.Fatalf("second run: %v\n%s", err, out)
	}
	if created.Load() != 1 {
		t.Errorf("the second run created another job (%d in all)", created.Load())
	}
	if !strings.Contains(string(out), "resuming the export job") || !strings.Contains(string(out), "job=job_1") {
		t.Errorf("the second run did not resume job_1:\n%s", out)
	}
	var q bytes.Buffer
	if code := cli.Main([]string{"query", filepath.Join(dir, "out.db"), `SELECT "id", name, job FROM accounts ORDER BY "id"`}, &q, os.Stderr); code != 0 {
		t.Fatalf("query: %d", code)
	}
	for _, w := range []string{"Acme", "Globex", "job_1.csv.gz"} {
		if !strings.Contains(q.String(), w) {
			t.Fatalf("table accounts:\n%s", q.String())
		}
	}
	if strings.Count(q.String(), "job_1") != 2 {
		t.Fatalf("table accounts:\n%s", q.String())
	}
}
