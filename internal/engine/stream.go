package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ferry-dev/ferry/internal/cursor"
	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/normalize"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/schema"
	"github.com/ferry-dev/ferry/internal/source"
	"github.com/ferry-dev/ferry/internal/spec"
)

// channel sizes between the stages: small, so memory does not follow the
// data, but enough to keep every stage busy.
const (
	pageBuffer  = 4
	chunkBuffer = 4
)

// writeGrace bounds how long writes that have started go on once the run
// is cancelled (a chunk is one page: far more than any healthy database
// needs). Until then, nothing cancels them.
const writeGrace = 2 * time.Minute

// streamRun is the state of one stream's sync.
type streamRun struct {
	r      *Run
	sp     *StreamProgress
	info   source.Stream
	mode   dest.Mode
	child  bool
	passID string
	resume bool
	state  dest.StateStore
	norm   *normalize.Normalizer
	typed  *normalize.Typed
	w      dest.StreamWriter
	limit  spec.RejectLimit

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
	// pendingState holds the checkpoints written since the last commit,
	// when the state store is not the destination's: they are saved after
	// the commit.
	pendingState []record.Checkpoint
	// pendingAcks holds the acknowledgements of the pages written since
	// the last commit.
	pendingAcks []func(error)
	// refused is how many rows the writer refused, as counted so far
	// (a destination that delivers asynchronously refuses some only by
	// the commit).
	refused int
}

// countRefused adds the rows the writer refused since last counted to the
// rejected count, and returns how many.
func (s *streamRun) countRefused() int {
	n := s.w.Rejected() - s.refused
	s.refused += n
	s.sp.Rejected.Add(int64(n))
	return n
}

// partTrack follows one partition through a pass.
type partTrack struct {
	saved  PartitionState // as loaded at the partition's start
	since  string
	filter *cursor.Filter
	prior  cursor.Boundary // the pass's boundary as resumed
}

// stream syncs one stream and returns its summary. While the destination is
// unavailable (a transient error), the stream starts over from its last
// commit, with backoff, for up to Options.RetryFor; an unbounded stream
// retries until the run is cancelled (it has no end to fail at, and a push
// source keeps accepting deliveries meanwhile).
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
	info, _ := source.Find(r.src, sp.Name)
	unbounded := info.Unbounded
	wait := time.Second
	var err error
	for attempt := 1; ; attempt++ {
		err = r.syncStream(ctx, sp, &sum, attempt)
		if err == nil || !dest.IsTransient(err) || ctx.Err() != nil || (!unbounded && time.Now().Add(wait).After(deadline)) {
			break
		}
		sp.Retries.Add(1)
		var te *dest.TransientError
		if errors.As(err, &te) && te.Now && attempt < 4 {
			r.log.Info("retrying the stream from its last commit at once", "stream", sp.Name, "reason", r.red.String(err.Error()))
			continue
		}
		r.log.Warn("the destination is unavailable; retrying the stream from its last commit", "stream", sp.Name, "in", wait, "error", r.red.String(err.Error()))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		wait = min(2*wait, 30*time.Second)
	}
	if err != nil && dest.IsTransient(err) {
		err = fmt.Errorf("the destination stayed unavailable (tried %d more times over %s; the limit is %s): %w; committed rows and state are safe, run again once it is back",
			sp.Retries.Load(), time.Since(begun).Round(100*time.Millisecond), retryFor, err)
	}
	sp.finished.Store(time.Now().UnixMicro())
	sum.Records, sum.Pages = sp.Committed.Load(), sp.Pages.Load()
	sum.Rejected, sum.Filtered = sp.Rejected.Load(), sp.Filtered.Load()
	sum.Requests, sum.Retries = sp.Requests.Load(), sp.HTTPRetries.Load()
	sum.Duration = sp.Elapsed()
	sum.Queries = sp.Queries()
	var stop *source.StopError
	if err != nil && ctx.Err() == nil && errors.As(err, &stop) {
		// Not a failure: what was read is committed, and the next run
		// goes on from there.
		sp.status.Store(Stopped)
		sum.Status, sum.ResumeAt = dest.Stopped, stop.Until
		sum.Err = r.redacted(fmt.Errorf("%w; %d rows and their state were committed, and the next run resumes there", err, sp.Committed.Load()))
		sum.Error = sum.Err.Error()
		r.log.Warn("stream stopped early", "stream", sp.Name, "reason", r.red.String(stop.Reason), "committed_rows", sp.Committed.Load())
		return sum
	}
	if err != nil {
		sp.status.Store(Failed)
		sum.Status = dest.Failed
		if ctx.Err() != nil {
			sum.Status = dest.Cancelled
			err = fmt.Errorf("interrupted; %d rows and their state were committed, and the next run resumes there: %w", sp.Committed.Load(), ctx.Err())
		}
		sum.Err = r.redacted(err)
		sum.Error = sum.Err.Error()
		if sum.Status == dest.Cancelled {
			r.log.Warn("stream interrupted", "stream", sp.Name, "committed_rows", sp.Committed.Load())
		} else {
			r.log.Debug("stream failed", "stream", sp.Name, "error", sum.Error)
		}
		return sum
	}
	sp.status.Store(Succeeded)
	sum.Status = dest.Succeeded
	if sum.Rejected > 0 {
		sum.Status = dest.Partial
	}
	return sum
}

