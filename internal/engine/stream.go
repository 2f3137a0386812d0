package engine

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/normalize"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/schema"
	"github.com/ferry-dev/ferry/internal/source"
	"github.com/ferry-dev/ferry/internal/spec"
)

var parseURL = url.Parse

// channel sizes between the stages: small, so memory does not follow the
// data, but enough to keep every stage busy.
const (
	pageBuffer  = 4
	chunkBuffer = 4
)

// writeTimeout bounds the write of one chunk once it has started (a chunk
// is one page: this is far more than any healthy database needs).
const writeTimeout = 2 * time.Minute

// streamRun is the state of one stream's sync.
type streamRun struct {
	r      *Run
	sp     *StreamProgress
	info   source.Stream
	mode   string
	child  bool
	passID string
	resume bool
	state  dest.StateStore
	norm   *normalize.Normalizer
	w      dest.StreamWriter

	mu    sync.Mutex
	parts map[string]*partTrack // partitions being read
	// done holds the partitions of a child stream that this pass finished
	// but whose state is not committed yet, with the number of the chunk
	// that finished them; a committed one is known from its state. A
	// parent listed twice (pagination over changing data) is thus read
	// once, with memory bounded by what one commit covers.
	done      map[string]int64
	converted int64 // chunks made so far (under mu)

	changes []schema.Change
	filled  map[string]bool // data columns that got a value this run
	base    int64           // rows committed by earlier attempts of this run
	top     PartitionState  // the stream-level state as loaded
	lastTop *PartitionState // the stream-level state of the last page (streams without partitions)
}

// partTrack follows one partition through a pass.
type partTrack struct {
	saved  PartitionState // as loaded at the partition's start
	since  string
	filter normalize.Filter
	max    boundary // largest cursor of the pass so far, and its rows
}

