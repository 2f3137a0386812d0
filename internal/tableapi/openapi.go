package tableapi

import "net/http"

func (h *Handler) serveOpenAPI(w http.ResponseWriter, r *http.Request, p *principal, index bool) {
	h.fail(w, r, errNotFound("later"))
}
