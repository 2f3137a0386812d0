package serve

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/ferry-dev/ferry/internal/dest"
)

// stateStore opens the store keeping a pipeline's state (its state:
// section, or its destination).
func (s *Server) stateStore(ctx context.Context, p *pipe, readOnly bool) (dest.StateStore, func(), error) {
	typ, cfg := p.Spec.Destination.Type, p.Resolved.Destination
	if p.Spec.State != nil {
		typ, cfg = p.Spec.State.Type, p.Resolved.State
	}
	d, err := dest.Open(ctx, typ, cfg, dest.Options{ReadOnly: readOnly, Dir: p.Spec.Dir, Logger: s.log, Redactor: s.red})
	if err != nil {
		return nil, nil, err
	}
	sk, ok := d.(dest.StateKeeper)
	if !ok {
		d.Close()
		return nil, nil, errf(http.StatusConflict, "the %s destination keeps no state", typ)
	}
	return sk.State(), func() { d.Close() }, nil
}

func (s *Server) stream(r *http.Request) (*pipe, string, error) {
	p, err := s.pipe(r)
	if err != nil {
		return nil, "", err
	}
	name := r.PathValue("stream")
	if !slices.ContainsFunc(p.streams, func(x streamInfo) bool { return x.Name == name }) {
		return nil, "", &UnknownStreamError{Pipeline: p.name, Stream: name}
	}
	return p, name, nil
}

// PartitionStateView is one partition's saved state.
type PartitionStateView struct {
	Partition string          `json:"partition"`
	State     json.RawMessage `json:"state"`
	RunID     string          `json:"run_id"`
	UpdatedAt time.Time       `json:"updated_at"`
}

func (s *Server) getState(w http.ResponseWriter, r *http.Request) error {
	p, stream, err := s.stream(r)
	if err != nil {
		return err
	}
	out := map[string]any{"stream": stream, "state": nil, "partitions": []PartitionStateView{}}
	store, closeStore, err := s.stateStore(r.Context(), p, true)
	if errors.Is(err, os.ErrNotExist) {
		writeJSON(w, http.StatusOK, out) // no database yet: no state
		return nil
	}
	if err != nil {
		return err
	}
	defer closeStore()
	entries, err := store.List(r.Context(), p.name, stream)
	if err != nil {
		return err
	}
	parts := []PartitionStateView{}
	for _, e := range entries {
		if !json.Valid(e.State) {
			raw, _ := json.Marshal(string(e.State))
			e.State = raw
		}
		if e.Partition == "" {
			out["state"] = e.State
		}
		parts = append(parts, PartitionStateView{Partition: e.Partition, State: e.State, RunID: e.RunID, UpdatedAt: e.UpdatedAt.UTC()})
	}
	out["partitions"] = parts
	writeJSON(w, http.StatusOK, out)
	return nil
}

// resetState clears a stream's state, refusing while a run syncs it
// (here, or in another process: the stream lock says).
func (s *Server) resetState(w http.ResponseWriter, r *http.Request) error {
	p, stream, err := s.stream(r)
	if err != nil {
		return err
	}
	if id, busy := s.busyRun(p.name, stream); busy {
		return &BusyError{Pipeline: p.name, Stream: stream, RunID: id}
	}
	store, closeStore, err := s.stateStore(r.Context(), p, false)
	if err != nil {
		return err
	}
	defer closeStore()
	release, err := store.Lock(r.Context(), p.name, stream, dest.Holder{RunID: "state-reset", Since: time.Now()})
	if err != nil {
		var le *dest.LockedError
		if errors.As(err, &le) {
			return errf(http.StatusConflict, "%s", le.Error())
		}
		return err
	}
	defer release()
	n, err := store.Reset(r.Context(), p.name, stream)
	if err != nil {
		return err
	}
	s.log.Info("stream state reset", "pipeline", p.name, "stream", stream, "partitions", n)
	writeJSON(w, http.StatusOK, map[string]any{"stream": stream, "cleared": n})
	return nil
}
