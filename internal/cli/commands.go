package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/engine"
	"github.com/ferry-dev/ferry/internal/schema"
	"github.com/ferry-dev/ferry/internal/source"
	"github.com/ferry-dev/ferry/internal/spec"
)

func (a *app) validateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "validate FILE...",
		Short: "Check connector and pipeline files without touching the network",
		Long: `Check connector and pipeline files without touching the network: YAML
syntax, the JSON Schema, templates, references between streams, modes,
and that every environment variable and secret file a pipeline needs is
there. Every problem is reported with file:line:col.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError{errors.New("validate needs at least one file")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			var all spec.Problems
			var other []error
			for _, f := range args {
				data, err := os.ReadFile(f)
				if err != nil {
					other = append(other, err)
					continue
				}
				kind := spec.Kind(data)
				if kind == "pipeline" {
					var p *spec.Pipeline
					if p, err = spec.ParsePipeline(f, data); err == nil {
						_, err = p.Resolve(a.lookup)
					}
				} else {
					_, err = spec.ParseConnector(f, data)
				}
				var ps spec.Problems
				switch {
				case errors.As(err, &ps):
					all = append(all, ps...)
				case err != nil:
					other = append(other, fmt.Errorf("%s: %w", f, err))
				default:
					fmt.Fprintf(a.out, "%s: valid %s\n", f, kind)
				}
			}
			if len(all) > 0 {
				return all
			}
			return errors.Join(other...)
		},
	}
}

func (a *app) checkCmd() *cobra.Command {
	var streams []string
	cmd := &cobra.Command{
		Use:   "check PIPELINE.yaml",
		Short: "Prove credentials and connectivity with one request per stream",
		Args:  exactArgs(1, "PIPELINE.yaml"),
		RunE: func(cmd *cobra.Command, args []string) error {
			src, names, err := a.openSource(args[0], streams, 2)
			if err != nil {
				return err
			}
			failed := 0
			for _, name := range names {
				ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
				msg, err := src.Check(ctx, name)
				cancel()
				if err != nil {
					failed++
					fmt.Fprintf(a.out, "✗ %s: %s\n", name, a.red.String(err.Error()))
					continue
				}
				fmt.Fprintf(a.out, "✓ %s: %s\n", name, a.red.URL(msg))
			}
			if failed > 0 {
				return fmt.Errorf("%d of %d streams failed the check", failed, len(names))
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&streams, "stream", nil, "check only these streams")
	return cmd
}

// openSource loads a pipeline and builds its source, for the streams
// asked (all when none). attempts overrides the connector's attempts per
// request when not 0.
func (a *app) openSource(path string, streams []string, attempts int) (source.Source, []string, error) {
	p, r, err := a.loadPipeline(path)
	if err != nil {
		return nil, nil, err
	}
	names, err := pick(p, streams)
	if err != nil {
		return nil, nil, err
	}
	log, err := a.logger()
	if err != nil {
		return nil, nil, err
	}
	src, err := source.New(p.Connector.Inline, source.Options{Config: r.Config, Redactor: a.red, Logger: log, MaxAttempts: attempts})
	return src, names, err
}

// pick returns the requested streams, or all of the pipeline's.
func pick(p *spec.Pipeline, streams []string) ([]string, error) {
	if len(streams) == 0 {
		return p.StreamOrder, nil
	}
	for _, s := range streams {
		if _, ok := p.Connector.Inline.Streams[s]; !ok {
			return nil, usageError{fmt.Errorf("no stream %q (the connector has: %s)", s, strings.Join(p.Connector.Inline.StreamOrder, ", "))}
		}
	}
	return streams, nil
}

func (a *app) discoverCmd() *cobra.Command {
	var streams []string
	var sample int
	cmd := &cobra.Command{
		Use:   "discover PIPELINE.yaml",
		Short: "Read a sample of each stream and print the inferred schema",
		Args:  exactArgs(1, "PIPELINE.yaml"),
		RunE: func(cmd *cobra.Command, args []string) error {
			src, names, err := a.openSource(args[0], streams, 0)
			if err != nil {
				return err
			}
			failed := 0
			for _, d := range engine.Discover(cmd.Context(), src, names, sample, 0) {
				fmt.Fprintf(a.out, "stream %s (%d records sampled", d.Stream, d.Records)
				if d.Rejected > 0 {
					fmt.Fprintf(a.out, ", %d rejected: %s", d.Rejected, strings.Join(d.Reasons, "; "))
				}
				fmt.Fprintln(a.out, ")")
				if d.Err != nil {
					failed++
					fmt.Fprintf(a.out, "  error: %s\n", a.red.String(d.Err.Error()))
				}
				if d.Table == nil {
					continue
				}
				t := &table{header: []string{"  COLUMN", "TYPE", "FROM", "ROLE"}}
				for _, c := range d.Table.Columns {
					if c.Origin == schema.FromMeta {
						continue
					}
					var role []string
					for _, k := range d.Table.PrimaryKey {
						if k == c.Name {
							role = append(role, "primary key")
						}
					}
					if d.Table.Cursor == c.Name {
						role = append(role, "cursor")
					}
					from := c.Key()
					if c.Origin == schema.FromParent {
						from = "(parent)"
					}
					t.add("  "+c.Name, c.Type.String(), from, strings.Join(role, ", "))
				}
				t.write(a.out)
				fmt.Fprintln(a.out)
			}
			if failed > 0 {
				return fmt.Errorf("%d streams could not be read", failed)
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&streams, "stream", nil, "discover only these streams")
	cmd.Flags().IntVar(&sample, "sample", 200, "records to read per stream")
	return cmd
}

func (a *app) stateCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "state", Short: "Show or clear sync state"}
	var stream string
	var yes bool
	show := &cobra.Command{
		Use:   "show PIPELINE.yaml",
		Short: "Show the sync state of each stream and partition",
		Args:  exactArgs(1, "PIPELINE.yaml"),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, d, err := a.destination(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			defer d.Close()
			entries, err := d.State().List(cmd.Context(), p.Name, stream)
			if err != nil {
				return err
			}
			if len(entries) == 0 {
				fmt.Fprintf(a.out, "no state for pipeline %s\n", p.Name)
				return nil
			}
			t := &table{header: []string{"STREAM", "PARTITION", "CURSOR", "PASS", "UPDATED", "RUN"}}
			for _, e := range entries {
				st, err := engineState(e.State)
				cursor, pass := "", ""
				if err != nil {
					cursor = "unreadable: " + string(e.State)
				} else {
					cursor = st.Cursor
					if st.Pass != nil {
						pass = "in progress (" + st.Pass.ID + ")"
					}
				}
				part := e.Partition
				if part == "" {
					part = "-"
				}
				t.add(e.Stream, part, cursor, pass, e.UpdatedAt.UTC().Format(time.RFC3339), e.RunID)
			}
			t.write(a.out)
			return nil
		},
	}
	show.Flags().StringVar(&stream, "stream", "", "only this stream")
	reset := &cobra.Command{
		Use:   "reset PIPELINE.yaml",
		Short: "Clear sync state so the next run starts from the beginning",
		Args:  exactArgs(1, "PIPELINE.yaml"),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, d, err := a.destination(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			defer d.Close()
			if !yes && isTerminal(os.Stdin) {
				what := "every stream"
				if stream != "" {
					what = "stream " + stream
				}
				fmt.Fprintf(a.err, "Clear the state of %s of pipeline %s? The next run re-reads everything. [y/N] ", what, p.Name)
				var answer string
				fmt.Fscanln(os.Stdin, &answer)
				if !strings.EqualFold(strings.TrimSpace(answer), "y") {
					return errors.New("not cleared")
				}
			}
			n, err := d.State().Reset(cmd.Context(), p.Name, stream)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.out, "cleared %d state entries of pipeline %s\n", n, p.Name)
			return nil
		},
	}
	reset.Flags().StringVar(&stream, "stream", "", "only this stream")
	reset.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	cmd.AddCommand(show, reset)
	return cmd
}

// destination opens a pipeline's destination.
func (a *app) destination(ctx context.Context, path string) (*spec.Pipeline, dest.Destination, error) {
	p, r, err := a.loadPipeline(path)
	if err != nil {
		return nil, nil, err
	}
	d, err := dest.Open(ctx, dest.Config{Spec: p.Destination, URL: r.DestinationURL, Path: r.DestinationPath})
	if err != nil {
		return nil, nil, fmt.Errorf("destination %s: %s", p.Destination.Type, a.red.URL(err.Error()))
	}
	return p, d, nil
}

func engineState(raw []byte) (engine.PartitionState, error) {
	return engine.DecodeState(raw)
}

func (a *app) queryCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "query PIPELINE.yaml|FILE.db SQL",
		Short: "Run a SQL query against a pipeline's destination (or a SQLite file) and print the rows",
		Args:  exactArgs(2, "a pipeline file or SQLite file, and a query"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var d dest.Destination
			var err error
			if ext := filepath.Ext(args[0]); ext == ".yaml" || ext == ".yml" {
				_, d, err = a.destination(cmd.Context(), args[0])
			} else {
				if _, serr := os.Stat(args[0]); serr != nil {
					return serr
				}
				d, err = dest.Open(cmd.Context(), dest.Config{Spec: &spec.Destination{Type: "sqlite"}, Path: args[0]})
			}
			if err != nil {
				return err
			}
			defer d.Close()
			cols, rows, err := d.Query(cmd.Context(), args[1])
			if err != nil {
				return err
			}
			t := &table{header: cols}
			for _, r := range rows {
				for i, v := range r {
					if len([]rune(v)) > 60 {
						r[i] = string([]rune(v)[:59]) + "…"
					}
					r[i] = strings.ReplaceAll(r[i], "\n", " ")
				}
				t.add(r...)
			}
			t.write(a.out)
			fmt.Fprintf(a.out, "(%d rows)\n", len(rows))
			return nil
		},
	}
}

func (a *app) schemaCmd() *cobra.Command {
	return &cobra.Command{
		Use:       "schema connector|pipeline",
		Short:     "Print the JSON Schema of connector or pipeline files, for editors",
		Args:      exactArgs(1, "connector or pipeline"),
		ValidArgs: []string{"connector", "pipeline"},
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[0] != "connector" && args[0] != "pipeline" {
				return usageError{fmt.Errorf("unknown schema %q: want connector or pipeline", args[0])}
			}
			data, err := spec.SchemaJSON(args[0])
			if err != nil {
				return err
			}
			_, err = a.out.Write(data)
			return err
		},
	}
}

func openSQLite(ctx context.Context, path string) (dest.Destination, error) {
	return dest.Open(ctx, dest.Config{Spec: &spec.Destination{Type: "sqlite"}, Path: path})
}
