package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferry-dev/ferry/internal/metastore"
	"github.com/ferry-dev/ferry/internal/serve"
	"github.com/ferry-dev/ferry/internal/spec"
	"github.com/ferry-dev/ferry/internal/tableapi"
	"github.com/ferry-dev/ferry/internal/webui"
)

// serveFlags are ferry serve's options.
type serveFlags struct {
	listen, meta, tokensFile string
	// apiSecurity is the table API's security file (tokens, JWT, roles).
	apiSecurity     string
	expose          bool
	shutdownTimeout time.Duration
}

func (a *app) serveCmd() *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve [PIPELINE.yaml ...]",
		Short: "Run pipelines on their schedules and continuously, with a control-plane API and metrics",
		Long: `Run pipelines as a service: each pipeline's schedule: (a cron expression)
starts its runs, pipelines with streams that never end (webhooks, change
data capture) run continuously, and a control-plane API under /v1 (its
OpenAPI document at /v1/openapi.json) lists pipelines and runs, triggers
and cancels runs, shows logs, state, drift and rejected records. Also
/healthz, /readyz and Prometheus /metrics.

Two runs of one stream never overlap: a scheduled run that finds its
streams busy is recorded as skipped. Schedules missed while the server
was down run once at start, not once per missed firing.

Every run is recorded in the metadata store: a SQLite file beside the
first pipeline (ferry-serve.db) unless --meta names another, or a
PostgreSQL database (--meta postgres://…) that several servers share.

The server binds loopback; without API tokens, loopback requests need
none. --expose binds another address and needs a token (ferry serve
token create --role operator). SIGTERM or SIGINT stop taking new work,
let the runs in flight commit what they have written, and exit within
--shutdown-timeout.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.serve(cmd, args, f, nil)
		},
	}
	addServeFlags(cmd, &f)
	cmd.AddCommand(a.tokenCmd())
	return cmd
}

func addServeFlags(cmd *cobra.Command, f *serveFlags) {
	cmd.Flags().StringVar(&f.listen, "listen", "127.0.0.1:7070", "address to serve on (a non-loopback one needs --expose)")
	cmd.Flags().BoolVar(&f.expose, "expose", false, "allow a non-loopback --listen address (needs at least one API token)")
	cmd.Flags().StringVar(&f.meta, "meta", "", "metadata store: sqlite:PATH or a postgres:// URL (default: ferry-serve.db beside the first pipeline)")
	cmd.Flags().StringVar(&f.tokensFile, "tokens-file", "", `file of API token hashes, one per line: "sha256:HEX ROLE [NAME]"`)
	cmd.Flags().StringVar(&f.apiSecurity, "api-security", "", "the table API's security file: its tokens, JWT settings, roles, rate limits and CORS (docs/table-api.md); default: the server's tokens")
	cmd.Flags().DurationVar(&f.shutdownTimeout, "shutdown-timeout", 30*time.Second, "on SIGTERM, how long runs in flight may take to commit before the server exits anyway")
}

// serve runs the server over the pipelines in args; ready, when set, is
// told the address once it listens.
func (a *app) serve(cmd *cobra.Command, args []string, f serveFlags, ready func(addr string)) error {
	if !cmd.Flags().Changed("log-level") && !cmd.Root().PersistentFlags().Changed("log-level") {
		a.logLevel = "info"
	}
	log, err := a.logger()
	if err != nil {
		return err
	}
	var pipes []serve.Pipeline
	for _, path := range args {
		p, r, err := a.loadPipeline(path, false)
		if err != nil {
			return err
		}
		pipes = append(pipes, serve.Pipeline{Spec: p, Resolved: r, File: path})
	}
	return a.serveLoaded(cmd.Context(), pipes, f, log, ready)
}

func (a *app) serveLoaded(ctx context.Context, pipes []serve.Pipeline, f serveFlags, log *slog.Logger, ready func(addr string)) error {
	metaURL, err := metaLocation(f.meta, pipes)
	if err != nil {
		return err
	}
	store, err := metastore.Open(ctx, metaURL)
	if err != nil {
		return fmt.Errorf("%s", a.red.URL(a.red.String(err.Error())))
	}
	defer store.Close()
	var tokens []metastore.Token
	if f.tokensFile != "" {
		if tokens, err = serve.ReadTokensFile(f.tokensFile); err != nil {
			return usageError{err}
		}
	}
	api, err := a.tableAPI(ctx, pipes, f, log)
	if err != nil {
		return err
	}
	cfg := serve.Config{Pipelines: pipes, Store: store, Listen: f.listen, Expose: f.expose, Tokens: tokens,
		Logger: log, Redactor: a.red, ShutdownTimeout: f.shutdownTimeout, UI: uiHandler()}
	if api != nil {
		defer api.Close()
		cfg.API, cfg.APIAuthenticates = api, f.apiSecurity != ""
	}
	srv, err := serve.New(ctx, cfg)
	if err != nil {
		return err
	}
	l, err := srv.Listen()
	if err != nil {
		return usageError{err}
	}
	addr := l.Addr().String()
	fmt.Fprintf(a.err, "ferry serve: %d pipelines on http://%s (API /v1, metrics /metrics); metadata in %s\n", len(pipes), addr, a.red.URL(metaURL))
	if api != nil && len(api.Tables()) > 0 {
		fmt.Fprintf(a.err, "ferry serve: tables %s at http://%s/api/ (OpenAPI document at /api/openapi.json)\n", strings.Join(api.Tables(), ", "), addr)
	}
	if ready != nil {
		ready(addr)
	}
	return srv.Run(ctx, l)
}

// tableAPI builds the table API over the pipelines' tables that their
// api: settings serve; nil when none does.
func (a *app) tableAPI(ctx context.Context, pipes []serve.Pipeline, f serveFlags, log *slog.Logger) (*tableapi.Handler, error) {
	var tp []tableapi.Pipeline
	for _, p := range pipes {
		if servesTables(p.Spec) {
			tp = append(tp, tableapi.Pipeline{Spec: p.Spec, Resolved: p.Resolved})
		}
	}
	if len(tp) == 0 {
		if f.apiSecurity != "" {
			return nil, usageError{errors.New("--api-security: no pipeline serves tables (give a pipeline an api: section, docs/table-api.md)")}
		}
		return nil, nil
	}
	opts := tableapi.Options{Pipelines: tp, Logger: log, Redactor: a.red, OpenWrites: true}
	if f.apiSecurity != "" {
		sec, err := tableapi.LoadSecurity(f.apiSecurity, a.lookup)
		if err != nil {
			return nil, usageError{err}
		}
		opts.Security, opts.OpenWrites = sec, false
	}
	return tableapi.New(ctx, opts)
}

// servesTables reports whether a pipeline's api: settings serve a table.
func servesTables(p *spec.Pipeline) bool {
	if p.API != nil && (p.API.Expose || len(p.API.Tables) > 0) {
		return true
	}
	for _, s := range p.Streams {
		if s != nil && s.API != nil && s.API.Expose != nil && *s.API.Expose {
			return true
		}
	}
	return false
}

// uiHandler returns the web UI that ferry serve mounts at /ui/ (paths
// relative to /ui/).
func uiHandler() http.Handler { return webui.Handler() }

// metaLocation is --meta, or ferry-serve.db beside the first pipeline.
func metaLocation(flag string, pipes []serve.Pipeline) (string, error) {
	if flag != "" {
		if !strings.HasPrefix(flag, "sqlite:") && !strings.HasPrefix(flag, "postgres://") && !strings.HasPrefix(flag, "postgresql://") {
			return "", usageError{fmt.Errorf("--meta %q: want sqlite:PATH or a postgres:// URL", flag)}
		}
		return flag, nil
	}
	if len(pipes) == 0 {
		return "", usageError{errors.New("without a pipeline file, name the metadata store with --meta sqlite:PATH or --meta postgres://…")}
	}
	return "sqlite:" + filepath.Join(filepath.Dir(pipes[0].File), "ferry-serve.db"), nil
}

func (a *app) tokenCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Manage the API tokens of ferry serve"}
	var role, name, meta string
	create := &cobra.Command{
		Use:   "create [PIPELINE.yaml]",
		Short: "Create an API token: print it once, store only its hash",
		Long: `Create an API token for ferry serve's API and print it once: only its
