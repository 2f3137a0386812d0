package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/engine"
	"github.com/ferry-dev/ferry/internal/spec"
)

func (a *app) runCmd() *cobra.Command {
	var streams []string
	var failOnDrift, quiet bool
	var f authoring
	cmd := &cobra.Command{
		Use:   "run PIPELINE.yaml",
		Short: "Sync a pipeline's streams into its destination",
		Long: `Sync a pipeline's streams into its destination.

Rows and sync state are committed together, every checkpoint_rows rows or
checkpoint_interval; an interrupted run resumes where the last commit
left off. Two runs of one stream never overlap: the second fails at once,
naming the run that holds the stream.

--fail-on-drift refuses any change to an existing table's layout (a new
column, a widened type): the stream fails before the change is applied.

` + exitCodes,
		Args: exactArgs(1, "PIPELINE.yaml"),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, r, err := a.loadPipeline(args[0], false)
			if err != nil {
				return err
			}
			opts := engine.Options{Streams: streams, FailOnDrift: failOnDrift}
			finish, err := a.prepare(cmd.Context(), p, &f, &opts)
			if err != nil {
				return err
			}
			_, err = a.sync(cmd.Context(), p, r, opts, !quiet && !f.dryRun)
			return errors.Join(err, finish())
		},
	}
	cmd.Flags().StringSliceVar(&streams, "stream", nil, "sync only these streams (repeatable)")
	cmd.Flags().BoolVar(&failOnDrift, "fail-on-drift", false, "refuse changes to existing tables' layouts (new columns, widened types): the stream fails before applying them")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "no live progress display")
	cmd.Flags().BoolVar(&f.dryRun, "dry-run", false, "print the records as JSON Lines ({\"table\": T, \"record\": R}) instead of writing them; reads from no saved state and leaves the destination alone")
	cmd.Flags().IntVar(&f.limit, "limit", 0, "with --dry-run: stop each stream after this many records")
	cmd.Flags().StringVar(&f.output, "output", "", "with --dry-run: write JSON Lines files (one per table) into this directory instead of printing")
	cmd.Flags().StringVar(&f.record, "record", "", "store every HTTP exchange in this directory (secrets removed), for --replay")
	cmd.Flags().StringVar(&f.replay, "replay", "", "answer every HTTP request from the exchanges in this directory: no network")
	cmd.Flags().BoolVarP(&f.verbose, "verbose", "v", false, "log every request and its response status (secrets redacted), and debug messages")
	return cmd
}

// sync runs a pipeline with the progress display and prints the summary.
// It sets the exit code of a partial or stopped run.
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
		switch sum.Status {
		case dest.Partial:
			if err == nil {
				a.exit = exitPartial
			}
		case dest.Stopped:
			a.exit = exitStopped
		}
	}
	return sum, err
}

func (a *app) printSummary(w io.Writer, s *engine.Summary) {
	t := &table{header: []string{"STREAM", "TABLE", "MODE", "STATUS", "RECORDS", "REJECTED", "PAGES", "REQUESTS", "TIME"}, right: map[int]bool{4: true, 5: true, 6: true, 7: true, 8: true}}
	for _, st := range s.Streams {
		t.add(st.Stream, st.Table, string(st.Mode), string(st.Status), fmt.Sprint(st.Records), fmt.Sprint(st.Rejected), fmt.Sprint(st.Pages), fmt.Sprint(st.Requests), st.Duration.Round(10*time.Millisecond).String())
	}
	fmt.Fprintf(w, "\nRun %s %s in %s (%d requests, %d retried)\n", s.RunID, s.Status, s.Duration.Round(10*time.Millisecond), s.Requests, s.Retries)
	t.write(w)
	for _, st := range s.Streams {
		if len(st.Changes) > 0 {
			fmt.Fprintf(w, "schema changes in %s: %s\n", st.Table, strings.Join(st.Changes, ", "))
		}
		if len(st.Unfilled) > 0 {
			fmt.Fprintf(w, "note: %s: this run gave no values to %s (the previous run did)\n", st.Table, strings.Join(st.Unfilled, ", "))
		}
		if st.Rejected > 0 {
			fmt.Fprintf(w, "%d records of %s were rejected; see the %s table\n", st.Rejected, st.Stream, dest.RejectedTable)
		}
		if st.Status == dest.Stopped {
			fmt.Fprintf(w, "%s %s\n", st.Stream, st.Error)
			if !st.ResumeAt.IsZero() {
				fmt.Fprintf(w, "%s: run again after %s (in %s) to go on\n", st.Stream, st.ResumeAt.Local().Format(time.RFC3339), time.Until(st.ResumeAt).Round(time.Second))
			} else {
				fmt.Fprintf(w, "%s: run again to go on\n", st.Stream)
			}
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
