package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/engine"
	"github.com/ferry-dev/ferry/internal/metastore"
)

// Triggers: what started a run.
const (
	TriggerSchedule   = "schedule"
	TriggerAPI        = "api"
	TriggerWebhook    = "webhook"
	TriggerContinuous = "continuous"
	TriggerReplay     = "replay"
)

// BusyError refuses a run whose stream is being synced by another run of
// this server.
type BusyError struct {
	Pipeline, Stream, RunID string
}

func (e *BusyError) Error() string {
	return fmt.Sprintf("stream %s of pipeline %s is being synced by run %s; wait for it to end", e.Stream, e.Pipeline, e.RunID)
}

// UnknownStreamError refuses a run of a stream the pipeline does not have.
type UnknownStreamError struct{ Pipeline, Stream string }

func (e *UnknownStreamError) Error() string {
	return fmt.Sprintf("pipeline %s has no stream %q", e.Pipeline, e.Stream)
}

// errStopping refuses new runs during shutdown.
var errStopping = errors.New("the server is shutting down: it takes no new runs")

// activeRun is a run of this server that has not ended.
type activeRun struct {
	s       *Server
	pipe    *pipe
	streams []string
	cancel  context.CancelFunc
	logs    *logBuffer
	done    chan struct{}

	mu        sync.Mutex
	rec       metastore.Run
	eng       *engine.Run
	drift     map[string][]metastore.Drift
	cancelled bool // by the API
}

// start records a run and starts it; it returns at once with the run as
// recorded (queued). streams nil means the pipeline's bounded streams.
func (s *Server) start(p *pipe, streams []string, trigger string) (metastore.Run, error) {
	rec, _, err := s.startRun(p, streams, trigger, nil)
	return rec, err
}

// startRun is start with a function that may change the engine's
// options (a replay gives its own source); it also returns the run.
func (s *Server) startRun(p *pipe, streams []string, trigger string, opts func(*engine.Options)) (metastore.Run, *activeRun, error) {
	if len(streams) == 0 {
		streams = p.bounded()
	}
	for _, st := range streams {
		if !slices.ContainsFunc(p.streams, func(i streamInfo) bool { return i.Name == st }) {
			return metastore.Run{}, nil, &UnknownStreamError{Pipeline: p.name, Stream: st}
		}
	}
	if len(streams) == 0 {
		return metastore.Run{}, nil, fmt.Errorf("pipeline %s has only streams that run continuously", p.name)
	}
	id := engine.NewRunID()
	s.mu.Lock()
	if s.stopping || s.ctx == nil {
		s.mu.Unlock()
		return metastore.Run{}, nil, errStopping
	}
	for _, st := range streams {
		if holder, ok := s.busy[p.name+"\x00"+st]; ok {
			s.mu.Unlock()
			return metastore.Run{}, nil, &BusyError{Pipeline: p.name, Stream: st, RunID: holder}
		}
	}
	for _, st := range streams {
		s.busy[p.name+"\x00"+st] = id
	}
	ctx, cancel := context.WithCancel(s.ctx)
	ar := &activeRun{s: s, pipe: p, streams: streams, cancel: cancel, done: make(chan struct{}), drift: map[string][]metastore.Drift{}}
	ar.logs = newLogBuffer(id)
	ar.rec = metastore.Run{ID: id, Pipeline: p.name, Trigger: trigger, Status: metastore.Queued, Started: time.Now().UTC(), Instance: s.cfg.Instance}
	for _, st := range streams {
		ar.rec.Streams = append(ar.rec.Streams, metastore.StreamRun{Name: st, Table: p.table(st), Status: metastore.Queued, Drift: []metastore.Drift{}})
	}
	s.active[id] = ar
	s.runs.Add(1)
	s.mu.Unlock()

	rec := ar.snapshot()
	pctx, pcancel := context.WithTimeout(context.Background(), 10*time.Second)
	err := s.store.PutRun(pctx, &rec)
	pcancel()
	if err != nil {
		s.release(ar)
		cancel()
		s.runs.Done()
		return metastore.Run{}, nil, err
	}
	go s.execute(ctx, ar, opts)
	return rec, ar, nil
}

func (p *pipe) table(stream string) string {
	for _, s := range p.streams {
		if s.Name == stream {
			return s.Table
		}
	}
	return stream
}

// release forgets an ended run: its streams are free again.
func (s *Server) release(ar *activeRun) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.active, ar.rec.ID)
	for _, st := range ar.streams {
		if s.busy[ar.pipe.name+"\x00"+st] == ar.rec.ID {
			delete(s.busy, ar.pipe.name+"\x00"+st)
		}
	}
}