SHA-256 hash is stored, in the metadata store (the one beside the
pipeline file, or --meta), so it cannot be shown again. Roles: read
(GET requests only) and operator (everything: trigger and cancel runs,
reset state, replay rejected records).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var pipes []serve.Pipeline
			if len(args) == 1 {
				pipes = []serve.Pipeline{{File: args[0]}}
			}
			metaURL, err := metaLocation(meta, pipes)
			if err != nil {
				return err
			}
			store, err := metastore.Open(cmd.Context(), metaURL)
			if err != nil {
				return fmt.Errorf("%s", a.red.URL(a.red.String(err.Error())))
			}
			defer store.Close()
			tok, err := serve.CreateToken(cmd.Context(), store, role, name)
			if err != nil {
				return usageError{err}
			}
			fmt.Fprintln(a.out, tok)
			fmt.Fprintf(a.err, "created a %s token%s; it is shown only now (the store keeps its hash): send it as Authorization: Bearer <token>\n", role, nameNote(name))
			return nil
		},
	}
	create.Flags().StringVar(&role, "role", serve.RoleRead, "read (GET only) or operator (everything)")
	create.Flags().StringVar(&name, "name", "", "a name to remember the token by")
	create.Flags().StringVar(&meta, "meta", "", "metadata store: sqlite:PATH or a postgres:// URL (default: ferry-serve.db beside the pipeline)")
	hash := &cobra.Command{
		Use:   "hash",
		Short: "Make a token and print it with the tokens-file line holding its hash",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if role != serve.RoleRead && role != serve.RoleOperator {
				return usageError{fmt.Errorf("--role %q: want read or operator", role)}
			}
			tok, h := serve.NewToken()
			fmt.Fprintf(a.out, "token: %s\ntokens-file line: sha256:%s %s %s\n", tok, h, role, name)
			return nil
		},
	}
	hash.Flags().StringVar(&role, "role", serve.RoleRead, "read (GET only) or operator (everything)")
	hash.Flags().StringVar(&name, "name", "", "a name to remember the token by")
	cmd.AddCommand(create, hash)
	return cmd
}

func nameNote(name string) string {
	if name == "" {
		return ""
	}
	return " named " + name
}
