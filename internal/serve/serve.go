// Package serve is ferry serve: a long-running process that runs
// pipelines on their schedules and continuously (webhook and change data
// capture sources), records every run in a metadata store, and answers a
// control-plane HTTP API (/v1, described by an OpenAPI document at
// /v1/openapi.json), health checks, Prometheus metrics and the web UI.
//
// Runs go through the same engine as ferry run. Two runs of one stream
// never overlap: the server refuses (or, for a schedule, records as
// skipped) a run whose streams are busy in this process, and the engine's
// stream locks refuse one that another process holds.
package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/ferry-dev/ferry/internal/metastore"
	"github.com/ferry-dev/ferry/internal/metrics"
	"github.com/ferry-dev/ferry/internal/redact"
	"github.com/ferry-dev/ferry/internal/schedule"
	"github.com/ferry-dev/ferry/internal/schema"
	"github.com/ferry-dev/ferry/internal/source"
	"github.com/ferry-dev/ferry/internal/spec"
)

// Pipeline is a loaded pipeline to serve.
type Pipeline struct {
	Spec     *spec.Pipeline
	Resolved *spec.Resolved
	// File is the pipeline file's path, as given.
	File string
}

// Config configures a Server.
type Config struct {
	Pipelines []Pipeline
	// Store records runs and keeps token hashes. The server does not close
	// it.
	Store *metastore.Store
	// Listen is the address to bind (default 127.0.0.1:7070).
	Listen string
	// Expose allows binding a non-loopback address; it needs at least one
	// token.
	Expose bool
	// Tokens are token hashes from a tokens file, besides the store's.
	Tokens []metastore.Token
	// Logger receives the server's logs (already redacting); every run
	// logs through it with run_id and pipeline attributes.
	Logger *slog.Logger
	// Redactor hides secrets in logs and messages.
	Redactor *redact.Redactor
	// ShutdownTimeout bounds a graceful shutdown (default 30s).
	ShutdownTimeout time.Duration
	// UI, when set, is mounted at /ui/ (paths relative to /ui/).
	UI http.Handler
	// API, when set, is the table API (internal/tableapi), mounted at
	// /api/ with full paths. Unless APIAuthenticates, requests reach it
	// through the server's tokens like /v1 (read: GET, operator: writes).
	API http.Handler
	// APIAuthenticates says the table API checks credentials itself (its
	// own tokens, JWTs and roles), so the server's tokens do not apply.
	APIAuthenticates bool
	// Instance names this process in run records (default host:pid).
	Instance string
	// RestartBackoff is the first wait before a continuous run that ended
	// is started again (default 1s, doubling to a minute).
	RestartBackoff time.Duration
}

// Server serves pipelines. Create it with New, then call Run.
type Server struct {
	cfg     Config
	log     *slog.Logger
	red     *redact.Redactor
	store   *metastore.Store
	metrics *metrics.Metrics
	pipes   []*pipe
	byName  map[string]*pipe
	host    string
	auth    *authenticator

	// ctx is the parent of every run's context; cancelRuns ends them.
	ctx        context.Context
	cancelRuns context.CancelFunc
	runs       sync.WaitGroup

	mu       sync.Mutex
	active   map[string]*activeRun // by run id
	busy     map[string]string     // pipeline\x00stream → run id
	routes   map[string]*route     // webhook paths
	stopping bool

	tp throughput

	ready readiness
}

// pipe is a served pipeline.
type pipe struct {
	Pipeline
	name    string
	cron    *schedule.Cron
	jitter  time.Duration
	streams []streamInfo
	// unbounded lists the streams that never end: they run continuously.
	unbounded []string
	// next is when the schedule fires next (zero: no schedule).
	mu   sync.Mutex
	next time.Time
	// hooks is the running continuous run's source, when it reports
	// webhook deliveries.
	hooks any
}

type streamInfo struct {
	Name, Table, Mode, Kind string
	Unbounded               bool
}

// bounded returns the streams that end (what a trigger runs by default).
func (p *pipe) bounded() []string {
	var out []string
	for _, s := range p.streams {
		if !s.Unbounded {
			out = append(out, s.Name)
		}
	}
	return out
}

// New prepares a server: it checks the configuration, opens each
// pipeline once to learn its streams (which are unbounded, what their
// tables are called), and marks runs that a killed process on this host
// left running as failed. It starts nothing.
func New(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("serve: no metadata store")
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:7070"
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 30 * time.Second
	}
	if cfg.RestartBackoff <= 0 {
		cfg.RestartBackoff = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Redactor == nil {
		cfg.Redactor = redact.New()
	}
	host, _ := os.Hostname()
	if cfg.Instance == "" {
		cfg.Instance = fmt.Sprintf("%s:%d", host, os.Getpid())
	}
	s := &Server{cfg: cfg, log: cfg.Logger, red: cfg.Redactor, store: cfg.Store, host: host, byName: map[string]*pipe{},
		active: map[string]*activeRun{}, busy: map[string]string{}, routes: map[string]*route{}}
	s.metrics = metrics.New()
	s.metrics.AddCollector(webhookCollector{s})
	for _, p := range cfg.Pipelines {
		pp, err := s.prepare(ctx, p)
		if err != nil {
			return nil, err
		}
		if _, dup := s.byName[pp.name]; dup {
			return nil, fmt.Errorf("%s: a pipeline named %s is served already: give one of them another name", p.File, pp.name)
		}
		s.pipes = append(s.pipes, pp)
		s.byName[pp.name] = pp
	}
	if n, err := s.store.FailInterrupted(ctx, host, processAlive); err != nil {
		return nil, err
	} else if n > 0 {
		s.log.Warn("runs left unfinished by an earlier ferry serve were marked failed", "runs", n)
	}
	a, err := newAuthenticator(ctx, s.store, cfg.Tokens)
	if err != nil {
		return nil, err
	}
	s.auth = a
	return s, nil
}

