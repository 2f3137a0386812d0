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
	var db, export string
	var quiet, serveDemo bool
	var sf serveFlags
	var serveDir string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Sync a built-in sample shop API into a SQLite file (no network needed)",
		Long: `Start the sample shop API on loopback (customers, products, and each
customer's orders; bearer auth; three pagination styles; now and then a
429 with Retry-After) and sync it into a SQLite file. Run it twice: the
second run is incremental.

--export DIR writes the demo's connector and pipeline files, to read or
adapt.

--serve then keeps going as ferry serve until interrupted: the shop
pipeline every minute, a webhook endpoint for the shop's order events at
/hooks/shop, the control-plane API (/v1), the web UI (/ui/) and the
synced tables as a REST API (/api/; docs/table-api.md). Its files,
webhook queue and run history are kept in --serve-dir.`,
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
			if serveDemo {
				return a.demoServe(cmd, srv, db, serveDir, sf, quiet)
			}
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
			fmt.Fprintf(a.out, "\nLook at the data:\n  %s query %s 'SELECT id, customer_id, status, total, updated_at FROM orders ORDER BY updated_at DESC LIMIT 5'\n", self, shellQuote(db))
			fmt.Fprintf(a.out, "Run `%s demo` again: the second run only fetches what changed.\n", self)
			return err
		},
	}
	cmd.Flags().StringVar(&db, "db", "ferry-demo.db", "SQLite file to sync into")
	cmd.Flags().StringVar(&export, "export", "", "write the demo's connector and pipeline files to this directory and exit")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "no live progress display")
	cmd.Flags().BoolVar(&serveDemo, "serve", false, "run the demo as a service: the shop pipeline every minute, a webhook endpoint, the API and the web UI")
	cmd.Flags().StringVar(&serveDir, "serve-dir", "ferry-demo-serve", "with --serve: where the demo's files, webhook queue and run history are kept")
	cmd.Flags().StringVar(&sf.listen, "listen", "127.0.0.1:7070", "with --serve: address to serve on")
	cmd.Flags().DurationVar(&sf.shutdownTimeout, "shutdown-timeout", 30*time.Second, "with --serve: how long runs in flight may take to commit on SIGTERM")
	return cmd
}

// demoServe serves the demo: the shop pipeline on a schedule of every
// minute and a webhook endpoint for order events, into SQLite files.
func (a *app) demoServe(cmd *cobra.Command, srv *demo.Server, db, dir string, sf serveFlags, quiet bool) error {
	if !cmd.Flags().Changed("log-level") && !cmd.Root().PersistentFlags().Changed("log-level") {
		a.logLevel = "info"
	}
	log, err := a.logger()
	if err != nil {
		return err
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return err
	}
	if err := demo.Export(dir); err != nil {
		return err
	}
	if err := demo.ExportHooks(dir); err != nil {
		return err
	}
	abs, err := filepath.Abs(db)
	if err != nil {
		return err
	}
	hooksDB := strings.TrimSuffix(abs, filepath.Ext(abs)) + "-hooks.db"
	secret, _ := serve.NewToken()
	secret = "demo_" + strings.TrimPrefix(secret, "ferry_")
	shop := srv.Lookup(abs)
	a.lookup = func(k string) (string, bool) {
		switch k {
		case demo.EnvHookSecret:
			return secret, true
		case demo.EnvHooksDB:
			return hooksDB, true
		}
		return shop(k)
	}
	var pipes []serve.Pipeline
	for _, name := range []string{demo.PipelineFile, demo.HooksPipelineFile} {
		path := filepath.Join(dir, name)
		p, r, err := a.loadPipeline(path, false)
		if err != nil {
			return err
		}
		if name == demo.PipelineFile {
			p.Schedule = &spec.Schedule{Cron: "* * * * *"}
			if p.API == nil {
				p.API = &spec.APISettings{}
			}
			p.API.Expose = true // the synced tables at /api/
			// A first sync now, with its progress, so that there is data
			// before the schedule's first firing.
			fmt.Fprintf(a.err, "Sample shop API on %s; syncing into %s\n\n", srv.URL, db)
			if _, err := a.sync(cmd.Context(), p, r, engine.Options{}, !quiet); err != nil {
				return err
			}
			a.exit = 0 // a partial first sync is no reason to stop
		}
		pipes = append(pipes, serve.Pipeline{Spec: p, Resolved: r, File: path})
	}
	sf.meta = "sqlite:" + filepath.Join(dir, "ferry-serve.db")
	self := a.self
	return a.serveLoaded(cmd.Context(), pipes, sf, log, func(addr string) {
		base := "http://" + addr
		fmt.Fprintf(a.out, `
ferry serve: the shop syncs into %s every minute.

  Web UI:        %s/ui/
  Trigger a run: curl -X POST %s/v1/pipelines/shop-demo/runs
  Runs:          curl %s/v1/runs
  A webhook:     curl -H 'X-Shop-Token: %s' -d '{"id":"evt_1","type":"order.paid","data":{"id":1,"status":"paid"}}' %s/hooks/shop
                 (order events go into %s)
  Tables as API: curl '%s/api/orders?limit=3&order=updated_at.desc&select=id,status,total'
                 curl %s/api/openapi.json
  Look at data:  %s query %s 'SELECT id, status, total FROM orders LIMIT 5'

Ctrl-C stops it; the run history stays in %s.
`, db, base, base, base, secret, base, hooksDB, base, base, self, shellQuote(db), dir)
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
