// Package metrics holds Ferry's Prometheus metrics, fed from the engine's
// events (engine.Observer): records and bytes synced, source requests by
// status, retries and the time waited before them, rate-limit waits, run
// durations, rejected records, and each stream's freshness (the time since
// its last successful sync).
package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/engine"
)

// Metrics is a registry with Ferry's metrics. It is safe for concurrent
// use.
type Metrics struct {
	reg        *prometheus.Registry
	records    *prometheus.CounterVec
	bytes      *prometheus.CounterVec
	requests   *prometheus.CounterVec
	retries    *prometheus.CounterVec
	waited     *prometheus.CounterVec
	rateWaits  *prometheus.CounterVec
	rejected   *prometheus.CounterVec
	runs       *prometheus.HistogramVec
	streamRuns *prometheus.CounterVec
	drift      *prometheus.CounterVec

	mu    sync.Mutex
	fresh map[[2]string]time.Time // pipeline, stream → last success
	now   func() time.Time
}

// New returns a registry with Ferry's metrics and the Go runtime's.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), fresh: map[[2]string]time.Time{}, now: time.Now}
	ps := []string{"pipeline", "stream"}
	m.records = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_records_synced_total", Help: "Rows committed to the destination."}, ps)
	m.bytes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_bytes_synced_total", Help: "Response body bytes read from sources."}, ps)
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_source_requests_total", Help: "Source requests (HTTP attempts, queries) by response status (0: no response)."}, []string{"pipeline", "stream", "status"})
	m.retries = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_source_retries_total", Help: "Source requests that were retried."}, ps)
	m.waited = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_source_retry_wait_seconds_total", Help: "Time waited before retrying source requests (backoff, Retry-After)."}, ps)
	m.rateWaits = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_rate_limit_waits_total", Help: "Times a source waited for a rate limit (HTTP 429 or a limit reported in headers)."}, ps)
	m.rejected = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_records_rejected_total", Help: "Records sent to the rejected table."}, ps)
	m.runs = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "ferry_run_duration_seconds", Help: "Duration of runs, by final status.",
		Buckets: []float64{0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600}}, []string{"pipeline", "status"})
	m.streamRuns = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_stream_runs_total", Help: "Stream syncs ended, by status."}, []string{"pipeline", "stream", "status"})
	m.drift = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_schema_changes_total", Help: "Changes to tables' layouts (columns added, types widened)."}, ps)
	m.reg.MustRegister(m.records, m.bytes, m.requests, m.retries, m.waited, m.rateWaits, m.rejected, m.runs, m.streamRuns, m.drift, freshness{m},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry returns the Prometheus registry.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// AddCollector registers another collector (webhook counters read at
// scrape time).
func (m *Metrics) AddCollector(c prometheus.Collector) { m.reg.MustRegister(c) }

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Observe counts an event of a run of pipeline.
func (m *Metrics) Observe(pipeline string, e engine.Event) {
	switch e := e.(type) {
	case engine.Committed:
		m.records.WithLabelValues(pipeline, e.Stream).Add(float64(e.Rows))
	case engine.Requested:
		m.requests.WithLabelValues(pipeline, e.Stream, strconv.Itoa(e.Status)).Inc()
		if e.Bytes > 0 {
			m.bytes.WithLabelValues(pipeline, e.Stream).Add(float64(e.Bytes))
		}
		if e.Retry {
			m.retries.WithLabelValues(pipeline, e.Stream).Inc()
			m.waited.WithLabelValues(pipeline, e.Stream).Add(e.Wait.Seconds())
		}
		if e.Status == http.StatusTooManyRequests || (!e.Retry && e.Wait > 0) {
			m.rateWaits.WithLabelValues(pipeline, e.Stream).Inc()
		}
	case engine.PageFetched:
		if e.Rejected > 0 {
			m.rejected.WithLabelValues(pipeline, e.Stream).Add(float64(e.Rejected))
		}
	case engine.DriftFound:
		m.drift.WithLabelValues(pipeline, e.Stream).Add(float64(len(e.Changes)))
	case engine.StreamFinished:
		st := e.Summary
		m.streamRuns.WithLabelValues(pipeline, st.Stream, string(st.Status)).Inc()
		if st.Status == dest.Succeeded || st.Status == dest.Partial {
			m.mu.Lock()
			m.fresh[[2]string{pipeline, st.Stream}] = e.At
			m.mu.Unlock()
		}
	}
}

// SetFresh records when a stream last synced successfully (from the
// metadata store, at start).
func (m *Metrics) SetFresh(pipeline, stream string, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if at.After(m.fresh[[2]string{pipeline, stream}]) {
		m.fresh[[2]string{pipeline, stream}] = at
	}
}

// RunFinished records a run's duration and final status.
func (m *Metrics) RunFinished(pipeline, status string, d time.Duration) {
	m.runs.WithLabelValues(pipeline, status).Observe(d.Seconds())
}

// freshness reports, at scrape time, the seconds since each stream's last
// successful sync.
type freshness struct{ m *Metrics }

var freshDesc = prometheus.NewDesc("ferry_stream_freshness_seconds", "Seconds since the stream last synced successfully (its data's lag).", []string{"pipeline", "stream"}, nil)

func (f freshness) Describe(ch chan<- *prometheus.Desc) { ch <- freshDesc }

func (f freshness) Collect(ch chan<- prometheus.Metric) {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	now := f.m.now()
	for k, at := range f.m.fresh {
		ch <- prometheus.MustNewConstMetric(freshDesc, prometheus.GaugeValue, now.Sub(at).Seconds(), k[0], k[1])
	}
}