// stream syncs one stream and returns its summary. While the database is
// unavailable (a transient error), the stream starts over from its last
// commit, with backoff, for up to Options.RetryFor.
func (r *Run) stream(ctx context.Context, sp *StreamProgress) StreamSummary {
	sp.started.Store(time.Now().UnixMicro())
	sp.status.Store(Running)
	sum := StreamSummary{Stream: sp.Name, Table: sp.Table, Mode: sp.Mode}
	retryFor := r.opts.RetryFor
	if retryFor == 0 {
		retryFor = 2 * time.Minute
	}
	begun := time.Now()
	deadline := begun.Add(retryFor)
	wait := time.Second
	var err error
	for {
		err = r.syncStream(ctx, sp, &sum)
		if err == nil || !dest.IsTransient(err) || ctx.Err() != nil || time.Now().Add(wait).After(deadline) {
			break
		}
		sp.Retries.Add(1)
		r.log.Warn("the database is unavailable; retrying the stream from its last commit", "stream", sp.Name, "in", wait, "error", r.red.String(err.Error()))
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
	if err != nil && dest.IsTransient(err) {
		err = fmt.Errorf("the database stayed unavailable (tried %d more times over %s; the limit is %s): %w; committed rows and state are safe, run again once it is back",
			sp.Retries.Load(), time.Since(begun).Round(100*time.Millisecond), retryFor, err)
	}
	sp.finished.Store(time.Now().UnixMicro())
	sum.Records, sum.Pages = sp.Committed.Load(), sp.Pages.Load()
	sum.Rejected, sum.Filtered = sp.Rejected.Load(), sp.Filtered.Load()
	sum.Duration = sp.Elapsed()
	if err != nil {
		sp.status.Store(Failed)
		sum.Status = "failed"
		if ctx.Err() != nil {
			sum.Status = "cancelled"
			err = fmt.Errorf("interrupted; %d rows and their state were committed, and the next run resumes there", sp.Committed.Load())
		}
		sum.Error = r.red.URL(r.red.String(err.Error()))
		if sum.Status == "cancelled" {
			r.log.Warn("stream interrupted", "stream", sp.Name, "committed_rows", sp.Committed.Load())
		} else {
			r.log.Error("stream failed", "stream", sp.Name, "error", sum.Error)
		}
		return sum
	}
	sp.status.Store(Succeeded)
	sum.Status = "succeeded"
	return sum
}

func (r *Run) syncStream(ctx context.Context, sp *StreamProgress, sum *StreamSummary) error {
	p := r.opts.Pipeline
	info, ok := source.Find(r.src, sp.Name)
	if !ok {
		return fmt.Errorf("the source has no stream %q", sp.Name)
	}
	s := &streamRun{r: r, sp: sp, info: info, mode: sp.Mode, child: info.Parent != "", state: r.dst.State(), parts: map[string]*partTrack{}, done: map[string]int64{}, filled: map[string]bool{}, base: sp.Committed.Load()}
	// The stream's own state row says whether a pass is to be resumed.
	raw, err := s.state.Load(ctx, p.Name, sp.Name, "")
	if err != nil {
		return err
	}
	top, err := DecodeState(raw)
	if err != nil {
		return err
	}
	s.top = top
	s.passID = r.ID
	if top.Pass != nil && top.Pass.ID != "" {
		s.passID, s.resume = top.Pass.ID, true
		r.log.Info("resuming an interrupted pass", "stream", sp.Name, "pass", s.passID)
	}
	s.w, err = r.dst.OpenStream(ctx, dest.StreamConfig{Pipeline: p.Name, Stream: sp.Name, Table: sp.Table, Mode: sp.Mode, RunID: r.ID, Resume: s.resume})
	if err != nil {
		return err
	}
	sch := p.SchemaOf(sp.Name)
	s.norm, err = normalize.New(normalize.Options{
		Table:         sp.Table,
		PrimaryKey:    info.PrimaryKey,
		Cursor:        info.Cursor,
		Hints:         info.Hints,
		Policy:        sch.Policy,
		Nested:        sch.Nested,
		MaxDepth:      sch.MaxDepth,
		MaxIdentLen:   r.dst.MaxIdentLen(),
		ParentFields:  info.ParentFields,
		RunID:         r.ID,
		Existing:      s.w.Existing(),
		TrackBoundary: info.Cursor != "" && (sp.Mode == spec.IncrementalAppend || sp.Mode == spec.IncrementalDedup),
	})
	if err != nil {
		s.w.Abort(ctx)
		return fmt.Errorf("table %s: %w", sp.Table, err)
	}
	existing := s.w.Existing()
	sum.NewTable = existing == nil
	err = s.run(ctx)
	if !sum.NewTable {
		sum.Drift, sum.Changes = nil, nil
		drift := append([]schema.Change(nil), s.changes...)
		// Columns the previous run filled and this one did not, when this
		// run brought data.
		if sp.Committed.Load() > 0 {
			for _, name := range s.top.Filled {
				if c := existing.Column(name); c != nil && !s.filled[name] {
					drift = append(drift, schema.Change{Kind: schema.Missing, Column: name, From: c.Type})
				}
			}
		}
		sum.Drift = drift
		for _, c := range drift {
			sum.Changes = append(sum.Changes, c.String())
		}
	}
	return err
}

// noteCommitted publishes how many rows are durable.
func (s *streamRun) noteCommitted() { s.sp.Committed.Store(s.base + s.w.Committed()) }

// incremental reports whether the stream reads from a saved cursor.
func (s *streamRun) incremental() bool {
	return s.info.Cursor != "" && (s.mode == spec.IncrementalAppend || s.mode == spec.IncrementalDedup)
}

// start decides where a partition begins (called by the source).
func (s *streamRun) start(ctx context.Context, part *record.Partition) (source.Start, error) {
	// A partition being read, or finished and not yet committed, is not
	// read again; the key is taken before its state is loaded, so a
	// duplicate started meanwhile skips too.
	t := &partTrack{}
	s.mu.Lock()
	_, reading := s.parts[part.Key]
	_, finished := s.done[part.Key]
	if !reading && !finished {
		s.parts[part.Key] = t
	}
	s.mu.Unlock()
	if reading || finished {
		s.r.log.Debug("partition listed again in this pass; it is read once", "stream", s.sp.Name, "partition", part.Key)
		return source.Start{Skip: true}, nil
	}
	out, err := s.startTrack(ctx, part, t)
	if err != nil || out.Skip {
		s.mu.Lock()
		delete(s.parts, part.Key)
		s.mu.Unlock()
	}
	return out, err
}

// startTrack loads a partition's state into t and says where it begins.
func (s *streamRun) startTrack(ctx context.Context, part *record.Partition, t *partTrack) (source.Start, error) {
	// A stream without partitions has the state syncStream loaded; a
	// partition of a child stream has its own.
	st := s.top
	if s.child || part.Key != "" {
		raw, err := s.state.Load(ctx, s.r.opts.Pipeline.Name, s.sp.Name, part.Key)
		if err != nil {
			return source.Start{}, err
		}
		if st, err = DecodeState(raw); err != nil {
			return source.Start{}, err
		}
	}
	if s.child && st.Completed == s.passID {
		return source.Start{Skip: true}, nil
	}
	t.saved = st
	out := source.Start{}
	if st.Pass != nil && st.Pass.ID == s.passID {
		t.since = st.Pass.Since
		t.max = newBoundary(st.Pass.MaxCursor, st.Pass.MaxSeen)
		out.Resume = st.Pass.Position
	} else {
		t.max = newBoundary("", nil)
		if s.incremental() {
			var err error
			if t.since, err = since(s.info, st.Cursor); err != nil {
				return source.Start{}, fmt.Errorf("stream %s: %w", s.sp.Name, err)
			}
		}
	}
	if s.incremental() {
		out.Since = t.since
		// Records below the start are dropped (for APIs that cannot filter),
		// and so are those at the saved cursor that were synced before. In
		// append mode the lookback window is not re-added: only dedup can
		// take records again.
		min := t.since
		if s.mode == spec.IncrementalAppend && st.Cursor != "" {
			min = st.Cursor
		}
		if min != "" {
			c := normalize.ParseCursor(min)
			t.filter.Min = &c
		}
		if st.Cursor != "" {
			c := normalize.ParseCursor(st.Cursor)
			t.filter.Boundary = &c
			t.filter.Seen = newBoundary(st.Cursor, st.Seen).seen
		}
	}
	return out, nil
}

// convert turns a page into a chunk carrying the partition's checkpoint.
func (s *streamRun) convert(p *record.Page) (*record.Chunk, error) {
	key := ""
	if p.Partition != nil {
		key = p.Partition.Key
	}
	s.mu.Lock()
	t := s.parts[key]
	s.converted++
	if p.Last && t != nil {
		delete(s.parts, key)
		if s.child {
			s.done[key] = s.converted
		}
	}
	s.mu.Unlock()
	if t == nil {
		return nil, fmt.Errorf("stream %s: page for partition %q that was never started", s.sp.Name, key)
	}
	c, res, err := s.norm.Page(p, t.filter)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.Request, err)
	}
	s.changes = append(s.changes, res.Changes...)
	for j, col := range c.Table.Columns {
		if col.Origin != schema.FromData || s.filled[col.Name] {
			continue
		}
		for _, null := range c.Cols[j].Nulls {
			if !null {
				s.filled[col.Name] = true
				break
			}
		}
	}
	if res.MaxCursor != nil {
		t.max.add(res.MaxCursor.Text, res.AtMax)
	}
	s.sp.Pages.Add(1)
	s.sp.Rejected.Add(int64(res.Rejected))
	s.sp.Filtered.Add(int64(res.Filtered))
	var st PartitionState
	if p.Last {
		st = PartitionState{Cursor: t.saved.Cursor, Seen: t.saved.Seen}
		if s.incremental() {
			b := newBoundary(t.saved.Cursor, t.saved.Seen)
			b.merge(t.max)
			st.Cursor, st.Seen = b.cursor, b.hashes()
		}
		if s.child {
			st.Completed = s.passID
		}
	} else {
		st = PartitionState{Cursor: t.saved.Cursor, Seen: t.saved.Seen, Completed: t.saved.Completed,
			Pass: &Pass{ID: s.passID, Since: t.since, Position: p.Position, MaxCursor: t.max.cursor, MaxSeen: t.max.hashes()}}
	}
	if key == "" && !s.child {
		s.lastTop = &st
	}
	c.Checkpoints = append(c.Checkpoints, record.Checkpoint{Stream: s.sp.Name, Partition: key, State: encodeState(st)})
	return c, nil
}

