// Package demo holds what `ferry demo` needs: the shop connector and
// pipeline files, and a loopback server for the sample shop API.
package demo

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/ferry-dev/ferry/internal/demo/shopapi"
	"github.com/ferry-dev/ferry/internal/spec"
)

//go:embed files/*.yaml
var files embed.FS

// Names of the demo's files.
const (
	ConnectorFile = "shop.connector.yaml"
	PipelineFile  = "shop.pipeline.yaml"
	// The webhook endpoint of ferry demo --serve.
	HooksConnectorFile = "shop_hooks.connector.yaml"
	HooksPipelineFile  = "shop_hooks.pipeline.yaml"
)

// Environment variables the demo pipeline reads.
const (
	EnvURL   = "FERRY_DEMO_URL"
	EnvToken = "FERRY_DEMO_TOKEN"
	EnvDB    = "FERRY_DEMO_DB"
	// EnvHookSecret is the webhook endpoint's shared secret, EnvHooksDB
	// the SQLite file its events go into.
	EnvHookSecret = "FERRY_DEMO_HOOK_SECRET"
	EnvHooksDB    = "FERRY_DEMO_HOOKS_DB"
)

// Export writes the demo's connector and pipeline files into dir.
func Export(dir string) error { return export(dir, ConnectorFile, PipelineFile) }

// ExportHooks writes the webhook endpoint's connector and pipeline files
// into dir.
func ExportHooks(dir string) error { return export(dir, HooksConnectorFile, HooksPipelineFile) }

// export copies the named embedded files into dir.
func export(dir string, names ...string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, name := range names {
		data, err := fs.ReadFile(files, "files/"+name)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Load exports the files into dir and loads the pipeline from there.
func Load(dir string) (*spec.Pipeline, error) {
	if err := Export(dir); err != nil {
		return nil, fmt.Errorf("demo: write files: %w", err)
	}
	return spec.LoadPipeline(filepath.Join(dir, PipelineFile))
}

// Server is the shop API listening on loopback.
type Server struct {
	URL   string
	Token string
	API   *shopapi.Server
	srv   *http.Server
}

// Start serves the shop API on 127.0.0.1 at a free port.
func Start(opts shopapi.Options) (*Server, error) {
	if opts.Token == "" {
		opts.Token = shopapi.DefaultToken
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("demo: listen on loopback: %w", err)
	}
	api := shopapi.New(opts)
	s := &Server{
		URL:   "http://" + ln.Addr().String(),
		Token: opts.Token,
		API:   api,
		srv:   &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second},
	}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(os.Stderr, "demo server:", err)
		}
	}()
	return s, nil
}

// Close stops the server.
func (s *Server) Close() error { return s.srv.Close() }

// Lookup returns an environment lookup that answers the demo's variables
// (db is the SQLite file to sync into) and falls back to the process
// environment.
func (s *Server) Lookup(db string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		switch k {
		case EnvURL:
			return s.URL, true
		case EnvToken:
			return s.Token, true
		case EnvDB:
			if db != "" {
				return db, true
			}
		}
		return os.LookupEnv(k)
	}
}
