package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/dest/sqlite"
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
			seen := map[spec.Problem]bool{}
			for _, f := range args {
				data, err := spec.ReadFile(f)
				if err != nil {
					other = append(other, usageError{err})
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
					// A connector's problems come again with each pipeline
					// that uses it: report each once.
					for _, p := range ps {
						k := p
						if abs, err := filepath.Abs(p.File); err == nil {
							k.File = abs
						}
						if !seen[k] {
							seen[k] = true
							all = append(all, p)
						}
					}
				case err != nil:
					other = append(other, usageError{fmt.Errorf("%s: %w", f, err)})
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
		Short: "Prove credentials and connectivity: one request per stream, and the destination",
		Long: `Prove credentials and connectivity without syncing: one request per
stream, and a look at the destination (the server answers, the database
and schema exist or may be created, tables may be created). Nothing is
written.`,
		Args: exactArgs(1, "PIPELINE.yaml"),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, r, src, names, err := a.openSource(args[0], streams, 2)
			if err != nil {
				return err
			}
			defer src.Close()
			failed := 0
			checker, ok := src.(source.Checker)
			for _, name := range names {
				if !ok {
					fmt.Fprintf(a.out, "- %s: the %s source has no check\n", name, p.Connector.Inline.Type)
					continue
				}
				ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
				msg, err := checker.Check(ctx, name)
				cancel()
				if err != nil {
					failed++
					fmt.Fprintf(a.out, "✗ %s: %s\n", name, a.red.URL(a.red.String(err.Error())))
					continue
				}
				fmt.Fprintf(a.out, "✓ %s: %s\n", name, a.red.URL(msg))
			}
			what := "destination " + p.Destination.Type
			if msg, err := a.checkDestination(cmd.Context(), p, r); err != nil {
				failed++
				fmt.Fprintf(a.out, "✗ %s: %s\n", what, a.red.URL(a.red.String(err.Error())))
			} else {
				fmt.Fprintf(a.out, "✓ %s: %s\n", what, a.red.URL(msg))
			}
			if failed > 0 {
				return fmt.Errorf("%d of %d checks failed", failed, len(names)+1)
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&streams, "stream", nil, "check only these streams")
	return cmd
}

// checkDestination opens the destination read-only and asks it to prove a
// run could write.
func (a *app) checkDestination(ctx context.Context, p *spec.Pipeline, r *spec.Resolved) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	d, err := dest.Open(ctx, p.Destination.Type, r.Destination, dest.Options{ReadOnly: true, Dir: p.Dir})
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "it does not exist yet; the first run creates it", nil
		}
		return "", err
	}
	defer d.Close()
	if c, ok := d.(dest.Checker); ok {
		return c.Check(ctx)
	}
	return "opened", nil
}

// openSource loads a pipeline and builds its source, for the streams
// asked (all when none). attempts overrides the connector's attempts per
// request when not 0.
func (a *app) openSource(path string, streams []string, attempts int) (*spec.Pipeline, *spec.Resolved, source.Source, []string, error) {
	p, r, err := a.loadPipeline(path, false)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	names, err := pick(p, streams)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	log, err := a.logger()
	if err != nil {
		return nil, nil, nil, nil, err
	}
	conn := p.Connector.Inline
	src, err := source.New(conn.Type, conn.Body, source.Options{Name: conn.Name, Config: r.Config, Redactor: a.red, Logger: log, MaxAttempts: attempts, Dir: p.Dir})
	return p, r, src, names, err
}