// run drives the three stages and the commit policy.
func (s *streamRun) run(parent context.Context) error {
	p := s.r.opts.Pipeline
	every, interval := spec.DefaultCheckpointRows, spec.DefaultCheckpointInterval
	if p.Sync != nil {
		if p.Sync.CheckpointRows > 0 {
			every = p.Sync.CheckpointRows
		}
		if d, err := spec.ParseDuration(p.Sync.CheckpointInterval); err == nil && d > 0 {
			interval = d
		}
	}
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	pages := make(chan *record.Page, pageBuffer)
	chunks := make(chan *record.Chunk, chunkBuffer)
	var readErr, convErr error
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		defer close(pages)
		readErr = s.r.src.Read(ctx, source.ReadRequest{
			Stream: s.sp.Name,
			Start:  s.start,
			Emit: func(ctx context.Context, pg *record.Page) error {
				select {
				case pages <- pg:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			},
		})
	}()
	go func() {
		defer wg.Done()
		defer close(chunks)
		for pg := range pages {
			c, err := s.convert(pg)
			if err != nil {
				convErr = err
				cancel()
				for range pages { // let the reader finish
				}
				return
			}
			select {
			case chunks <- c:
			case <-ctx.Done():
				for range pages {
				}
				return
			}
		}
	}()

	// A child stream records its pass before any partition's state.
	var first []record.Checkpoint
	if s.child && !s.resume {
		first = append(first, record.Checkpoint{Stream: s.sp.Name, Partition: "", State: encodeState(PartitionState{Pass: &Pass{ID: s.passID}})})
	}
	complete, writeErr := s.write(ctx, chunks, first, every, interval)
	if writeErr != nil || !complete {
		cancel()
		for range chunks {
		}
	}
	wg.Wait()

	wctx, wcancel := context.WithTimeout(context.WithoutCancel(parent), time.Minute)
	defer wcancel()
	srcErr := readErr
	if errors.Is(srcErr, context.Canceled) && parent.Err() == nil {
		srcErr = nil // we cancelled it because a later stage failed
	}
	if !complete && writeErr == nil && convErr == nil && srcErr == nil {
		// The writer stopped before the last chunk although the source
		// finished: the run was cancelled meanwhile. A pass whose chunks
		// were not all written never finishes; what was written is
		// committed below and the next run resumes there.
		srcErr = parent.Err()
		if srcErr == nil {
			srcErr = errors.New("the writer stopped before the last chunk")
		}
	}
	switch {
	case writeErr != nil:
		s.w.Abort(wctx)
		return writeErr
	case convErr != nil || srcErr != nil:
		// Keep what was read before the failure: the next run resumes there.
		if err := s.w.Commit(wctx); err != nil {
			s.w.Abort(wctx)
			return errors.Join(firstErr(convErr, srcErr), err)
		}
		s.noteCommitted()
		s.w.Abort(wctx)
		return firstErr(convErr, srcErr)
	}
	// The stream-level entry also remembers which columns this run filled.
	top := PartitionState{Completed: s.passID}
	if !s.child && s.lastTop != nil {
		top = *s.lastTop
	}
	top.Filled = s.top.Filled
	if s.sp.Records.Load() > 0 {
		top.Filled = top.Filled[:0:0]
		for name := range s.filled {
			top.Filled = append(top.Filled, name)
		}
		slices.Sort(top.Filled)
	}
	final := []record.Checkpoint{{Stream: s.sp.Name, Partition: "", State: encodeState(top)}}
	if err := s.w.Finish(wctx, final); err != nil {
		s.w.Abort(wctx)
		return err
	}
	s.sp.Commits.Add(1)
	s.noteCommitted()
	return nil
}

