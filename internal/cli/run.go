package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferry-dev/ferry/internal/engine"
	"github.com/ferry-dev/ferry/internal/spec"
)

func (a *app) runCmd() *cobra.Command {
	var streams []string
	var failOnDrift, quiet bool
	cmd := &cobra.Command{
		Use:   "run PIPELINE.yaml",
		Short: "Sync a pipeline's streams into its destination",
		Long: `Sync a pipeline's streams into its destination.

Rows and sync state are committed together, every checkpoint_rows rows or
checkpoint_interval; an interrupted run resumes where the last commit
left off.`,
		Args: exactArgs(1, "PIPELINE.yaml"),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, r, err := a.loadPipeline(args[0])
			if err != nil {
				return err
			}
			_, err = a.sync(cmd.Context(), p, r, engine.Options{Streams: streams, FailOnDrift: failOnDrift}, !quiet)
			return err
		},
	}
	cmd.Flags().StringSliceVar(&streams, "stream", nil, "sync only these streams (repeatable)")
	cmd.Flags().BoolVar(&failOnDrift, "fail-on-drift", false, "fail when a table's columns were added or changed")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "no live progress display")
	return cmd
}

// sync runs a pipeline with the progress display and prints the summary.
func (a *app) sync(ctx context.Context, p *spec.Pipeline, r *spec.Resolved, opts engine.Options, show bool) (*engine.Summary, error) {
	log, err := a.logger()
	if err != nil {
		return nil, err
	}
	opts.Pipeline, opts.Resolved, opts.Logger, opts.Redactor = p, r, log, a.red
	run, err := engine.New(ctx, opts)
	if err != nil {
		return nil, err
	}
	defer run.Close()
	var prog *progress
	if show {
		prog = startProgress(a.err, run.Progress())
	}
	sum, err := run.Execute(ctx)
	if prog != nil {
		prog.Stop()
	}
	if sum != nil {
		a.printSummary(a.out, sum)
	}
	return sum, err
}

func (a *app) printSummary(w io.Writer, s *engine.Summary) {
	t := &table{header: []string{"STREAM", "TABLE", "MODE", "STATUS", "ROWS", "REJECTED", "PAGES", "TIME"}, right: map[int]bool{4: true, 5: true, 6: true, 7: true}}
	for _, st := range s.Streams {
		t.add(st.Stream, st.Table, st.Mode, st.Status, fmt.Sprint(st.Records), fmt.Sprint(st.Rejected), fmt.Sprint(st.Pages), st.Duration.Round(10*time.Millisecond).String())
	}
	fmt.Fprintf(w, "\nRun %s %s in %s (%d requests, %d retries)\n", s.RunID, s.Status, s.Duration.Round(10*time.Millisecond), s.Requests, s.Retries)
	t.write(w)
	for _, st := range s.Streams {
		if len(st.Changes) > 0 {
			fmt.Fprintf(w, "schema changes in %s: %s\n", st.Table, strings.Join(st.Changes, ", "))
		}
		if st.Rejected > 0 {
			fmt.Fprintf(w, "%d records of %s were rejected; see the %s table\n", st.Rejected, st.Stream, "_ferry_rejected")
		}
	}
}

// exactArgs is cobra.ExactArgs with a usage error naming the arguments.
func exactArgs(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usageError{fmt.Errorf("%s needs %s (got %d arguments); see %s --help", cmd.CommandPath(), names, len(args), cmd.CommandPath())}
		}
		return nil
	}
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