// holder describes this run for stream locks.
func (r *Run) holder() dest.Holder {
	host, _ := os.Hostname()
	return dest.Holder{RunID: r.ID, Host: host, PID: os.Getpid(), Since: r.started}
}

func (r *Run) syncStream(ctx context.Context, sp *StreamProgress, sum *StreamSummary, attempt int) error {
	p := r.opts.Pipeline
	info, ok := source.Find(r.src, sp.Name)
	if !ok {
		return fmt.Errorf("the source has no stream %q", sp.Name)
	}
	// A run under a lease (a worker's) has its lock: the lease.
	if r.opts.Lease == nil {
		release, err := r.state.Lock(ctx, p.Name, sp.Name, r.holder())
		if err != nil {
			return err
		}
		defer release()
	}
	s := &streamRun{r: r, sp: sp, info: info, mode: sp.Mode, child: info.Parent != "", state: r.state, parts: map[string]*partTrack{}, done: map[string]int64{}, filled: map[string]bool{}, base: sp.Committed.Load()}
	if st := p.Streams[sp.Name]; st != nil && st.MaxRejected != "" {
		s.limit, _ = spec.ParseRejectLimit(string(st.MaxRejected)) // checked by spec
	}
	if r.opts.Slice != nil && !s.child {
		return fmt.Errorf("stream %s has no parent stream: only a child stream's partitions split into slices", sp.Name)
	}
	if r.opts.Slice != nil && sp.Mode == dest.FullRefreshOverwrite {
		return fmt.Errorf("stream %s is in full_refresh_overwrite mode: each slice would replace the table; split streams in the other modes", sp.Name)
	}
	// The stream's own state row says whether a pass is to be resumed.
	raw, err := s.state.Load(ctx, p.Name, sp.Name, s.topKey())
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
	r.obs.Observe(StreamStarted{Base: r.base(), Stream: sp.Name, Table: sp.Table, Mode: sp.Mode, Resume: s.resume, Attempt: attempt})
	cfg := dest.StreamConfig{Pipeline: p.Name, Stream: sp.Name, Table: sp.Table, Mode: sp.Mode, RunID: r.ID, Resume: s.resume}
	if r.ownState {
		cfg.Fence = r.opts.Lease
	}
	s.w, err = r.dst.OpenStream(ctx, cfg)
	if err != nil {
		return err
	}
	sch := p.SchemaOf(sp.Name)
	if r.opts.FailOnDrift {
		sch.Policy = schema.Freeze
	}
	s.norm, err = NewNormalizer(sp.Table, info, sch, r.dst, s.w, r.ID)
	if err != nil {
		s.w.Abort(ctx)
		return fmt.Errorf("table %s: %w", sp.Table, err)
	}
	existing := s.w.Existing()
	sum.NewTable = existing == nil
	err = s.run(ctx)
	if u, ok := s.w.(unchangedCounter); ok {
		// Rows the destination did not send because it already has them
		// as they are (reverse ETL) count as filtered.
		sp.Filtered.Add(u.Unchanged())
	}
	if err == nil {
		err = s.checkEnd()
	}
	sum.Drift, sum.Changes, sum.Unfilled = nil, nil, nil
	if !sum.NewTable {
		sum.Drift = append([]schema.Change(nil), s.changes...)
		for _, c := range sum.Drift {
			sum.Changes = append(sum.Changes, c.String())
		}
		// Columns the previous run filled and this one did not, when this
		// run brought data: worth knowing, though the table did not change.
		if sp.Committed.Load() > 0 {
			for _, name := range s.top.Filled {
				if c := existing.Column(name); c != nil && !s.filled[name] {
					sum.Unfilled = append(sum.Unfilled, name)
				}
			}
		}
		if len(sum.Drift) > 0 {
			r.obs.Observe(DriftFound{Base: r.base(), Stream: sp.Name, Table: sp.Table, Changes: sum.Drift})
		}
	}
	return err
}

