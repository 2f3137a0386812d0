package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/dest/jsonl"
	"github.com/ferry-dev/ferry/internal/engine"
	"github.com/ferry-dev/ferry/internal/httpx"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/source"
	"github.com/ferry-dev/ferry/internal/spec"
)

// authoring holds ferry run's flags for connector authors.
type authoring struct {
	dryRun  bool
	limit   int
	output  string
	record  string
	replay  string
	verbose bool
}

// prepare applies the flags to the engine's options. It returns a
// function to call once the run is over (dry runs print their records).
func (a *app) prepare(ctx context.Context, p *spec.Pipeline, f *authoring, opts *engine.Options) (finish func() error, err error) {
	finish = func() error { return nil }
	if f.record != "" && f.replay != "" {
		return nil, usageError{errors.New("--record and --replay exclude each other")}
	}
	if f.limit < 0 {
		return nil, usageError{errors.New("--limit must be positive")}
	}
	if (f.limit > 0 || f.output != "") && !f.dryRun {
		return nil, usageError{errors.New("--limit and --output go with --dry-run")}
	}
	if f.verbose {
		if a.logLevel == "warn" {
			a.logLevel = "debug"
		}
		log, err := a.logger()
		if err != nil {
			return nil, err
		}
		opts.Observer = engine.ObserverFunc(func(e engine.Event) {
			rq, ok := e.(engine.Requested)
			if !ok {
				return
			}
			args := []any{"stream", rq.Stream, "method", rq.Method, "url", rq.URL, "status", rq.Status, "attempt", rq.Attempt, "duration", rq.Duration, "bytes", rq.Bytes}
			if rq.Err != "" {
				args = append(args, "error", rq.Err)
			}
			if rq.Retry {
				args = append(args, "retry_in", rq.Wait)
			}
			log.Info("http", args...) // through the redacting handler
		})
	}
	switch {
	case f.record != "":
		opts.Transport = func(next http.RoundTripper) http.RoundTripper {
			return &httpx.Recorder{Next: next, Dir: f.record, Redactor: a.red}
		}
	case f.replay != "":
		rp, err := httpx.NewReplayer(f.replay, a.red)
		if err != nil {
			return nil, usageError{err}
		}
		opts.Transport = rp
	}
	if !f.dryRun {
		return finish, nil
	}
	// A dry run writes JSON Lines into a fresh directory, so it starts
	// from no state and leaves the pipeline's destination alone. JSON
	// Lines files only append: each mode becomes its appending kind.
	if p.Streams == nil {
		p.Streams = map[string]*spec.StreamSettings{}
	}
	for _, name := range p.StreamOrder {
		mode := p.ModeOf(name)
		switch mode {
		case dest.FullRefreshOverwrite:
			mode = dest.FullRefreshAppend
		case dest.IncrementalDedup:
			mode = dest.IncrementalAppend
		}
		if p.Streams[name] == nil {
			p.Streams[name] = &spec.StreamSettings{}
		}
		p.Streams[name].Mode = mode
	}
	dir := f.output
	print := dir == ""
	if print {
		if dir, err = os.MkdirTemp("", "ferry-dry-run-"); err != nil {
			return nil, err
		}
	}
	no := false
	d, err := dest.Open(ctx, "jsonl", &jsonl.Config{Dir: dir, Metadata: &no}, dest.Options{Dir: p.Dir})
	if err != nil {
		return nil, err
	}
	opts.Destination, opts.State = d, &memState{}
	if f.limit > 0 {
		opts.WrapSource = func(src source.Source) source.Source {
			return &limitSource{Source: src, limit: int64(f.limit), counts: map[string]*atomic.Int64{}}
		}
	}
	// Standard output is the records'; the summary goes to standard error.
	out := a.out
	a.out = a.err
	finish = func() error {
		a.out = out
		if !print {
			fmt.Fprintf(a.err, "dry run: the records are in %s\n", dir)
			return nil
		}
		defer os.RemoveAll(dir)
		return printJSONL(a.out, dir)
	}
	return finish, nil
}

// printJSONL writes every table's lines as {"table": T, "record": R}.
func printJSONL(w io.Writer, dir string) error {
	names, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if err != nil {
		return err
	}
	slices.Sort(names)
	bw := bufio.NewWriter(w)
	for _, n := range names {
		table := strings.TrimSuffix(filepath.Base(n), ".jsonl")
		if strings.HasPrefix(table, "_ferry") {
			continue
		}
		f, err := os.Open(n)
		if err != nil {
			return err
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 64<<20)
		tq, _ := json.Marshal(table)
		for sc.Scan() {
			fmt.Fprintf(bw, "{\"table\":%s,\"record\":%s}\n", tq, sc.Bytes())
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// limitSource ends each stream after limit records: the page that
// reaches it is cut and marked last, and the read stops.
type limitSource struct {
	source.Source
	limit  int64
	mu     sync.Mutex
	counts map[string]*atomic.Int64
}

func (l *limitSource) Read(ctx context.Context, req source.ReadRequest) error {
	l.mu.Lock()
	c := l.counts[req.Stream]
	if c == nil {
		c = &atomic.Int64{}
		l.counts[req.Stream] = c
	}
	l.mu.Unlock()
	emit := req.Emit
	req.Emit = func(ctx context.Context, p *record.Page) error {
		n := c.Add(int64(len(p.Records)))
		if over := n - l.limit; over >= 0 {
			keep := max(0, len(p.Records)-int(over))
			p.Records = p.Records[:keep]
			if p.Ops != nil {
				p.Ops = p.Ops[:keep]
			}
			p.Last = true
			if err := emit(ctx, p); err != nil {
				return err
			}
			return source.ErrStop
		}
		return emit(ctx, p)
	}
	err := l.Source.Read(ctx, req)
	if errors.Is(err, source.ErrStop) {
		return nil
	}
	return err
}

// memState keeps a dry run's state in memory: it starts from nothing and
// is forgotten at the end.
type memState struct {
	mu sync.Mutex
	m  map[[3]string]json.RawMessage
}

var _ dest.StateStore = (*memState)(nil)

func (s *memState) Load(_ context.Context, pipeline, stream, partition string) (json.RawMessage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[[3]string{pipeline, stream, partition}], nil
}

func (s *memState) Save(_ context.Context, pipeline, _ string, states []record.Checkpoint) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[[3]string]json.RawMessage{}
	}
	for _, c := range states {
		s.m[[3]string{pipeline, c.Stream, c.Partition}] = c.State
	}
	return nil
}

func (s *memState) List(_ context.Context, pipeline, stream string) ([]dest.StateEntry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []dest.StateEntry
	for k, v := range s.m {
		if k[0] == pipeline && (stream == "" || k[1] == stream) {
			out = append(out, dest.StateEntry{Stream: k[1], Partition: k[2], State: v})
		}
	}
	slices.SortFunc(out, func(a, b dest.StateEntry) int {
		return strings.Compare(a.Stream+"\x00"+a.Partition, b.Stream+"\x00"+b.Partition)
	})
	return out, nil
}

func (s *memState) Reset(_ context.Context, pipeline, stream string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k := range s.m {
		if k[0] == pipeline && (stream == "" || k[1] == stream) {
			delete(s.m, k)
			n++
		}
	}
	return n, nil
}

func (s *memState) Lock(context.Context, string, string, dest.Holder) (func(), error) {
	return func() {}, nil
}