// prepare opens a pipeline once (source and destination, no request) to
// learn its streams.
func (s *Server) prepare(ctx context.Context, p Pipeline) (*pipe, error) {
	sp := p.Spec
	pp := &pipe{Pipeline: p, name: sp.Name}
	if sc := sp.Schedule; sc != nil {
		c, err := schedule.Parse(sc.Cron)
		if err != nil {
			return nil, fmt.Errorf("%s: schedule: %w", p.File, err)
		}
		pp.cron = c
		if sc.Jitter != "" {
			if pp.jitter, err = spec.ParseDuration(sc.Jitter); err != nil {
				return nil, fmt.Errorf("%s: schedule.jitter: %w", p.File, err)
			}
		}
	}
	conn := sp.Connector.Inline
	src, err := source.New(conn.Type, conn.Body, source.Options{Name: conn.Name, Config: p.Resolved.Config, Redactor: s.red, Logger: s.log.With("pipeline", sp.Name), Dir: sp.Dir})
	if err != nil {
		return nil, fmt.Errorf("%s: connector %s: %w", p.File, conn.Name, err)
	}
	defer src.Close()
	unbounded := map[string]bool{}
	for _, st := range src.Streams() {
		if st.Unbounded {
			unbounded[st.Name] = true
		}
	}
	kind := conn.Type
	if kind == "" || kind == "rest" {
		kind = "pull"
	}
	for _, name := range sp.StreamOrder {
		pp.streams = append(pp.streams, streamInfo{Name: name, Table: schema.Normalize(sp.TableOf(name)), Mode: string(sp.ModeOf(name)), Kind: kind, Unbounded: unbounded[name]})
		if unbounded[name] {
			pp.unbounded = append(pp.unbounded, name)
		}
	}
	return pp, nil
}

// processAlive reports whether a process with this pid runs on this host.
func processAlive(pid int) bool {
	if pid == os.Getpid() {
		return true
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// Metrics returns the server's metrics registry (for tests and for
// mounting elsewhere).
func (s *Server) Metrics() *metrics.Metrics { return s.metrics }

// Listen binds the configured address, refusing a non-loopback one
// unless exposing was asked for and a token exists.
func (s *Server) Listen() (net.Listener, error) {
	host, _, err := net.SplitHostPort(s.cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("--listen %q: want host:port (such as 127.0.0.1:7070)", s.cfg.Listen)
	}
	loopback := isLoopbackHost(host)
	if !loopback {
		if !s.cfg.Expose {
			return nil, fmt.Errorf("--listen %s is not a loopback address: pass --expose to serve other hosts (with an API token: ferry serve token create)", s.cfg.Listen)
		}
		if !s.auth.hasTokens() {
			return nil, errors.New("--expose needs at least one API token, so that other hosts cannot drive the server: create one with ferry serve token create --role operator, or pass --tokens-file")
		}
	}
	l, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return nil, err
	}
	s.auth.loopbackOnly = loopback
	return l, nil
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Run serves on l until ctx ends, then shuts down gracefully: it stops
// accepting requests and scheduling runs, cancels the runs in flight
// (each commits what it has written and is recorded), and returns within
// the shutdown timeout.
func (s *Server) Run(ctx context.Context, l net.Listener) error {
	s.ctx, s.cancelRuns = context.WithCancel(context.WithoutCancel(ctx))
	defer s.cancelRuns()
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		WriteTimeout:      2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	var bg sync.WaitGroup
	schedCtx, stopSched := context.WithCancel(ctx)
	defer stopSched()
	for _, p := range s.pipes {
		if p.cron != nil {
			bg.Go(func() { s.schedule(schedCtx, p) })
		}
		if len(p.unbounded) > 0 {
			bg.Go(func() { s.continuous(schedCtx, p) })
		}
	}
	bg.Go(func() { s.flushLoop(schedCtx) })
	s.log.Info("serving", "listen", l.Addr().String(), "pipelines", len(s.pipes))

	var err error
	select {
	case <-ctx.Done():
	case err = <-served:
	}
	// Shut down: no new requests, no new runs; runs in flight are
	// cancelled and commit what they have.
	s.log.Info("shutting down", "runs_in_flight", s.activeCount())
	deadline := time.Now().Add(s.cfg.ShutdownTimeout)
	stopSched()
	s.mu.Lock()
	s.stopping = true
	s.mu.Unlock()
	s.cancelRuns()
	shutCtx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	if serr := srv.Shutdown(shutCtx); serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		srv.Close()
	}
	done := make(chan struct{})
	go func() { s.runs.Wait(); bg.Wait(); close(done) }()
	select {
	case <-done:
	case <-shutCtx.Done():
		return fmt.Errorf("runs were still finishing after the shutdown timeout (%s): exiting anyway; their last commits stay and the next runs resume", s.cfg.ShutdownTimeout)
	}
	s.flush(context.Background())
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

func (s *Server) activeCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.active)
}
