package serve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ferry-dev/ferry/internal/metastore"
	"github.com/ferry-dev/ferry/internal/redact"
)

// maxRunLogLines bounds the log lines kept per run; past it, lines are
// counted and the count is logged at the end.
const maxRunLogLines = 20000

// logBuffer collects a run's log lines (info and above) until they are
// flushed to the store, every second and when the run ends.
type logBuffer struct {
	runID string

	mu      sync.Mutex
	seq     int64
	pending []metastore.LogLine
	dropped int64
}

func newLogBuffer(runID string) *logBuffer { return &logBuffer{runID: runID} }

func (b *logBuffer) add(l metastore.LogLine) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.seq >= maxRunLogLines {
		b.dropped++
		return
	}
	b.seq++
	l.Seq = b.seq
	b.pending = append(b.pending, l)
}

// finish adds a last line counting the lines that were not kept.
func (b *logBuffer) finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dropped > 0 {
		b.seq++
		b.pending = append(b.pending, metastore.LogLine{Seq: b.seq, Time: time.Now().UTC(), Level: "WARN",
			Msg: fmt.Sprintf("%d more log lines of this run were not kept (at most %d are)", b.dropped, maxRunLogLines)})
		b.dropped = 0
	}
}

// flush stores the pending lines.
func (b *logBuffer) flush(ctx context.Context, store *metastore.Store, log *slog.Logger) {
	b.mu.Lock()
	lines := b.pending
	b.pending = nil
	b.mu.Unlock()
	if len(lines) == 0 {
		return
	}
	if err := store.AppendLogs(ctx, b.runID, lines); err != nil {
		log.Warn("could not store the run's log lines", "run_id", b.runID, "lines", len(lines), "error", err.Error())
	}
}

// Enabled implements slog.Handler: the run's history keeps info and up.
func (b *logBuffer) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

// Handle implements slog.Handler.
func (b *logBuffer) Handle(ctx context.Context, r slog.Record) error {
	return captureHandler{b: b}.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (b *logBuffer) WithAttrs(as []slog.Attr) slog.Handler { return captureHandler{b: b}.WithAttrs(as) }

// WithGroup implements slog.Handler.
func (b *logBuffer) WithGroup(name string) slog.Handler { return captureHandler{b: b}.WithGroup(name) }

// captureHandler turns log records into a run's log lines: the stream
// attribute has its own field, the others (but run_id and pipeline,
// which every line of a run has) go into attrs.
type captureHandler struct {
	b     *logBuffer
	attrs []slog.Attr
	group string
}

func (h captureHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.b.Enabled(ctx, l) }

func (h captureHandler) Handle(_ context.Context, r slog.Record) error {
	line := metastore.LogLine{Time: r.Time.UTC(), Level: r.Level.String(), Msg: r.Message}
	attrs := map[string]any{}
	take := func(a slog.Attr) {
		switch a.Key {
		case "run_id", "pipeline":
			return
		case "stream":
			s := a.Value.String()
			line.Stream = &s
			return
		}
		key := a.Key
		if h.group != "" {
			key = h.group + "." + key
		}
		attrs[key] = a.Value.Resolve().Any()
	}
	for _, a := range h.attrs {
		take(a)
	}
	r.Attrs(func(a slog.Attr) bool { take(a); return true })
	if len(attrs) > 0 {
		raw, err := json.Marshal(attrs)
		if err != nil {
			raw, _ = json.Marshal(map[string]string{"attrs": fmt.Sprint(attrs)})
		}
		line.Attrs = raw
	}
	h.b.add(line)
	return nil
}

func (h captureHandler) WithAttrs(as []slog.Attr) slog.Handler {
	h.attrs = append(append([]slog.Attr{}, h.attrs...), as...)
	return h
}

func (h captureHandler) WithGroup(name string) slog.Handler {
	if h.group != "" {
		name = h.group + "." + name
	}
	h.group = name
	return h
}

// redactHandler redacts what reaches h.
func redactHandler(h slog.Handler, red *redact.Redactor) slog.Handler { return redact.Handler(h, red) }

// teeHandler sends each record to both handlers (each filters by its own
// level).
type teeHandler struct{ a, b slog.Handler }

func (t teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return t.a.Enabled(ctx, l) || t.b.Enabled(ctx, l)
}

func (t teeHandler) Handle(ctx context.Context, r slog.Record) error {
	var errs []error
	if t.a.Enabled(ctx, r.Level) {
		errs = append(errs, t.a.Handle(ctx, r.Clone()))
	}
	if t.b.Enabled(ctx, r.Level) {
		errs = append(errs, t.b.Handle(ctx, r.Clone()))
	}
	return errors.Join(errs...)
}

func (t teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return teeHandler{t.a.WithAttrs(as), t.b.WithAttrs(as)}
}

func (t teeHandler) WithGroup(name string) slog.Handler {
	return teeHandler{t.a.WithGroup(name), t.b.WithGroup(name)}
}

// throughput sums the rows committed per pipeline and minute until they
// are flushed to the store.
type throughput struct {
	mu      sync.Mutex
	pending map[tpKey]int64
}

type tpKey struct {
	pipeline string
	minute   int64
}

func (t *throughput) add(pipeline string, at time.Time, rows int64) {
	if rows <= 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.pending == nil {
		t.pending = map[tpKey]int64{}
	}
	t.pending[tpKey{pipeline, at.UTC().Truncate(time.Minute).Unix()}] += rows
}

func (t *throughput) flush(ctx context.Context, store *metastore.Store, log *slog.Logger) {
	t.mu.Lock()
	p := t.pending
	t.pending = nil
	t.mu.Unlock()
	for k, n := range p {
		if err := store.AddThroughput(ctx, k.pipeline, time.Unix(k.minute, 0), n); err != nil {
			log.Warn("could not record throughput", "pipeline", k.pipeline, "error", err.Error())
			t.add(k.pipeline, time.Unix(k.minute, 0), n) // try again at the next flush
		}
	}
}

// flushLoop stores the runs' log lines and the throughput every second
// until ctx ends.
func (s *Server) flushLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.flush(ctx)
		}
	}
}

func (s *Server) flush(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	for _, ar := range s.liveRuns() {
		ar.logs.flush(ctx, s.store, s.log)
	}
	s.tp.flush(ctx, s.store, s.log)
}