// execute runs the engine and records the outcome.
func (s *Server) execute(ctx context.Context, ar *activeRun, opts func(*engine.Options)) {
	defer s.runs.Done()
	defer close(ar.done)
	defer ar.cancel()
	p := ar.pipe
	id := ar.rec.ID
	log := slog.New(teeHandler{s.log.Handler(), redactHandler(ar.logs, s.red)}).With("run_id", id, "pipeline", p.name)
	o := engine.Options{Pipeline: p.Spec, Resolved: p.Resolved, Streams: ar.streams, Logger: log, Redactor: s.red, Observer: ar, RunID: id}
	if opts != nil {
		opts(&o)
	}
	started := time.Now()
	eng, err := engine.New(ctx, o)
	if err != nil {
		msg := s.red.URL(s.red.String(err.Error()))
		log.Error("the run could not start", "error", msg)
		ar.finish("failed", &msg, nil)
		s.metrics.RunFinished(p.name, "failed", time.Since(started))
		return
	}
	ar.mu.Lock()
	ar.eng = eng
	ar.rec.Status = metastore.Running
	for i := range ar.rec.Streams {
		ar.rec.Streams[i].Status = metastore.Running
		ar.rec.Streams[i].Table = eng.Progress()[i].Table
	}
	rec := ar.rec
	rec.Streams = slices.Clone(rec.Streams)
	ar.mu.Unlock()
	s.putRun(rec)
	unmount := s.mountRoutes(p, eng.Source())
	sum, err := eng.Execute(ctx)
	unmount()
	if cerr := eng.Close(); cerr != nil {
		log.Warn("closing the run's source and destination failed", "error", s.red.String(cerr.Error()))
	}
	status := "failed"
	var msg *string
	if err != nil {
		m := s.red.URL(s.red.String(err.Error()))
		msg = &m
	}
	if sum != nil {
		status = string(sum.Status)
		if allLocked(sum) {
			status = metastore.Skipped
		}
	}
	ar.mu.Lock()
	if ar.cancelled && status != string(dest.Succeeded) {
		status = string(dest.Cancelled)
	}
	ar.mu.Unlock()
	log.Info("run ended", "status", status, "duration", time.Since(started).Round(time.Millisecond).String())
	ar.finish(status, msg, sum)
	s.metrics.RunFinished(p.name, status, time.Since(started))
}

// allLocked reports whether every stream of a run found its lock held by
// another process: nothing ran.
func allLocked(sum *engine.Summary) bool {
	if len(sum.Streams) == 0 {
		return false
	}
	for _, st := range sum.Streams {
		var le *dest.LockedError
		if !errors.As(st.Err, &le) {
			return false
		}
	}
	return true
}

// finish records the run's end, stores its logs and drift, and then
// (so that a run shown ended has its streams free) frees its streams.
func (ar *activeRun) finish(status string, msg *string, sum *engine.Summary) {
	s := ar.s
	now := time.Now().UTC()
	ar.mu.Lock()
	ar.refreshLocked()
	rec := ar.rec
	rec.Streams = slices.Clone(rec.Streams)
	rec.Status, rec.Ended, rec.Error = status, &now, msg
	if sum != nil {
		for i := range rec.Streams {
			st := &rec.Streams[i]
			for _, ss := range sum.Streams {
				if ss.Stream != st.Name {
					continue
				}
				st.Status = string(ss.Status)
				var le *dest.LockedError
				if errors.As(ss.Err, &le) {
					st.Status = metastore.Skipped
				}
				st.Table, st.Records, st.Rejected, st.Requests, st.Retries = ss.Table, ss.Records, ss.Rejected, ss.Requests, ss.Retries
				if ss.Error != "" {
					e := ss.Error
					st.Error = &e
				}
			}
		}
	} else {
		for i := range rec.Streams {
			if st := rec.Streams[i].Status; st == metastore.Queued || st == metastore.Running {
				rec.Streams[i].Status = status
			}
		}
	}
	var drift []metastore.DriftEvent
	for i := range rec.Streams {
		st := &rec.Streams[i]
		st.Drift = append([]metastore.Drift{}, ar.drift[st.Name]...)
		for _, d := range st.Drift {
			drift = append(drift, metastore.DriftEvent{RunID: rec.ID, Pipeline: ar.pipe.name, Stream: st.Name, Table: d.Table, Change: d.Change, At: now})
		}
	}
	ar.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ar.logs.finish()
	ar.logs.flush(ctx, s.store, s.log)
	if err := s.store.AddDrift(ctx, drift); err != nil {
		s.log.Warn("could not record the run's drift", "run_id", rec.ID, "error", err.Error())
	}
	s.tp.flush(ctx, s.store, s.log)
	s.putRun(rec)
	ar.mu.Lock()
	ar.rec, ar.eng = rec, nil
	ar.mu.Unlock()
	s.release(ar)
}

