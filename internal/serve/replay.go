package serve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/engine"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/source"
	"github.com/ferry-dev/ferry/internal/spec"
)

// maxReplay bounds the rejected records one replay reads.
const maxReplay = 10000

// RejectedView is a rejected record as the API shows it.
type RejectedView struct {
	ID        string          `json:"id"`
	Stream    string          `json:"stream"`
	Table     string          `json:"table"`
	RunID     string          `json:"run_id"`
	At        time.Time       `json:"at"`
	Reason    string          `json:"reason"`
	Column    *string         `json:"column"`
	Partition *string         `json:"partition"`
	Record    json.RawMessage `json:"record"`
}

func rejectedView(r dest.Rejected) RejectedView {
	v := RejectedView{ID: r.ID, Stream: r.Stream, Table: r.Table, RunID: r.RunID, At: r.At, Reason: r.Reason, Record: json.RawMessage(r.Record)}
	if !json.Valid([]byte(r.Record)) {
		v.Record, _ = json.Marshal(r.Record) // not JSON (a broken body): shown as text
	}
	if r.Column != "" {
		v.Column = &r.Column
	}
	if r.Partition != "" {
		v.Partition = &r.Partition
	}
	return v
}

// rejectKeeper opens the pipeline's destination and finds its rejected
// records' store.
func (s *Server) rejectKeeper(ctx context.Context, p *pipe, readOnly bool) (dest.RejectKeeper, func(), error) {
	d, err := s.openDest(ctx, p, readOnly)
	if err != nil {
		return nil, nil, err
	}
	rk, ok := d.(dest.RejectKeeper)
	if !ok {
		d.Close()
		return nil, nil, errf(http.StatusConflict, "the %s destination keeps no rejected records to browse", p.Spec.Destination.Type)
	}
	return rk, func() { d.Close() }, nil
}

func (s *Server) listRejected(w http.ResponseWriter, r *http.Request) error {
	p, err := s.pipe(r)
	if err != nil {
		return err
	}
	limit, err := intParam(r, "limit", 100, 1, 1000)
	if err != nil {
		return err
	}
	stream := r.URL.Query().Get("stream")
	if stream != "" && !slices.ContainsFunc(p.streams, func(x streamInfo) bool { return x.Name == stream }) {
		return &UnknownStreamError{Pipeline: p.name, Stream: stream}
	}
	out := []RejectedView{}
	rk, closeDest, err := s.rejectKeeper(r.Context(), p, true)
	if errors.Is(err, os.ErrNotExist) {
		writeJSON(w, http.StatusOK, map[string]any{"rejected": out})
		return nil
	}
	if err != nil {
		return err
	}
	defer closeDest()
	rs, err := rk.Rejects(r.Context(), p.name, stream, limit)
	if err != nil {
		return err
	}
	for _, x := range rs {
		out = append(out, rejectedView(x))
	}
	writeJSON(w, http.StatusOK, map[string]any{"rejected": out})
	return nil
}

// ReplayResult is what a replay did.
type ReplayResult struct {
	// Replayed counts the records that became rows; RejectedAgain those
	// rejected once more (with a new reason, under the replay's run);
	// Filtered those dropped as repeats of another replayed record.
	Replayed      int64  `json:"replayed"`
	RejectedAgain int64  `json:"rejected_again"`
	Filtered      int64  `json:"filtered"`
	RunID         string `json:"run_id"`
	Status        string `json:"status"`
	// Removed counts the rows taken out of the rejected table.
	Removed int `json:"removed"`
}

