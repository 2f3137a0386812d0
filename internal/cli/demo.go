package cli

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/ferry-dev/ferry/internal/demo"
	"github.com/ferry-dev/ferry/internal/demo/shopapi"
	"github.com/ferry-dev/ferry/internal/engine"
)

func (a *app) demoCmd() *cobra.Command {
	var db, export string
	var quiet bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Sync a built-in sample shop API into a SQLite file (no network needed)",
		Long: `Start the sample shop API on loopback (customers, products, and each
customer's orders; bearer auth; three pagination styles; now and then a
429 with Retry-After) and sync it into a SQLite file. Run it twice: the
second run is incremental.

--export DIR writes the demo's connector and pipeline files, to read or
adapt.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if export != "" {
				if err := demo.Export(export); err != nil {
					return err
				}
				fmt.Fprintf(a.out, "wrote %s and %s to %s\n", demo.ConnectorFile, demo.PipelineFile, export)
				return nil
			}
			srv, err := demo.Start(shopapi.Options{RateLimitEvery: 150})
			if err != nil {
				return err
			}
			defer srv.Close()
			dir, err := os.MkdirTemp("", "ferry-demo-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			p, err := demo.Load(dir)
			if err != nil {
				return err
			}
			a.lookup = srv.Lookup()
			r, err := p.Resolve(a.lookup)
			if err != nil {
				return err
			}
			a.red.Add(r.Secrets...)
			if r.DestinationPath, err = filepath.Abs(db); err != nil {
				return err
			}
			fmt.Fprintf(a.err, "Sample shop API on %s; syncing into %s\n\n", srv.URL, db)
			sum, err := a.sync(cmd.Context(), p, r, engine.Options{}, !quiet)
			if sum == nil {
				return err
			}
			// What landed.
			d, oerr := openSQLite(cmd.Context(), r.DestinationPath)
			if oerr == nil {
				defer d.Close()
				t := &table{header: []string{"TABLE", "ROWS"}, right: map[int]bool{1: true}}
				for _, st := range sum.Streams {
					n, _ := d.Count(cmd.Context(), st.Table)
					t.add(st.Table, fmt.Sprint(n))
				}
				fmt.Fprintln(a.out)
				t.write(a.out)
			}
			fmt.Fprintf(a.out, "\nLook at the data:\n  ferry query %s 'SELECT id, customer_id, status, total, updated_at FROM orders ORDER BY updated_at DESC LIMIT 5'\n", db)
			fmt.Fprintf(a.out, "Run `ferry demo` again: the second run only fetches what changed.\n")
			return err
		},
	}
	cmd.Flags().StringVar(&db, "db", "ferry-demo.db", "SQLite file to sync into")
	cmd.Flags().StringVar(&export, "export", "", "write the demo's connector and pipeline files to this directory and exit")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "no live progress display")
	return cmd
}
