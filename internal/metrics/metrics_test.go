package metrics

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/engine"
	"github.com/ferry-dev/ferry/internal/source"
)

func TestObserve(t *testing.T) {
	m := New()
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	m.now = func() time.Time { return now }
	b := engine.Base{RunID: "r", At: now.Add(-90 * time.Second)}
	for _, e := range []engine.Event{
		engine.Requested{Base: b, Request: source.Request{Stream: "s", Status: 429, Retry: true, Wait: 2 * time.Second}},
		engine.Requested{Base: b, Request: source.Request{Stream: "s", Status: 200, Bytes: 1000}},
		engine.Requested{Base: b, Request: source.Request{Stream: "s", Status: 200, Wait: time.Second}}, // waited for a limit reported in headers
		engine.PageFetched{Base: b, Stream: "s", Records: 10, Rows: 8, Rejected: 2},
		engine.Committed{Base: b, Stream: "s", Rows: 8, Total: 8},
		engine.StreamFinished{Base: b, Summary: engine.StreamSummary{Stream: "s", Status: dest.Partial}},
		engine.StreamFinished{Base: b, Summary: engine.StreamSummary{Stream: "t", Status: dest.Failed}},
	} {
		m.Observe("p", e)
	}
	m.RunFinished("p", "partial", 3*time.Second)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	text := rec.Body.String()
	for _, want := range []string{
		`ferry_records_synced_total{pipeline="p",stream="s"} 8`,
		`ferry_bytes_synced_total{pipeline="p",stream="s"} 1000`,
		`ferry_source_requests_total{pipeline="p",status="200",stream="s"} 2`,
		`ferry_source_requests_total{pipeline="p",status="429",stream="s"} 1`,
		`ferry_source_retries_total{pipeline="p",stream="s"} 1`,
		`ferry_source_retry_wait_seconds_total{pipeline="p",stream="s"} 2`,
		`ferry_rate_limit_waits_total{pipeline="p",stream="s"} 2`,
		`ferry_records_rejected_total{pipeline="p",stream="s"} 2`,
		`ferry_stream_runs_total{pipeline="p",status="failed",stream="t"} 1`,
		`ferry_run_duration_seconds_count{pipeline="p",status="partial"} 1`,
		`ferry_stream_freshness_seconds{pipeline="p",stream="s"} 90`,
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("metrics lack %s", want)
		}
	}
	// A failed stream has no freshness: it never synced.
	if strings.Contains(text, `ferry_stream_freshness_seconds{pipeline="p",stream="t"}`) {
		t.Error("a stream that never succeeded has a freshness")
	}
	// An older success recorded later does not make it look staler.
	m.SetFresh("p", "s", now.Add(-time.Hour))
	rec = httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if !strings.Contains(rec.Body.String(), `ferry_stream_freshness_seconds{pipeline="p",stream="s"} 90`+"\n") {
		t.Error("SetFresh with an older time moved the freshness back")
	}
}
