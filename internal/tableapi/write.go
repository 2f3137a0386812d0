package tableapi

import (
	"context"
	"fmt"
	"net/http"
)

// writeOp is a write through: create, update or delete.
type writeOp string

const (
	opCreate writeOp = "create"
	opUpdate writeOp = "update"
	opDelete writeOp = "delete"
)

// writer sends a stream's writes to its source API.
type writer struct{}

func newWriter(_ context.Context, _ *Handler, _ Pipeline, pipeline, stream string, _ *table) (*writer, error) {
	return nil, fmt.Errorf("pipeline %s: stream %s: api.write is not supported by this build yet", pipeline, stream)
}

func (w *writer) close() error { return nil }

func (h *Handler) serveWrite(_ context.Context, _ http.ResponseWriter, _ *http.Request, _ *principal, g *grant, t *table, _ writeOp, _ string) error {
	if t.write == nil || !g.write {
		return errForbidden(fmt.Sprintf("table %s does not accept writes here", t.name))
	}
	return errForbidden(fmt.Sprintf("table %s does not accept writes here", t.name))
}

// upstreamError is the source API refusing a write: its status and body.
type upstreamError struct {
	status int
	msg    string
	body   []byte
}

func (e *upstreamError) Error() string { return e.msg }

func (w *writer) describe(coll, item, ref, props obj, t *table, s *snapshot) {}
