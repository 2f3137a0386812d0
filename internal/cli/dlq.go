package cli

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/dest/httpdest"
	"github.com/ferry-dev/ferry/internal/spec"
)

// dlqCmd lists and replays the changes an API refused for good.
func (a *app) dlqCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "dlq", Short: "List or replay the changes an http destination's API refused (the dead-letter table)"}
	var stream string
	var all bool
	list := &cobra.Command{
		Use:   "list PIPELINE.yaml",
		Short: "List the dead letters of a pipeline: the request, the API's answer, the change's key and position",
		Args:  exactArgs(1, "PIPELINE.yaml"),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, _, letters, closeAll, err := a.openLetters(cmd, args[0], true)
			if err != nil {
				return err
			}
			defer closeAll()
			xs, err := letters.List(cmd.Context(), p.Name, stream, all)
			if err != nil {
				return err
			}
			if len(xs) == 0 {
				fmt.Fprintf(a.out, "no dead letters for pipeline %s in %s\n", p.Name, letters.Target)
				return nil
			}
			t := &table{header: []string{"ID", "STREAM", "KEY", "POSITION", "REQUEST", "STATUS", "ERROR", "CREATED", "REPLAYED"}}
			for _, x := range xs {
				replayed := ""
				if !x.ReplayedAt.IsZero() {
					replayed = x.ReplayedAt.UTC().Format(time.RFC3339)
				}
				t.add(strconv.FormatInt(x.ID, 10), x.Stream, short(x.Key, 30), x.Position, x.Method+" "+short(a.red.URL(x.URL), 50), strconv.Itoa(x.Status), short(a.red.String(x.Response), 60), x.CreatedAt.UTC().Format(time.RFC3339), replayed)
			}
			t.write(a.out)
			return nil
		},
	}
	list.Flags().StringVar(&stream, "stream", "", "only this stream")
	list.Flags().BoolVar(&all, "all", false, "also the letters already replayed")
	var ids []int64
	replay := &cobra.Command{
		Use:   "replay PIPELINE.yaml",
		Short: "Send dead letters again, oldest first, as they were (with the destination's current auth)",
		Long: `Send dead letters again, oldest first, each exactly as it was refused
(method, URL, headers, body, idempotency key), with the destination's
current auth. A letter the API accepts is marked replayed; one it refuses
again stays, with the new answer. Fix the cause first (the data, the
mapping, the API's configuration).

A dead letter is out of order with the changes of its key delivered after
it: replaying an old update may undo a newer one, unless the API orders
changes itself. Check the key's later changes (ferry dlq list shows the
position) before replaying.`,
		Args: exactArgs(1, "PIPELINE.yaml"),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, d, letters, closeAll, err := a.openLetters(cmd, args[0], false)
			if err != nil {
				return err
			}
			defer closeAll()
			xs, err := letters.List(cmd.Context(), p.Name, stream, false)
			if err != nil {
				return err
			}
			if len(ids) > 0 {
				xs = slices.DeleteFunc(xs, func(x httpdest.Letter) bool { return !slices.Contains(ids, x.ID) })
			}
			if len(xs) == 0 {
				fmt.Fprintf(a.out, "no pending dead letters to replay for pipeline %s\n", p.Name)
				return nil
			}
			failed := 0
			for _, x := range xs {
				status, err := d.Replay(cmd.Context(), x)
				if err != nil {
					failed++
					msg := a.red.URL(a.red.String(err.Error()))
					_ = letters.Failed(cmd.Context(), x.ID, status, "", msg)
					fmt.Fprintf(a.out, "✗ %d %s %s: %s\n", x.ID, x.Stream, x.Key, msg)
					continue
				}
				if err := letters.Replayed(cmd.Context(), x.ID); err != nil {
					return fmt.Errorf("letter %d was delivered but could not be marked (replaying it again sends it again): %w", x.ID, err)
				}
				fmt.Fprintf(a.out, "✓ %d %s %s: %d\n", x.ID, x.Stream, x.Key, status)
			}
			if failed > 0 {
				return fmt.Errorf("%d of %d dead letters were refused again; they stay in %s", failed, len(xs), httpdest.DeadLetterTable)
			}
			return nil
		},
	}
	replay.Flags().StringVar(&stream, "stream", "", "only this stream")
	replay.Flags().Int64SliceVar(&ids, "id", nil, "only these letters (repeatable)")
	cmd.AddCommand(list, replay)
	return cmd
}

func short(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// openLetters opens a pipeline's http destination and its dead-letter
// store.
func (a *app) openLetters(cmd *cobra.Command, path string, readOnly bool) (*spec.Pipeline, *httpdest.Destination, *httpdest.Letters, func(), error) {
	p, r, err := a.loadPipeline(path, true)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	cfg, ok := r.Destination.(*httpdest.Config)
	if !ok {
		return nil, nil, nil, nil, usageError{fmt.Errorf("pipeline %s writes to a %s destination; dead letters belong to http destinations", p.Name, p.Destination.Type)}
	}
	letters, err := httpdest.OpenLetters(cmd.Context(), cfg.DeadLetter, p.Dir, readOnly)
	if err != nil {
		return nil, nil, nil, nil, errors.New(a.red.URL(a.red.String(err.Error())))
	}
	if readOnly {
		return p, nil, letters, func() { letters.Close() }, nil
	}
	log, err := a.logger()
	if err != nil {
		letters.Close()
		return nil, nil, nil, nil, err
	}
	d, err := dest.Open(cmd.Context(), "http", cfg, dest.Options{ReadOnly: true, Dir: p.Dir, Logger: log, Redactor: a.red})
	if err != nil {
		letters.Close()
		return nil, nil, nil, nil, errors.New(a.red.URL(a.red.String(err.Error())))
	}
	return p, d.(*httpdest.Destination), letters, func() { d.Close(); letters.Close() }, nil
}