func (s *Server) putRun(rec metastore.Run) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.store.PutRun(ctx, &rec); err != nil {
		s.log.Error("could not record the run", "run_id", rec.ID, "error", s.red.String(err.Error()))
	}
}

// snapshot returns the run as recorded, with live counters while it runs.
func (ar *activeRun) snapshot() metastore.Run {
	ar.mu.Lock()
	defer ar.mu.Unlock()
	ar.refreshLocked()
	rec := ar.rec
	rec.Streams = slices.Clone(rec.Streams)
	for i := range rec.Streams {
		rec.Streams[i].Drift = append([]metastore.Drift{}, ar.drift[rec.Streams[i].Name]...)
	}
	return rec
}

// refreshLocked copies the engine's live counters into the record.
func (ar *activeRun) refreshLocked() {
	if ar.eng == nil {
		return
	}
	for i, pr := range ar.eng.Progress() {
		if i >= len(ar.rec.Streams) {
			break
		}
		st := &ar.rec.Streams[i]
		st.Records, st.Rejected, st.Requests, st.Retries = pr.Committed.Load(), pr.Rejected.Load(), pr.Requests.Load(), pr.HTTPRetries.Load()
		st.PartitionsDone, st.PartitionsTotal = pr.PartitionsDone.Load(), pr.PartitionsStarted.Load()
		switch pr.State() {
		case engine.Running:
			st.Status = metastore.Running
		case engine.Succeeded:
			st.Status = string(dest.Succeeded)
		case engine.Failed:
			st.Status = string(dest.Failed)
		case engine.Stopped:
			st.Status = string(dest.Stopped)
		}
	}
}

// Observe receives the run's events (engine.Observer).
func (ar *activeRun) Observe(e engine.Event) {
	s := ar.s
	s.metrics.Observe(ar.pipe.name, e)
	switch e := e.(type) {
	case engine.Committed:
		s.tp.add(ar.pipe.name, e.At, e.Rows)
	case engine.DriftFound:
		ar.mu.Lock()
		for _, c := range e.Changes {
			ar.drift[e.Stream] = append(ar.drift[e.Stream], metastore.Drift{Table: e.Table, Change: c.String()})
		}
		ar.mu.Unlock()
	}
}

// cancelRun cancels a run of this server; it commits what it has written.
func (s *Server) cancelRun(id string) (metastore.Run, bool) {
	s.mu.Lock()
	ar := s.active[id]
	s.mu.Unlock()
	if ar == nil {
		return metastore.Run{}, false
	}
	ar.mu.Lock()
	ended := ar.rec.Ended != nil
	ar.cancelled = !ended
	ar.mu.Unlock()
	if ended {
		return ar.snapshot(), false
	}
	ar.cancel()
	return ar.snapshot(), true
}

// run returns a run: live when it is running here, else as recorded.
func (s *Server) run(ctx context.Context, id string) (metastore.Run, error) {
	s.mu.Lock()
	ar := s.active[id]
	s.mu.Unlock()
	if ar != nil {
		return ar.snapshot(), nil
	}
	r, err := s.store.GetRun(ctx, id)
	if err != nil {
		return metastore.Run{}, err
	}
	return *r, nil
}

// liveRuns returns the runs running here, by id.
func (s *Server) liveRuns() map[string]*activeRun {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]*activeRun, len(s.active))
	for id, ar := range s.active {
		out[id] = ar
	}
	return out
}

// busyRun returns the id of the run of this server syncing a stream.
func (s *Server) busyRun(pipeline, stream string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.busy[pipeline+"\x00"+stream]
	return id, ok
}

