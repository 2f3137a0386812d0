package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/spf13/cobra"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/dest/httpdest"
	"github.com/ferry-dev/ferry/internal/engine"
	"github.com/ferry-dev/ferry/internal/record"
)

// previewCmd runs a pipeline whose destination is an API without calling
// it: the requests are printed, nothing is stored.
func (a *app) previewCmd() *cobra.Command {
	var streams []string
	cmd := &cobra.Command{
		Use:   "preview PIPELINE.yaml",
		Short: "Show the requests a run would make to an http destination, without sending them or saving anything (a dry run)",
		Long: `Show the requests a run would make to an http destination, one per line
(method, URL, body), without sending any and without saving state: the
source is read as a run would read it, from the saved state, and with
sync: (reverse ETL) only the rows that changed since their last delivery
are shown, and the deletes a complete pass would send. Lookups are shown,
not made. The run's summary follows. The stream locks are not taken, and
nothing is written anywhere.`,
		Args: exactArgs(1, "PIPELINE.yaml"),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, r, err := a.loadPipeline(args[0], false)
			if err != nil {
				return err
			}
			cfg, ok := r.Destination.(*httpdest.Config)
			if !ok {
				return usageError{fmt.Errorf("preview shows the requests of an http destination; pipeline %s writes to %s", p.Name, p.Destination.Type)}
			}
			cfg.DryRun = &lockedWriter{w: a.out}
			var base dest.StateStore
			if p.State != nil {
				_, store, closeAll, err := a.stateStore(cmd.Context(), args[0], true)
				switch {
				case errors.Is(err, os.ErrNotExist):
				case err != nil:
					return err
				default:
					defer closeAll()
					base = store
				}
			}
			_, err = a.sync(cmd.Context(), p, r, engine.Options{Streams: streams, State: &previewState{base: base, saved: map[string]json.RawMessage{}}}, false)
			return err
		},
	}
	cmd.Flags().StringSliceVar(&streams, "stream", nil, "preview only these streams")
	return cmd
}

type lockedWriter struct {
	mu sync.Mutex
	w  interface{ Write([]byte) (int, error) }
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// previewState reads the pipeline's saved state and keeps what a preview
// saves in memory only.
type previewState struct {
	base  dest.StateStore
	mu    sync.Mutex
	saved map[string]json.RawMessage
}

func stateKey(pipeline, stream, partition string) string {
	return pipeline + "\x00" + stream + "\x00" + partition
}

func (s *previewState) Load(ctx context.Context, pipeline, stream, partition string) (json.RawMessage, error) {
	s.mu.Lock()
	v, ok := s.saved[stateKey(pipeline, stream, partition)]
	s.mu.Unlock()
	if ok || s.base == nil {
		return v, nil
	}
	return s.base.Load(ctx, pipeline, stream, partition)
}

func (s *previewState) Save(_ context.Context, pipeline, _ string, states []record.Checkpoint) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range states {
		s.saved[stateKey(pipeline, c.Stream, c.Partition)] = c.State
	}
	return nil
}

func (s *previewState) List(ctx context.Context, pipeline, stream string) ([]dest.StateEntry, error) {
	if s.base == nil {
		return nil, nil
	}
	return s.base.List(ctx, pipeline, stream)
}

func (s *previewState) Reset(context.Context, string, string) (int, error) {
	return 0, errors.New("a preview changes no state")
}

func (s *previewState) Lock(context.Context, string, string, dest.Holder) (func(), error) {
	return func() {}, nil
}
