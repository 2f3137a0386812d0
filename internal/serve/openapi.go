package serve

import (
	_ "embed"
	"net/http"
)

// OpenAPI is the OpenAPI 3 document of the control-plane API (/v1). The
// tests check it is valid and that every handler's responses match it.
//
//go:embed openapi.json
var OpenAPI []byte

func (s *Server) openapi(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	_, err := w.Write(OpenAPI)
	return err
}
