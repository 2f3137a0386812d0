package cli

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferry-dev/ferry/internal/demo"
	"github.com/ferry-dev/ferry/internal/demo/shopapi"
	"github.com/ferry-dev/ferry/internal/dest"
	"github.com/ferry-dev/ferry/internal/dest/sqlite"
	"github.com/ferry-dev/ferry/internal/engine"
	"github.com/ferry-dev/ferry/internal/serve"
	"github.com/ferry-dev/ferry/internal/spec"
)

func (a *app) demoCmd() *cobra.Command {
	var db, export, listen string
	var quiet, serveAPI bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Sync a built-in sample shop API into a SQLite file (no network needed)",
		Long: `Start the sample shop API on loopback (customers, products, and each
customer's orders; bearer auth; three pagination styles; now and then a
429 with Retry-After) and sync it into a SQLite file. Run it twice: the
second run is incremental.

--export DIR writes the demo's connector and pipeline files, to read or
adapt.

--serve then keeps going as ferry serve with the synced tables served as
a REST API at /api/ (filters, pages, OpenAPI document; docs/table-api.md),
until interrupted.`,
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
			abs, err := filepath.Abs(db)
			if err != nil {
				return err
			}
			a.lookup = srv.Lookup(abs)
			r, err := p.Resolve(a.lookup)
			if err != nil {
				return err
			}
			a.red.Add(r.Secrets...)
			fmt.Fprintf(a.err, "Sample shop API on %s; syncing into %s\n\n", srv.URL, db)
			sum, err := a.sync(cmd.Context(), p, r, engine.Options{}, !quiet)
			if sum == nil {
				return err
			}
			// What landed.
			d, oerr := dest.Open(cmd.Context(), "sqlite", &sqlite.Config{Path: abs}, dest.Options{ReadOnly: true})
			if oerr == nil {
				defer d.Close()
				t := &table{header: []string{"TABLE", "ROWS"}, right: map[int]bool{1: true}}
				for _, st := range sum.Streams {
					n, _ := d.(dest.Reader).Count(cmd.Context(), st.Table)
					t.add(st.Table, fmt.Sprint(n))
				}
				fmt.Fprintln(a.out)
				t.write(a.out)
			}
			self := a.self
			if serveAPI && err == nil {
				return a.demoServe(cmd, p, r, filepath.Join(dir, demo.PipelineFile), listen)
			}
			fmt.Fprintf(a.out, "\nLook at the data:\n  %s query %s 'SELECT id, customer_id, status, total, updated_at FROM orders ORDER BY updated_at DESC LIMIT 5'\n", self, shellQuote(db))
			fmt.Fprintf(a.out, "Run `%s demo` again: the second run only fetches what changed.\n", self)
			return err
		},
	}
	cmd.Flags().StringVar(&db, "db", "ferry-demo.db", "SQLite file to sync into")
	cmd.Flags().StringVar(&export, "export", "", "write the demo's connector and pipeline files to this directory and exit")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "no live progress display")
	cmd.Flags().BoolVar(&serveAPI, "serve", false, "after the sync, serve the tables as a REST API (ferry serve) until interrupted")
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:7070", "with --serve, the address to serve on (loopback)")
	return cmd
}

// demoServe serves the demo's synced tables as ferry serve does, with
// the table API at /api/, until the command's context ends.
func (a *app) demoServe(cmd *cobra.Command, p *spec.Pipeline, r *spec.Resolved, file, listen string) error {
	if p.API == nil {
		p.API = &spec.APISettings{}
	}
	p.API.Expose = true
	log, err := a.logger()
	if err != nil {
		return err
	}
	f := serveFlags{listen: listen, meta: "sqlite:" + filepath.Join(filepath.Dir(file), "ferry-serve.db"), shutdownTimeout: 10 * time.Second}
	return a.serveLoaded(cmd.Context(), []serve.Pipeline{{Spec: p, Resolved: r, File: file}}, f, log, func(addr string) {
		fmt.Fprintf(a.out, "\nThe synced tables, served as a REST API (Ctrl-C to stop):\n")
		fmt.Fprintf(a.out, "  curl 'http://%s/api/orders?limit=3&order=updated_at.desc&select=id,status,total'\n", addr)
		fmt.Fprintf(a.out, "  curl 'http://%s/api/customers?limit=5' -H 'Accept: text/csv'\n", addr)
		fmt.Fprintf(a.out, "  curl http://%s/api/openapi.json\n", addr)
	})
}

// selfCommand is how the user at the terminal runs this same ferry: ferry
// when it is on the PATH, go run ./cmd/ferry when it was started that way,
// its path otherwise.
func selfCommand() string {
	exe, err := os.Executable()
	if err != nil {
		return "ferry"
	}
	wd, _ := os.Getwd()
	return selfCommandFor(exe, wd, exec.LookPath)
}

// selfCommandFor is selfCommand for the executable exe started in the
// directory wd, with lookPath finding programs on the PATH.
func selfCommandFor(exe, wd string, lookPath func(string) (string, error)) string {
	if onPath, err := lookPath("ferry"); err == nil {
		if a, b := resolve(onPath), resolve(exe); a == b {
			return "ferry"
		}
	}
	if strings.Contains(exe, string(filepath.Separator)+"go-build") {
		if _, err := os.Stat(filepath.Join(wd, "cmd", "ferry")); err == nil {
			return "go run ./cmd/ferry"
		}
	}
	if wd != "" {
		if rel, err := filepath.Rel(wd, exe); err == nil && !strings.HasPrefix(rel, "..") {
			return shellQuote("./" + rel)
		}
	}
	return shellQuote(exe)
}

func resolve(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return p
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\n'\"\\$`!*?[]{}()<>|&;#~") {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
