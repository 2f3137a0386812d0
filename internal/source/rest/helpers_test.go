package rest

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	_ "github.com/ferry-dev/ferry/internal/auth/apikey" // the auth schemes the tests use
	_ "github.com/ferry-dev/ferry/internal/auth/bearer"
	"github.com/ferry-dev/ferry/internal/record"
	"github.com/ferry-dev/ferry/internal/redact"
	"github.com/ferry-dev/ferry/internal/source"
	"github.com/ferry-dev/ferry/internal/spec"
)

// newSource compiles a connector file's text into a Source with the
// given config values and Redactor (a new one if nil).
func newSource(t *testing.T, connector string, config map[string]any, red *redact.Redactor) (*Source, error) {
	t.Helper()
	return newSourceWithLog(t, connector, config, red, nil)
}

// newSourceWithLog is newSource with a logger.
func newSourceWithLog(t *testing.T, connector string, config map[string]any, red *redact.Redactor, log *slog.Logger) (*Source, error) {
	t.Helper()
	c, err := spec.ParseConnector("test.connector.yaml", []byte(connector))
	if err != nil {
		t.Fatalf("connector: %v", err)
	}
	if red == nil {
		red = redact.New()
	}
	src, err := New(c.Body.(*Config), source.Options{Name: c.Name, Config: config, Redactor: red, Logger: log})
	if err != nil {
		return nil, err
	}
	return src.(*Source), nil
}

// readAll reads a stream from its start and returns its pages.
func readAll(ctx context.Context, s *Source, stream string) ([]*record.Page, error) {
	var pages []*record.Page
	err := s.Read(ctx, source.ReadRequest{
		Stream: stream,
		Start:  func(context.Context, *record.Partition) (source.Start, error) { return source.Start{}, nil },
		Emit: func(_ context.Context, p *record.Page) error {
			pages = append(pages, p)
			return nil
		},
	})
	return pages, err
}

// seen is what a test server received.
type seen struct {
	mu   sync.Mutex
	reqs []*http.Request
}

func (s *seen) add(r *http.Request) {
	s.mu.Lock()
	s.reqs = append(s.reqs, r.Clone(context.Background()))
	s.mu.Unlock()
}

func (s *seen) all() []*http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*http.Request(nil), s.reqs...)
}

// newServer starts a test server recording every request it receives
// before h answers it.
func newServer(t *testing.T, h http.HandlerFunc) (*httptest.Server, *seen) {
	t.Helper()
	rec := &seen{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.add(r)
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, rec
}