// pick returns the requested streams, or all of the pipeline's.
func pick(p *spec.Pipeline, streams []string) ([]string, error) {
	if len(streams) == 0 {
		return p.StreamOrder, nil
	}
	for _, s := range streams {
		if _, ok := p.Connector.Inline.Stream(s); !ok {
			return nil, usageError{fmt.Errorf("no stream %q (the connector has: %s)", s, strings.Join(p.Connector.Inline.StreamNames(), ", "))}
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
		Long: `Read a sample of each stream, from the start and without state, and print
the columns a run would create: with the pipeline's schema settings
(nested, policy) and the destination's identifier limits. Nothing is
written.`,
		Args: exactArgs(1, "PIPELINE.yaml"),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, r, src, names, err := a.openSource(args[0], streams, 0)
			if err != nil {
				return err
			}
			defer src.Close()
			// The destination's limits shape the names; without a reachable
			// destination discovery goes on without them.
			d, derr := dest.Open(cmd.Context(), p.Destination.Type, r.Destination, dest.Options{ReadOnly: true, Dir: p.Dir})
			if derr != nil {
				d = nil
				if !errors.Is(derr, os.ErrNotExist) {
					fmt.Fprintf(a.err, "note: the destination is not reachable (%s); names are shown without its limits\n", a.red.URL(a.red.String(derr.Error())))
				}
			} else {
				defer d.Close()
			}
			failed := 0
			for _, d := range engine.Discover(cmd.Context(), engine.DiscoverOptions{Source: src, Pipeline: p, Destination: d, Streams: names, Sample: sample}) {
				fmt.Fprintf(a.out, "stream %s (%d records sampled", d.Stream, d.Records)
				if d.Rejected > 0 {
					fmt.Fprintf(a.out, ", %d rejected: %s", d.Rejected, strings.Join(d.Reasons, "; "))
				}
				fmt.Fprintln(a.out, ")")
				if d.Err != nil {
					failed++
					fmt.Fprintf(a.out, "  error: %s\n", a.red.URL(a.red.String(d.Err.Error())))
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
		Short: "Show the sync state of each stream and partition (read-only)",
		Args:  exactArgs(1, "PIPELINE.yaml"),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, store, closeAll, err := a.stateStore(cmd.Context(), args[0], true)
			if errors.Is(err, os.ErrNotExist) {
				fmt.Fprintf(a.out, "no state for pipeline %s: its database does not exist yet\n", p.Name)
				return nil
			}
			if err != nil {
				return err
			}
			defer closeAll()
			if stream != "" {
				if _, err := pick(p, []string{stream}); err != nil {
					return err
				}
			}
			entries, err := store.List(cmd.Context(), p.Name, stream)
			if err != nil {
				return err
			}
			if len(entries) == 0 {
				fmt.Fprintf(a.out, "no state for pipeline %s\n", p.Name)
				return nil
			}
			t := &table{header: []string{"STREAM", "PARTITION", "CURSOR", "PASS", "UPDATED", "RUN"}}
			for _, e := range entries {
				st, err := engine.DecodeState(e.State)
				cursor, pass := "", ""
				if err != nil {
					cursor = "unreadable: " + string(e.State)
				} else {
					cursor = st.Cursor
					if st.Pass != nil {
						pass = "in progress (" + st.Pass.ID + ")"
						if len(st.Pass.Position) > 0 {
							pass += " at " + short(string(st.Pass.Position), 160) // a CDC stream's position and slot lag
						}
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
		Long: `Clear sync state so the next run starts from the beginning. It asks for
confirmation on a terminal; without one (a script, a pipe) it needs --yes.
It refuses while a run of the stream holds the stream's lock.`,
		Args: exactArgs(1, "PIPELINE.yaml"),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, store, closeAll, err := a.stateStore(cmd.Context(), args[0], false)
			if err != nil {
				return err
			}
			defer closeAll()
			names := p.StreamOrder
			what := "every stream"
			if stream != "" {
				if names, err = pick(p, []string{stream}); err != nil {
					return err
				}
				what = "stream " + stream
			}
			if !yes {
				if !isTerminal(a.in) {
					return usageError{fmt.Errorf("state reset clears the state of %s of pipeline %s; without a terminal to confirm on, pass --yes", what, p.Name)}
				}
				fmt.Fprintf(a.err, "Clear the state of %s of pipeline %s? The next run re-reads everything. [y/N] ", what, p.Name)
				answer, _ := bufio.NewReader(a.in).ReadString('\n')
				if !strings.EqualFold(strings.TrimSpace(answer), "y") {
					return errors.New("not cleared")
				}
			}
			// A run holding a stream's lock would write its state back: refuse.
			holder := dest.Holder{RunID: "state-reset", Since: time.Now()}
			for _, name := range names {
				release, err := store.Lock(cmd.Context(), p.Name, name, holder)
				if err != nil {
					var le *dest.LockedError
					if errors.As(err, &le) {
						return fmt.Errorf("not cleared: %w", err)
					}
					return err
				}
				defer release()
			}
			total, err := store.Reset(cmd.Context(), p.Name, stream)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.out, "cleared %d state entries of pipeline %s\n", total, p.Name)
			return nil
		},
	}
	reset.Flags().StringVar(&stream, "stream", "", "only this stream")
	reset.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	cmd.AddCommand(show, reset)
	return cmd
}

// stateStore opens the store that keeps a pipeline's state (its state:
// section, or its destination), read-only or not, without needing the
// API's secrets.
func (a *app) stateStore(ctx context.Context, path string, readOnly bool) (*spec.Pipeline, dest.StateStore, func(), error) {
	p, r, err := a.loadPipeline(path, true)
	if err != nil {
		return nil, nil, nil, err
	}
	typ, cfg := p.Destination.Type, r.Destination
	if p.State != nil {
		typ, cfg = p.State.Type, r.State
	}
	d, err := dest.Open(ctx, typ, cfg, dest.Options{ReadOnly: readOnly, Dir: p.Dir})
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return p, nil, nil, err
		}
		return nil, nil, nil, fmt.Errorf("destination %s: %s", typ, a.red.URL(a.red.String(err.Error())))
	}
	sk, ok := d.(dest.StateKeeper)
	if !ok {
		d.Close()
		return nil, nil, nil, fmt.Errorf("the %s destination keeps no state", typ)
	}
	return p, sk.State(), func() { d.Close() }, nil
}

func (a *app) queryCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "query PIPELINE.yaml|FILE.db SQL",
		Short: "Run a SQL query against a pipeline's destination (or a SQLite file) and print the rows",
		Long: `Run a SQL query against a pipeline's destination, or a SQLite file, and
print the rows. The database is opened read-only: nothing is created or
changed, and the API's secrets are not needed.`,
		Args: exactArgs(2, "a pipeline file or SQLite file, and a query"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var d dest.Destination
			var err error
			if ext := filepath.Ext(args[0]); ext == ".yaml" || ext == ".yml" {
				var p *spec.Pipeline
				var r *spec.Resolved
				if p, r, err = a.loadPipeline(args[0], true); err != nil {
					return err
				}
				d, err = dest.Open(cmd.Context(), p.Destination.Type, r.Destination, dest.Options{ReadOnly: true, Dir: p.Dir})
			} else {
				if _, serr := os.Stat(args[0]); serr != nil {
					return usageError{serr}
				}
				d, err = dest.Open(cmd.Context(), "sqlite", &sqlite.Config{Path: args[0]}, dest.Options{ReadOnly: true})
			}
			if err != nil {
				return fmt.Errorf("%s", a.red.URL(a.red.String(err.Error())))
			}
			defer d.Close()
			q, ok := d.(dest.Querier)
			if !ok {
				return errors.New("this destination does not answer queries")
			}
			cols, rows, err := q.Query(cmd.Context(), args[1])
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
		Use:   "schema connector|pipeline",
		Short: "Print the JSON Schema of connector or pipeline files, for editors",
		Long: `Print the JSON Schema of connector or pipeline files, for editors. It is
generated from the components built into this binary (source kinds,
destinations, auth schemes), so it describes exactly what it accepts.`,
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

// isTerminal reports whether f is a terminal.
func isTerminal(f any) bool {
	file, ok := f.(*os.File)
	if !ok {
		return false
	}
	st, err := file.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