// schedule runs a pipeline on its cron schedule until ctx ends. A firing
// that finds the streams busy is recorded as skipped. Firings missed
// while no server ran are caught up once, at start, not once each.
func (s *Server) schedule(ctx context.Context, p *pipe) {
	if len(p.bounded()) == 0 {
		return
	}
	if s.missedFiring(ctx, p) {
		s.log.Info("a scheduled run was missed while the server was down: running it now", "pipeline", p.name)
		s.fire(p)
	}
	for {
		next := p.cron.Next(time.Now().UTC())
		if next.IsZero() {
			return
		}
		p.mu.Lock()
		p.next = next
		p.mu.Unlock()
		wait := time.Until(next)
		if p.jitter > 0 {
			wait += rand.N(p.jitter)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		s.fire(p)
	}
}

// missedFiring reports whether the schedule fired (at least once) since
// the pipeline's last scheduled run began.
func (s *Server) missedFiring(ctx context.Context, p *pipe) bool {
	runs, err := s.store.ListRuns(ctx, metastore.RunFilter{Pipeline: p.name, Limit: 200})
	if err != nil {
		s.log.Warn("could not read the last scheduled run", "pipeline", p.name, "error", err.Error())
		return false
	}
	for _, r := range runs {
		if r.Trigger == TriggerSchedule {
			n := p.cron.Next(r.Started)
			return !n.IsZero() && !n.After(time.Now())
		}
	}
	return false
}

// fire starts a scheduled run, or records it as skipped.
func (s *Server) fire(p *pipe) {
	_, err := s.start(p, nil, TriggerSchedule)
	var be *BusyError
	switch {
	case err == nil, errors.Is(err, errStopping):
	case errors.As(err, &be):
		s.log.Info("scheduled run skipped: the stream is still being synced", "pipeline", p.name, "stream", be.Stream, "busy_run", be.RunID)
		now := time.Now().UTC()
		msg := be.Error()
		rec := metastore.Run{ID: engine.NewRunID(), Pipeline: p.name, Trigger: TriggerSchedule, Status: metastore.Skipped, Started: now, Ended: &now, Error: &msg, Instance: s.cfg.Instance}
		for _, st := range p.bounded() {
			rec.Streams = append(rec.Streams, metastore.StreamRun{Name: st, Table: p.table(st), Status: metastore.Skipped, Drift: []metastore.Drift{}})
		}
		s.putRun(rec)
		s.metrics.RunFinished(p.name, metastore.Skipped, 0)
	default:
		s.log.Error("scheduled run could not start", "pipeline", p.name, "error", s.red.String(err.Error()))
	}
}

// continuous keeps a run of the pipeline's unbounded streams going until
// ctx ends, starting it again (after a growing pause) when it ends.
func (s *Server) continuous(ctx context.Context, p *pipe) {
	trigger := TriggerContinuous
	for _, st := range p.streams {
		if st.Unbounded && strings.Contains(st.Kind, "webhook") {
			trigger = TriggerWebhook
		}
	}
	wait := s.cfg.RestartBackoff
	for {
		rec, err := s.start(p, p.unbounded, trigger)
		if errors.Is(err, errStopping) {
			return
		}
		began := time.Now()
		if err == nil {
			s.mu.Lock()
			ar := s.active[rec.ID]
			s.mu.Unlock()
			if ar != nil {
				select {
				case <-ar.done:
				case <-ctx.Done():
					<-ar.done
					return
				}
			}
		} else {
			s.log.Warn("the continuous run could not start", "pipeline", p.name, "error", s.red.String(err.Error()))
		}
		if time.Since(began) > 5*time.Minute {
			wait = s.cfg.RestartBackoff // it ran a good while: start over quickly
		}
		s.log.Info("the continuous run ended; starting it again", "pipeline", p.name, "in", wait.String())
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, time.Minute)
	}
}

// route is a webhook path a running source serves.
type route struct {
	pipeline string
	handler  http.Handler
}

// routeSource is a source that receives HTTP requests (the webhook
// source): the server mounts its handlers while its run goes on.
type routeSource interface {
	Routes() map[string]http.Handler
}

// mountRoutes mounts the handlers of a source that has routes, and
// returns what unmounts them.
func (s *Server) mountRoutes(p *pipe, src any) func() {
	rs, ok := src.(routeSource)
	if !ok {
		return func() {}
	}
	routes := rs.Routes()
	s.mu.Lock()
	for path, h := range routes {
		if reservedPath(path) {
			s.log.Error("a webhook path collides with the server's own: not mounted", "pipeline", p.name, "path", path)
			continue
		}
		if other, taken := s.routes[path]; taken && other.pipeline != p.name {
			s.log.Error("a webhook path is served by another pipeline already: not mounted", "pipeline", p.name, "path", path, "other", other.pipeline)
			continue
		}
		s.routes[path] = &route{pipeline: p.name, handler: h}
	}
	s.mu.Unlock()
	p.mu.Lock()
	p.hooks = src
	p.mu.Unlock()
	return func() {
		s.mu.Lock()
		for path := range routes {
			if r := s.routes[path]; r != nil && r.pipeline == p.name {
				delete(s.routes, path)
			}
		}
		s.mu.Unlock()
		p.mu.Lock()
		if p.hooks == src {
			p.hooks = nil
		}
		p.mu.Unlock()
	}
}

func reservedPath(path string) bool {
	for _, pre := range []string{"/v1/", "/ui/", "/metrics", "/healthz", "/readyz", "/api/"} {
		if strings.HasPrefix(path, pre) || path == strings.TrimSuffix(pre, "/") {
			return true
		}
	}
	return path == "/" || path == ""
}
