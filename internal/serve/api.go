package serve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/metastore"
)

// maxBody bounds request bodies of the API.
const maxBody = 1 << 20

// httpError is an error with the status it answers with.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func errf(status int, format string, args ...any) error {
	return &httpError{status: status, msg: fmt.Sprintf(format, args...)}
}

// handlerFunc is an API handler that returns its error.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// Handler returns the server's HTTP handler: the API, health checks,
// metrics, webhook routes and the UI.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", s.authed(func(w http.ResponseWriter, r *http.Request) error {
		s.metrics.Handler().ServeHTTP(w, r)
		return nil
	}))
	for pattern, h := range s.api() {
		mux.Handle(pattern, s.authed(h))
	}
	mux.Handle("/v1/", s.authed(func(w http.ResponseWriter, r *http.Request) error {
		return errf(http.StatusNotFound, "no such endpoint: %s %s (see /v1/openapi.json)", r.Method, r.URL.Path)
	}))
	s.mountUI(mux)
	s.mountAPI(mux)
	// Everything else may be a webhook route of a running source.
	mux.HandleFunc("/", s.serveRoute)
	return mux
}

// APIRoutes lists the control-plane API's routes ("METHOD /v1/path"), as
// the OpenAPI document must describe them.
func (s *Server) APIRoutes() []string {
	var out []string
	for p := range s.api() {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

func (s *Server) api() map[string]handlerFunc {
	return map[string]handlerFunc{
		"GET /v1/openapi.json":                                   s.openapi,
		"GET /v1/pipelines":                                      s.listPipelines,
		"GET /v1/pipelines/{pipeline}":                           s.getPipeline,
		"POST /v1/pipelines/{pipeline}/runs":                     s.triggerRun,
		"GET /v1/runs":                                           s.listRuns,
		"GET /v1/runs/{id}":                                      s.getRun,
		"POST /v1/runs/{id}/cancel":                              s.cancel,
		"GET /v1/runs/{id}/logs":                                 s.logs,
		"GET /v1/pipelines/{pipeline}/streams/{stream}/state":    s.getState,
		"DELETE /v1/pipelines/{pipeline}/streams/{stream}/state": s.resetState,
		"GET /v1/pipelines/{pipeline}/rejected":                  s.listRejected,
		"POST /v1/pipelines/{pipeline}/rejected/replay":          s.replay,
		"GET /v1/webhooks":                                       s.webhooks,
		"GET /v1/drift":                                          s.drift,
		"GET /v1/throughput":                                     s.throughput,
	}
}

// mountUI serves the web UI at /ui/ (and redirects / there) when the
// configuration has one.
func (s *Server) mountUI(mux *http.ServeMux) {
	if s.cfg.UI == nil {
		return
	}
	mux.Handle("/ui/", http.StripPrefix("/ui", s.cfg.UI))
	mux.Handle("GET /{$}", http.RedirectHandler("/ui/", http.StatusFound))
}

// mountAPI serves the table API at /api/ when the configuration has one.
func (s *Server) mountAPI(mux *http.ServeMux) {
	switch {
	case s.cfg.API == nil:
	case s.cfg.APIAuthenticates:
		mux.Handle("/api/", s.cfg.API)
	default:
		mux.Handle("/api/", s.authed(func(w http.ResponseWriter, r *http.Request) error {
			s.cfg.API.ServeHTTP(w, r)
			return nil
		}))
	}
}

// serveRoute answers a path a webhook source serves, or 404.
func (s *Server) serveRoute(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	rt := s.routes[r.URL.Path]
	s.mu.Unlock()
	if rt == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not found"})
		return
	}
	rt.handler.ServeHTTP(w, r)
}

// authed checks the request's token and role, then runs h, answering its
// error as JSON.
func (s *Server) authed(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		role, status, msg := s.auth.role(r)
		if status != 0 {
			if status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="ferry"`)
			}
			writeJSON(w, status, map[string]string{"error": msg})
			return
		}
		if !allows(role, r.Method) {
			writeJSON(w, http.StatusForbidden, map[string]string{"error": fmt.Sprintf("a %s token may not %s %s: it needs the operator role", role, r.Method, r.URL.Path)})
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		if err := h(w, r); err != nil {
			var he *httpError
			if errors.As(err, &he) {
				writeJSON(w, he.status, map[string]string{"error": he.msg})
				return
			}
			var be *BusyError
			var ue *UnknownStreamError
			switch {
			case errors.As(err, &be):
				writeJSON(w, http.StatusConflict, map[string]string{"error": be.Error()})
			case errors.As(err, &ue):
				writeJSON(w, http.StatusNotFound, map[string]string{"error": ue.Error()})
			case errors.Is(err, metastore.ErrNotFound):
				writeJSON(w, http.StatusNotFound, map[string]string{"error": "not found"})
			case errors.Is(err, errStopping):
				writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
			default:
				msg := s.red.URL(s.red.String(err.Error()))
				s.log.Error("API request failed", "method", r.Method, "path", r.URL.Path, "error", msg)
				writeJSON(w, http.StatusInternalServerError, map[string]string{"error": msg})
			}
		}
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

// decodeBody reads an optional JSON body into v; unknown fields are
// refused.
func decodeBody(r *http.Request, v any) error {
	data, err := io.ReadAll(r.Body)
	if err != nil {
		return errf(http.StatusRequestEntityTooLarge, "the request body is over %d bytes", maxBody)
	}
	if len(strings.TrimSpace(string(data))) == 0 {
		return nil
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errf(http.StatusBadRequest, "the request body is not what this endpoint takes: %v", err)
	}
	return nil
}

func (s *Server) pipe(r *http.Request) (*pipe, error) {
	name := r.PathValue("pipeline")
	p := s.byName[name]
	if p == nil {
		names := make([]string, len(s.pipes))
		for i, p := range s.pipes {
			names[i] = p.name
		}
		return nil, errf(http.StatusNotFound, "no pipeline %q is served (served: %s)", name, strings.Join(names, ", "))
	}
	return p, nil
}

func intParam(r *http.Request, name string, def, lo, hi int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, errf(http.StatusBadRequest, "%s=%q: want a whole number from %d to %d", name, v, lo, hi)
	}
	return n, nil
}

// readiness caches the last readiness check for a few seconds.
type readiness struct {
	mu      sync.Mutex
	at      time.Time
	reasons []string
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	reasons := s.checkReady(r.Context())
	if len(reasons) > 0 {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "unready", "reasons": reasons})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
}

// checkReady checks the metadata store and every pipeline's destination
// (at most every five seconds).
func (s *Server) checkReady(ctx context.Context) []string {
	rd := &s.ready
	rd.mu.Lock()
	defer rd.mu.Unlock()
	if time.Since(rd.at) < 5*time.Second {
		return rd.reasons
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	reasons := []string{}
	if err := s.store.Ping(ctx); err != nil {
		reasons = append(reasons, s.red.URL(s.red.String(err.Error())))
	}
	for _, p := range s.pipes {
		if err := s.checkDestination(ctx, p); err != nil {
			reasons = append(reasons, fmt.Sprintf("pipeline %s: destination %s: %s", p.name, p.Spec.Destination.Type, s.red.URL(s.red.String(err.Error()))))
		}
	}
	rd.at, rd.reasons = time.Now(), reasons
	return reasons
}

// checkDestination opens a pipeline's destination read-only and checks
// it answers; one that does not exist yet (a SQLite file before the
// first run) is fine.
func (s *Server) checkDestination(ctx context.Context, p *pipe) error {
	d, err := s.openDest(ctx, p, true)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer d.Close()
	if c, ok := d.(dest.Checker); ok {
		_, err = c.Check(ctx)
	}
	return err
}

// openDest opens the pipeline's destination (read-only or not).
func (s *Server) openDest(ctx context.Context, p *pipe, readOnly bool) (dest.Destination, error) {
	return dest.Open(ctx, p.Spec.Destination.Type, p.Resolved.Destination, dest.Options{ReadOnly: readOnly, Dir: p.Spec.Dir, Logger: s.log, Redactor: s.red})
}

// RunBrief is a run in a pipeline's overview.
type RunBrief struct {
	ID      string     `json:"id"`
	Status  string     `json:"status"`
	Started time.Time  `json:"started_at"`
	Ended   *time.Time `json:"ended_at"`
}

// PipelineView is a pipeline as the API shows it.
type PipelineView struct {
	Name     string       `json:"name"`
	File     string       `json:"file"`
	Schedule *string      `json:"schedule"`
	Jitter   *string      `json:"jitter"`
	NextRun  *time.Time   `json:"next_run_at"`
	LastRun  *RunBrief    `json:"last_run"`
	Streams  []StreamView `json:"streams"`
}

// StreamView is a stream in a pipeline's overview.
type StreamView struct {
	Name      string    `json:"name"`
	Table     string    `json:"table"`
	Mode      string    `json:"mode"`
	Kind      string    `json:"kind"`
	Unbounded bool      `json:"unbounded"`
	LastRun   *RunBrief `json:"last_run"`
	// Freshness is the seconds since the stream last synced successfully.
	Freshness *float64 `json:"freshness_seconds"`
	// RecordsTotal is the rows in the stream's table (null when the
	// destination cannot tell or is unreachable).
	RecordsTotal *int64 `json:"records_total"`
	// Running is the id of the run syncing the stream now.
	Running *string `json:"running_run_id"`
}

func brief(r *metastore.Run) *RunBrief {
	return &RunBrief{ID: r.ID, Status: r.Status, Started: r.Started, Ended: r.Ended}
}

func (s *Server) view(ctx context.Context, p *pipe) (PipelineView, error) {
	v := PipelineView{Name: p.name, File: p.File, Streams: []StreamView{}}
	if sc := p.Spec.Schedule; sc != nil {
		c := p.cron.String()
		v.Schedule = &c
		if sc.Jitter != "" {
			j := sc.Jitter
			v.Jitter = &j
		}
		p.mu.Lock()
		if !p.next.IsZero() {
			n := p.next
			v.NextRun = &n
		}
		p.mu.Unlock()
	}
	recent, err := s.store.ListRuns(ctx, metastore.RunFilter{Pipeline: p.name, Limit: 200})
	if err != nil {
		return v, err
	}
	// Runs of this server: live counters and status.
	for i, r := range recent {
		if ar := s.liveRuns()[r.ID]; ar != nil {
			snap := ar.snapshot()
			recent[i] = &snap
		}
	}
	if len(recent) > 0 {
		v.LastRun = brief(recent[0])
	}
	// The row counts, when the destination is reachable.
	counts := map[string]int64{}
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if d, err := s.openDest(cctx, p, true); err == nil {
		if rd, ok := d.(dest.Reader); ok {
			for _, st := range p.streams {
				if n, err := rd.Count(cctx, st.Table); err == nil && n >= 0 {
					counts[st.Name] = n
				}
			}
		}
		d.Close()
	}
	now := time.Now()
	for _, st := range p.streams {
		sv := StreamView{Name: st.Name, Table: st.Table, Mode: st.Mode, Kind: st.Kind, Unbounded: st.Unbounded}
		if n, ok := counts[st.Name]; ok {
			sv.RecordsTotal = &n
		}
		if id, ok := s.busyRun(p.name, st.Name); ok {
			sv.Running = &id
		}
		for _, r := range recent {
			i := slices.IndexFunc(r.Streams, func(x metastore.StreamRun) bool { return x.Name == st.Name })
			if i < 0 {
				continue
			}
			if sv.LastRun == nil {
				sv.LastRun = brief(r)
				sv.Table = r.Streams[i].Table
			}
			if ss := r.Streams[i].Status; (ss == string(dest.Succeeded) || ss == string(dest.Partial)) && r.Ended != nil {
				f := now.Sub(*r.Ended).Seconds()
				sv.Freshness = &f
				break
			}
		}
		v.Streams = append(v.Streams, sv)
	}
	return v, nil
}

func (s *Server) listPipelines(w http.ResponseWriter, r *http.Request) error {
	out := []PipelineView{}
	for _, p := range s.pipes {
		v, err := s.view(r.Context(), p)
		if err != nil {
			return err
		}
		out = append(out, v)
	}
	writeJSON(w, http.StatusOK, map[string]any{"pipelines": out})
	return nil
}

func (s *Server) getPipeline(w http.ResponseWriter, r *http.Request) error {
	p, err := s.pipe(r)
	if err != nil {
		return err
	}
	v, err := s.view(r.Context(), p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

func (s *Server) triggerRun(w http.ResponseWriter, r *http.Request) error {
	p, err := s.pipe(r)
	if err != nil {
		return err
	}
	var body struct {
		Streams []string `json:"streams"`
	}
	if err := decodeBody(r, &body); err != nil {
		return err
	}
	for _, st := range body.Streams {
		if i := slices.IndexFunc(p.streams, func(x streamInfo) bool { return x.Name == st }); i >= 0 && p.streams[i].Unbounded {
			return errf(http.StatusConflict, "stream %s of pipeline %s runs continuously: it cannot be triggered", st, p.name)
		}
	}
	rec, err := s.start(p, body.Streams, TriggerAPI)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/runs/"+rec.ID)
	writeJSON(w, http.StatusAccepted, rec)
	return nil
}

func (s *Server) listRuns(w http.ResponseWriter, r *http.Request) error {
	limit, err := intParam(r, "limit", 50, 1, 1000)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	runs, err := s.store.ListRuns(r.Context(), metastore.RunFilter{Pipeline: q.Get("pipeline"), Status: q.Get("status"), Limit: limit})
	if err != nil {
		return err
	}
	live := s.liveRuns()
	out := make([]metastore.Run, 0, len(runs))
	for _, run := range runs {
		if ar := live[run.ID]; ar != nil {
			snap := ar.snapshot()
			if q.Get("status") != "" && snap.Status != q.Get("status") {
				continue
			}
			out = append(out, snap)
			continue
		}
		out = append(out, *run)
	}
	writeJSON(w, http.StatusOK, map[string]any{"runs": out})
	return nil
}

func (s *Server) getRun(w http.ResponseWriter, r *http.Request) error {
	run, err := s.run(r.Context(), r.PathValue("id"))
	if err != nil {
		if errors.Is(err, metastore.ErrNotFound) {
			return errf(http.StatusNotFound, "no run %q", r.PathValue("id"))
		}
		return err
	}
	writeJSON(w, http.StatusOK, run)
	return nil
}

func (s *Server) cancel(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	run, ok := s.cancelRun(id)
	if !ok && run.Ended != nil {
		return errf(http.StatusConflict, "run %s has ended already (%s)", id, run.Status)
	}
	if !ok {
		rec, err := s.store.GetRun(r.Context(), id)
		if errors.Is(err, metastore.ErrNotFound) {
			return errf(http.StatusNotFound, "no run %q", id)
		}
		if err != nil {
			return err
		}
		if rec.Ended != nil {
			return errf(http.StatusConflict, "run %s has ended already (%s)", id, rec.Status)
		}
		return errf(http.StatusConflict, "run %s is not running in this server (it runs in %s)", id, rec.Instance)
	}
	writeJSON(w, http.StatusAccepted, run)
	return nil
}

func (s *Server) logs(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	after, err := intParam(r, "after", 0, 0, 1<<62)
	if err != nil {
		return err
	}
	limit, err := intParam(r, "limit", 1000, 1, 5000)
	if err != nil {
		return err
	}
	if _, err := s.run(r.Context(), id); err != nil {
		if errors.Is(err, metastore.ErrNotFound) {
			return errf(http.StatusNotFound, "no run %q", id)
		}
		return err
	}
	if ar := s.liveRuns()[id]; ar != nil {
		ar.logs.flush(r.Context(), s.store, s.log) // the lines so far
	}
	lines, err := s.store.Logs(r.Context(), id, int64(after), limit)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"lines": lines})
	return nil
}

func (s *Server) drift(w http.ResponseWriter, r *http.Request) error {
	limit, err := intParam(r, "limit", 100, 1, 1000)
	if err != nil {
		return err
	}
	d, err := s.store.Drift(r.Context(), r.URL.Query().Get("pipeline"), limit)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"drift": d})
	return nil
}

// ThroughputPoint is one minute of a throughput chart.
type ThroughputPoint struct {
	T          time.Time `json:"t"`
	RecordsPer float64   `json:"records_per_s"`
	Records    int64     `json:"records"`
}

func (s *Server) throughput(w http.ResponseWriter, r *http.Request) error {
	minutes, err := intParam(r, "minutes", 30, 1, 7*24*60)
	if err != nil {
		return err
	}
	s.tp.flush(r.Context(), s.store, s.log)
	now := time.Now().UTC().Truncate(time.Minute)
	since := now.Add(-time.Duration(minutes-1) * time.Minute)
	pts, err := s.store.Throughput(r.Context(), r.URL.Query().Get("pipeline"), since)
	if err != nil {
		return err
	}
	// Every minute of the window, zero where nothing was synced.
	byMinute := map[int64]int64{}
	for _, p := range pts {
		byMinute[p.T.Unix()] = p.Records
	}
	out := make([]ThroughputPoint, 0, minutes)
	for t := since; !t.After(now); t = t.Add(time.Minute) {
		n := byMinute[t.Unix()]
		out = append(out, ThroughputPoint{T: t, Records: n, RecordsPer: float64(n) / 60})
	}
	writeJSON(w, http.StatusOK, map[string]any{"points": out})
	return nil
}