// forgetDone drops the finished partitions whose state is now committed
// (finished by chunk number upTo or earlier): their state says so.
func (s *streamRun) forgetDone(upTo int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for key, n := range s.done {
		if n <= upTo {
			delete(s.done, key)
		}
	}
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// write consumes chunks, committing every `every` rows or `interval`.
// complete is true when it wrote every chunk up to the closing of chunks;
// it is false when ctx ended first.
func (s *streamRun) write(ctx context.Context, chunks <-chan *record.Chunk, first []record.Checkpoint, every int, interval time.Duration) (complete bool, err error) {
	pendingRows := 0
	dirty := false
	last := time.Now()
	var written int64 // chunks written, numbered as convert numbers them
	tick := time.NewTicker(interval / 2)
	defer tick.Stop()
	commit := func() error {
		if !dirty {
			return nil
		}
		if err := s.w.Commit(ctx); err != nil {
			return err
		}
		s.sp.Commits.Add(1)
		s.noteCommitted()
		s.forgetDone(written)
		pendingRows, dirty, last = 0, false, time.Now()
		return nil
	}
	for {
		select {
		case c, ok := <-chunks:
			if !ok {
				return true, nil
			}
			if len(first) > 0 {
				c.Checkpoints = append(first, c.Checkpoints...)
				first = nil
			}
			// A chunk that has started is written to the end, whatever
			// happens to ctx meanwhile: cancelling a driver call mid-way
			// leaves the transaction unusable and would throw away every
			// chunk already in it. Cancellation is noticed between chunks,
			// and the run then commits what was written.
			if ctx.Err() != nil {
				return false, nil
			}
			before := s.w.Rejected()
			wctx, wcancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
			err := s.w.Write(wctx, c)
			wcancel()
			if err != nil {
				return false, err
			}
			written++
			refused := s.w.Rejected() - before // rows the database could not store
			s.sp.Records.Add(int64(c.Len - refused))
			s.sp.Rejected.Add(int64(refused))
			s.noteCommitted()
			pendingRows += c.Len
			dirty = true
			if pendingRows >= every || time.Since(last) >= interval {
				if err := commit(); err != nil {
					return false, err
				}
			}
		case <-tick.C:
			if time.Since(last) >= interval {
				if err := commit(); err != nil {
					return false, err
				}
			}
		case <-ctx.Done():
			return false, nil // the stages upstream, or the caller, report why
		}
	}
}