// unchangedCounter is implemented by stream writers that skip rows the
// destination already has as they are (an API destination comparing with
// what it last delivered): Unchanged counts them.
type unchangedCounter interface {
	Unchanged() int64
}

// NewNormalizer returns the normalizer of a stream's table, as a run, the
// discovery of a stream and the destination suite all need it: the
// stream's keys, cursor and hints, the pipeline's schema settings, the
// destination's identifier and column limits, and the layouts the writer
// has (w may be nil: no table exists yet).
func NewNormalizer(table string, info source.Stream, sch spec.SchemaSettings, d dest.Destination, w dest.StreamWriter, runID string) (*normalize.Normalizer, error) {
	opts := normalize.Options{
		Table:        table,
		PrimaryKey:   info.PrimaryKey,
		Cursor:       info.Cursor,
		Hints:        info.Hints,
		Policy:       sch.Policy,
		Nested:       sch.Nested,
		MaxDepth:     sch.MaxDepth,
		ParentFields: info.ParentFields,
		RunID:        runID,
	}
	if n, ok := d.(dest.Namer); ok {
		opts.MaxIdentLen = n.MaxIdentLen()
	}
	if l, ok := d.(dest.Limits); ok {
		opts.ReservedColumns = l.ReservedColumns()
		opts.MaxColumns = l.MaxColumns()
		if opts.MaxColumns == 0 {
			opts.MaxColumns = -1 // the destination has no limit
		}
	}
	if w != nil {
		opts.Existing = w.Existing()
		opts.ChildExisting = w.ExistingChild
	}
	return normalize.New(opts)
}

// noteCommitted publishes how many rows are durable.
func (s *streamRun) noteCommitted() { s.sp.Committed.Store(s.base + s.w.Committed()) }

// incremental reports whether the stream reads from a saved cursor.
func (s *streamRun) incremental() bool {
	return s.info.Cursor != "" && s.mode.Incremental()
}

// topKey is the partition key of the stream-level state: "" but for a
// slice, which keeps its own.
func (s *streamRun) topKey() string {
	if sl := s.r.opts.Slice; sl != nil {
		return sl.StateKey()
	}
	return ""
}

