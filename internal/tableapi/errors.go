package tableapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
)

// httpError is a failure with the status it answers and a message for
// the caller.
type httpError struct {
	status  int
	message string
	// param names the query parameter at fault, if any.
	param string
	// header is set on the response (Allow, Retry-After, WWW-Authenticate).
	header http.Header
}

func (e *httpError) Error() string { return e.message }

func errNotFound(msg string) error { return &httpError{status: http.StatusNotFound, message: msg} }

func errBad(msg string) error { return &httpError{status: http.StatusBadRequest, message: msg} }

func errForbidden(msg string) error { return &httpError{status: http.StatusForbidden, message: msg} }

func errMethod(allow string) error {
	return &httpError{status: http.StatusMethodNotAllowed, message: "method not allowed here; allowed: " + allow, header: http.Header{"Allow": {allow}}}
}

// errorBody is the JSON body of every failure.
type errorBody struct {
	Status  int    `json:"status"`
	Message string `json:"message"`
	Param   string `json:"parameter,omitempty"`
	// Upstream is the source API's own body, for a write it refused.
	Upstream json.RawMessage `json:"upstream,omitempty"`
}

// fail answers err: its own status when it is an httpError or a
// ParamError, 504 for a query that ran out of time, 503 for a table not
// synced yet, 500 (with the detail logged, not shown) otherwise.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	body := errorBody{Status: http.StatusInternalServerError, Message: "internal error; the server's log has the detail"}
	var he *httpError
	var pe *ParamError
	var ns *notSyncedError
	var ue *upstreamError
	switch {
	case errors.As(err, &he):
		body.Status, body.Message, body.Param = he.status, he.message, he.param
		for k, v := range he.header {
			w.Header()[k] = v
		}
	case errors.As(err, &pe):
		body.Status, body.Message, body.Param = http.StatusBadRequest, pe.Error(), pe.Param
	case errors.As(err, &ns):
		body.Status, body.Message = http.StatusServiceUnavailable, ns.Error()
	case errors.As(err, &ue):
		body.Status, body.Message, body.Upstream = ue.status, ue.Error(), ue.body
	case errors.Is(err, context.DeadlineExceeded):
		body.Status, body.Message = http.StatusGatewayTimeout, "the query took longer than the API allows; narrow it with filters or a smaller limit"
	case errors.Is(err, context.Canceled):
		return // the client went away
	}
	if body.Status >= 500 && body.Status != http.StatusBadGateway && body.Status != http.StatusServiceUnavailable {
		msg := err.Error()
		if h.opts.Redactor != nil {
			msg = h.opts.Redactor.String(msg)
		}
		h.log.Error("table API request failed", "method", r.Method, "path", r.URL.Path, "error", msg)
	}
	if h.opts.Redactor != nil {
		body.Message = h.opts.Redactor.String(body.Message)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(body.Status)
	b, _ := json.Marshal(body)
	w.Write(append(b, '\n'))
}

// unescape decodes one path segment.
func unescape(s string) (string, error) { return url.PathUnescape(s) }

func sortStrings(s []string) { slices.Sort(s) }

func itoa(n int) string { return strconv.Itoa(n) }
