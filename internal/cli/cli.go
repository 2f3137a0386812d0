// Package cli is Ferry's command line: it parses flags, loads files,
// drives the engine, and shows progress and results. It holds no sync
// logic of its own.
package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/ferry-dev/ferry/internal/redact"

	"github.com/spf13/cobra"

	"github.com/ferry-dev/ferry/internal/engine"
	"github.com/ferry-dev/ferry/internal/spec"
)

// Version is set at build time with -ldflags "-X …/cli.Version=v1.2.3".
var Version = "dev"

// Exit codes, documented in ferry --help and the README.
const (
	exitOK          = 0   // everything succeeded
	exitFailed      = 1   // a sync (or check) failed: at least one stream did not complete
	exitInvalid     = 2   // bad usage, invalid or missing files, a missing environment variable
	exitPartial     = 3   // every stream completed, but some records were rejected
	exitStopped     = 4   // the run stopped early on purpose (a request budget, a long rate limit); the next run resumes
	exitInterrupted = 130 // interrupted (Ctrl-C, SIGTERM); what was committed stays and the next run resumes
)

// exitCodes is the exit code table for --help.
const exitCodes = `Exit codes:
  0    succeeded
  1    failed: at least one stream did not complete (the others' rows are committed)
  2    usage or configuration error: bad flags, invalid or missing files, a missing environment variable
  3    partial: every stream completed, but some records were rejected (see _ferry_rejected)
  4    stopped early on purpose (request budget, long rate limit); the next run resumes
  130  interrupted; what was committed stays and the next run resumes`

type app struct {
	out, err  io.Writer
	in        io.Reader
	logLevel  string
	logFormat string
	red       *redact.Redactor
	lookup    func(string) (string, bool)
	// exit is the code a command chose (partial, stopped), 0 for the
	// default.
	exit int
	// self is how the user runs this ferry, for commands printed to them.
	self string
}

// usageError marks errors in how the command was called or configured.
type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }

// gcPercent is the garbage collector's target unless GOGC is set: a sync
// allocates mostly short-lived page buffers, and collecting half as often
// costs about 15% less CPU per record for a few megabytes of memory.
const gcPercent = 200

// Main runs the command line and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runWith(ctx, args, os.Stdin, stdout, stderr, selfCommand())
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runWith(ctx, args, os.Stdin, stdout, stderr, "ferry")
}

// runWith runs the command line; self is how the user runs ferry, for the
// commands Ferry suggests.
func runWith(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, self string) int {
	a := &app{out: stdout, err: stderr, in: stdin, red: redact.New(), lookup: os.LookupEnv, self: self}
	root := a.root()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return cmp.Or(a.exit, exitOK)
	}
	a.printError(err)
	return exitCode(err)
}

// exitCode chooses the exit code of a failed command.
func exitCode(err error) int {
	var ue usageError
	var ps spec.Problems
	var us *engine.UnknownStreamError
	switch {
	case errors.As(err, &ue), errors.As(err, &ps), errors.As(err, &us):
		return exitInvalid
	case strings.HasPrefix(err.Error(), "unknown command"), strings.HasPrefix(err.Error(), "unknown flag"):
		return exitInvalid // cobra's own usage errors
	}
	var re *engine.RunError
	if errors.As(err, &re) {
		allCancelled := true
		for _, e := range re.Errs {
			allCancelled = allCancelled && errors.Is(e, context.Canceled)
		}
		if allCancelled {
			return exitInterrupted
		}
	}
	return exitFailed
}

func (a *app) root() *cobra.Command {
	root := &cobra.Command{
		Use:   "ferry",
		Short: "Ferry moves data between web APIs and SQL databases",
		Long: `Ferry syncs REST APIs, described by a declarative YAML connector, into
SQLite, PostgreSQL or MySQL: incremental, resumable, exactly once.

Start with "ferry demo", then see docs/connector-spec.md.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       Version,
	}
	root.SetUsageTemplate(root.UsageTemplate() + "\n" + exitCodes + "\n")
	root.PersistentFlags().StringVar(&a.logLevel, "log-level", "warn", "log level: debug, info, warn or error")
	root.PersistentFlags().StringVar(&a.logFormat, "log-format", "text", "log format: text or json")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(a.runCmd(), a.validateCmd(), a.checkCmd(), a.discoverCmd(), a.stateCmd(), a.demoCmd(), a.queryCmd(), a.schemaCmd(), a.initCmd(), a.importCmd())
	root.AddCommand(a.dlqCmd(), a.cdcCmd(), a.previewCmd(), a.serveCmd(), a.webhooksCmd())
	root.AddCommand(a.workerCmd(), a.workersCmd(), a.enqueueCmd())
	return root
}

// logger returns the logger the flags ask for; every message passes
// through the redactor.
func (a *app) logger() (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(a.logLevel)); err != nil {
		return nil, usageError{fmt.Errorf("--log-level %q: want debug, info, warn or error", a.logLevel)}
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch a.logFormat {
	case "text":
		h = slog.NewTextHandler(a.err, opts)
	case "json":
		h = slog.NewJSONHandler(a.err, opts)
	default:
		return nil, usageError{fmt.Errorf("--log-format %q: want text or json", a.logFormat)}
	}
	return slog.New(redact.Handler(h, a.red)), nil
}

// printError writes an error for people: problems one per line, secrets
// redacted.
func (a *app) printError(err error) {
	msg := a.red.String(err.Error())
	var ps spec.Problems
	if errors.As(err, &ps) {
		n := len(ps)
		fmt.Fprintf(a.err, "%s\n", msg)
		if n > 1 {
			fmt.Fprintf(a.err, "%d problems\n", n)
		}
		return
	}
	var re *engine.RunError
	if errors.As(err, &re) {
		for _, e := range re.Errs {
			fmt.Fprintf(a.err, "error: %s\n", a.red.URL(a.red.String(e.Error())))
		}
		return
	}
	fmt.Fprintf(a.err, "error: %s\n", strings.TrimSpace(msg))
}

// loadPipeline loads a pipeline file and resolves its environment: all of
// it, or (stores) only its destination and state sections, for commands
// that never call the API. A file that cannot be read is a usage error.
func (a *app) loadPipeline(path string, stores bool) (*spec.Pipeline, *spec.Resolved, error) {
	p, err := spec.LoadPipeline(path)
	if err != nil {
		var ps spec.Problems
		if !errors.As(err, &ps) {
			err = usageError{err}
		}
		return nil, nil, err
	}
	var r *spec.Resolved
	if stores {
		r, err = p.ResolveStores(a.lookup)
	} else {
		r, err = p.Resolve(a.lookup)
	}
	if err != nil {
		return nil, nil, err
	}
	a.red.Add(r.Secrets...)
	return p, r, nil
}
