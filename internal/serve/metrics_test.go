package serve_test

import (
	"io"
	"net/http"
	"regexp"
	"strconv"
	"testing"

	"github.com/ferry-dev/ferry/internal/metastore"
	"github.com/ferry-dev/ferry/internal/serve"
)

// metric returns the value of a sample of the Prometheus text, -1 when
// it is absent.
func metric(t *testing.T, text, sample string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`).FindStringSubmatch(text)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestMetricsAfterARun: a run's records, requests by status, retries,
// rate-limit waits, bytes, duration and the stream's freshness are
// exposed; freshness survives a restart.
func TestMetricsAfterARun(t *testing.T) {
	api := newGatedAPI(t, 3)
	api.tooMany.Store(1)
	dir := t.TempDir()
	path := writePipeline(t, dir, "shop", api, "full_refresh_append", "")
	s := startServer(t, serve.Config{Pipelines: []serve.Pipeline{loadPipeline(t, path)}})
	var run metastore.Run
	call(t, "POST", s.URL+"/v1/pipelines/shop/runs", "", nil, &run)
	if r := waitRun(t, s.URL, run.ID); r.Status != "succeeded" || r.Streams[0].Retries != 1 {
		t.Fatalf("run = %+v", r)
	}
	text := scrape(t, s.URL)
	want := map[string]float64{
		`ferry_records_synced_total{pipeline="shop",stream="items"}`:                 30,
		`ferry_source_requests_total{pipeline="shop",status="200",stream="items"}`:   3,
		`ferry_source_requests_total{pipeline="shop",status="429",stream="items"}`:   1,
		`ferry_source_retries_total{pipeline="shop",stream="items"}`:                 1,
		`ferry_rate_limit_waits_total{pipeline="shop",stream="items"}`:               1,
		`ferry_run_duration_seconds_count{pipeline="shop",status="succeeded"}`:       1,
		`ferry_stream_runs_total{pipeline="shop",status="succeeded",stream="items"}`: 1,
	}
	for sample, v := range want {
		if got := metric(t, text, sample); got != v {
			t.Errorf("%s = %v, want %v", sample, got, v)
		}
	}
	if b := metric(t, text, `ferry_bytes_synced_total{pipeline="shop",stream="items"}`); b <= 0 {
		t.Errorf("bytes synced = %v", b)
	}
	fresh := metric(t, text, `ferry_stream_freshness_seconds{pipeline="shop",stream="items"}`)
	if fresh < 0 || fresh > 60 {
		t.Errorf("freshness = %v", fresh)
	}
	s.stop(t)
	// A new server over the same store knows when the stream last synced.
	s2 := startServer(t, serve.Config{Pipelines: []serve.Pipeline{loadPipeline(t, path)}, Store: s.Store})
	if f := metric(t, scrape(t, s2.URL), `ferry_stream_freshness_seconds{pipeline="shop",stream="items"}`); f < 0 || f > 60 {
		t.Errorf("freshness after a restart = %v", f)
	}
}

func scrape(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics = %d", resp.StatusCode)
	}
	return string(raw)
}