// replay sends rejected records through the stream's typing again (after
// a fix to the connector or the table) and removes them from the
// rejected table once the run has committed them (as rows, or as new
// rejects with the new reason).
func (s *Server) replay(w http.ResponseWriter, r *http.Request) error {
	p, err := s.pipe(r)
	if err != nil {
		return err
	}
	var body struct {
		IDs    []string `json:"ids"`
		Stream string   `json:"stream"`
	}
	if err := decodeBody(r, &body); err != nil {
		return err
	}
	if len(body.IDs) == 0 && body.Stream == "" {
		return errf(http.StatusBadRequest, `say what to replay: {"ids": [...]} or {"stream": "name"}`)
	}
	if body.Stream != "" && !slices.ContainsFunc(p.streams, func(x streamInfo) bool { return x.Name == body.Stream }) {
		return &UnknownStreamError{Pipeline: p.name, Stream: body.Stream}
	}
	ctx := r.Context()
	rk, closeDest, err := s.rejectKeeper(ctx, p, false)
	if err != nil {
		return err
	}
	defer closeDest()
	all, err := rk.Rejects(ctx, p.name, body.Stream, maxReplay)
	if err != nil {
		return err
	}
	var picked []dest.Rejected
	if len(body.IDs) > 0 {
		want := map[string]bool{}
		for _, id := range body.IDs {
			want[id] = true
		}
		found := map[string]bool{}
		for _, x := range all {
			if want[x.ID] {
				picked = append(picked, x)
				found[x.ID] = true
			}
		}
		var missing []string
		for _, id := range body.IDs {
			if !found[id] {
				missing = append(missing, id)
			}
		}
		if len(missing) > 0 {
			return errf(http.StatusNotFound, "no rejected records of pipeline %s with ids %s (among its latest %d)", p.name, strings.Join(missing, ", "), maxReplay)
		}
	} else {
		picked = all
	}
	if len(picked) == 0 {
		writeJSON(w, http.StatusOK, ReplayResult{Status: string(dest.Succeeded)})
		return nil
	}
	byStream := map[string][]dest.Rejected{}
	var streams []string
	for _, x := range picked {
		if _, ok := byStream[x.Stream]; !ok {
			streams = append(streams, x.Stream)
		}
		byStream[x.Stream] = append(byStream[x.Stream], x)
	}
	for _, st := range streams {
		if !slices.ContainsFunc(p.streams, func(x streamInfo) bool { return x.Name == st }) {
			return errf(http.StatusConflict, "rejected records of stream %s, which pipeline %s no longer has, cannot be replayed", st, p.name)
		}
		for _, x := range byStream[st] {
			if x.Partition != "" {
				return errf(http.StatusConflict, "records of child stream %s cannot be replayed: the parent's fields are not kept with a rejected record; reset the stream's state and run it again instead", st)
			}
		}
	}
	// No other process may sync these streams meanwhile: take their locks
	// in the real state store (the replay's own state is thrown away).
	store, closeStore, err := s.stateStore(ctx, p, false)
	if err != nil {
		return err
	}
	defer closeStore()
	for _, st := range streams {
		if id, busy := s.busyRun(p.name, st); busy {
			return &BusyError{Pipeline: p.name, Stream: st, RunID: id}
		}
		release, err := store.Lock(ctx, p.name, st, dest.Holder{RunID: "replay", Since: time.Now()})
		if err != nil {
			var le *dest.LockedError
			if errors.As(err, &le) {
				return errf(http.StatusConflict, "%s", le.Error())
			}
			return err
		}
		defer release()
	}
	_, ar, err := s.startRun(p, streams, TriggerReplay, func(o *engine.Options) {
		o.Pipeline = replayPipeline(p.Spec, streams)
		o.State = &memState{}
		o.WrapSource = func(src source.Source) source.Source { return &replaySource{Source: src, records: byStream} }
	})
	if err != nil {
		return err
	}
	select {
	case <-ar.done:
	case <-ctx.Done():
		// The client left: the replay goes on, and its rejects stay until
		// it is done (they are removed below only when it succeeded).
		<-ar.done
	}
	run := ar.snapshot()
	res := ReplayResult{RunID: run.ID, Status: run.Status}
	var landed []dest.Rejected
	for _, st := range run.Streams {
		res.Replayed += st.Records
		res.RejectedAgain += st.Rejected
		if st.Status == string(dest.Succeeded) || st.Status == string(dest.Partial) {
			landed = append(landed, byStream[st.Name]...)
		}
	}
	res.Filtered = max(0, int64(len(picked))-res.Replayed-res.RejectedAgain)
	if len(landed) > 0 {
		// Everything of these streams is committed (as rows or as new
		// rejects): the old rejects go.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if res.Removed, err = rk.DeleteRejects(dctx, landed); err != nil {
			return fmt.Errorf("the replay (run %s) committed, but removing the replayed records from the rejected table failed: %w", run.ID, err)
		}
	}
	if run.Status == string(dest.Failed) || run.Status == string(dest.Cancelled) {
		msg := "the replay run " + run.ID + " " + run.Status
		if run.Error != nil {
			msg += ": " + *run.Error
		}
		return errf(http.StatusConflict, "%s; the rejected records stay", msg)
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

// replayPipeline is the pipeline with the replayed streams set to add
// rows: a full refresh that replaces the table would leave only the
// replayed records. Rejects never fail a replay's stream.
func replayPipeline(p *spec.Pipeline, streams []string) *spec.Pipeline {
	cp := *p
	cp.Streams = map[string]*spec.StreamSettings{}
	for k, v := range p.Streams {
		cp.Streams[k] = v
	}
	for _, st := range streams {
		var set spec.StreamSettings
		if v := p.Streams[st]; v != nil {
			set = *v
		}
		mode := p.ModeOf(st)
		if mode == dest.FullRefreshOverwrite {
			mode = dest.FullRefreshAppend
			if c, ok := p.Connector.Inline.Stream(st); ok && len(c.PrimaryKey) > 0 && c.Cursor != "" {
				mode = dest.IncrementalDedup
			}
		}
		set.Mode = mode
		set.MaxRejected = "100%"
		cp.Streams[st] = &set
	}
	return &cp
}

// replaySource reads rejected records instead of calling the API; the
// streams' descriptions (keys, cursor, type hints) are the real source's,
// without a start value or lookback, so nothing is filtered by a cursor.
type replaySource struct {
	source.Source
	records map[string][]dest.Rejected
}

// Streams returns the real source's streams, read from the beginning.
func (r *replaySource) Streams() []source.Stream {
	out := slices.Clone(r.Source.Streams())
	for i := range out {
		out[i].Start, out[i].Lookback, out[i].ServerFilter = "", source.Lookback{}, false
		out[i].Unbounded = false
	}
	return out
}

// Read emits the stream's rejected records as pages.
func (r *replaySource) Read(ctx context.Context, req source.ReadRequest) error {
	part := &record.Partition{}
	start, err := req.Start(ctx, part)
	if err != nil || start.Skip {
		return err
	}
	recs := r.records[req.Stream]
	const per = 500
	n := 0
	for i := 0; i < len(recs) || i == 0; i += per {
		page := &record.Page{Stream: req.Stream, Partition: part, Request: "replay of rejected records", FetchedAt: time.Now().UnixMicro()}
		n++
		page.Number = n
		for _, x := range recs[i:min(i+per, len(recs))] {
			page.Records = append(page.Records, []byte(x.Record))
		}
		page.Last = i+per >= len(recs)
		if err := req.Emit(ctx, page); err != nil {
			return err
		}
	}
	return nil
}

// memState is a state store that forgets: a replay must not move the
// stream's saved position.
type memState struct {
	mu sync.Mutex
	m  map[string]json.RawMessage
}

var _ dest.StateStore = (*memState)(nil)

func (m *memState) Load(_ context.Context, pipeline, stream, partition string) (json.RawMessage, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.m[stream+"\x00"+partition], nil
}

func (m *memState) Save(_ context.Context, _, _ string, states []record.Checkpoint) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		m.m = map[string]json.RawMessage{}
	}
	for _, c := range states {
		m.m[c.Stream+"\x00"+c.Partition] = c.State
	}
	return nil
}

func (m *memState) List(context.Context, string, string) ([]dest.StateEntry, error) { return nil, nil }

func (m *memState) Reset(context.Context, string, string) (int, error) { return 0, nil }

// Lock takes nothing: the replay holds the real store's lock.
func (m *memState) Lock(context.Context, string, string, dest.Holder) (func(), error) {
	return func() {}, nil
}