// start decides where a partition begins (called by the source).
func (s *streamRun) start(ctx context.Context, part *record.Partition) (source.Start, error) {
	if sl := s.r.opts.Slice; sl != nil && !sl.Has(part.Key) {
		return source.Start{Skip: true}, nil
	}
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
	if err == nil && !out.Skip && s.child {
		s.sp.PartitionsStarted.Add(1)
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
	hasKey := len(s.info.PrimaryKey) > 0
	// An unbounded stream (change data capture, a push source) is a log of
	// changes: two changes of one key are never repeats, and none is
	// filtered.
	if !s.info.Unbounded && (s.incremental() || hasKey) {
		t.filter = &cursor.Filter{Dedupe: hasKey}
	}
	if st.Pass != nil && st.Pass.ID == s.passID {
		t.since = st.Pass.Since
		t.prior = cursor.NewBoundary(st.Pass.MaxCursor, st.Pass.MaxSeen)
		out.Resume = st.Pass.Position
		if t.filter != nil && s.mode.Appends() {
			t.filter.Remember(cursor.ParseHashes(st.Pass.Recent))
		}
	} else {
		t.prior = cursor.NewBoundary("", nil)
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
		// append mode neither the lookback window nor the granule an
		// exclusive filter re-reads is added again: only dedup can take
		// records again.
		min := t.since
		if s.mode == dest.IncrementalAppend && st.Cursor != "" {
			min = st.Cursor
		}
		if min != "" {
			c := cursor.Parse(min)
			t.filter.Min = &c
		}
		if st.Cursor != "" {
			c := cursor.Parse(st.Cursor)
			t.filter.Boundary = &c
			t.filter.Seen = cursor.NewBoundary(st.Cursor, st.Seen).Seen()
			t.filter.SeenByContent = hasKey && !st.SeenKeys
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
	var c *record.Chunk
	var res normalize.Result
	var err error
	if p.Chunk != nil {
		if s.typed == nil {
			s.typed = normalize.NewTyped(s.norm)
		}
		c, res, err = s.typed.Convert(p, t.filter)
	} else {
		c, res, err = s.norm.Page(p, t.filter)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.Request, err)
	}
	if s.incremental() && res.NoCursor > 0 && res.NoCursor == res.Rows+res.Filtered {
		return nil, s.missingCursor(p, res.NoCursor)
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
	if len(p.Rejects) > 0 {
		c.Rejects = append(c.Rejects, p.Rejects...)
		res.Rejected += len(p.Rejects)
	}
	c.Flush = c.Flush || p.Flush
	s.sp.Pages.Add(1)
	s.sp.Rejected.Add(int64(res.Rejected))
	s.sp.Filtered.Add(int64(res.Filtered))
	if p.Ack != nil {
		c.Acks = append(c.Acks, p.Ack)
	}
	s.r.obs.Observe(PageFetched{Base: s.r.base(), Stream: s.sp.Name, Partition: key, Records: len(p.Records), Rows: res.Rows, Rejected: res.Rejected, Filtered: res.Filtered, Last: p.Last})
	if s.info.Unbounded {
		// An unbounded stream's state is its source position, never a pass
		// to finish.
		st := PartitionState{Cursor: t.saved.Cursor, Pass: &Pass{ID: s.passID, Position: p.Position}}
		c.Checkpoints = append(c.Checkpoints, record.Checkpoint{Stream: s.sp.Name, Partition: key, State: encodeState(st)})
		return c, nil
	}
	hasKey := len(s.info.PrimaryKey) > 0
	max := t.prior.Clone()
	max.Merge(t.filter.Max())
	var st PartitionState
	if p.Last {
		st = PartitionState{Cursor: t.saved.Cursor, Seen: t.saved.Seen, SeenKeys: t.saved.SeenKeys}
		if s.incremental() {
			b := cursor.NewBoundary(t.saved.Cursor, t.saved.Seen)
			seenKeys := t.saved.SeenKeys
			if hasKey && !seenKeys && max.Cursor != "" && cursor.CompareText(max.Cursor, t.saved.Cursor) >= 0 {
				// State from before identities were keys: this pass saw the
				// boundary again, and its identities replace the old hashes.
				b, seenKeys = cursor.NewBoundary(t.saved.Cursor, nil), true
			}
			if t.saved.Cursor == "" {
				seenKeys = true
			}
			b.Merge(max)
			st.Cursor, st.Seen, st.SeenKeys = b.Cursor, b.Hashes(), seenKeys && hasKey
		}
		if s.child {
			st.Completed = s.passID
			s.sp.PartitionsDone.Add(1)
		}
	} else {
		pass := &Pass{ID: s.passID, Since: t.since, Position: p.Position, MaxCursor: max.Cursor, MaxSeen: max.Hashes()}
		if t.filter != nil && s.mode.Appends() && hasKey {
			pass.Recent = cursor.HashHex(t.filter.Recent(recentKept))
		}
		st = PartitionState{Cursor: t.saved.Cursor, Seen: t.saved.Seen, SeenKeys: t.saved.SeenKeys, Completed: t.saved.Completed, Pass: pass}
	}
	if key == "" && !s.child {
		s.lastTop = &st
	}
	c.Checkpoints = append(c.Checkpoints, record.Checkpoint{Stream: s.sp.Name, Partition: key, State: encodeState(st)})
	return c, nil
}

// missingCursor explains a page none of whose records has the cursor
// field: incremental sync would silently be off.
func (s *streamRun) missingCursor(p *record.Page, n int) error {
	var keys []string
	if len(p.Records) > 0 {
		keys = normalize.Keys(p.Records[0])
	}
	msg := fmt.Sprintf("cursor field %q is in none of the %d records of this page, so incremental sync cannot work", s.info.Cursor, n)
	if len(keys) > 0 {
		msg += "; the records have: " + strings.Join(keys, ", ")
		if hint := spec.DidYouMean(s.info.Cursor, keys); hint != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", hint)
		}
	}
	return fmt.Errorf("%s: %s", p.Request, msg)
}

// checkEnd applies the rules a stream that read everything must still
// pass: its rejected records within the limit, its column hints matching
// fields of the data.
func (s *streamRun) checkEnd() error {
	rows, rejected := s.sp.Committed.Load()-s.base, s.sp.Rejected.Load()
	if s.limit.Exceeded(rejected, rows+rejected) {
		limit := "every record of a non-empty run"
		if st := s.r.opts.Pipeline.Streams[s.sp.Name]; st != nil && st.MaxRejected != "" {
			limit = string(st.MaxRejected)
		}
		return &RejectedError{Stream: s.sp.Name, Rejected: rejected, Read: rows + rejected, Limit: limit}
	}
	if s.sp.Records.Load() > 0 {
		if unused := s.norm.UnusedHints(); len(unused) > 0 {
			return fmt.Errorf("columns: %s match no field of the records read nor any column of table %s; check the names (a dotted name reaches into an object with nested: flatten or unnest, or into the elements of an unnested array)",
				strings.Join(unused, ", "), s.sp.Table)
		}
	}
	return nil
}

// RejectedError reports a stream whose rejected records broke its limit.
type RejectedError struct {
	Stream         string
	Rejected, Read int64
	Limit          string
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("%d of the %d records read were rejected (the limit is %s; streams.%s.max_rejected sets it); the reasons are in the %s table", e.Rejected, e.Read, e.Limit, e.Stream, dest.RejectedTable)
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
				ackAll([]func(error){pg.Ack}, err)
				cancel()
				for pg := range pages { // let the reader finish
					ackAll([]func(error){pg.Ack}, err)
				}
				return
			}
			select {
			case chunks <- c:
			case <-ctx.Done():
				ackAll(c.Acks, ctx.Err())
				for pg := range pages {
					ackAll([]func(error){pg.Ack}, ctx.Err())
				}
				return
			}
		}
	}()

	// A child stream records its pass before any partition's state.
	var first []record.Checkpoint
	if s.child && !s.resume {
		first = append(first, record.Checkpoint{Stream: s.sp.Name, Partition: s.topKey(), State: encodeState(PartitionState{Pass: &Pass{ID: s.passID}})})
	}
	// Writes run under a context the run's cancellation does not reach
	// (some loaders go on in the background after Write returns), ended
	// writeGrace after a cancellation, or when the stream ends.
	wctx, stopWrites := context.WithCancel(context.WithoutCancel(parent))
	defer stopWrites()
	go func() {
		select {
		case <-ctx.Done():
		case <-wctx.Done():
			return
		}
		t := time.NewTimer(writeGrace)
		defer t.Stop()
		select {
		case <-t.C:
			stopWrites()
		case <-wctx.Done():
		}
	}()
	complete, writeErr := s.write(ctx, wctx, chunks, first, every, interval)
	if writeErr != nil || !complete {
		cancel()
		for c := range chunks {
			ackAll(c.Acks, firstErr(writeErr, context.Canceled))
		}
	}
	wg.Wait()

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
		s.abort(wctx, writeErr)
		return writeErr
	case convErr != nil || srcErr != nil, s.info.Unbounded:
		// Keep what was read before the failure (or, for an unbounded
		// stream, before the end): the next run resumes there.
		if err := s.commit(wctx); err != nil {
			s.abort(wctx, err)
			return errors.Join(firstErr(convErr, srcErr), err)
		}
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
	final := []record.Checkpoint{{Stream: s.sp.Name, Partition: s.topKey(), State: encodeState(top)}}
	if !s.r.ownState {
		s.pendingState, final = append(s.pendingState, final...), nil
	}
	if err := s.w.Finish(wctx, final); err != nil {
		s.abort(wctx, err)
		return err
	}
	if err := s.afterCommit(wctx); err != nil {
		return err
	}
	s.noteCommitted()
	return nil
}

// ackAll calls acknowledgements with err.
func ackAll(acks []func(error), err error) {
	for _, a := range acks {
		if a != nil {
			a(err)
		}
	}
}

// abort rolls back and fails the pending acknowledgements.
func (s *streamRun) abort(ctx context.Context, err error) {
	s.w.Abort(ctx)
	s.pendingState = nil
	ackAll(s.pendingAcks, err)
	s.pendingAcks = nil
}

// commit commits the open transaction and what depends on it.
func (s *streamRun) commit(ctx context.Context) error {
	if err := s.w.Commit(ctx); err != nil {
		return err
	}
	return s.afterCommit(ctx)
}

// afterCommit runs once rows are durable: the state, when it lives
// outside the destination, is saved; the pages' acknowledgements go out.
func (s *streamRun) afterCommit(ctx context.Context) error {
	s.sp.Commits.Add(1)
	s.sp.Records.Add(-int64(s.countRefused()))
	before := s.sp.Committed.Load()
	s.noteCommitted()
	parts := len(s.pendingState)
	if len(s.pendingState) > 0 {
		var err error
		if l := s.r.opts.Lease; l != nil {
			err = s.state.(dest.Leaser).SaveFenced(ctx, *l, s.r.ID, s.pendingState)
		} else {
			err = s.state.Save(ctx, s.r.opts.Pipeline.Name, s.r.ID, s.pendingState)
		}
		var fenced *dest.FencedError
		if errors.As(err, &fenced) {
			err = fmt.Errorf("the rows are committed (the successor writes them again) but their state is not: %w", err)
		} else if err != nil {
			err = fmt.Errorf("the rows are committed but their state could not be saved (the next run reads them again): %w", err)
		}
		if err != nil {
			ackAll(s.pendingAcks, err)
			s.pendingAcks = nil
			return err
		}
		s.pendingState = s.pendingState[:0]
	}
	ackAll(s.pendingAcks, nil)
	s.pendingAcks = s.pendingAcks[:0]
	s.r.log.Debug("committed", "stream", s.sp.Name, "rows", s.sp.Committed.Load()-before, "total", s.sp.Committed.Load())
	s.r.obs.Observe(Committed{Base: s.r.base(), Stream: s.sp.Name, Rows: s.sp.Committed.Load() - before, Total: s.sp.Committed.Load(), Partitions: parts})
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
// it is false when ctx ended first. Writes and commits use wctx.
func (s *streamRun) write(ctx, wctx context.Context, chunks <-chan *record.Chunk, first []record.Checkpoint, every int, interval time.Duration) (complete bool, err error) {
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
		if err := s.commit(wctx); err != nil {
			return err
		}
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
			// A chunk that has started is written to the end, whatever
			// happens to ctx meanwhile: cancelling a driver call mid-way
			// leaves the transaction unusable and would throw away every
			// chunk already in it. Cancellation is noticed between chunks,
			// and the run then commits what was written.
			if ctx.Err() != nil {
				ackAll(c.Acks, ctx.Err())
				return false, nil
			}
			if len(first) > 0 {
				c.Checkpoints = append(first, c.Checkpoints...)
				first = nil
			}
			if !s.r.ownState {
				s.pendingState = append(s.pendingState, c.Checkpoints...)
				c.Checkpoints = nil
			}
			s.pendingAcks = append(s.pendingAcks, c.Acks...)
			if err := s.w.Write(wctx, c); err != nil {
				return false, err
			}
			written++
			refused := s.countRefused() // rows the database could not store
			s.sp.Records.Add(int64(c.Len - refused))
			s.noteCommitted()
			pendingRows += c.Len
			dirty = true
			if pendingRows >= every || time.Since(last) >= interval || c.Flush {
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
